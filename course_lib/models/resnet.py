"""Residual networks and their relatives (T56-T61, T68-T69).

A residual block learns the *residual* ``F(x)`` of a mapping instead of the
mapping itself, and adds its input back through a shortcut:

.. math::

    y = \\mathrm{ReLU}\\big(F(x) + \\mathrm{shortcut}(x)\\big)

Papers (and the builders of this file; each registration records the paper and
its parameter counts):

- He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
  (arXiv:1512.03385): ``resnet18`` ... ``resnet152`` (Table 1, 224x224 ImageNet
  input), the CIFAR-10 ResNets ``resnet20`` ... ``resnet110`` (Sec. 4.2, 32x32
  input) and their ``plain*`` twins without shortcuts (the degradation
  experiment, Fig. 4 and Fig. 6).
- Xie, Girshick, Dollar, Tu & He, "Aggregated Residual Transformations for
  Deep Neural Networks" (ResNeXt), CVPR 2017: ``resnext50_32x4d``.
- Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016:
  ``wide_resnet50_2`` (ImageNet) and ``wrn_28_10`` (CIFAR).
- He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks", ECCV
  2016: pre-activation blocks, ``preact_resnet18`` (and WRN's blocks).
- Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018: ``se_resnet50``.
- Woo, Park, Lee & Kweon, "CBAM: Convolutional Block Attention Module", ECCV
  2018: ``cbam_resnet50``.
- Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth",
  ECCV 2016: the ``drop_path_rate`` option of every residual net.

The code follows torchvision's ``models/resnet.py``: a block lists its layers in
``__init__`` and applies them top to bottom in ``forward``; a network names its
stem ``conv1, bn1, relu, maxpool``, its stages ``layer1`` ... ``layer4`` and its
head ``avgpool, fc``. Parameters come in torchvision's order (inside a block
``conv1, bn1, conv2, bn2, [conv3, bn3], shortcut``), so
:func:`course_lib.models.transfer_state_dict` copies torchvision's weights into
the ImageNet nets. Like torchvision - and unlike the paper's Caffe models - the
Bottleneck puts the stride 2 of a downsampling block on its 3x3 conv, not on the
first 1x1 conv ("ResNet v1.5"): same parameters, about 6% more multiply-adds
(4.09 instead of 3.86 GMACs for ResNet-50: the first 1x1 conv of stages 2-4 runs
on the 4x larger input map), slightly better accuracy.

Builder options (``create_model(name, **options)``; a builder refuses any other keyword):

- ``small_input`` (ImageNet nets, ``preact_resnet18``): a 3x3 stride-1 stem
  conv and no max-pool, for 32x32 inputs; the blocks are unchanged. The CIFAR
  nets always have that stem.
- ``shortcut`` (post-activation residual nets): ``"A"``, ``"B"`` (default) or
  ``"C"``, the paper's three shortcut options (Sec. 3.3 and Table 3); the CIFAR
  ResNets default to ``"A"`` as in the paper.
- ``drop_path_rate`` (every residual net): stochastic depth; block ``l`` of
  ``L`` drops its residual branch with probability ``l / L * drop_path_rate``.
- ``dropout`` (pre-activation nets): dropout between the two 3x3 convs (WRN).
- ``width`` (CIFAR ResNets and their plain twins): the first stage's channels,
  16 by default as in the paper; the later stages have 2x and 4x as many.

The plain nets keep every layer of their residual twin and drop the addition
``+ shortcut(x)``. Nothing replaces the projections at stage transitions: the
first 3x3 conv of a stage already has stride 2 and the new width, so a plain
net has exactly the parameters of its twin with option-A shortcuts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CBAM, DropPath, SqueezeExcitation
from .._checks import check_choice, check_flag, check_int, check_probability
from ..init import torchvision_init_
from .registry import published, register_model

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "PreActBlock",
    "ZeroPadShortcut",
    "ResNet",
    "PreActResNet",
    "make_shortcut",
    "drop_path_probabilities",
    "IMAGENET_WIDTHS",
    "CIFAR_WIDTHS",
    "SHORTCUTS",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "se_resnet50",
    "cbam_resnet50",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "plain18",
    "plain34",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "plain110",
    "preact_resnet18",
    "wrn_28_10",
]

# The paper's three shortcut options (He et al. 2016, Sec. 3.3): what a shortcut does where a block
# changes the shape (stride 2, more channels) and where it does not.
SHORTCUTS = {
    "A": "identity; zero-padded extra channels and stride-2 subsampling where the shape changes (no parameters)",
    "B": "identity; 1x1 conv + BN projection where the shape changes",
    "C": "1x1 conv + BN projection on every block",
}

# The stages' widths (the 3x3 convs' channels; a Bottleneck outputs 4x as many): He et al. 2016, Table 1
# (on 56x56, 28x28, 14x14, 7x7 maps) and Sec. 4.2 (the CIFAR nets, on 32x32, 16x16, 8x8 maps).
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)


# ----------------------------------------------------------------------------- blocks


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias (a BatchNorm follows): (N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias: (N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Shortcut option A (He et al. 2016): the identity, made to fit a block that changes the shape.

    Keeps every ``stride``-th row and column and appends ``out_channels - in_channels``
    channels of zeros; no parameters. Shapes: (N, C_in, H, W) ->
    (N, C_out, ceil(H / stride), ceil(W / stride)) - the size of a 3x3 conv with
    padding 1 and that stride.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"out_channels ({out_channels}) must be >= in_channels ({in_channels}) to zero-pad")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))  # zeros after the C_in channels

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(kind: str | None, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module | None:
    """The shortcut of a post-activation residual block.

    Args:
        kind: ``"A"``, ``"B"`` or ``"C"`` (see :data:`SHORTCUTS`), or None for a
            plain block, which has no shortcut.
        in_channels, out_channels, stride: of the block.

    Returns:
        None (plain), ``nn.Identity()``, a :class:`ZeroPadShortcut`, or the projection
        ``1x1 conv(stride) + BN``: (N, C_in, H, W) -> (N, C_out, H/stride, W/stride).
    """
    check_choice("shortcut", kind, (*SHORTCUTS, None))
    if kind is None:
        return None
    same_shape = stride == 1 and in_channels == out_channels
    if kind == "C" or (kind == "B" and not same_shape):
        return nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    if kind == "A" and not same_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


def _check_drop_path(drop_path: float, shortcut: str | None) -> None:
    check_probability("drop_path", drop_path)
    if shortcut is None and drop_path > 0:
        raise ValueError("drop_path must be 0 in a plain block (shortcut=None): dropping F(x) would leave nothing")


class BasicBlock(nn.Module):
    """Two 3x3 convs (He et al. 2016, Fig. 2 and 5 left): y = ReLU(F(x) + shortcut(x)),
    F = BN(conv3x3(ReLU(BN(conv3x3_stride(x))))).

    Args:
        in_channels: channels of x.
        channels: channels of both convs and of the output (``expansion = 1``).
        stride: of the first conv (2 at the start of a stage).
        shortcut: ``"A"``, ``"B"``, ``"C"`` (see :func:`make_shortcut`), or None for
            a plain block: y = ReLU(F(x)), nothing added.
        drop_path: probability of dropping F for an example (stochastic depth).
        attention_layer: optional factory ``attention_layer(channels)`` of a module
            applied to F before the addition (e.g. ``SqueezeExcitation``).
        groups, base_width: only 1 and 64 (as in torchvision; they shape a
            :class:`Bottleneck`, and a network hands them to every block).

    Shapes: (N, in_channels, H, W) -> (N, channels, H/stride, W/stride).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        shortcut: str | None = "B",
        drop_path: float = 0.0,
        attention_layer: Callable[[int], nn.Module] | None = None,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"groups and base_width must be 1 and 64 in a BasicBlock (ResNeXt and wide blocks are Bottlenecks), "
                f"got {groups} and {base_width}"
            )
        _check_drop_path(drop_path, shortcut)
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.attention = attention_layer(channels) if attention_layer is not None else None
        self.shortcut = make_shortcut(shortcut, in_channels, channels, stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.attention is not None:
            out = self.attention(out)
        out = self.drop_path(out)
        if self.shortcut is not None:  # None: a plain block, nothing is added
            out = out + self.shortcut(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 - 1x1 expand (He et al. 2016, Fig. 5 right; e.g. 256-64-64-256).

    y = ReLU(F(x) + shortcut(x)), F = BN(conv1x1(ReLU(BN(conv3x3_stride(ReLU(BN(conv1x1(x)))))))),
    the stride on the 3x3 conv as in torchvision (ResNet v1.5). The inner width is
    ``int(channels * base_width / 64) * groups``: ``channels`` for ResNet,
    ``2 channels`` for Wide ResNet-50-2 (base_width 128), and 32 groups of 4 for
    ResNeXt 32x4d (a grouped 3x3 conv: each group sees 4 of the 128 channels).

    Args:
        in_channels: channels of x.
        channels: the ResNet bottleneck width (64, 128, 256, 512 by stage); the
            output has ``channels * 4`` (``expansion = 4``).
        stride, shortcut, drop_path, attention_layer: as in :class:`BasicBlock`
            (``attention_layer`` gets the ``4 channels`` of F's output).
        groups: cardinality of the 3x3 conv (ResNeXt).
        base_width: width per group at ``channels = 64``.

    Shapes: (N, in_channels, H, W) -> (N, 4 channels, H/stride, W/stride).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        shortcut: str | None = "B",
        drop_path: float = 0.0,
        attention_layer: Callable[[int], nn.Module] | None = None,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        _check_drop_path(drop_path, shortcut)
        width = int(channels * base_width / 64) * groups
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention_layer(out_channels) if attention_layer is not None else None
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.attention is not None:
            out = self.attention(out)
        out = self.drop_path(out)
        if self.shortcut is not None:  # None: a plain block, nothing is added
            out = out + self.shortcut(x)
        return self.relu(out)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings", Fig. 4e; WRN's wide block).

    BN and ReLU come *before* each conv and nothing follows the addition, so
    the identity path from block to block is clean:

        y = x + F(x),  F = conv3x3(dropout(ReLU(BN(conv3x3_stride(ReLU(BN(x)))))))

    Where the shape changes, the shortcut is a 1x1 conv (no BN) on the
    pre-activated input ReLU(BN(x)), as in the authors' code and WRN's;
    elsewhere it is the identity (``shortcut`` is None).

    Args:
        in_channels, channels, stride, drop_path: as in :class:`BasicBlock`.
        dropout: dropout probability between the two convs (WRN uses 0.3).

    Shapes: (N, in_channels, H, W) -> (N, channels, H/stride, W/stride).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, drop_path: float = 0.0, dropout: float = 0.0):
        super().__init__()
        check_probability("drop_path", drop_path)
        check_probability("dropout", dropout)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(channels, channels)
        same_shape = stride == 1 and in_channels == channels
        self.shortcut = None if same_shape else _conv1x1(in_channels, channels, stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(x)
        out = self.relu(out)
        identity = x if self.shortcut is None else self.shortcut(out)  # a projection sees ReLU(BN(x))

        out = self.conv1(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.dropout(out)
        out = self.conv2(out)

        out = self.drop_path(out)
        return out + identity


# ----------------------------------------------------------------------------- networks


def drop_path_probabilities(depths: Sequence[int], drop_path_rate: float) -> list[list[float]]:
    """Stochastic depth's linear decay rule (Huang et al. 2016, Sec. 3): each block's drop probability, by stage.

    Block ``l`` of ``L = sum(depths)`` (counted from 1 over the whole net) keeps
    its residual branch with probability ``p_l = 1 - l / L (1 - p_L)``, i.e.
    drops it with probability ``l / L * drop_path_rate`` where ``drop_path_rate =
    1 - p_L`` is the last block's (the paper: p_L = 0.5). The input is never dropped.
    """
    total = sum(depths)
    probabilities = iter(drop_path_rate * block / total for block in range(1, total + 1))
    return [[next(probabilities) for _ in range(depth)] for depth in depths]


def _check_sizes(num_classes: int, in_channels: int, depths: Sequence[int], widths: Sequence[int]) -> None:
    check_int("num_classes", num_classes, 1)
    check_int("in_channels", in_channels, 1)
    if len(depths) not in (3, 4) or len(widths) != len(depths):
        raise ValueError(f"depths and widths must give 3 or 4 stages each, got {tuple(depths)} and {tuple(widths)}")


def _stem_conv(in_channels: int, out_channels: int, small_input: bool) -> nn.Conv2d:
    """The first conv: 7x7 stride 2 for 224x224 inputs (a 3x3 stride-2 max-pool follows: 224x224 -> 56x56),
    or, with ``small_input``, 3x3 stride 1 for 32x32 inputs (no max-pool: 32x32 -> 32x32)."""
    check_flag("small_input", small_input)
    if small_input:
        return nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
    return nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)


class ResNet(nn.Module):
    """A (post-activation) residual network: stem - stages of blocks - global average pooling - fc.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50, ``(3, 3, 3)``
            for the CIFAR ResNet-20 (3 or 4 stages).
        widths: the ``channels`` of each stage's blocks, e.g. :data:`IMAGENET_WIDTHS`;
            the stem has the first stage's width. The first stage keeps the
            stem's resolution, each later one halves it.
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        small_input: 3x3 stride-1 stem without max-pool (32x32 inputs) instead of
            7x7 stride 2 + max-pool (224x224 inputs).
        shortcut: ``"A"``, ``"B"``, ``"C"``, or None for the plain net (no shortcuts).
        drop_path_rate: stochastic depth, the last block's drop probability
            (see :func:`drop_path_probabilities`).
        groups, width_per_group: the Bottleneck's grouped 3x3 conv (ResNeXt: 32 and 4)
            or its wider inner convs (Wide ResNet-50-2: width_per_group 128).
        attention_layer: a module factory for every block's residual branch (SE, CBAM).

    Shapes: (N, in_channels, H, W) -> (N, num_classes). ResNet-50 at 224x224:
    conv1 112x112x64 -> max-pool 56x56x64 -> layer1 56x56x256 -> layer2 28x28x512
    -> layer3 14x14x1024 -> layer4 7x7x2048 -> GAP 2048 -> fc. With
    ``small_input`` at 32x32: layer1 32x32 ... layer4 4x4. The 3-stage CIFAR
    nets have no fourth stage (``layer4`` is the identity): 32x32 -> 8x8x64.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        small_input: bool = False,
        shortcut: str | None = "B",
        drop_path_rate: float = 0.0,
        groups: int = 1,
        width_per_group: int = 64,
        attention_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        _check_sizes(num_classes, in_channels, depths, widths)
        check_probability("drop_path_rate", drop_path_rate)
        # _make_layer gives these to every block (torchvision keeps groups and base_width the same way).
        self.shortcut_option, self.attention_layer = shortcut, attention_layer
        self.groups, self.base_width = groups, width_per_group
        # Channels of the features built so far: the stem's, then each stage's; at the end the fc's input.
        self.num_features = widths[0]
        drop_paths = drop_path_probabilities(depths, drop_path_rate)

        self.conv1 = _stem_conv(in_channels, self.num_features, small_input)
        self.bn1 = nn.BatchNorm2d(self.num_features)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], drop_paths[0])
        self.layer2 = self._make_layer(block, widths[1], drop_paths[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], drop_paths[2], stride=2)
        four_stages = len(depths) == 4
        self.layer4 = self._make_layer(block, widths[3], drop_paths[3], stride=2) if four_stages else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        torchvision_init_(self, linear_std=None)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], channels: int, drop_paths: list[float], stride: int = 1
    ) -> nn.Sequential:
        """One stage, a block per drop probability: the first has ``stride`` and the new width, the others keep both."""
        layers = []
        for drop_path in drop_paths:
            layers.append(
                block(
                    self.num_features,
                    channels,
                    stride,
                    shortcut=self.shortcut_option,
                    drop_path=drop_path,
                    attention_layer=self.attention_layer,
                    groups=self.groups,
                    base_width=self.base_width,
                )
            )
            self.num_features, stride = channels * block.expansion, 1
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_features, h, w), the last stage's map: h = H/32 with the
        ImageNet stem and 4 stages, H/8 with ``small_input``, H/4 for the 3-stage CIFAR nets."""
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_classes) logits."""
        x = self.forward_features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class PreActResNet(nn.Module):
    """A pre-activation residual network of :class:`PreActBlock` (He et al. 2016, "Identity mappings"; WRN).

    The stem is a bare conv (the first block normalises and activates its
    input), and a final BN-ReLU follows the last block, before global
    average pooling and the fc layer - the blocks' outputs are never
    activated themselves. The ImageNet stem (7x7 stride 2 + max-pool) is
    the one of ResNet-v2 as in BiT / timm's ``resnetv2``: conv then max-pool,
    no BN-ReLU in between.

    Args:
        depths, widths, num_classes, in_channels, small_input, drop_path_rate: as in :class:`ResNet`.
        stem_channels: channels of the first conv (64 on ImageNet, 16 on CIFAR).
        dropout: dropout between the two convs of every block (WRN).

    Shapes: (N, in_channels, H, W) -> (N, num_classes). WRN-28-10 at 32x32:
    conv1 32x32x16 -> layer1 32x32x160 -> layer2 16x16x320 -> layer3 8x8x640
    -> BN-ReLU -> GAP 640 -> fc.
    """

    def __init__(
        self,
        depths: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        stem_channels: int = 64,
        small_input: bool = False,
        drop_path_rate: float = 0.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_sizes(num_classes, in_channels, depths, widths)
        check_probability("drop_path_rate", drop_path_rate)
        self.block_dropout = dropout  # _make_layer gives it to every block
        # Channels of the features built so far: the stem's, then each stage's; at the end the fc's input.
        self.num_features = stem_channels
        drop_paths = drop_path_probabilities(depths, drop_path_rate)

        self.conv1 = _stem_conv(in_channels, stem_channels, small_input)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], drop_paths[0])
        self.layer2 = self._make_layer(widths[1], drop_paths[1], stride=2)
        self.layer3 = self._make_layer(widths[2], drop_paths[2], stride=2)
        four_stages = len(depths) == 4
        self.layer4 = self._make_layer(widths[3], drop_paths[3], stride=2) if four_stages else nn.Identity()
        self.bn = nn.BatchNorm2d(self.num_features)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        torchvision_init_(self, linear_std=None)

    def _make_layer(self, channels: int, drop_paths: list[float], stride: int = 1) -> nn.Sequential:
        """One stage, a block per drop probability: the first has ``stride`` and the new width, the others keep both."""
        layers = []
        for drop_path in drop_paths:
            block = PreActBlock(self.num_features, channels, stride, drop_path=drop_path, dropout=self.block_dropout)
            layers.append(block)
            self.num_features, stride = channels, 1
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_features, h, w), after the final BN-ReLU."""
        x = self.conv1(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.bn(x)
        return self.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_classes) logits."""
        x = self.forward_features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


# ----------------------------------------------------------------------------- builders: ImageNet (224x224)

_HE_2016 = "He, Zhang, Ren & Sun 2016, Deep residual learning for image recognition"


@register_model(paper=_HE_2016, params=[published(11_689_512, "torchvision.models.resnet18")])
def resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNet-18 (He et al. 2016, Table 1): BasicBlocks [2, 2, 2, 2], as torchvision.

    Args:
        small_input: 3x3 stride-1 stem and no max-pool, for 32x32 images.
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (see :data:`SHORTCUTS`).
        drop_path_rate: stochastic depth, the last block's drop probability.

    Shapes: (N, in_channels, 224, 224) -> (N, num_classes). The other ImageNet
    ResNets (resnet34 ... cbam_resnet50) take the same arguments.
    """
    return ResNet(
        BasicBlock, (2, 2, 2, 2), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
    )


@register_model(paper=_HE_2016, params=[published(21_797_672, "torchvision.models.resnet34")])
def resnet34(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNet-34 (He et al. 2016, Table 1): BasicBlocks [3, 4, 6, 3], as torchvision."""
    return ResNet(
        BasicBlock, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
    )


@register_model(paper=_HE_2016, params=[published(25_557_032, "torchvision.models.resnet50")])
def resnet50(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNet-50 (He et al. 2016, Table 1): Bottlenecks [3, 4, 6, 3], as torchvision."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
    )


@register_model(paper=_HE_2016, params=[published(44_549_160, "torchvision.models.resnet101")])
def resnet101(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNet-101 (He et al. 2016, Table 1): Bottlenecks [3, 4, 23, 3], as torchvision."""
    return ResNet(
        Bottleneck, (3, 4, 23, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
    )


@register_model(paper=_HE_2016, params=[published(60_192_808, "torchvision.models.resnet152")])
def resnet152(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNet-152 (He et al. 2016, Table 1): Bottlenecks [3, 8, 36, 3], as torchvision."""
    return ResNet(
        Bottleneck, (3, 8, 36, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
    )


@register_model(
    paper="Xie, Girshick, Dollar, Tu & He 2017, Aggregated residual transformations for deep neural networks",
    params=[published(25_028_904, "torchvision.models.resnext50_32x4d; Xie et al. 2017, Table 1: 25.0M")],
)
def resnext50_32x4d(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017, Table 1): ResNet-50 whose 3x3 convs have 32 groups of 4 channels
    (128 wide in stage 1), as torchvision."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate, groups=32, width_per_group=4,
    )


@register_model(
    paper="Zagoruyko & Komodakis 2016, Wide residual networks",
    params=[published(68_883_240, "torchvision.models.wide_resnet50_2; Zagoruyko & Komodakis 2016: 68.9M")],
)
def wide_resnet50_2(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016, ImageNet "WRN-50-2-bottleneck"): ResNet-50 with twice
    as wide inner 1x1-3x3 convs, as torchvision."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate, width_per_group=128,
    )


@register_model(
    paper="Hu, Shen & Sun 2018, Squeeze-and-excitation networks",
    params=[
        published(
            28_088_024,
            "computed: resnet50 + 2,530,992 SE parameters (Hu et al. 2018, Sec. 'Model and computational "
            "complexity': ~2.5 million more than ResNet-50); Woo et al. 2018 (CBAM), Table 4: 28.09M",
        )
    ],
)
def se_resnet50(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """SE-ResNet-50 (Hu et al. 2018): a squeeze-and-excitation gate (reduction 16) on every Bottleneck's
    residual branch before the addition."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
        attention_layer=partial(SqueezeExcitation, reduction=16),
    )


@register_model(
    paper="Woo, Park, Lee & Kweon 2018, CBAM: Convolutional block attention module",
    params=[
        published(
            28_089_608,
            "computed: se_resnet50 + 16 blocks x 99 (7x7 spatial conv with bias); Woo et al. 2018, Table 4: 28.09M "
            "(the authors' code: spatial conv without bias + BN, 100 per block, 28,089,624)",
        )
    ],
)
def cbam_resnet50(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    shortcut: str = "B",
    drop_path_rate: float = 0.0,
) -> ResNet:
    """ResNet-50 + CBAM (Woo et al. 2018): channel then spatial attention (reduction 16, 7x7 spatial conv)
    on every Bottleneck's residual branch before the addition."""
    return ResNet(
        Bottleneck, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels,
        small_input=small_input, shortcut=shortcut, drop_path_rate=drop_path_rate,
        attention_layer=partial(CBAM, reduction=16),
    )


@register_model(
    paper=_HE_2016,
    params=[published(11_515_688, "computed: resnet18 without its 3 projection shortcuts (= resnet18 option A)")],
)
def plain18(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False) -> ResNet:
    """Plain-18 (He et al. 2016, Table 1 and Fig. 4 left): ResNet-18 without shortcuts. At a stage's start
    its first conv already has stride 2 and the new width, so dropping the shortcut drops its projection too.
    Input 224x224 (32x32 with ``small_input=True``)."""
    return ResNet(
        BasicBlock, (2, 2, 2, 2), IMAGENET_WIDTHS, num_classes, in_channels, small_input=small_input, shortcut=None
    )


@register_model(
    paper=_HE_2016,
    params=[published(21_623_848, "computed: resnet34 without its 3 projection shortcuts (= ResNet-34 A, Table 3)")],
)
def plain34(num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False) -> ResNet:
    """Plain-34 (He et al. 2016, Fig. 3 middle): ResNet-34 without shortcuts (nor their projections).
    Input 224x224 (32x32 with ``small_input=True``)."""
    return ResNet(
        BasicBlock, (3, 4, 6, 3), IMAGENET_WIDTHS, num_classes, in_channels, small_input=small_input, shortcut=None
    )


@register_model(
    paper="He, Zhang, Ren & Sun 2016, Identity mappings in deep residual networks",
    params=[
        published(11_687_720, "computed: resnet18's layout with pre-activation blocks and a final BN (none published)"),
        published(
            11_172_170,
            "computed: kuangliu/pytorch-cifar's PreActResNet18 + a final BN",
            num_classes=10,
            small_input=True,
        ),
    ],
)
def preact_resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    small_input: bool = False,
    drop_path_rate: float = 0.0,
    dropout: float = 0.0,
) -> PreActResNet:
    """Pre-activation ResNet-18 (He et al. 2016, "Identity mappings"): resnet18's layout with
    :class:`PreActBlock`s and a final BN-ReLU. Input 224x224; with ``small_input=True`` (3x3 stride-1
    stem, no max-pool) it is the PreActResNet-18 commonly trained on CIFAR. ``dropout``: between the
    two convs of every block."""
    return PreActResNet(
        (2, 2, 2, 2), IMAGENET_WIDTHS, num_classes, in_channels,
        stem_channels=64, small_input=small_input, drop_path_rate=drop_path_rate, dropout=dropout,
    )


# ----------------------------------------------------------------------------- builders: CIFAR (32x32)
# He et al. 2016, Sec. 4.2: 6n + 2 layers - a 3x3 conv with 16 filters, then three stages of n
# BasicBlocks with 16, 32, 64 filters on 32x32, 16x16, 8x8 maps, global average pooling, fc.
# The paper counts the parameters with CIFAR-10's 10-class fc.


def _cifar_resnet(
    n: int,
    num_classes: int,
    in_channels: int,
    shortcut: str | None,
    drop_path_rate: float = 0.0,
    width: int = CIFAR_WIDTHS[0],
) -> ResNet:
    """The CIFAR ResNet (or plain net) of depth 6n + 2 on 32x32 inputs; its stages have ``width``,
    ``2 width`` and ``4 width`` channels (the paper's 16, 32, 64 by default)."""
    check_int("width", width, 1)
    return ResNet(
        BasicBlock, (n, n, n), (width, 2 * width, 4 * width), num_classes, in_channels,
        small_input=True, shortcut=shortcut, drop_path_rate=drop_path_rate,
    )


@register_model(
    input_size=32,
    paper=_HE_2016,
    params=[
        published(334_072, "computed: n = 3, option A, a 1000-class fc"),
        published(269_722, "He et al. 2016, Table 6: 0.27M", num_classes=10),
    ],
)
def resnet20(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    shortcut: str = "A",
    drop_path_rate: float = 0.0,
    width: int = 16,
) -> ResNet:
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2, n = 3), option A shortcuts by default.

    Args:
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (see :data:`SHORTCUTS`).
        drop_path_rate: stochastic depth, the last block's drop probability.
        width: channels of the first stage (16 in the paper); the second and third
            stages have twice and four times as many. A narrow net (e.g. 8) makes
            the degradation experiment cheap enough for a CPU.

    Shapes: (N, in_channels, 32, 32) -> (N, num_classes). The other CIFAR ResNets and the plain
    twins (``plain20`` ... ``plain110``, which take ``width`` but no ``shortcut``) take the same arguments.
    """
    return _cifar_resnet(3, num_classes, in_channels, shortcut, drop_path_rate, width)


@register_model(
    input_size=32,
    paper=_HE_2016,
    params=[
        published(528_504, "computed: n = 5, option A, a 1000-class fc"),
        published(464_154, "He et al. 2016, Table 6: 0.46M", num_classes=10),
    ],
)
def resnet32(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    shortcut: str = "A",
    drop_path_rate: float = 0.0,
    width: int = 16,
) -> ResNet:
    """ResNet-32 for CIFAR (n = 5). Input 32x32."""
    return _cifar_resnet(5, num_classes, in_channels, shortcut, drop_path_rate, width)


@register_model(
    input_size=32,
    paper=_HE_2016,
    params=[
        published(722_936, "computed: n = 7, option A, a 1000-class fc"),
        published(658_586, "He et al. 2016, Table 6: 0.66M", num_classes=10),
    ],
)
def resnet44(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    shortcut: str = "A",
    drop_path_rate: float = 0.0,
    width: int = 16,
) -> ResNet:
    """ResNet-44 for CIFAR (n = 7). Input 32x32."""
    return _cifar_resnet(7, num_classes, in_channels, shortcut, drop_path_rate, width)


@register_model(
    input_size=32,
    paper=_HE_2016,
    params=[
        published(917_368, "computed: n = 9, option A, a 1000-class fc"),
        published(853_018, "He et al. 2016, Table 6: 0.85M", num_classes=10),
    ],
)
def resnet56(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    shortcut: str = "A",
    drop_path_rate: float = 0.0,
    width: int = 16,
) -> ResNet:
    """ResNet-56 for CIFAR (n = 9). Input 32x32."""
    return _cifar_resnet(9, num_classes, in_channels, shortcut, drop_path_rate, width)


@register_model(
    input_size=32,
    paper=_HE_2016,
    params=[
        published(1_792_312, "computed: n = 18, option A, a 1000-class fc"),
        published(1_727_962, "He et al. 2016, Table 6: 1.7M", num_classes=10),
    ],
)
def resnet110(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    shortcut: str = "A",
    drop_path_rate: float = 0.0,
    width: int = 16,
) -> ResNet:
    """ResNet-110 for CIFAR (n = 18). Input 32x32."""
    return _cifar_resnet(18, num_classes, in_channels, shortcut, drop_path_rate, width)


@register_model(
    input_size=32,
    paper=_HE_2016,
    params=[published(334_072, "computed: = resnet20 (option A adds no parameters, He et al. 2016, Sec. 4.2)")],
)
def plain20(num_classes: int = 1000, in_channels: int = 3, *, width: int = 16) -> ResNet:
    """Plain-20 for CIFAR (He et al. 2016, Fig. 6 left): resnet20 without shortcuts. Input 32x32."""
    return _cifar_resnet(3, num_classes, in_channels, shortcut=None, width=width)


@register_model(input_size=32, paper=_HE_2016, params=[published(528_504, "computed: = resnet32")])
def plain32(num_classes: int = 1000, in_channels: int = 3, *, width: int = 16) -> ResNet:
    """Plain-32 for CIFAR: resnet32 without shortcuts. Input 32x32."""
    return _cifar_resnet(5, num_classes, in_channels, shortcut=None, width=width)


@register_model(input_size=32, paper=_HE_2016, params=[published(722_936, "computed: = resnet44")])
def plain44(num_classes: int = 1000, in_channels: int = 3, *, width: int = 16) -> ResNet:
    """Plain-44 for CIFAR: resnet44 without shortcuts. Input 32x32."""
    return _cifar_resnet(7, num_classes, in_channels, shortcut=None, width=width)


@register_model(input_size=32, paper=_HE_2016, params=[published(917_368, "computed: = resnet56")])
def plain56(num_classes: int = 1000, in_channels: int = 3, *, width: int = 16) -> ResNet:
    """Plain-56 for CIFAR: resnet56 without shortcuts. Input 32x32."""
    return _cifar_resnet(9, num_classes, in_channels, shortcut=None, width=width)


@register_model(input_size=32, paper=_HE_2016, params=[published(1_792_312, "computed: = resnet110")])
def plain110(num_classes: int = 1000, in_channels: int = 3, *, width: int = 16) -> ResNet:
    """Plain-110 for CIFAR (He et al. 2016: "more than 60% error", not shown in Fig. 6): resnet110 without
    shortcuts. Input 32x32."""
    return _cifar_resnet(18, num_classes, in_channels, shortcut=None, width=width)


@register_model(
    input_size=32,
    paper="Zagoruyko & Komodakis 2016, Wide residual networks",
    params=[
        published(37_113_784, "computed: WRN-28-10 with a 1000-class fc"),
        published(36_479_194, "Zagoruyko & Komodakis 2016, Table 4: 36.5M", num_classes=10),
    ],
)
def wrn_28_10(num_classes: int = 1000, in_channels: int = 3, *, drop_path_rate: float = 0.0, dropout: float = 0.0):
    """WRN-28-10 (Zagoruyko & Komodakis 2016): 28 layers = 3 stages of (28 - 4) / 6 = 4 pre-activation
    blocks, 10 times as wide as ResNet's CIFAR stages (160, 320, 640 channels) after a 16-channel stem.

    Args:
        drop_path_rate: stochastic depth, the last block's drop probability.
        dropout: between the two convs of every block (the paper's best: 0.3).

    Shapes: (N, in_channels, 32, 32) -> (N, num_classes).
    """
    return PreActResNet(
        (4, 4, 4), tuple(10 * width for width in CIFAR_WIDTHS), num_classes, in_channels,
        stem_channels=16, small_input=True, drop_path_rate=drop_path_rate, dropout=dropout,
    )
