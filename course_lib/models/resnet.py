"""Residual networks and their relatives (T56-T61, T68-T69).

A residual block learns the *residual* ``F(x)`` of a mapping instead of the
mapping itself, and adds its input back through a shortcut:

.. math::

    y = \\mathrm{ReLU}\\big(F(x) + \\mathrm{shortcut}(x)\\big)

Papers (and the builders of this file):

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

The ImageNet nets list their layers in the order of torchvision's twins
(``conv1, bn1, layer1 ... layer4, fc``; inside a block ``conv1, bn1, conv2,
bn2, [conv3, bn3], shortcut``), so :func:`course_lib.models.transfer_state_dict`
copies torchvision's weights into them. Like torchvision - and unlike the
paper's Caffe models - the Bottleneck puts the stride 2 of a downsampling block
on its 3x3 conv, not on the first 1x1 conv ("ResNet v1.5"): same parameters,
about 6% more multiply-adds (4.09 instead of 3.86 GMACs for ResNet-50: the first
1x1 conv of stages 2-4 runs on the 4x larger input map), slightly better accuracy.

Builder options (``create_model(name, **options)``):

- ``small_input`` (ImageNet nets, ``preact_resnet18``): a 3x3 stride-1 stem
  conv and no max-pool, for 32x32 inputs; the blocks are unchanged. The CIFAR
  nets already have that stem (``small_input=True`` is accepted, ``False`` refused).
- ``shortcut`` (post-activation residual nets): ``"A"``, ``"B"`` (default) or
  ``"C"``, the paper's three shortcut options (Sec. 3.3 and Table 3); the CIFAR
  ResNets default to ``"A"`` as in the paper.
- ``drop_path_rate`` (every residual net): stochastic depth; block ``l`` of
  ``L`` drops its residual branch with probability ``l / L * drop_path_rate``.
- ``dropout`` (pre-activation nets): dropout between the two 3x3 convs (WRN).

The plain nets keep every layer of their residual twin and drop the addition
``+ shortcut(x)``. Nothing replaces the projections at stage transitions: the
first 3x3 conv of a stage already has stride 2 and the new width, so a plain
net has exactly the parameters of its twin with option-A shortcuts.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CBAM, DropPath, SqueezeExcitation
from .._checks import check_flag, check_int, check_probability
from .registry import register_model

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "PreActBlock",
    "ZeroPadShortcut",
    "ResNet",
    "PreActResNet",
    "make_shortcut",
    "drop_path_probabilities",
    "IMAGENET_RESNETS",
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


# ----------------------------------------------------------------------------- checks


def _check_shortcut(name: str, value) -> None:
    if value not in SHORTCUTS:
        raise ValueError(f"{name} must be one of {sorted(SHORTCUTS)}, got {value!r}")


_OPTION_CHECKS = {
    "small_input": check_flag,
    "shortcut": _check_shortcut,
    "drop_path_rate": check_probability,
    "dropout": check_probability,
}


def _options(given: dict, **defaults) -> dict:
    """``defaults`` updated with the builder's ``given`` options, each checked; unknown names are refused."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}: this model takes {sorted(defaults)}")
    values = {**defaults, **given}
    for name, value in values.items():
        _OPTION_CHECKS[name](name, value)
    return values


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


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int = 1, norm: bool = True):
    """The shortcut of a residual block, or None for the identity.

    Args:
        kind: ``"A"``, ``"B"`` or ``"C"`` (see :data:`SHORTCUTS`).
        in_channels, out_channels, stride: of the block.
        norm: follow a projection by BatchNorm (post-activation blocks) or not
            (pre-activation blocks, whose input is already normalised).

    Returns:
        None (identity), a :class:`ZeroPadShortcut`, or a projection
        ``1x1 conv(stride) [+ BN]``: (N, C_in, H, W) -> (N, C_out, H/stride, W/stride).
    """
    _check_shortcut("shortcut", kind)
    same_shape = stride == 1 and in_channels == out_channels
    if kind == "C" or (kind == "B" and not same_shape):
        conv = _conv1x1(in_channels, out_channels, stride)
        return nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if norm else conv
    if kind == "A" and not same_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return None


