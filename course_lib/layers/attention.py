"""Attention inside CNNs: squeeze-and-excitation, CBAM, self-attention on feature maps (T68-T70).

The projections inside these blocks are plain ``nn.Conv2d`` layers: the lesson
here is the attention, and the models of the zoo that use these blocks must
train at PyTorch's speed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .functional import global_avg_pool2d

__all__ = ["SqueezeExcitation", "CBAM", "SelfAttention2d"]


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): rescale each channel by a learned gate.

    .. math::

        z = \\mathrm{GAP}(x) \\in \\mathbb{R}^C, \\quad
        s = \\sigma(W_2\\, \\delta(W_1 z)), \\quad y_c = s_c\\, x_c

    with ``W_1``: C -> C/r, ``W_2``: C/r -> C, ``delta`` = ReLU (``act_layer``;
    EfficientNet uses SiLU). The two fully connected layers are 1x1 convolutions
    named ``fc1``/``fc2`` (as in torchvision's ``SqueezeExcitation``, so weights
    load from it). ``squeeze_channels`` sets C/r directly (EfficientNet squeezes
    to a quarter of its block's input, not of C).
    Parameters: 2 C^2 / r + C/r + C. Shapes: (N, C, H, W) -> same.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        squeeze_channels: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ):
        super().__init__()
        squeeze = squeeze_channels or max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = act_layer()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights s, shape (N, C, 1, 1), in (0, 1)."""
        z = global_avg_pool2d(x, keepdim=True)
        return torch.sigmoid(self.fc2(self.act(self.fc1(z))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention, then spatial attention.

    Channel: M_c = sigma(MLP(AvgPool(x)) + MLP(MaxPool(x))), one MLP (C -> C/r -> C)
    shared by both pooled vectors. Spatial: M_s = sigma(conv_kxk([mean_c(x'); max_c(x')]))
    on the channel-refined x' = M_c * x. Output M_s * x'. Shapes: (N, C, H, W) -> same.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, 1) channel weights."""
        avg = global_avg_pool2d(x, keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(peak))

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) spatial weights from the channel-wise mean and max maps."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate(x)
        return x * self.spatial_gate(x)


class SelfAttention2d(nn.Module):
    """Self-attention over the positions of a feature map, in SAGAN's form (Zhang et al. 2019).

    With 1x1 projections f, g (C -> C/r) and h (C -> C) and positions flattened
    to L = H W:

    .. math::

        s_{ij} = f(x_i)^\\top g(x_j), \\quad
        \\beta_{j,i} = \\frac{\\exp s_{ij}}{\\sum_i \\exp s_{ij}}, \\quad
        o_j = \\sum_i \\beta_{j,i}\\, h(x_i), \\quad y = \\gamma\\, o + x

    ``gamma`` starts at 0, so the block starts as the identity and learns how
    much non-local evidence to add. Shapes: (N, C, H, W) -> same; the attention
    map (N, L, L) of the last call is kept in ``self.last_attention`` for plotting.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.f = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        f = self.f(x).flatten(2)  # (N, C/r, L)
        g = self.g(x).flatten(2)  # (N, C/r, L)
        h = self.h(x).flatten(2)  # (N, C, L)
        scores = torch.einsum("nki,nkj->nji", f, g)  # s_ij stored at [n, j, i]
        beta = torch.softmax(scores, dim=-1)  # normalised over i for each output position j
        self.last_attention = beta.detach()
        out = torch.einsum("nji,nci->ncj", beta, h).view(n, c, height, width)
        return self.gamma * out + x
