"""Attention inside CNNs: squeeze-and-excitation, CBAM, self-attention on feature maps (T68-T70).

The projections inside these blocks are plain ``nn.Conv2d`` layers: the lesson
here is the attention, and the models of the zoo that use these blocks must
train at PyTorch's speed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._checks import check_int, check_module
from .functional import global_avg_pool2d

__all__ = ["SqueezeExcitation", "CBAM", "SelfAttention2d", "AttentionRecorder", "record_attention"]


def _check_feature_map(x, channels: int) -> None:
    """``x`` is a (N, C, H, W) tensor with C = ``channels``: a wrong channel count must not broadcast."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (N, C, H, W) with C = {channels}, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (N, C, H, W) with C = {channels}, got shape {tuple(x.shape)}")


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
        check_int("channels", channels, 1)
        check_int("reduction", reduction, 1)
        if squeeze_channels is not None:
            check_int("squeeze_channels", squeeze_channels, 1)
        squeeze = squeeze_channels or max(1, channels // reduction)
        self.channels = channels
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = act_layer()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights s, shape (N, C, 1, 1), in (0, 1)."""
        _check_feature_map(x, self.channels)
        z = global_avg_pool2d(x, keepdim=True)
        return torch.sigmoid(self.fc2(self.act(self.fc1(z))))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the block computes to rescale ``x`` (N, C, H, W), for display:
        ``{"channel": s}`` with s of shape (N, C), each in (0, 1)."""
        return {"channel": self.gate(x).flatten(1)}

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
        check_int("channels", channels, 1)
        check_int("reduction", reduction, 1)
        check_int("spatial_kernel", spatial_kernel, 1)
        if spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be odd (the map keeps the input's H, W), got {spatial_kernel!r}")
        hidden = max(1, channels // reduction)
        self.channels = channels
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, 1) channel weights."""
        _check_feature_map(x, self.channels)
        avg = global_avg_pool2d(x, keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(peak))

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) spatial weights from the channel-wise mean and max maps."""
        _check_feature_map(x, self.channels)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.spatial(pooled))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both gates the block applies to ``x`` (N, C, H, W), for display: ``{"channel"}`` (N, C) and
        ``{"spatial"}`` (N, H, W), the latter computed, as in ``forward``, on the channel-refined input."""
        channel = self.channel_gate(x)
        return {"channel": channel.flatten(1), "spatial": self.spatial_gate(x * channel)[:, 0]}

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
        check_int("channels", channels, 1)
        check_int("reduction", reduction, 1)
        inner = max(1, channels // reduction)
        self.channels = channels
        self.f = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.last_attention: torch.Tensor | None = None

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """beta of ``x`` (N, C, H, W): (N, L, L), row j = how output position j weighs every input position i
        (positions in row-major order, L = H W); each row sums to 1."""
        _check_feature_map(x, self.channels)
        f = self.f(x).flatten(2)  # (N, C/r, L)
        g = self.g(x).flatten(2)  # (N, C/r, L)
        scores = torch.einsum("nki,nkj->nji", f, g)  # s_ij stored at [n, j, i]
        return torch.softmax(scores, dim=-1)  # normalised over i for each output position j

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"attention": beta}``, beta (N, L, L) as :meth:`attention`; ``beta[n, j].view(H, W)`` is the
        map of where output position j looks."""
        return {"attention": self.attention(x)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.attention(x)  # checks x first
        n, c, height, width = x.shape
        h = self.h(x).flatten(2)  # (N, C, L)
        self.last_attention = beta.detach()
        out = torch.einsum("nji,nci->ncj", beta, h).view(n, c, height, width)
        return self.gamma * out + x


_ATTENTION_BLOCKS = (SqueezeExcitation, CBAM, SelfAttention2d)


class AttentionRecorder:
    """Collects the attention maps of every SE, CBAM and self-attention block of a model while it runs.

    Use it through :func:`record_attention`. ``maps[name][kind]`` holds, for the block registered
    as ``name`` in ``model.named_modules()``, the maps of every call (concatenated along the batch
    axis, in call order): ``"channel"`` (N, C), ``"spatial"`` (N, H, W), ``"attention"`` (N, L, L),
    as each block's ``attention_maps`` returns them, detached. The forward pass itself is unchanged:
    the maps are recomputed from each block's input in a hook, without autograd.
    """

    def __init__(self, model: nn.Module):
        check_module("model", model)
        self.blocks = {name: m for name, m in model.named_modules() if isinstance(m, _ATTENTION_BLOCKS)}
        if not self.blocks:
            raise ValueError("model has no SqueezeExcitation, CBAM or SelfAttention2d block to record")
        self._parts: dict[str, dict[str, list[torch.Tensor]]] = {name: {} for name in self.blocks}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, args, output):  # returns None: the block's output is left as it is
            with torch.no_grad():
                for kind, value in module.attention_maps(args[0]).items():
                    self._parts[name].setdefault(kind, []).append(value.detach())

        return hook

    @property
    def maps(self) -> dict[str, dict[str, torch.Tensor]]:
        """{block name: {kind: maps of all calls so far, concatenated along the batch axis}}."""
        return {name: {kind: torch.cat(parts) for kind, parts in kinds.items()} for name, kinds in self._parts.items()}

    def __enter__(self) -> AttentionRecorder:
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.blocks.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def record_attention(model: nn.Module) -> AttentionRecorder:
    """Record the attention maps of every attention block of ``model`` during the forward passes run
    inside the ``with`` block::

        with record_attention(model) as recorder:
            model(x)
        recorder.maps["layer1.0.attention"]["channel"]  # (N, C) SE or CBAM channel weights

    The hooks are removed when the block ends. See :class:`AttentionRecorder`.
    """
    return AttentionRecorder(model)
