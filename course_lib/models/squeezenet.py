"""SqueezeNet (Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", arXiv:1602.07360, 2016).

The building block is the **fire module**: a 1x1 *squeeze* convolution to few
maps ``s``, then two parallel *expand* convolutions, ``e1`` 1x1 and ``e3`` 3x3
(padding 1), whose outputs are concatenated along the channels:

.. math::

    C_\\text{in} \\xrightarrow{1 \\times 1} s
    \\xrightarrow{[1 \\times 1,\\ 3 \\times 3]} e_1 + e_3, \\qquad
    \\text{parameters} = (C_\\text{in} + 1) s + (s + 1) e_1 + (9 s + 1) e_3

Keeping ``s`` below ``e1 + e3`` (here s = (e1 + e3) / 8) limits the input
channels of the 3x3 filters, the expensive ones. After the fire modules, a
1x1 convolution gives one map per class and global average pooling the
scores (as in Network in Network) - no fully connected layer.

The two versions are data in :data:`SQUEEZENET_CONFIGS` (the stem conv, then
``"M"`` for a 3x3 stride-2 max-pool and ``(s, e1, e3)`` for a fire module).
Layers are listed in the order of torchvision's ``squeezenet1_0`` /
``squeezenet1_1`` and initialized as torchvision does, so
:func:`course_lib.models.transfer_state_dict` copies torchvision's weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_choice, check_flag, check_probability
from .registry import published, register_model

__all__ = ["Fire", "SQUEEZENET_CONFIGS", "SqueezeNet", "squeezenet1_0", "squeezenet1_1"]

POOL = "M"  # 3x3 stride-2 max-pool, rounding up (Caffe's convention)

SQUEEZENET_CONFIGS: dict[str, dict] = {
    # The paper's Table 1: conv1 96@7x7/2, fire2-fire9 with max-pools after conv1, fire4 and fire8.
    "1_0": {
        "stem": (96, 7),
        "layers": [
            POOL, (16, 64, 64), (16, 64, 64), (32, 128, 128),
            POOL, (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256),
            POOL, (64, 256, 256),
        ],
    },
    # Version 1.1 (the authors' repository, DeepScale/SqueezeNet): conv1 64@3x3/2 and the pools moved
    # earlier, after conv1, fire3 and fire5 - 2.4x less computation, the same accuracy.
    "1_1": {
        "stem": (64, 3),
        "layers": [
            POOL, (16, 64, 64), (16, 64, 64),
            POOL, (32, 128, 128), (32, 128, 128),
            POOL, (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256),
        ],
    },
}  # fmt: skip


class Fire(nn.Module):
    """Fire module: squeeze 1x1 conv to ``squeeze`` maps, ReLU, then 1x1 and 3x3 expand convs, ReLU, concatenated.

    Shapes: (N, in_channels, H, W) -> (N, expand1x1 + expand3x3, H, W) (``out_channels``).
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        e1 = self.expand1x1_activation(self.expand1x1(x))
        e3 = self.expand3x3_activation(self.expand3x3(x))
        return torch.cat([e1, e3], dim=1)  # (N, e1 + e3, H, W): the 1x1 maps first


class SqueezeNet(nn.Module):
    """SqueezeNet: stem conv, fire modules and max-pools (``features``), then ``classifier`` =
    Dropout, 1x1 conv to ``num_classes`` maps, ReLU, global average pooling.

    Args:
        version: ``"1_0"`` or ``"1_1"``, a key of :data:`SQUEEZENET_CONFIGS`.
        num_classes, in_channels: outputs, channels of the input images.
        dropout: drop probability before the final conv (0.5 in the paper, after fire9).
        small_input: a 3x3 stride-1 stem conv (padding 1, same maps) instead of the stride-2
            one, for 32x32 images: the three pools then leave 4x4 maps.

    Shapes: (N, in_channels, 224, 224) -> features (N, 512, 13, 13) -> (N, num_classes).
    """

    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        small_input: bool = False,
    ):
        super().__init__()
        check_choice("version", version, SQUEEZENET_CONFIGS)
        check_probability("dropout", dropout)
        check_flag("small_input", small_input)
        config = SQUEEZENET_CONFIGS[version]
        channels, kernel_size = config["stem"]
        if small_input:
            stem = nn.Conv2d(in_channels, channels, kernel_size=3, stride=1, padding=1)
        else:
            stem = nn.Conv2d(in_channels, channels, kernel_size=kernel_size, stride=2)
        layers: list[nn.Module] = [stem, nn.ReLU(inplace=True)]
        for item in config["layers"]:
            if item == POOL:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                layers.append(Fire(channels, *item))
                channels = layers[-1].out_channels
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        self._init_weights(final_conv)

    def _init_weights(self, final_conv: nn.Conv2d) -> None:
        """As torchvision: He-uniform convs, N(0, 0.01) for the final conv, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


_PAPER = (
    "Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer 2016, "
    "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size"
)


@register_model(
    paper=_PAPER,
    params=[published(1_248_424, "torchvision.models.squeezenet1_0; Iandola et al. 2016, Table 1: 1,248,424")],
)
def squeezenet1_0(
    num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5
) -> SqueezeNet:
    """SqueezeNet 1.0 (the paper's Table 1).

    224x224 input: conv1 96@7x7/2 -> 109x109, pool -> 54, fire2-4 (128, 128, 256 maps),
    pool -> 27, fire5-8 (256, 384, 384, 512), pool -> 13, fire9 (512), conv10 -> 13x13xC,
    global average pool -> C. (The paper's table lists 111x111 after conv1: a 227x227 input.)

    Args:
        small_input: 3x3 stride-1 conv1 for 32x32 images (32 -> 16 -> 8 -> 4).
        dropout: drop probability before conv10.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    return SqueezeNet("1_0", num_classes=num_classes, in_channels=in_channels, dropout=dropout, small_input=small_input)


@register_model(
    paper=f"{_PAPER} (version 1.1: the authors' repository, DeepScale/SqueezeNet)",
    params=[published(1_235_496, "torchvision.models.squeezenet1_1 (authors' repository DeepScale/SqueezeNet v1.1)")],
)
def squeezenet1_1(
    num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, dropout: float = 0.5
) -> SqueezeNet:
    """SqueezeNet 1.1 (the authors' repository); the options of :func:`squeezenet1_0`.

    224x224 input: conv1 64@3x3/2 -> 111x111, pool -> 55, fire2-3 (128 maps), pool -> 27,
    fire4-5 (256), pool -> 13, fire6-9 (384, 384, 512, 512), conv10 -> 13x13xC, global
    average pool -> C. Same fire modules as 1.0 with the pools earlier: about 2.4x fewer
    operations than 1.0 for the same accuracy.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    return SqueezeNet("1_1", num_classes=num_classes, in_channels=in_channels, dropout=dropout, small_input=small_input)
