"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015).

Only 3x3 convolutions (stride 1, padding 1: the size is kept) and 2x2
stride-2 max-pools (the size is halved), the channels doubling after each
pool from 64 to 512. Two stacked 3x3 convolutions see a 5x5 window and three a
7x7 one, with fewer parameters and more nonlinearities than one large filter:

.. math::

    3 \\cdot (3^2 C^2) = 27 C^2 \\quad\\text{vs}\\quad 7^2 C^2 = 49 C^2

The configurations A, B, D, E of the paper's Table 1 are data in
:data:`VGG_CONFIGS` (an int is a 3x3 conv with that many maps and ReLU, ``"M"``
a max-pool) and :func:`make_features` builds them, optionally with batch
normalization after every convolution (the ``_bn`` variants, not in the paper).

Layers are listed in the order of torchvision's ``vgg11`` ... ``vgg19_bn``
(``features``, ``avgpool`` = ``AdaptiveAvgPool2d((7, 7))``, ``classifier``) and
initialized as torchvision does, so :func:`course_lib.models.transfer_state_dict`
copies torchvision's weights. Input: 224x224 (the five pools leave 7x7x512).
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_flag, check_probability
from ..init import torchvision_init_
from .registry import published, register_model

__all__ = [
    "VGG",
    "VGG_CONFIGS",
    "make_features",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

POOL = "M"

# The paper's Table 1: conv layers (3x3, this many maps) and max-pools, column by column.
# The name counts the weight layers: VGG-11 = 8 conv + 3 fc, VGG-13 = 10 + 3, VGG-16 = 13 + 3, VGG-19 = 16 + 3.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(config: list[int | str], in_channels: int = 3, batch_norm: bool = False) -> nn.Sequential:
    """Build a column of Table 1: an int ``c`` is Conv3x3(c) [+ BatchNorm2d] + ReLU, ``"M"`` a 2x2/2 max-pool.

    Shapes: (N, in_channels, H, W) -> (N, last c, H / 2^pools, W / 2^pools).
    """
    layers: list[nn.Module] = []
    for item in config:
        if item == POOL:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        in_channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features``, an adaptive average pool, and the fully connected ``classifier``.

    ImageNet head (default): ``AdaptiveAvgPool2d((7, 7))``, then fc 25088 -> 4096, ReLU,
    Dropout, fc 4096 -> 4096, ReLU, Dropout, fc 4096 -> num_classes (the paper's FC-4096,
    FC-4096, FC-1000, dropout 0.5 on the first two).

    Small-input head (``small_input=True``, for 32x32 CIFAR images, where the five pools
    leave a 1x1x512 map): ``AdaptiveAvgPool2d((1, 1))`` (global average pooling for any
    other size) and one fc 512 -> num_classes, as in the usual CIFAR VGGs (e.g.
    kuangliu/pytorch-cifar). The ImageNet head would copy the 1x1 map 49 times into
    a 25088-vector and spend 123.6M parameters on it (about nine tenths of VGG-16's); the convolutions are the same.

    Args:
        features: e.g. ``make_features(VGG_CONFIGS["D"])``, ending with 512 maps.
        num_classes: outputs of the last layer.
        dropout: drop probability of the ImageNet head's two dropout layers.
        small_input: the small-input head described above.

    Shapes: (N, C, H, W) -> features (N, 512, H/32, W/32) -> (N, num_classes).
    """

    def __init__(
        self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5, small_input: bool = False
    ):
        super().__init__()
        check_probability("dropout", dropout)
        check_flag("small_input", small_input)
        self.features = features
        if small_input:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.classifier = nn.Linear(512, num_classes)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, num_classes),
            )
        torchvision_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(config: str, batch_norm: bool, num_classes: int, in_channels: int, small_input: bool, dropout: float) -> VGG:
    features = make_features(VGG_CONFIGS[config], in_channels, batch_norm)
    return VGG(features, num_classes=num_classes, dropout=dropout, small_input=small_input)


_PAPER = "Simonyan & Zisserman 2015, Very deep convolutional networks for large-scale image recognition"
_PAPER_BN = f"{_PAPER}; batch normalization after every conv (Ioffe & Szegedy 2015) as in torchvision"


@register_model(paper=_PAPER, params=[published(132_863_336, "torchvision.models.vgg11; the paper's Table 2: 133M")])
def vgg11(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-11, configuration A (8 conv + 3 fc).

    Args:
        small_input: for 32x32 images: global average pooling and one fc 512 -> num_classes
            instead of the 7x7 pool and the three fc layers (see :class:`VGG`).
        dropout: drop probability of the ImageNet head's two dropout layers.

    Shapes: (N, in_channels, 224, 224) -> (N, num_classes); (N, in_channels, 32, 32) with small_input.
    The other VGG builders take the same arguments.
    """
    return _vgg("A", False, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER, params=[published(133_047_848, "torchvision.models.vgg13; the paper's Table 2: 133M")])
def vgg13(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-13, configuration B (10 conv + 3 fc)."""
    return _vgg("B", False, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER, params=[published(138_357_544, "torchvision.models.vgg16; the paper's Table 2: 138M")])
def vgg16(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-16, configuration D (13 conv + 3 fc)."""
    return _vgg("D", False, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER, params=[published(143_667_240, "torchvision.models.vgg19; the paper's Table 2: 144M")])
def vgg19(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-19, configuration E (16 conv + 3 fc)."""
    return _vgg("E", False, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER_BN, params=[published(132_868_840, "torchvision.models.vgg11_bn")])
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-11 with batch normalization after every conv."""
    return _vgg("A", True, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER_BN, params=[published(133_053_736, "torchvision.models.vgg13_bn")])
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-13 with batch normalization after every conv."""
    return _vgg("B", True, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER_BN, params=[published(138_365_992, "torchvision.models.vgg16_bn")])
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-16 with batch normalization after every conv."""
    return _vgg("D", True, num_classes, in_channels, small_input, dropout)


@register_model(paper=_PAPER_BN, params=[published(143_678_248, "torchvision.models.vgg19_bn")])
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5) -> VGG:
    """VGG-19 with batch normalization after every conv."""
    return _vgg("E", True, num_classes, in_channels, small_input, dropout)
