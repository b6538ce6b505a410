"""Small modules over course_lib's functional layers, for the layers PyTorch lacks.

Each module holds its hyper-parameters, follows ``self.training`` for train
vs eval behaviour, and calls the from-scratch function that defines it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import init
from .functional import (
    drop_block2d,
    drop_connect,
    drop_path,
    local_contrast_norm,
    maxout,
    stochastic_pool2d,
)
from .._checks import check_probability

__all__ = ["Maxout", "LocalContrastNorm", "StochasticPool2d", "DropBlock2d", "DropPath", "DropConnectLinear"]


class Maxout(nn.Module):
    """Maxout over channels: (N, C, ...) -> (N, C / num_pieces, ...), the max of each group of pieces."""

    def __init__(self, num_pieces: int):
        super().__init__()
        self.num_pieces = num_pieces

    def forward(self, x):
        return maxout(x, self.num_pieces, dim=1)

    def extra_repr(self):
        return f"num_pieces={self.num_pieces}"


class LocalContrastNorm(nn.Module):
    """Local contrast normalization (subtractive then divisive, Gaussian window); (N, C, H, W) -> same."""

    def __init__(self, kernel_size: int = 9, sigma: float | None = None, eps: float = 1e-4):
        super().__init__()
        self.kernel_size, self.sigma, self.eps = kernel_size, sigma, eps

    def forward(self, x):
        return local_contrast_norm(x, self.kernel_size, self.sigma, self.eps)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, eps={self.eps}"


class StochasticPool2d(nn.Module):
    """Stochastic pooling: samples one activation per window in training, probability-weighted average in eval."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        return stochastic_pool2d(x, self.kernel_size, self.stride, training=self.training)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class _DropModule(nn.Module):
    """Common part of the dropping modules: a probability ``p`` checked once, identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        check_probability("p", p)
        self.p = p

    def extra_repr(self):
        return f"p={self.p}"


class DropBlock2d(_DropModule):
    """DropBlock: drops contiguous block_size x block_size squares of each feature map; (N, C, H, W) -> same."""

    def __init__(self, p: float = 0.1, block_size: int = 7):
        super().__init__(p)
        self.block_size = block_size

    def forward(self, x):
        return drop_block2d(x, self.p, self.block_size, training=self.training)

    def extra_repr(self):
        return f"p={self.p}, block_size={self.block_size}"


class DropPath(_DropModule):
    """Stochastic depth: drops the whole input per example (use it on a residual branch); (N, ...) -> same."""

    def forward(self, x):
        return drop_path(x, self.p, training=self.training)


class DropConnectLinear(_DropModule):
    """A linear layer whose weights (not activations) are dropped in training; (N, in) -> (N, out).

    Same parameters and initialisation as ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True):
        super().__init__(p)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # nn.Linear's default, so both layers start alike.
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            with torch.no_grad():
                self.bias.uniform_(-bound, bound)

    def forward(self, x):
        return drop_connect(x, self.weight, self.bias, self.p, training=self.training)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, p={self.p}"