class _PostActivationBlock(nn.Module):
    """What BasicBlock and Bottleneck share: y = ReLU(drop_path(F(x)) + shortcut(x)).

    A subclass builds the layers of its residual branch F, then calls
    :meth:`_add_shortcut` (so the shortcut comes after the branch in the
    state_dict, as in torchvision), and defines :meth:`residual_branch`.
    ``shortcut=None`` makes a *plain* block: y = ReLU(F(x)), nothing added.
    """

    expansion = 1

    def _add_shortcut(self, in_channels: int, out_channels: int, stride: int, shortcut, drop_path: float) -> None:
        check_probability("drop_path", drop_path)
        self.plain = shortcut is None
        if self.plain and drop_path > 0:
            raise ValueError("drop_path needs a shortcut: a plain block (shortcut=None) has no branch to skip")
        self.shortcut = None if self.plain else make_shortcut(shortcut, in_channels, out_channels, stride)
        self.drop_path = None if self.plain else DropPath(drop_path)
        self.relu = nn.ReLU(inplace=True)

    def residual_branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        if self.plain:
            return "plain: no shortcut"
        return "shortcut=identity" if self.shortcut is None else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual_branch(x)
        if self.plain:
            return self.relu(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.drop_path(out) + identity)


class BasicBlock(_PostActivationBlock):
    """Two 3x3 convs (He et al. 2016, Fig. 2 and 5 left): F = BN(conv3x3(ReLU(BN(conv3x3_stride(x))))).

    Args:
        in_channels: channels of x.
        channels: channels of both convs and of the output (``expansion = 1``).
        stride: of the first conv (2 at the start of a stage).
        shortcut: ``"A"``, ``"B"``, ``"C"``, or None for a plain block.
        drop_path: probability of dropping F for an example (stochastic depth).
        attention: optional module factory ``attention(channels)`` applied to F
            before the addition (e.g. ``SqueezeExcitation``).

    Shapes: (N, in_channels, H, W) -> (N, channels, H/stride, W/stride).
    """

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, shortcut="B", drop_path=0.0, attention=None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.attention = attention(channels) if attention is not None else None
        self._add_shortcut(in_channels, channels, stride, shortcut, drop_path)

    def residual_branch(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return out if self.attention is None else self.attention(out)


class Bottleneck(_PostActivationBlock):
    """1x1 reduce - 3x3 - 1x1 expand (He et al. 2016, Fig. 5 right; e.g. 256-64-64-256).

    F = BN(conv1x1(ReLU(BN(conv3x3_stride(ReLU(BN(conv1x1(x)))))))), the
    stride on the 3x3 conv as in torchvision (ResNet v1.5). The inner width is
    ``int(channels * base_width / 64) * groups``: ``channels`` for ResNet,
    ``2 channels`` for Wide ResNet-50-2 (base_width 128), and 32 groups of 4 for
    ResNeXt 32x4d (a grouped 3x3 conv: each group sees 4 of the 128 channels).

    Args:
        in_channels: channels of x.
        channels: the ResNet bottleneck width (64, 128, 256, 512 by stage); the
            output has ``channels * 4`` (``expansion = 4``).
        stride, shortcut, drop_path, attention: as in :class:`BasicBlock`
            (``attention`` gets the ``4 channels`` of F's output).
        groups: cardinality of the 3x3 conv (ResNeXt).
        base_width: width per group at ``channels = 64``.

    Shapes: (N, in_channels, H, W) -> (N, 4 channels, H/stride, W/stride).
    """

    expansion = 4

    def __init__(
        self, in_channels, channels, stride=1, shortcut="B", drop_path=0.0, attention=None, groups=1, base_width=64
    ):
        super().__init__()
        width = int(channels * base_width / 64) * groups
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.attention = attention(out_channels) if attention is not None else None
        self._add_shortcut(in_channels, out_channels, stride, shortcut, drop_path)

    def residual_branch(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out if self.attention is None else self.attention(out)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings", Fig. 4e; WRN's wide block).

    BN and ReLU come *before* each conv and nothing follows the addition, so
    the identity path from block to block is clean:

        y = x + F(x),  F = conv3x3(dropout(ReLU(BN(conv3x3_stride(ReLU(BN(x)))))))

    Where the shape changes, the shortcut is a 1x1 conv (no BN) on the
    pre-activated input ReLU(BN(x)), as in the authors' code and WRN's.

    Args:
        in_channels, channels, stride, drop_path: as in :class:`BasicBlock`.
        dropout: dropout probability between the two convs (WRN uses 0.3).

    Shapes: (N, in_channels, H, W) -> (N, channels, H/stride, W/stride).
    """

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, drop_path=0.0, dropout=0.0):
        super().__init__()
        check_probability("dropout", dropout)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.shortcut = make_shortcut("B", in_channels, channels, stride, norm=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.drop_path = DropPath(drop_path)

    def extra_repr(self) -> str:
        return "shortcut=identity" if self.shortcut is None else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.relu(self.bn2(self.conv1(pre)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.drop_path(self.conv2(out)) + identity


# ----------------------------------------------------------------------------- networks


def drop_path_probabilities(num_blocks: int, drop_path_rate: float) -> list[float]:
    """Stochastic depth's linear decay rule (Huang et al. 2016, Sec. 3), as drop probabilities.

    Block ``l`` of ``L`` (counted from 1 over the whole net) keeps its
    residual branch with probability ``p_l = 1 - l / L (1 - p_L)``, i.e. drops
    it with probability ``l / L * drop_path_rate`` where ``drop_path_rate =
    1 - p_L`` is the last block's (the paper: p_L = 0.5). The input is never dropped.
    """
    return [drop_path_rate * (block / num_blocks) for block in range(1, num_blocks + 1)]


def _make_stages(block, in_channels, depths, widths, drop_path_rate, **block_options) -> list[nn.Sequential]:
    """One nn.Sequential of blocks per stage; every stage after the first halves the map (stride 2 in its first block).

    ``widths[i]`` is the ``channels`` argument of stage i's blocks (their output:
    ``widths[i] * block.expansion``); ``block_options`` go to every block.
    """
    drop_probs = iter(drop_path_probabilities(sum(depths), drop_path_rate))
    stages = []
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        blocks = []
        for index in range(depth):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(block(in_channels, width, stride, drop_path=next(drop_probs), **block_options))
            in_channels = width * block.expansion
        stages.append(nn.Sequential(*blocks))
    return stages


def _stem_conv(in_channels: int, out_channels: int, small_input: bool) -> tuple[nn.Conv2d, nn.Module]:
    """The first conv and the pooling after it: 7x7 stride 2 + 3x3 max-pool stride 2 (224x224 -> 56x56),
    or, with ``small_input``, a 3x3 stride-1 conv and no pooling (32x32 -> 32x32)."""
    if small_input:
        return nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False), nn.Identity()
    conv = nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)
    return conv, nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


class _StagedNet(nn.Module):
    """What ResNet and PreActResNet share: stages named layer1, layer2, ... and a GAP + fc head."""

    def _add_stages(self, stages: list[nn.Sequential]) -> None:
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.num_stages = len(stages)

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, layer2, ...]``."""
        return [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    @property
    def blocks(self) -> list[nn.Module]:
        """All residual blocks, input to output (block l = ``blocks[l - 1]``)."""
        return [block for stage in self.stages for block in stage]

    def _init_weights(self) -> None:
        """As torchvision: He-normal (fan_out) convs, BatchNorm to the identity (attention modules keep theirs)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_classes) logits."""
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


class ResNet(_StagedNet):
    """A (post-activation) residual network: stem - stages of blocks - global average pooling - fc.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        widths: the ``channels`` of each stage's blocks, e.g. ``(64, 128, 256, 512)``;
            the first stage keeps the stem's resolution, each later one halves it.
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        stem_channels: channels of the first conv (64 on ImageNet, 16 on CIFAR).
        small_input: 3x3 stride-1 stem without max-pool (32x32 inputs) instead of
            7x7 stride 2 + max-pool (224x224 inputs).
        shortcut: ``"A"``, ``"B"``, ``"C"``, or None for the plain net (no shortcuts).
        drop_path_rate: stochastic depth, the last block's drop probability.
        **block_options: for every block (``groups``, ``base_width``, ``attention``).

    Shapes: (N, in_channels, H, W) -> (N, num_classes). ResNet-50 at 224x224:
    conv1 112x112x64 -> max-pool 56x56x64 -> layer1 56x56x256 -> layer2 28x28x512
    -> layer3 14x14x1024 -> layer4 7x7x2048 -> GAP 2048 -> fc. With
    ``small_input`` at 32x32: layer1 32x32 ... layer4 4x4.
    """

    def __init__(
        self,
        block,
        depths,
        widths,
        num_classes=1000,
        in_channels=3,
        stem_channels=64,
        small_input=False,
        shortcut="B",
        drop_path_rate=0.0,
        **block_options,
    ):
        super().__init__()
        check_int("num_classes", num_classes, 1)
        check_int("in_channels", in_channels, 1)
        check_flag("small_input", small_input)
        check_probability("drop_path_rate", drop_path_rate)
        if shortcut is None and drop_path_rate > 0:
            raise ValueError("drop_path_rate needs shortcuts: a plain net (shortcut=None) has no branch to skip")
        self.conv1, pool = _stem_conv(in_channels, stem_channels, small_input)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = pool
        self._add_stages(
            _make_stages(block, stem_channels, depths, widths, drop_path_rate, shortcut=shortcut, **block_options)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = widths[-1] * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_features, h, w), the last stage's map: h = H/32 with the
        ImageNet stem and 4 stages, H/8 with ``small_input``, H/4 for the 3-stage CIFAR nets."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x


class PreActResNet(_StagedNet):
    """A pre-activation residual network of :class:`PreActBlock` (He et al. 2016, "Identity mappings"; WRN).

    The stem is a bare conv (the first block normalises and activates its
    input), and a final BN-ReLU follows the last block, before global
    average pooling and the fc layer - the blocks' outputs are never
    activated themselves. The ImageNet stem (7x7 stride 2 + max-pool) is
    the one of ResNet-v2 as in BiT / timm's ``resnetv2``: conv then max-pool,
    no BN-ReLU in between.

    Args:
        depths, widths, num_classes, in_channels, stem_channels, small_input,
        drop_path_rate: as in :class:`ResNet`.
        dropout: dropout between the two convs of every block (WRN).

    Shapes: (N, in_channels, H, W) -> (N, num_classes). WRN-28-10 at 32x32:
    conv1 32x32x16 -> layer1 32x32x160 -> layer2 16x16x320 -> layer3 8x8x640
    -> BN-ReLU -> GAP 640 -> fc.
    """

    def __init__(
        self,
        depths,
        widths,
        num_classes=1000,
        in_channels=3,
        stem_channels=64,
        small_input=False,
        drop_path_rate=0.0,
        dropout=0.0,
    ):
        super().__init__()
        check_int("num_classes", num_classes, 1)
        check_int("in_channels", in_channels, 1)
        check_flag("small_input", small_input)
        check_probability("drop_path_rate", drop_path_rate)
        self.conv1, self.maxpool = _stem_conv(in_channels, stem_channels, small_input)
        self._add_stages(_make_stages(PreActBlock, stem_channels, depths, widths, drop_path_rate, dropout=dropout))
        self.num_features = widths[-1]
        self.bn = nn.BatchNorm2d(self.num_features)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, num_features, h, w), after the final BN-ReLU."""
        x = self.maxpool(self.conv1(x))
        for stage in self.stages:
            x = stage(x)
        return self.relu(self.bn(x))


# ----------------------------------------------------------------------------- configurations

# He et al. 2016, Table 1: the block and the number of blocks in conv2_x, conv3_x, conv4_x, conv5_x.
IMAGENET_RESNETS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
# Their widths (the 3x3 convs' channels; a Bottleneck outputs 4x as many) on 56x56, 28x28, 14x14, 7x7 maps.
IMAGENET_WIDTHS = (64, 128, 256, 512)

# He et al. 2016, Sec. 4.2: 6n + 2 layers - a 3x3 conv with 16 filters, then three stages of n
# BasicBlocks with 16, 32, 64 filters on 32x32, 16x16, 8x8 maps, global average pooling, fc.
CIFAR_WIDTHS = (16, 32, 64)


def _imagenet_resnet(depth, num_classes, in_channels, options, *, plain=False, **block_options) -> ResNet:
    """ResNet-``depth`` of Table 1, with ``block_options`` for its blocks (ResNeXt, WRN, SE, CBAM)."""
    if plain:  # no shortcut to choose and no residual branch to drop
        opts = _options(options, small_input=False)
        opts["shortcut"] = None
    else:
        opts = _options(options, small_input=False, shortcut="B", drop_path_rate=0.0)
    block, depths = IMAGENET_RESNETS[depth]
    return ResNet(block, depths, IMAGENET_WIDTHS, num_classes, in_channels, stem_channels=64, **opts, **block_options)


def _cifar_resnet(depth, num_classes, in_channels, options, *, plain=False) -> ResNet:
    """The 6n+2-layer CIFAR ResNet (option A shortcuts) or its plain twin."""
    if plain:
        opts = _options(options, small_input=True)
        opts["shortcut"] = None
    else:
        opts = _options(options, small_input=True, shortcut="A", drop_path_rate=0.0)
    if not opts["small_input"]:
        raise ValueError("small_input must be True: the CIFAR ResNets are built for 32x32 inputs (see resnet18 ...)")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, (n, n, n), CIFAR_WIDTHS, num_classes, in_channels, stem_channels=16, **opts)


def _wide_resnet(depth, widen_factor, num_classes, in_channels, options) -> PreActResNet:
    """WRN-depth-k (Zagoruyko & Komodakis 2016, Table 1): 3 stages of (depth - 4) / 6 wide pre-activation
    blocks with 16k, 32k, 64k channels after a 16-channel 3x3 stem; 32x32 inputs."""
    opts = _options(options, small_input=True, drop_path_rate=0.0, dropout=0.0)
    if not opts.pop("small_input"):
        raise ValueError("small_input must be True: WRN-28-10 is built for 32x32 inputs")
    n = (depth - 4) // 6
    widths = tuple(c * widen_factor for c in CIFAR_WIDTHS)
    return PreActResNet((n, n, n), widths, num_classes, in_channels, stem_channels=16, small_input=True, **opts)


# ----------------------------------------------------------------------------- builders: ImageNet (224x224)


@register_model
def resnet18(num_classes=1000, in_channels=3, **options):
    """ResNet-18 (He et al. 2016, Table 1): BasicBlocks [2, 2, 2, 2]; 11,689,512 parameters, as torchvision.
    Input 224x224 (32x32 with ``small_input=True``). Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return _imagenet_resnet(18, num_classes, in_channels, options)


@register_model
def resnet34(num_classes=1000, in_channels=3, **options):
    """ResNet-34 (He et al. 2016, Table 1): BasicBlocks [3, 4, 6, 3]; 21,797,672 parameters, as torchvision.
    Input 224x224 (32x32 with ``small_input=True``). Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return _imagenet_resnet(34, num_classes, in_channels, options)


@register_model
def resnet50(num_classes=1000, in_channels=3, **options):
    """ResNet-50 (He et al. 2016, Table 1): Bottlenecks [3, 4, 6, 3]; 25,557,032 parameters, as torchvision.
    Input 224x224 (32x32 with ``small_input=True``). Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return _imagenet_resnet(50, num_classes, in_channels, options)


@register_model
def resnet101(num_classes=1000, in_channels=3, **options):
    """ResNet-101 (He et al. 2016, Table 1): Bottlenecks [3, 4, 23, 3]; 44,549,160 parameters, as torchvision.
    Input 224x224 (32x32 with ``small_input=True``). Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return _imagenet_resnet(101, num_classes, in_channels, options)


@register_model
def resnet152(num_classes=1000, in_channels=3, **options):
    """ResNet-152 (He et al. 2016, Table 1): Bottlenecks [3, 8, 36, 3]; 60,192,808 parameters, as torchvision.
    Input 224x224 (32x32 with ``small_input=True``). Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return _imagenet_resnet(152, num_classes, in_channels, options)


@register_model
def resnext50_32x4d(num_classes=1000, in_channels=3, **options):
    """ResNeXt-50 32x4d (Xie et al. 2017, Table 1): ResNet-50 whose 3x3 convs have 32 groups of 4 channels
    (128 wide in stage 1); 25,028,904 parameters, as torchvision. Input 224x224 (32x32 with ``small_input=True``)."""
    return _imagenet_resnet(50, num_classes, in_channels, options, groups=32, base_width=4)


@register_model
def wide_resnet50_2(num_classes=1000, in_channels=3, **options):
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016, ImageNet "WRN-50-2-bottleneck"): ResNet-50 with twice as
    wide inner 1x1-3x3 convs; 68,883,240 parameters, as torchvision. Input 224x224 (32x32 with ``small_input``)."""
    return _imagenet_resnet(50, num_classes, in_channels, options, base_width=128)


@register_model
def se_resnet50(num_classes=1000, in_channels=3, **options):
    """SE-ResNet-50 (Hu et al. 2018): a squeeze-and-excitation gate (reduction 16) on every Bottleneck's
    residual branch before the addition; 28,088,024 parameters (published 28.09M). Input 224x224."""
    return _imagenet_resnet(50, num_classes, in_channels, options, attention=partial(SqueezeExcitation, reduction=16))


@register_model
def cbam_resnet50(num_classes=1000, in_channels=3, **options):
    """ResNet-50 + CBAM (Woo et al. 2018): channel then spatial attention (reduction 16, 7x7 spatial conv) on
    every Bottleneck's residual branch before the addition; 28,089,608 parameters (published 28.09M: the
    authors' code has a bias-free 7x7 conv + BN, 100 parameters per block instead of 99, 28,089,624)."""
    return _imagenet_resnet(50, num_classes, in_channels, options, attention=partial(CBAM, reduction=16))


