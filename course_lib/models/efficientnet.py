"""EfficientNet B0-B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019).

EfficientNet-B0 is a mobile network found by architecture search (paper
Table 1): a stack of *MBConv* blocks - MobileNet v2's inverted residual
(:class:`course_lib.models.mobilenet.InvertedResidual`) with 3x3 or 5x5
depthwise kernels, squeeze-and-excitation and the SiLU ("swish") activation.
B1-B7 scale B0 up in depth d (layers per stage), width w (channels) and
input resolution r together - *compound scaling*:

.. math::

    d = \\alpha^\\phi, \\quad w = \\beta^\\phi, \\quad r = \\gamma^\\phi, \\qquad
    \\alpha \\beta^2 \\gamma^2 \\approx 2, \\quad \\alpha, \\beta, \\gamma \\ge 1

A conv's FLOPs grow like d w^2 r^2, so each step of phi about doubles them.
A small grid search on B0 found alpha = 1.2, beta = 1.1, gamma = 1.15
(:func:`compound_scaling`). The coefficients the authors *released* for
B1-B7 (:data:`EFFICIENTNET_SCALING`, as in their code and in torchvision) were
rounded and tuned by hand, and are not exactly these powers:
:func:`compound_scaling_table` prints both side by side.

Channels ``w c`` are rounded to multiples of 8 (:func:`~course_lib.layers.make_divisible`),
repeats to ``ceil(d n)``. Stochastic depth drops the residual branch of block
``i`` of ``L`` with probability ``0.2 i / L`` (:class:`course_lib.layers.DropPath`,
which is torchvision's ``StochasticDepth(p, "row")``: one Bernoulli per example,
survivors scaled by 1 / (1 - p)).

Layers are listed in the order of ``torchvision.models.efficientnet_b0`` ..
``efficientnet_b7``, so :func:`course_lib.models.transfer_state_dict` copies
their weights. Input: the resolution of :data:`EFFICIENTNET_SCALING` (224 for
B0 ... 600 for B7); ``small_input=True`` makes the stem conv stride 1 for 32x32
images (the blocks are unchanged: a 2x2 map reaches the head).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from ..layers import ConvNormAct, DropPath, SqueezeExcitation, make_divisible
from .._checks import check_choice, check_flag, check_number, check_probability
from .registry import published, register_model

__all__ = [
    "EFFICIENTNET_B0_STAGES",
    "EFFICIENTNET_SCALING",
    "EfficientNet",
    "MBConv",
    "Scaling",
    "Stage",
    "compound_scaling",
    "compound_scaling_table",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
]


class Stage(NamedTuple):
    """One row of B0's table: ``repeats`` MBConv blocks; the first has ``stride`` and maps in -> out channels."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


# EfficientNet-B0, paper Table 1, stages 2-8 (stage 1 is the 3x3 stride-2 stem conv to 32 channels,
# stage 9 the 1x1 conv to 1280 = 4 x 320 channels, pooling and the classifier).
EFFICIENTNET_B0_STAGES: list[Stage] = [
    Stage(1, 3, 1, 32, 16, 1),  # MBConv1, k3x3, 112x112
    Stage(6, 3, 2, 16, 24, 2),  # MBConv6, k3x3, 112 -> 56
    Stage(6, 5, 2, 24, 40, 2),  # MBConv6, k5x5, 56 -> 28
    Stage(6, 3, 2, 40, 80, 3),  # MBConv6, k3x3, 28 -> 14
    Stage(6, 5, 1, 80, 112, 3),  # MBConv6, k5x5, 14
    Stage(6, 5, 2, 112, 192, 4),  # MBConv6, k5x5, 14 -> 7
    Stage(6, 3, 1, 192, 320, 1),  # MBConv6, k3x3, 7
]


class Scaling(NamedTuple):
    """A variant's coefficients: channels x width_mult, repeats x depth_mult, input size, dropout before the fc."""

    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float


# The released coefficients (the authors' efficientnet_builder.py, torchvision's builders).
EFFICIENTNET_SCALING: dict[str, Scaling] = {
    "efficientnet_b0": Scaling(1.0, 1.0, 224, 0.2),
    "efficientnet_b1": Scaling(1.0, 1.1, 240, 0.2),
    "efficientnet_b2": Scaling(1.1, 1.2, 260, 0.3),
    "efficientnet_b3": Scaling(1.2, 1.4, 300, 0.3),
    "efficientnet_b4": Scaling(1.4, 1.8, 380, 0.4),
    "efficientnet_b5": Scaling(1.6, 2.2, 456, 0.4),
    "efficientnet_b6": Scaling(1.8, 2.6, 528, 0.5),
    "efficientnet_b7": Scaling(2.0, 3.1, 600, 0.5),
}

