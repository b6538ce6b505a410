"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012) and ZFNet (Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks", ECCV 2014, arXiv:1311.2901 2013).

Both are five convolutions with ReLU and three overlapping 3x3 stride-2
max-pools, then three fully connected layers with dropout:

.. math::

    \\text{conv}_{1..5} \\to \\text{AdaptiveAvgPool}(6 \\times 6) \\to
    9216 \\to 4096 \\to 4096 \\to \\text{classes}

The convolution stacks are written as data - one :class:`Conv` per
convolution, ``POOL`` for a 3x3 stride-2 max-pool, ``LRN`` for local response
normalization - like the papers' layer tables, and built by
:func:`make_features`:

- ``ALEXNET``: torchvision's single-GPU AlexNet (64-192-384-256-256 channels,
  no LRN, no groups), so torchvision's weights load into ``alexnet()``.
- ``ALEXNET_PAPER``: the 2012 network (``alexnet(original=True)``): 96-256-384-384-256
  channels, LRN after conv1 and conv2, and conv2/4/5 split in two groups
  (one per GPU: each half sees only the maps of its own GPU).
- ``ZFNET``: ZF's Fig. 3: a 7x7 stride-2 first layer (AlexNet's 11x11 stride 4
  aliased and left dead filters), a stride-2 conv2, dense (ungrouped) layers 3-5.

The convolutions are followed by ``nn.AdaptiveAvgPool2d((6, 6))`` (as in torchvision):
at the design input size the map is already 6x6 and the pool does nothing;
elsewhere it resamples the map to 6x6.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .._checks import check_flag, check_probability
from .registry import published, register_model

__all__ = [
    "ALEXNET",
    "ALEXNET_PAPER",
    "LRN",
    "LRN_PAPER",
    "POOL",
    "ZFNET",
    "AlexNet",
    "Conv",
    "ZFNet",
    "alexnet",
    "make_features",
    "small_input_stem",
    "zfnet",
]


class Conv(NamedTuple):
    """One convolution of a layer table (always followed by ReLU)."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1


POOL = "M"  # 3x3 stride-2 max-pool ("overlapping pooling", AlexNet Sec. 3.4)
LRN = "N"  # local response normalization across channels (AlexNet Sec. 3.3)

ALEXNET = [
    Conv(64, 11, stride=4, padding=2), POOL,
    Conv(192, 5, padding=2), POOL,
    Conv(384, 3, padding=1),
    Conv(256, 3, padding=1),
    Conv(256, 3, padding=1), POOL,
]  # fmt: skip

ALEXNET_PAPER = [
    Conv(96, 11, stride=4), LRN, POOL,
    Conv(256, 5, padding=2, groups=2), LRN, POOL,
    Conv(384, 3, padding=1),  # the one convolution that connects the two GPUs' maps
    Conv(384, 3, padding=1, groups=2),
    Conv(256, 3, padding=1, groups=2), POOL,
]  # fmt: skip

ZFNET = [
    Conv(96, 7, stride=2, padding=1), POOL, LRN,
    Conv(256, 5, stride=2), POOL, LRN,
    Conv(384, 3, padding=1),
    Conv(384, 3, padding=1),
    Conv(256, 3, padding=1), POOL,
]  # fmt: skip

# AlexNet Sec. 3.3: b = a / (k + alpha * sum of a^2 over n neighbouring maps)^beta with k = 2,
# n = 5, alpha = 1e-4, beta = 0.75. nn.LocalResponseNorm divides its alpha by n, hence 5 * 1e-4.
LRN_PAPER = {"size": 5, "alpha": 5 * 1e-4, "beta": 0.75, "k": 2.0}


def small_input_stem(config: list) -> list:
    """``config`` with its first convolution replaced by a 3x3 stride-1 one (same channels), for 32x32 inputs."""
    first = config[0]
    return [Conv(first.out_channels, 3, stride=1, padding=1), *config[1:]]


def make_features(config: list, in_channels: int = 3, ceil_mode: bool = False) -> nn.Sequential:
    """Build a layer table: each ``Conv`` becomes Conv2d + ReLU, ``POOL`` a 3x3/2 max-pool, ``LRN`` an LRN.

    ``ceil_mode`` rounds the pools' output sizes up (Caffe's convention, needed for ZF's 55 and 13).
    """
    layers: list[nn.Module] = []
    for item in config:
        if item == POOL:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_mode))
        elif item == LRN:
            layers.append(nn.LocalResponseNorm(**LRN_PAPER))
        else:
            out_channels, kernel_size, stride, padding, groups = item
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups)
            layers += [conv, nn.ReLU(inplace=True)]
            in_channels = out_channels
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    """Convolution ``features``, a 6x6 adaptive average pool, and the three-layer ``classifier``.

    ``classifier`` = Dropout, fc 9216 -> 4096, ReLU, Dropout, fc 4096 -> 4096, ReLU,
    fc 4096 -> num_classes (dropout 0.5 on the inputs of the first two fc layers, Sec. 4.2).

    Args:
        features: the convolutions, e.g. ``make_features(ALEXNET)``; 256 output maps.
        num_classes: outputs of the last layer.
        dropout: drop probability in the classifier.

    Shapes: (N, C, H, W) -> features (N, 256, h, w) -> pool (N, 256, 6, 6) -> (N, num_classes).
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        check_probability("dropout", dropout)
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class ZFNet(AlexNet):
    """ZFNet: AlexNet's pool and classifier on ZF's convolutions (``make_features(ZFNET, ceil_mode=True)``)."""