@register_model
def plain18(num_classes=1000, in_channels=3, **options):
    """Plain-18 (He et al. 2016, Table 1 and Fig. 4 left): ResNet-18 without shortcuts. At a stage's start
    its first conv already has stride 2 and the new width, so dropping the shortcut drops its projection
    too: 11,515,688 parameters = resnet18 - 173,824. Input 224x224 (32x32 with ``small_input=True``)."""
    return _imagenet_resnet(18, num_classes, in_channels, options, plain=True)


@register_model
def plain34(num_classes=1000, in_channels=3, **options):
    """Plain-34 (He et al. 2016, Fig. 3 middle): ResNet-34 without shortcuts (nor their projections);
    21,623,848 parameters, = resnet34(shortcut="A"). Input 224x224 (32x32 with ``small_input=True``)."""
    return _imagenet_resnet(34, num_classes, in_channels, options, plain=True)


@register_model
def preact_resnet18(num_classes=1000, in_channels=3, **options):
    """Pre-activation ResNet-18 (He et al. 2016, "Identity mappings"): resnet18's layout with
    :class:`PreActBlock`s and a final BN-ReLU; 11,687,720 parameters. Input 224x224; with
    ``small_input=True`` (3x3 stride-1 stem, no max-pool) it is the PreActResNet-18 commonly trained
    on CIFAR (11,172,170 parameters for 10 classes)."""
    opts = _options(options, small_input=False, drop_path_rate=0.0, dropout=0.0)
    return PreActResNet((2, 2, 2, 2), IMAGENET_WIDTHS, num_classes, in_channels, stem_channels=64, **opts)


