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
``width_mult`` (alpha in the papers) thins every layer. Layers are listed
in the order of ``torchvision.models.mobilenet_v2``, so
:func:`course_lib.models.transfer_state_dict` copies its weights (torchvision
has no v1).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..layers import ConvNormAct, DepthwiseSeparableConv2d, make_divisible
from .._checks import check_choice, check_flag, check_number, check_probability
from ..init import torchvision_init_
from .registry import published, register_model

__all__ = [
    "depthwise_separable",
    "InvertedResidual",
    "MOBILENET_V1_BODY",
    "MOBILENET_V2_SETTING",
    "MobileNetV1",
    "MobileNetV2",
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


class _MobileNet(nn.Module):
    """What v1 and v2 share: ``features``, global average pooling, ``classifier``, torchvision's MobileNet init.

    Init: He-normal (fan_out) convs, BatchNorm to identity, N(0, 0.01) linear weights, zero biases.
    Shapes: (N, in_channels, H, W) -> features (N, C, h, w) -> pooled (N, C) -> (N, num_classes).
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Module):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier
        torchvision_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------- MobileNet v1


def depthwise_separable(in_channels: int, out_channels: int, stride: int = 1) -> DepthwiseSeparableConv2d:
    """MobileNet v1's layer (paper Fig. 3, right): 3x3 depthwise conv-BN-ReLU, then 1x1 pointwise conv-BN-ReLU.

    ReLU as in the paper (the authors' TensorFlow release uses ReLU6, as v2 does; no parameters either way).
    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """
    return DepthwiseSeparableConv2d(
        in_channels, out_channels, 3, stride, norm_layer=nn.BatchNorm2d, activation=partial(nn.ReLU, inplace=True)
    )


class MobileNetV1(_MobileNet):
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
        check_number("width_mult", width_mult, positive=True)
        check_flag("small_input", small_input)

        def width(channels: int) -> int:
            return max(8, int(channels * width_mult))  # the TF-slim rule (min_depth = 8)

        channels = width(32)
        layers = [ConvNormAct(in_channels, channels, 3, stride=1 if small_input else 2)]
        for out_channels, stride in body:
            layers.append(depthwise_separable(channels, width(out_channels), stride))
            channels = width(out_channels)
        super().__init__(nn.Sequential(*layers), nn.Linear(channels, num_classes))


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
        check_choice("stride", stride, (1, 2))
        hidden = int(round(in_channels * expand_ratio))
        layers = OrderedDict()
        if expand_ratio != 1:
            layers["expand"] = ConvNormAct(in_channels, hidden, 1, act_layer=nn.ReLU6)
        layers["depthwise"] = ConvNormAct(hidden, hidden, 3, stride, groups=hidden, act_layer=nn.ReLU6)
        layers["project"] = ConvNormAct(hidden, out_channels, 1, act_layer=None)
        self.conv = nn.Sequential(layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(_MobileNet):
    """MobileNet v2: stem, 17 inverted residual blocks (:data:`MOBILENET_V2_SETTING`), 1x1 conv to 1280, GAP, linear.

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        width_mult: multiplies the channels of the stem and of every block, rounded by
            :func:`~course_lib.layers.make_divisible`; the last conv keeps 1280 channels for
            width_mult < 1 (paper Sec. 6.1).
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
        check_number("width_mult", width_mult, positive=True)
        check_flag("small_input", small_input)
        check_probability("dropout", dropout)

        channels = make_divisible(32 * width_mult)
        layers = [ConvNormAct(in_channels, channels, 3, stride=1 if small_input else 2, act_layer=nn.ReLU6)]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
                channels = out_channels
        last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers.append(ConvNormAct(channels, last_channels, 1, act_layer=nn.ReLU6))
        classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        super().__init__(nn.Sequential(*layers), classifier)
        self.last_channels = last_channels


@register_model(
    paper="Howard et al. 2017, MobileNets: efficient convolutional neural networks for mobile vision applications",
    params=[
        published(4_231_976, "Table 1's convs + BN + 1024x1000 fc; Howard et al. 2017, Table 8: 4.2M"),
        published(2_585_560, "Table 1 at alpha 0.75; Howard et al. 2017, Table 6: 2.6M", width_mult=0.75),
        published(1_331_592, "Table 1 at alpha 0.5; Howard et al. 2017, Table 6: 1.3M", width_mult=0.5),
        published(470_072, "Table 1 at alpha 0.25; Howard et al. 2017, Table 6: 0.5M", width_mult=0.25),
    ],
)
def mobilenet_v1(
    num_classes: int = 1000, in_channels: int = 3, *, width_mult: float = 1.0, small_input: bool = False
) -> MobileNetV1:
    """MobileNet v1 (the paper's 1.0 MobileNet-224 by default); ``width_mult`` is alpha (Table 6: 1, 0.75, 0.5, 0.25).

    Input 224x224, or 32x32 with ``small_input=True``. Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    return MobileNetV1(num_classes, in_channels, width_mult=width_mult, small_input=small_input)


@register_model(
    paper="Sandler et al. 2018, MobileNetV2: inverted residuals and linear bottlenecks",
    params=[published(3_504_872, "torchvision.models.mobilenet_v2; Sandler et al. 2018, Table 4: 3.4M")],
)
def mobilenet_v2(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    width_mult: float = 1.0,
    small_input: bool = False,
    dropout: float = 0.2,
) -> MobileNetV2:
    """MobileNet v2 1.0, layer for layer torchvision's ``mobilenet_v2``; options as :class:`MobileNetV2`.

    Input 224x224, or 32x32 with ``small_input=True``. Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    return MobileNetV2(num_classes, in_channels, width_mult=width_mult, small_input=small_input, dropout=dropout)