# torchvision's B5-B7 weights were ported from TensorFlow, whose BatchNorm has eps 1e-3 and momentum 0.01
# (decay 0.99); B0-B4 were retrained with PyTorch's defaults (eps 1e-5, momentum 0.1). The parameter counts
# are the same either way; the outputs with transferred weights are not.
_TF_BATCH_NORM = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")


def compound_scaling(
    phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15
) -> tuple[float, float, float]:
    """Depth, width and resolution multipliers ``(alpha^phi, beta^phi, gamma^phi)`` for compound coefficient phi.

    The paper (Eq. 3) constrains ``alpha beta^2 gamma^2 ~ 2`` so that the FLOPs, which grow like
    ``d w^2 r^2``, grow by about ``2^phi``; with the defaults (the grid-searched values)
    ``1.2 * 1.1^2 * 1.15^2 = 1.92``. Example: ``compound_scaling(1) == (1.2, 1.1, 1.15)``.
    """
    for name, value in (("phi", phi), ("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_number(name, value)
    if phi < 0:
        raise ValueError(f"phi must be >= 0, got {phi!r}")
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1 (scaling up, never down), got {value!r}")
    return alpha**phi, beta**phi, gamma**phi


def compound_scaling_table() -> list[dict]:
    """B0-B7 with phi = 0..7: the formula's multipliers beside the released ones (one dict per variant).

    Keys: ``name``, ``phi``, ``depth`` / ``width`` / ``resolution`` (formula, resolution in pixels from 224)
    and ``released_depth`` / ``released_width`` / ``released_resolution``. They agree at B0 and drift
    apart after: B7's released (3.1, 2.0, 600) against the formula's (3.58, 1.95, 596).
    """
    rows = []
    for phi, (name, released) in enumerate(EFFICIENTNET_SCALING.items()):
        depth, width, resolution = compound_scaling(phi)
        rows.append(
            {
                "name": name,
                "phi": phi,
                "depth": depth,
                "width": width,
                "resolution": round(224 * resolution),
                "released_depth": released.depth_mult,
                "released_width": released.width_mult,
                "released_resolution": released.resolution,
            }
        )
    return rows


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (paper Table 1's "MBConv6, k5x5": t = 6, k = 5).

    1x1 expand to ``t C_in`` channels, rounded by :func:`~course_lib.layers.make_divisible` (BN, SiLU;
    absent when t = 1) -> k x k depthwise (BN, SiLU) -> squeeze-and-excitation with SiLU inside and
    ``max(1, C_in // 4)`` squeeze channels (a quarter of the *block input*, not of the expanded width)
    -> linear 1x1 project (BN). When stride is 1 and C_in = C_out the input is added back, the branch
    dropped per example with probability ``drop_path``.
    Shapes: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: float,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        check_choice("stride", stride, (1, 2))
        hidden = make_divisible(in_channels * expand_ratio)
        conv = partial(ConvNormAct, norm_layer=norm_layer, act_layer=nn.SiLU)
        layers = OrderedDict()
        if hidden != in_channels:
            layers["expand"] = conv(in_channels, hidden, 1)
        layers["depthwise"] = conv(hidden, hidden, kernel, stride, groups=hidden)
        layers["se"] = SqueezeExcitation(hidden, squeeze_channels=max(1, in_channels // 4), act_layer=nn.SiLU)
        layers["project"] = conv(hidden, out_channels, 1, act_layer=None)
        self.block = nn.Sequential(layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop_path(out) if self.use_residual else out


class EfficientNet(nn.Module):
    """EfficientNet: 3x3 stem, the MBConv stages of ``stages`` scaled by width/depth, 1x1 conv, GAP, dropout, linear.

    Args:
        width_mult, depth_mult: channel and repeat multipliers (:data:`EFFICIENTNET_SCALING`).
        dropout: before the classifier.
        stochastic_depth_prob: drop probability of the last block's branch; block i of L gets ``p i / L``.
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        small_input: stride-1 stem, for 32x32 inputs.
        norm_layer: BatchNorm2d factory (torchvision's B5-B7 use eps 1e-3, momentum 0.01).
        stages: the B0 stage table.

    Shapes, B0 at 224x224: (N, in_channels, 224, 224) -> stem (N, 32, 112, 112) -> stages 112, 56, 28, 14, 14,
    7, 7 with 16, 24, 40, 80, 112, 192, 320 channels -> 1x1 conv (N, 1280, 7, 7) -> (N, num_classes).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        stages: list[Stage] = EFFICIENTNET_B0_STAGES,
    ):
        super().__init__()
        check_number("width_mult", width_mult, positive=True)
        check_number("depth_mult", depth_mult, positive=True)
        check_probability("dropout", dropout)
        check_probability("stochastic_depth_prob", stochastic_depth_prob)
        check_flag("small_input", small_input)

        def width(channels: int) -> int:
            return make_divisible(channels * width_mult)

        def depth(repeats: int) -> int:
            return math.ceil(repeats * depth_mult)

        conv = partial(ConvNormAct, norm_layer=norm_layer, act_layer=nn.SiLU)
        layers = [conv(in_channels, width(stages[0].in_channels), 3, 1 if small_input else 2)]
        total_blocks, block_id = sum(depth(s.repeats) for s in stages), 0
        for stage in stages:
            blocks, channels = [], width(stage.in_channels)
            for i in range(depth(stage.repeats)):
                drop_path = stochastic_depth_prob * block_id / total_blocks
                stride = stage.stride if i == 0 else 1
                out_channels = width(stage.out_channels)
                blocks.append(
                    MBConv(channels, out_channels, stage.kernel, stride, stage.expand_ratio, drop_path, norm_layer)
                )
                channels, block_id = out_channels, block_id + 1
            layers.append(nn.Sequential(*blocks))
        self.num_features = 4 * channels  # 1280 = 4 x 320 for B0
        layers.append(conv(channels, self.num_features, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """As torchvision: He-normal (fan_out) convs, BN to identity, U(+-1/sqrt(num_classes)) classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _efficientnet(
    name: str,
    num_classes: int,
    in_channels: int,
    small_input: bool,
    dropout: float | None,
    stochastic_depth_prob: float,
) -> EfficientNet:
    """Variant ``name``: B0's stages scaled by its row of :data:`EFFICIENTNET_SCALING`, torchvision's BatchNorm."""
    scaling = EFFICIENTNET_SCALING[name]
    norm_layer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01) if name in _TF_BATCH_NORM else nn.BatchNorm2d
    return EfficientNet(
        scaling.width_mult,
        scaling.depth_mult,
        dropout=scaling.dropout if dropout is None else dropout,
        stochastic_depth_prob=stochastic_depth_prob,
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        norm_layer=norm_layer,
    )


_PAPER = "Tan & Le 2019, EfficientNet: rethinking model scaling for convolutional neural networks"


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b0"].resolution, paper=_PAPER,
                params=[published(5_288_548, "torchvision.models.efficientnet_b0; Tan & Le 2019, Table 2: 5.3M")])
def efficientnet_b0(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B0, the searched network (paper Table 1), layer for layer torchvision's ``efficientnet_b0``.

    Args:
        small_input: a stride-1 stem, for 32x32 inputs.
        dropout: before the classifier; None takes the variant's rate from :data:`EFFICIENTNET_SCALING`.
        stochastic_depth_prob: drop probability of the last block's residual branch.

    Input: the resolution of :data:`EFFICIENTNET_SCALING`. Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    return _efficientnet("efficientnet_b0", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b1"].resolution, paper=_PAPER,
                params=[published(7_794_184, "torchvision.models.efficientnet_b1; Tan & Le 2019, Table 2: 7.8M")])
def efficientnet_b1(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B1: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b1", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b2"].resolution, paper=_PAPER,
                params=[published(9_109_994, "torchvision.models.efficientnet_b2; Tan & Le 2019, Table 2: 9.2M")])
def efficientnet_b2(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B2: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b2", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b3"].resolution, paper=_PAPER,
                params=[published(12_233_232, "torchvision.models.efficientnet_b3; Tan & Le 2019, Table 2: 12M")])
def efficientnet_b3(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B3: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b3", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b4"].resolution, paper=_PAPER,
                params=[published(19_341_616, "torchvision.models.efficientnet_b4; Tan & Le 2019, Table 2: 19M")])
def efficientnet_b4(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B4: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b4", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b5"].resolution, paper=_PAPER,
                params=[published(30_389_784, "torchvision.models.efficientnet_b5; Tan & Le 2019, Table 2: 30M")])
def efficientnet_b5(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B5: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b5", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b6"].resolution, paper=_PAPER,
                params=[published(43_040_704, "torchvision.models.efficientnet_b6; Tan & Le 2019, Table 2: 43M")])
def efficientnet_b6(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B6: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b6", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)


@register_model(input_size=EFFICIENTNET_SCALING["efficientnet_b7"].resolution, paper=_PAPER,
                params=[published(66_347_960, "torchvision.models.efficientnet_b7; Tan & Le 2019, Table 2: 66M")])
def efficientnet_b7(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False,
                    dropout: float | None = None, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B7: B0 scaled by its row of :data:`EFFICIENTNET_SCALING`; options as :func:`efficientnet_b0`."""
    return _efficientnet("efficientnet_b7", num_classes, in_channels, small_input, dropout, stochastic_depth_prob)
