"""Generic blocks that several model families are built from (as timm's ``layers/``).

A family file takes its blocks from here, never from another family's file.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from .._checks import as_pair, check_int
from .geometry import same_padding

__all__ = ["ConvNormAct", "make_divisible"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below.

    The channel rounding of the TensorFlow MobileNet/EfficientNet code (and torchvision's ``_make_divisible``):
    multiples of 8 suit the hardware. E.g. 24 * 0.5 = 12 -> 16, 32 * 1.1 = 35.2 -> 32, 40 * 1.1 = 44 -> 48.
    """
    check_int("divisor", divisor, 1)
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _activation(act_layer: Callable[..., nn.Module]) -> nn.Module:
    # In place where the activation allows it (ReLU, ReLU6, SiLU): saves one activation-sized buffer.
    try:
        takes_inplace = "inplace" in inspect.signature(act_layer).parameters
    except (TypeError, ValueError):
        takes_inplace = False
    return act_layer(inplace=True) if takes_inplace else act_layer()


class ConvNormAct(nn.Sequential):
    """Convolution, normalization, activation: the unit most CNNs are built from.

    Children ``conv``, ``norm`` and ``act`` (the last two left out when their
    factory is None), as torchvision's ``Conv2dNormActivation``.

    Args:
        kernel_size, stride, dilation, groups: as ``nn.Conv2d`` (``groups=in_channels`` is depthwise).
        padding: as ``nn.Conv2d``; None pads "same" (:func:`~course_lib.layers.geometry.same_padding`),
            so an odd kernel keeps the grid at stride 1 and gives ``ceil(H / stride)`` rows at stride ``S``.
        norm_layer: called with the channel count (``nn.BatchNorm2d``, ``partial(nn.GroupNorm, 8)``), or None.
        act_layer: an activation class or factory (``nn.ReLU``, ``nn.SiLU``), or None for a linear block.
        bias: whether the conv has a bias; by default only when no normalization follows
            (a norm layer's shift would cancel it).
        eps: the norm layer's eps when not the factory's default (1e-3 in the TensorFlow-born
            Inception and EfficientNet weights).

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        *,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
        eps: float | None = None,
    ):
        check_int("in_channels", in_channels, 1)
        check_int("out_channels", out_channels, 1)
        if padding is None:
            kernel, spread = as_pair("kernel_size", kernel_size, 1), as_pair("dilation", dilation, 1)
            splits = [same_padding(k, d) for k, d in zip(kernel, spread)]
            if any(before != after for before, after in splits):
                raise ValueError(f"kernel_size {kernel_size} needs uneven 'same' padding: give padding explicitly")
            padding = tuple(before for before, _ in splits)
        if bias is None:
            bias = norm_layer is None
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)
        )
        if norm_layer is not None:
            layers["norm"] = norm_layer(out_channels) if eps is None else norm_layer(out_channels, eps=eps)
        if act_layer is not None:
            layers["act"] = _activation(act_layer)
        super().__init__(layers)
