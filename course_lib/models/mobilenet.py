"""MobileNet v1 (Howard et al. 2017) and MobileNet v2 (Sandler et al. 2018): CNNs built from depthwise convolutions.

A k x k convolution from M to N channels on a D x D map costs ``D^2 M N k^2``
multiply-adds. MobileNet v1 factorises it into a *depthwise* k x k conv (one
filter per input channel, ``D^2 M k^2``) and a *pointwise* 1x1 conv
(``D^2 M N``), a cost ratio of

.. math::

    \\frac{D^2 M k^2 + D^2 M N}{D^2 M N k^2} = \\frac{1}{N} + \\frac{1}{k^2}

- about 8 to 9 times cheaper for k = 3. MobileNet v2 wraps the depthwise
conv in an *inverted residual*: 1x1 expansion by t (ReLU6) -> 3x3 depthwise
(ReLU6) -> *linear* 1x1 projection back to few channels, with the shortcut
between the thin ends.

Both take 224x224 images; ``small_input=True`` makes the stem conv stride 1,
for 32x32 CIFAR images (the blocks are unchanged: a 2x2 map reaches the head).
``width_mult`` (alpha in the papers) thins every layer.

:func:`make_divisible` and :func:`conv_bn_act` are shared with
:mod:`course_lib.models.efficientnet`, whose MBConv block is v2's inverted residual.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from ..layers import DepthwiseSeparableConv2d
from .._checks import check_flag, check_probability
from .registry import register_model

__all__ = [
    "depthwise_separable",
    "InvertedResidual",
    "MOBILENET_V1_BODY",
    "MOBILENET_V2_SETTING",
    "MobileNetV1",
    "MobileNetV2",
    "conv_bn_act",
    "make_divisible",
    "mobilenet_v1",
    "mobilenet_v2",
]

# MobileNet v1, paper Table 1: the stem is a 3x3 stride-2 conv to 32 channels, then 13 depthwise separable
# layers, each (pointwise output channels, depthwise stride). Table 1 prints "s2" for the last depthwise
# conv, but its input and output are both 7x7 (the average pool is 7x7): stride 1, as in the authors' code.
MOBILENET_V1_BODY: list[tuple[int, int]] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *[(512, 1)] * 5,
    (1024, 2),
    (1024, 1),
]

# MobileNet v2, paper Table 2: (t expansion, c output channels, n repeats, s stride of the first repeat).
# Stem: 3x3 stride-2 conv to 32 channels; head: 1x1 conv to 1280 channels.
MOBILENET_V2_SETTING: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below.

    The channel rounding of the TensorFlow MobileNet/EfficientNet code (and torchvision's ``_make_divisible``):
    multiples of 8 suit the hardware. E.g. 24 * 0.5 = 12 -> 16, 32 * 1.1 = 35.2 -> 32, 40 * 1.1 = 44 -> 48.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: Callable[..., nn.Module] | None = nn.ReLU,
    norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
) -> nn.Sequential:
    """Conv (no bias, "same" padding) - BatchNorm (``norm_layer``) - activation (none if ``activation`` is None).

    ``groups=in_channels`` makes it depthwise. Same layers as torchvision's ``Conv2dNormActivation``.
    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        norm_layer(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


def _check_width(width_mult) -> None:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
        raise ValueError(f"width_mult must be a number > 0, got {width_mult!r}")


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet init: He-normal (fan_out) convs, BN to identity, N(0, 0.01) linear weights."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------- MobileNet v1


def depthwise_separable(in_channels: int, out_channels: int, stride: int = 1) -> DepthwiseSeparableConv2d:
    """MobileNet v1's layer (paper Fig. 3, right): 3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU.

    ReLU as in the paper (the authors' TensorFlow release uses ReLU6, as v2 does; no parameters either way).
    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """
    return DepthwiseSeparableConv2d(
        in_channels, out_channels, 3, stride, norm_layer=nn.BatchNorm2d, activation=partial(nn.ReLU, inplace=True)
    )


class MobileNetV1(nn.Module):
    """MobileNet v1: a 3x3 conv stem, 13 depthwise separable layers (:data:`MOBILENET_V1_BODY`), GAP, linear.

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        width_mult: alpha, the width multiplier: every layer gets ``max(8, int(alpha * channels))``
            channels (paper Sec. 3.3: cost and parameters shrink by about alpha^2; 1.0, 0.75, 0.5, 0.25 in Table 6).
        small_input: stride-1 stem, for 32x32 inputs.
        body: the layer table, (out_channels, stride) per depthwise separable layer.

    Shapes: (N, in_channels, 224, 224) -> stem (N, 32a, 112, 112) -> ... -> (N, 1024a, 7, 7) -> (N, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        small_input: bool = False,
        body: list[tuple[int, int]] = MOBILENET_V1_BODY,
    ):
        super().__init__()
        _check_width(width_mult)
        check_flag("small_input", small_input)

        def width(channels: int) -> int:
            return max(8, int(channels * width_mult))  # the TF-slim rule (min_depth = 8)

        channels = width(32)
        layers = [conv_bn_act(in_channels, channels, 3, stride=1 if small_input else 2)]
        for out_channels, stride in body:
            layers.append(depthwise_separable(channels, width(out_channels), stride))
            channels = width(out_channels)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------- MobileNet v2


class InvertedResidual(nn.Module):
    """MobileNet v2's bottleneck (paper Table 1): 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear project.

    The block is thin at its ends (``in_channels``, ``out_channels``) and ``t`` times wider inside; the
    projection has no activation (a *linear bottleneck*: ReLU on few channels would destroy information).
    The input is added back when stride is 1 and the channels agree. No expansion conv when t = 1.
    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        hidden = int(round(in_channels * expand_ratio))
        layers = OrderedDict()
        if expand_ratio != 1:
            layers["expand"] = conv_bn_act(in_channels, hidden, 1, activation=nn.ReLU6)
        layers["depthwise"] = conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6)
        layers["project"] = conv_bn_act(hidden, out_channels, 1, activation=None)
        self.conv = nn.Sequential(layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2: stem, 17 inverted residual blocks (:data:`MOBILENET_V2_SETTING`), 1x1 conv to 1280, GAP, linear.

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        width_mult: multiplies the channels of the stem and of every block, rounded by
            :func:`make_divisible`; the last conv keeps 1280 channels for width_mult < 1 (paper Sec. 6.1).
        small_input: stride-1 stem, for 32x32 inputs.
        dropout: before the classifier (0.2 as torchvision).
        setting: the (t, c, n, s) table.

    Shapes: (N, in_channels, 224, 224) -> stem (N, 32, 112, 112) -> ... -> (N, 320, 7, 7) -> (N, 1280, 7, 7)
    -> (N, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        small_input: bool = False,
        dropout: float = 0.2,
        setting: list[tuple[int, int, int, int]] = MOBILENET_V2_SETTING,
    ):
        super().__init__()
        _check_width(width_mult)
        check_flag("small_input", small_input)
        check_probability("dropout", dropout)

        channels = make_divisible(32 * width_mult)
        layers = [conv_bn_act(in_channels, channels, 3, stride=1 if small_input else 2, activation=nn.ReLU6)]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
                channels = out_channels
        self.last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers.append(conv_bn_act(channels, self.last_channels, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channels, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model
def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, *, width_mult: float = 1.0, small_input: bool = False):
    """1.0 MobileNet-224 (4,231,976 parameters; paper Table 8: 4.2M, 569M multiply-adds). Input 224x224, or
    32x32 with ``small_input=True``; ``width_mult`` = alpha. Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return MobileNetV1(num_classes, in_channels, width_mult=width_mult, small_input=small_input)


@register_model
def mobilenet_v2(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    width_mult: float = 1.0,
    small_input: bool = False,
    dropout: float = 0.2,
):
    """MobileNet v2 1.0 (3,504,872 parameters, as torchvision; paper Table 4: 3.4M, 300M multiply-adds). Input
    224x224, or 32x32 with ``small_input=True``. Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return MobileNetV2(num_classes, in_channels, width_mult=width_mult, small_input=small_input, dropout=dropout)