# ----------------------------------------------------------------------------- builders: CIFAR (32x32)


@register_model(input_size=32)
def resnet20(num_classes=1000, in_channels=3, **options):
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2, n = 3), option A shortcuts: 269,722 parameters for
    10 classes (Table 6: 0.27M). Input 32x32. Shapes: (N, in_channels, 32, 32) -> (N, num_classes)."""
    return _cifar_resnet(20, num_classes, in_channels, options)


@register_model(input_size=32)
def resnet32(num_classes=1000, in_channels=3, **options):
    """ResNet-32 for CIFAR (n = 5): 464,154 parameters for 10 classes (Table 6: 0.46M). Input 32x32."""
    return _cifar_resnet(32, num_classes, in_channels, options)


@register_model(input_size=32)
def resnet44(num_classes=1000, in_channels=3, **options):
    """ResNet-44 for CIFAR (n = 7): 658,586 parameters for 10 classes (Table 6: 0.66M). Input 32x32."""
    return _cifar_resnet(44, num_classes, in_channels, options)


@register_model(input_size=32)
def resnet56(num_classes=1000, in_channels=3, **options):
    """ResNet-56 for CIFAR (n = 9): 853,018 parameters for 10 classes (Table 6: 0.85M). Input 32x32."""
    return _cifar_resnet(56, num_classes, in_channels, options)


@register_model(input_size=32)
def resnet110(num_classes=1000, in_channels=3, **options):
    """ResNet-110 for CIFAR (n = 18): 1,727,962 parameters for 10 classes (Table 6: 1.7M). Input 32x32."""
    return _cifar_resnet(110, num_classes, in_channels, options)


@register_model(input_size=32)
def plain20(num_classes=1000, in_channels=3, **options):
    """Plain-20 for CIFAR (He et al. 2016, Fig. 6 left): resnet20 without shortcuts, same parameters
    (option A has none). Input 32x32."""
    return _cifar_resnet(20, num_classes, in_channels, options, plain=True)


@register_model(input_size=32)
def plain32(num_classes=1000, in_channels=3, **options):
    """Plain-32 for CIFAR: resnet32 without shortcuts, same parameters. Input 32x32."""
    return _cifar_resnet(32, num_classes, in_channels, options, plain=True)


@register_model(input_size=32)
def plain44(num_classes=1000, in_channels=3, **options):
    """Plain-44 for CIFAR: resnet44 without shortcuts, same parameters. Input 32x32."""
    return _cifar_resnet(44, num_classes, in_channels, options, plain=True)


@register_model(input_size=32)
def plain56(num_classes=1000, in_channels=3, **options):
    """Plain-56 for CIFAR: resnet56 without shortcuts, same parameters. Input 32x32."""
    return _cifar_resnet(56, num_classes, in_channels, options, plain=True)


@register_model(input_size=32)
def plain110(num_classes=1000, in_channels=3, **options):
    """Plain-110 for CIFAR (He et al. 2016: "more than 60% error", not shown in Fig. 6): resnet110 without
    shortcuts, same parameters. Input 32x32."""
    return _cifar_resnet(110, num_classes, in_channels, options, plain=True)


@register_model(input_size=32)
def wrn_28_10(num_classes=1000, in_channels=3, **options):
    """WRN-28-10 (Zagoruyko & Komodakis 2016): 28 layers, widening factor 10 (160-320-640 channels),
    pre-activation wide blocks, ``dropout`` option (the paper's best: 0.3); 36,479,194 parameters for
    10 classes (published 36.5M). Input 32x32. Shapes: (N, in_channels, 32, 32) -> (N, num_classes)."""
    return _wide_resnet(28, 10, num_classes, in_channels, options)
