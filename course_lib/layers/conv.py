"""Convolution modules built on course_lib's from-scratch ``conv2d``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import init
from .functional import conv2d
from .._checks import as_pair

__all__ = ["Conv2d", "DepthwiseSeparableConv2d"]


class Conv2d(nn.Module):
    """A 2D convolution layer computed by course_lib's im2col ``conv2d``.

    Same constructor arguments, parameters (``weight`` of shape
    (C_out, C_in / groups, kH, kW), ``bias`` of shape (C_out,)), state_dict keys
    and initialisation as ``torch.nn.Conv2d`` (zero padding only), so the two
    are interchangeable: a state_dict saved from one loads into the other.

    Shapes: input (N, C_in, H, W) -> output (N, C_out, H_out, W_out).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride, self.dilation = as_pair("stride", stride, 1), as_pair("dilation", dilation, 1)
        self.padding = padding if isinstance(padding, str) else as_pair("padding", padding, 0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias alike."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            with torch.no_grad():
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}"
        )


class DepthwiseSeparableConv2d(nn.Module):
    """A k x k depthwise convolution (one filter per input channel) followed by a 1x1 pointwise one.

    Parameters: C_in k^2 + C_in C_out (plus biases), against C_in C_out k^2 for a
    full convolution: the cost ratio is 1/C_out + 1/k^2 (MobileNet, T64).
    ``norm_layer`` and ``activation`` (module factories, e.g. ``nn.BatchNorm2d``
    and ``nn.ReLU``) are applied after each of the two convolutions, as in
    MobileNet v1; by default there are none. ``conv_layer`` builds the two
    convolutions: ``nn.Conv2d`` by default (the speed models need), or
    course_lib's from-scratch :class:`Conv2d`, which takes the same arguments.

    Shapes: (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out set by the depthwise
    conv's stride and padding (default padding k // 2 keeps the size at stride 1).
    """

    def __init__(
        self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, bias=False,
        norm_layer=None, activation=None, conv_layer=nn.Conv2d,
    ):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding

        def after(channels):
            return [m for m in (norm_layer and norm_layer(channels), activation and activation()) if m is not None]

        self.depthwise = nn.Sequential(
            conv_layer(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=bias),
            *after(in_channels),
        )
        self.pointwise = nn.Sequential(conv_layer(in_channels, out_channels, 1, bias=bias), *after(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