@register_model(
    paper="Krizhevsky, Sutskever & Hinton 2012, ImageNet classification with deep convolutional neural networks",
    params=[
        published(61_100_840, "torchvision.models.alexnet (Krizhevsky 2014 'One weird trick' single-GPU variant)"),
        published(60_965_224, "Krizhevsky et al. 2012 ('60 million'), Caffe bvlc_alexnet", original=True),
    ],
)
def alexnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    original: bool = False,
    small_input: bool = False,
    dropout: float = 0.5,
) -> AlexNet:
    """AlexNet. By default torchvision's single-GPU version: the same layers in the same
    order as ``torchvision.models.alexnet`` (its weights transfer).

    Default (``ALEXNET``), input 224x224 (at least 63x63):

    ======  ===========================  =============
    layer   what                         output
    ======  ===========================  =============
    conv1   64@11x11 /4, pad 2, pool     64 x 27 x 27
    conv2   192@5x5, pad 2, pool         192 x 13 x 13
    conv3   384@3x3                      384 x 13 x 13
    conv4   256@3x3                      256 x 13 x 13
    conv5   256@3x3, pool                256 x 6 x 6
    fc6-8   9216 -> 4096 -> 4096 -> C
    ======  ===========================  =============

    ``original=True`` (``ALEXNET_PAPER``), the network of the 2012 paper (Fig. 2),
    input 227x227 (the paper writes 224, but 55 = (227 - 11) / 4 + 1): 96@11x11/4 ->
    55x55, LRN, pool -> 27x27; 256@5x5 in 2 groups, LRN, pool -> 13x13; 384@3x3;
    384@3x3 in 2 groups; 256@3x3 in 2 groups, pool -> 6x6; the same classifier (the
    paper's "60 million" parameters, as Caffe's ``bvlc_alexnet``). The groups are the two
    GTX 580 GPUs: the maps of conv2, conv4 and conv5 only see the previous layer's maps of
    their own GPU. torchvision's version (after Krizhevsky 2014, "One weird trick for
    parallelizing convolutional neural networks") drops LRN (which VGG's Sec. 4.1 later
    found not to help) and the groups (one GPU suffices), changes the widths and pads conv1
    so that 224x224 inputs give 55x55 maps; the parameters barely change because 58.6M of
    them are the fully connected layers fc6-fc8, the same in both.

    Args:
        original: the 2012 paper's layers (LRN, groups, 96-256-384-384-256 channels).
        small_input: a 3x3 stride-1 first convolution instead of the 11x11 stride-4 one,
            for 32x32 images (32 -> 15 -> 7 -> 3; the adaptive pool spreads the
            3x3 map over 6x6, so the classifier is unchanged).
        dropout: drop probability of the classifier's two dropout layers.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    check_flag("original", original)
    check_flag("small_input", small_input)
    config = ALEXNET_PAPER if original else ALEXNET
    if small_input:
        config = small_input_stem(config)
    return AlexNet(make_features(config, in_channels), num_classes=num_classes, dropout=dropout)


@register_model(
    paper="Zeiler & Fergus 2014, Visualizing and understanding convolutional networks",
    params=[published(62_357_608, "Zeiler & Fergus 2013, Fig. 3 layer table (no total in the paper; summed from it)")],
)
def zfnet(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> ZFNet:
    """ZFNet (Zeiler & Fergus 2013, Fig. 3), input 224x224.

    ======  ===============================================  =============
    layer   what                                             output
    ======  ===============================================  =============
    input                                                    3 x 224 x 224
    conv1   96@7x7 /2 (pad 1), ReLU                          96 x 110 x 110
            3x3/2 max-pool, LRN                              96 x 55 x 55
    conv2   256@5x5 /2, ReLU                                 256 x 26 x 26
            3x3/2 max-pool, LRN                              256 x 13 x 13
    conv3   384@3x3, ReLU                                    384 x 13 x 13
    conv4   384@3x3, ReLU                                    384 x 13 x 13
    conv5   256@3x3, ReLU, 3x3/2 max-pool                    256 x 6 x 6
    fc6-8   9216 -> 4096 -> 4096 -> C, dropout 0.5           C
    ======  ===============================================  =============

    The paper gives no parameter count; the registered one is the sum over its Fig. 3. The
    changes from AlexNet (Sec. 4.1 and 5.1, found with the deconvnet visualizations): a 7x7
    stride-2 first layer instead of 11x11 stride 4, stride 2 in conv2 (which keeps the
    maps 13x13 after pool2), dense connections in layers 3-5 (one GPU, no groups).

    Choices the figure leaves open, taken here: padding 1 in conv1 and pools that round
    up (Caffe's ceil mode) reproduce the figure's 110 -> 55 and 26 -> 13; the
    "contrast normalization across feature maps" is AlexNet's LRN with the 2012 constants
    (the paper does not give its own).

    Args:
        small_input: a 3x3 stride-1 first convolution for 32x32 images (conv1 + pool 16x16,
            conv2 6x6, pool 3x3, pool5 1x1, spread over 6x6 by the adaptive pool).
        dropout: drop probability of the classifier's two dropout layers.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    check_flag("small_input", small_input)
    config = small_input_stem(ZFNET) if small_input else ZFNET
    return ZFNet(make_features(config, in_channels, ceil_mode=True), num_classes=num_classes, dropout=dropout)
