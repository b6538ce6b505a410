"""Inception networks: GoogLeNet (Inception-v1) and Inception-v3.

- Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv 1409.4842, 2014): GoogLeNet.
- Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for
  Computer Vision", CVPR 2016 (arXiv 1512.00567): Inception-v3.

An *inception module* runs several convolutions of different sizes (1x1, 3x3,
5x5) and a 3x3 max-pool side by side on the same input and concatenates their
outputs along the channels. Run naively, the 3x3 and 5x5 convolutions on a
wide input are expensive; 1x1 *bottleneck* convolutions first reduce the
channels ("#3x3 reduce", "#5x5 reduce", "pool proj" in the paper's Table 1).
:func:`inception_multiplies` counts the multiplies of both versions.

GoogLeNet stacks 9 modules (22 layers with weights), ends with global average
pooling, dropout and one linear layer, and trains two *auxiliary classifiers*
on intermediate features (their losses are added with weight 0.3; they are
dropped at inference). Inception-v3 factorises the large convolutions (a 5x5
into two 3x3, an n x n into 1 x n then n x 1), reduces the grid with parallel
stride-2 branches instead of a pooling bottleneck, and has one auxiliary
classifier with batch normalisation.

Both builders list their layers in the order of torchvision's twins
(``torchvision.models.googlenet`` / ``inception_v3``), with the same parameter
counts, so :func:`course_lib.models.transfer_state_dict` copies their weights.
Training-mode outputs with ``aux_logits=True`` are named tuples: combine them
with :func:`inception_loss`.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_flag, check_int, check_probability
from ..layers import ConvNormAct
from ..init import torchvision_init_
from .registry import published, register_model

__all__ = [
    "AUX_LOSS_WEIGHT",
    "GOOGLENET_AUX_AFTER",
    "GOOGLENET_MODULES",
    "INCEPTION_V3_BLOCKS",
    "INCEPTION_V3_STEM",
    "Branches",
    "GoogLeNet",
    "GoogLeNetAux",
    "GoogLeNetOutputs",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionConfig",
    "InceptionD",
    "InceptionE",
    "InceptionModule",
    "InceptionOutputs",
    "NaiveInceptionModule",
    "InceptionV3",
    "InceptionV3Aux",
    "googlenet",
    "inception_loss",
    "inception_multiplies",
    "inception_v3",
]

#: Weight of each auxiliary classifier's loss in the training loss (GoogLeNet paper, Section 5).
AUX_LOSS_WEIGHT = 0.3


# --------------------------------------------------------------------------- shared layers

#: Conv-BN-ReLU (torchvision's ``BasicConv2d``), or Conv(+bias)-ReLU with ``norm_layer=None``.
#: BatchNorm's eps is 1e-3, as in the TensorFlow models torchvision's weights come from.
_conv = partial(ConvNormAct, eps=1e-3)


def _check_network_options(num_classes: int, in_channels: int, transform_input: bool, **flags: bool) -> None:
    """The options GoogLeNet and Inception-v3 share; ``transform_input`` re-normalises the three RGB channels."""
    check_int("num_classes", num_classes, 1)
    check_int("in_channels", in_channels, 1)
    for name, flag in {**flags, "transform_input": transform_input}.items():
        check_flag(name, flag)
    if transform_input and in_channels != 3:
        raise ValueError(f"transform_input=True needs RGB inputs (in_channels=3), got in_channels={in_channels}")


def _to_tf_range(x: torch.Tensor) -> torch.Tensor:
    """Re-normalise an ImageNet-normalised RGB batch to the [-1, 1] scaling (x / 127.5 - 1) of Google's models.

    ``transform_input=True`` does this first, as torchvision does when it loads
    its pretrained GoogLeNet / Inception-v3 weights (ported from TensorFlow):
    channel c becomes ``x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5``.
    """
    mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


def inception_loss(output, target: torch.Tensor, aux_weight: float = AUX_LOSS_WEIGHT, criterion=F.cross_entropy):
    """Training loss of a network with auxiliary classifiers: ``criterion(logits) + aux_weight * sum(criterion(aux))``.

    ``output`` is what the model returned: a :class:`GoogLeNetOutputs` /
    :class:`InceptionOutputs` in training mode with ``aux_logits=True``, or a plain
    logits tensor (eval mode, or no auxiliary heads), which gives ``criterion(logits, target)``;
    heads given as None are left out.
    GoogLeNet's paper weights each auxiliary loss by 0.3 (:data:`AUX_LOSS_WEIGHT`).
    Pass e.g. ``criterion=nn.CrossEntropyLoss(label_smoothing=0.1)`` for Inception-v3's label smoothing.
    """
    if isinstance(output, torch.Tensor):
        return criterion(output, target)
    logits, *aux = output
    # A scripted torchvision GoogLeNet puts None where a head is absent.
    aux = [head for head in aux if head is not None]
    loss = criterion(logits, target)
    return loss + aux_weight * sum(criterion(head, target) for head in aux) if aux else loss


# --------------------------------------------------------------------------- GoogLeNet's inception module


class InceptionConfig(NamedTuple):
    """One row of GoogLeNet's Table 1: the widths of an inception module's convolutions."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int


def inception_multiplies(
    in_channels: int,
    ch1x1: int,
    ch3x3red: int,
    ch3x3: int,
    ch5x5red: int,
    ch5x5: int,
    pool_proj: int,
    size: int | tuple[int, int],
    *,
    bottleneck: bool = True,
    kernel_5x5: int = 5,
) -> dict[str, int]:
    """Multiplies (= multiply-adds) of one inception module's convolutions on an ``size`` x ``size`` grid.

    A k x k convolution from C_in to C_out channels that keeps an H x W grid costs
    ``H * W * k * k * C_in * C_out`` multiplies. Returns one entry per convolution,
    named by the paper's Table 1 columns, and their ``"total"``.

    - ``bottleneck=True`` (Figure 2b): the 3x3 and 5x5 convs read ``ch3x3red`` /
      ``ch5x5red`` channels made by 1x1 reductions; the pooled input is projected by
      a 1x1 conv to ``pool_proj`` channels.
    - ``bottleneck=False`` (the naive Figure 2a): the 3x3 and 5x5 convs read all
      ``in_channels``; there are no reductions and the pool branch has no conv (so
      ``ch3x3red``, ``ch5x5red``, ``pool_proj`` are ignored and reported as 0).

    A width of 0 leaves that convolution out, e.g. one branch alone, the
    curriculum's example (28x28x192 input, 32 3x3 filters, reduction to 16 channels)::

        inception_multiplies(192, 0, 0, 32, 0, 0, 0, 28, bottleneck=False)["total"]  # 43,352,064 (~43M)
        inception_multiplies(192, 0, 16, 32, 0, 0, 0, 28)["total"]  # 2,408,448 + 3,612,672 = 6,021,120 (~6.0M)

    With GoogLeNet's Table 1 rows and grids (28, 14, 7) this reproduces the paper's
    "ops" column (e.g. 128M for inception 3a). ``kernel_5x5=3`` counts torchvision's variant.
    """
    check_int("in_channels", in_channels, 1)
    for name, value in zip(InceptionConfig._fields, (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)):
        check_int(name, value, 0)
    check_int("kernel_5x5", kernel_5x5, 1)
    check_flag("bottleneck", bottleneck)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    check_int("size", height, 1)
    check_int("size", width, 1)

    def conv(c_in: int, c_out: int, k: int) -> int:
        return height * width * k * k * c_in * c_out

    if bottleneck:
        counts = {
            "1x1": conv(in_channels, ch1x1, 1),
            "3x3 reduce": conv(in_channels, ch3x3red, 1),
            "3x3": conv(ch3x3red, ch3x3, 3),
            "5x5 reduce": conv(in_channels, ch5x5red, 1),
            "5x5": conv(ch5x5red, ch5x5, kernel_5x5),
            "pool proj": conv(in_channels, pool_proj, 1),
        }
    else:
        counts = {
            "1x1": conv(in_channels, ch1x1, 1),
            "3x3 reduce": 0,
            "3x3": conv(in_channels, ch3x3, 3),
            "5x5 reduce": 0,
            "5x5": conv(in_channels, ch5x5, kernel_5x5),
            "pool proj": 0,
        }
    counts["total"] = sum(counts.values())
    return counts


def _module_conv(in_channels: int, widths: dict[str, int], kernel_5x5: int, batch_norm: bool):
    """Check an inception module's arguments; return its conv builder (Conv-BN-ReLU or Conv-ReLU with bias)."""
    check_int("in_channels", in_channels, 1)
    for name, value in widths.items():
        check_int(name, value, 1)
    check_int("kernel_5x5", kernel_5x5, 1)
    if kernel_5x5 % 2 == 0:  # an even kernel cannot keep the grid
        raise ValueError(f"kernel_5x5 must be odd, got {kernel_5x5!r}")
    check_flag("batch_norm", batch_norm)
    return partial(_conv, norm_layer=nn.BatchNorm2d if batch_norm else None)


class InceptionModule(nn.Module):
    """GoogLeNet's inception module with dimension reductions (paper, Figure 2b).

    Four branches read the same input; their outputs are concatenated along the channels::

        branch1: 1x1 conv (ch1x1)
        branch2: 1x1 conv (ch3x3red) -> 3x3 conv (ch3x3)
        branch3: 1x1 conv (ch5x5red) -> 5x5 conv (ch5x5)
        branch4: 3x3 max-pool, stride 1 -> 1x1 conv (pool_proj)

    Every conv keeps the grid (padding k // 2), so the output has
    ``out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj`` channels.
    Shapes: (N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).

    Why the 1x1 reductions (see :func:`inception_multiplies`): on a 28x28x256
    input, the naive module (Figure 2a) with 128 1x1, 192 3x3 and 96 5x5 filters
    costs 854M multiplies and outputs 128 + 192 + 96 + 256 = 672 channels (the
    pooled input passes through); with 64-channel reductions and a 64-channel pool
    projection it costs 271M and outputs 480 channels. (cs231n's slide, quoted in
    the course, says 358M: it adds the 3x3 conv's 87M twice.) The curriculum's
    single branch: 32 3x3 filters on 28x28x192 cost 43M multiplies, 6.0M behind a
    16-channel 1x1 bottleneck (a lecture slide prints 5.4M; its own terms, 2.4M + 3.6M, make 6.0M).

    Args:
        in_channels: channels of the input.
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: the paper's Table 1 columns
            #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
        kernel_5x5: kernel of the "5x5" branch's second conv. 5 as in the paper;
            torchvision's GoogLeNet uses 3 (pytorch/vision issue #906), and so does
            :func:`googlenet` unless ``paper=True``.
        batch_norm: Conv-BN-ReLU (True, as torchvision) or Conv-ReLU with bias (the paper).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        kernel_5x5: int = 5,
        batch_norm: bool = True,
    ):
        super().__init__()
        widths = dict(zip(InceptionConfig._fields, (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)))
        conv = _module_conv(in_channels, widths, kernel_5x5, batch_norm)

        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, kernel_5x5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)


class NaiveInceptionModule(nn.Module):
    """GoogLeNet's naive inception module (paper, Figure 2a): no 1x1 reductions, no pool projection.

    Four branches read the same input; their outputs are concatenated along the channels::

        branch1: 1x1 conv (ch1x1)
        branch2: 3x3 conv (ch3x3), reading all in_channels
        branch3: 5x5 conv (ch5x5), reading all in_channels
        branch4: 3x3 max-pool, stride 1 (the in_channels pass through)

    Every branch keeps the grid, so the output has ``ch1x1 + ch3x3 + ch5x5 + in_channels``
    channels: the pool branch alone makes every module wider than its input, and
    the 3x3 and 5x5 convs pay for every input channel. :func:`inception_multiplies`
    with ``bottleneck=False`` counts its multiplies. Branch names match
    :class:`InceptionModule`'s, so the two can be compared branch by branch.
    Shapes: (N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + in_channels, H, W).

    Args:
        in_channels: channels of the input.
        ch1x1, ch3x3, ch5x5: filters of the three convolutions (the paper's #1x1, #3x3, #5x5).
        kernel_5x5: kernel of the "5x5" branch (odd).
        batch_norm: Conv-BN-ReLU (True) or Conv-ReLU with bias (False, the paper).
    """

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, kernel_5x5: int = 5, batch_norm: bool = True
    ):
        super().__init__()
        conv = _module_conv(in_channels, {"ch1x1": ch1x1, "ch3x3": ch3x3, "ch5x5": ch5x5}, kernel_5x5, batch_norm)
        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = conv(in_channels, ch3x3, 3)
        self.branch3 = conv(in_channels, ch5x5, kernel_5x5)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)


# --------------------------------------------------------------------------- GoogLeNet


#: GoogLeNet's nine inception modules, the paper's Table 1 (#1x1, #3x3 reduce, #3x3,
#: #5x5 reduce, #5x5, pool proj). A max-pool halves the grid where the stage number
#: changes (before 4a and 5a). Grids and output channels at 224x224 in the comments.
GOOGLENET_MODULES: dict[str, InceptionConfig] = {
    "3a": InceptionConfig(64, 96, 128, 16, 32, 32),  # 28x28, 192 -> 256
    "3b": InceptionConfig(128, 128, 192, 32, 96, 64),  # 28x28, -> 480
    "4a": InceptionConfig(192, 96, 208, 16, 48, 64),  # 14x14, -> 512 (auxiliary classifier 1)
    "4b": InceptionConfig(160, 112, 224, 24, 64, 64),  # 14x14, -> 512
    "4c": InceptionConfig(128, 128, 256, 24, 64, 64),  # 14x14, -> 512
    "4d": InceptionConfig(112, 144, 288, 32, 64, 64),  # 14x14, -> 528 (auxiliary classifier 2)
    "4e": InceptionConfig(256, 160, 320, 32, 128, 128),  # 14x14, -> 832
    "5a": InceptionConfig(256, 160, 320, 32, 128, 128),  # 7x7, -> 832
    "5b": InceptionConfig(384, 192, 384, 48, 128, 128),  # 7x7, -> 1024
}

#: The modules whose outputs feed GoogLeNet's two auxiliary classifiers.
GOOGLENET_AUX_AFTER = ("4a", "4d")


class GoogLeNetOutputs(NamedTuple):
    """GoogLeNet's training-mode output with ``aux_logits=True`` (torchvision orders it logits, aux2, aux1)."""

    logits: torch.Tensor
    aux1: torch.Tensor  # classifier on inception 4a
    aux2: torch.Tensor  # classifier on inception 4d


class GoogLeNetAux(nn.Module):
    """GoogLeNet's auxiliary classifier (paper, Section 5), used in training only.

    5x5/3 average pool (14x14 -> 4x4), 1x1 conv to 128 channels + ReLU, fc 1024 +
    ReLU, dropout 0.7, fc ``num_classes``. With ``adaptive=True`` the pool is an
    adaptive average pool to 4x4, so it works on any grid (the ``small_input`` model's
    16x16). torchvision always pools adaptively to 4x4 (4-wide windows on 14x14,
    where the paper's are 5 wide), so after a weight transfer the auxiliary outputs
    differ a little from torchvision's; the main logits do not.

    Shapes: (N, in_channels, 14, 14) -> (N, num_classes).
    """

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float = 0.7, batch_norm: bool = True, adaptive: bool = False
    ):
        super().__init__()
        self.adaptive = adaptive
        self.pool = nn.AdaptiveAvgPool2d(4) if adaptive else nn.AvgPool2d(5, stride=3)
        self.conv = _conv(in_channels, 128, 1, norm_layer=nn.BatchNorm2d if batch_norm else None)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.adaptive and not all(14 <= size <= 16 for size in x.shape[-2:]):  # 5x5/3 pooling -> 4x4
            raise ValueError(
                f"GoogLeNet's auxiliary classifier needs a 14x14 map (224x224 input), got {tuple(x.shape[-2:])}: "
                "use 224x224 inputs, small_input=True (adaptive pooling) or eval mode"
            )
        x = self.conv(self.pool(x))  # N x 128 x 4 x 4
        x = self.dropout(self.relu(self.fc1(torch.flatten(x, 1))))  # N x 1024
        return self.fc2(x)


def _googlenet_pool(kernel_size: int = 3) -> nn.MaxPool2d:
    # ceil_mode rounds output sizes up, as Caffe did: 112 -> 56 -> 28 -> 14 -> 7.
    return nn.MaxPool2d(kernel_size, stride=2, ceil_mode=True)


def _lrn() -> nn.LocalResponseNorm:
    # The paper's local response normalisation (Caffe's bvlc_googlenet: size 5, alpha 1e-4, beta 0.75).
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def _googlenet_stem(in_channels: int, small_input: bool, paper: bool) -> OrderedDict:
    """Table 1's first rows: conv 7x7/2 (64), max-pool 3x3/2, conv 1x1 (64), conv 3x3 (192), max-pool 3x3/2.

    224x224 -> 28x28x192. ``small_input``: the 7x7/2 conv becomes 3x3/1 and both
    max-pools go: 32x32 -> 32x32x192. ``paper``: local response normalisation after
    the first max-pool and after conv3 (Figure 3); torchvision has none.
    """
    conv = partial(_conv, norm_layer=None if paper else nn.BatchNorm2d)
    layers = OrderedDict()
    if small_input:
        layers["conv1"] = conv(in_channels, 64, 3)
    else:
        layers["conv1"] = conv(in_channels, 64, 7, stride=2)
        layers["maxpool1"] = _googlenet_pool()
    if paper:
        layers["lrn1"] = _lrn()
    layers["conv2"] = conv(64, 64, 1)
    layers["conv3"] = conv(64, 192, 3)
    if paper:
        layers["lrn2"] = _lrn()
    if not small_input:
        layers["maxpool2"] = _googlenet_pool()
    return layers


class GoogLeNet(nn.Module):
    """GoogLeNet (Szegedy et al. 2014), the paper's Table 1, in torchvision's layout.

    Stem (3 conv layers), nine inception modules (:data:`GOOGLENET_MODULES`, 2
    layers deep each), global average pooling, dropout 0.4 and a linear
    classifier: 3 + 18 + 1 = 22 layers with weights. At 224x224:
    stem 28x28x192 -> 3a, 3b 28x28x480 -> max-pool -> 4a..4e 14x14x832 ->
    max-pool -> 5a, 5b 7x7x1024 -> GAP -> (N, num_classes).

    Differences from the paper, by default (as torchvision, whose pretrained
    weights were ported from TF-slim's Inception-v1): BatchNorm in every conv
    block (no LRN), a 3x3 conv in the "5x5" branch (``kernel_5x5=3``, pytorch/vision
    issue #906) and a 2x2/2 max-pool before 5a. ``paper=True`` builds the paper's
    network instead: Conv+bias-ReLU, LRN in the stem, true 5x5 convs, a 3x3/2
    max-pool (its weights cannot come from torchvision).

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        aux_logits: add the two auxiliary classifiers (:class:`GoogLeNetAux`, after
            4a and 4d). In ``model.train()`` the forward then returns
            ``GoogLeNetOutputs(logits, aux1, aux2)``; train on
            ``loss(logits) + 0.3 * (loss(aux1) + loss(aux2))`` (:func:`inception_loss`).
            In ``model.eval()`` it returns the logits only.
        small_input: a 3x3 stride-1 first conv and no stem max-pools, for 32x32
            images (modules see 32, 16, 8 grids; the auxiliary classifiers pool adaptively to 4x4).
        paper: the paper's layers (see above).
        transform_input: first map ImageNet-normalised RGB to [-1, 1], as
            torchvision does for its pretrained weights (needs ``in_channels=3``).
        dropout: before the classifier (0.4 in the paper; torchvision 0.2).
        dropout_aux: inside the auxiliary classifiers (0.7).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        aux_logits: bool = False,
        small_input: bool = False,
        paper: bool = False,
        transform_input: bool = False,
        dropout: float = 0.4,
        dropout_aux: float = 0.7,
    ):
        super().__init__()
        _check_network_options(
            num_classes, in_channels, transform_input, aux_logits=aux_logits, small_input=small_input, paper=paper
        )
        check_probability("dropout", dropout)
        check_probability("dropout_aux", dropout_aux)
        self.transform_input = transform_input

        self.features = nn.ModuleDict(_googlenet_stem(in_channels, small_input, paper))
        channels, stage = 192, "3"
        for name, config in GOOGLENET_MODULES.items():
            if name[0] != stage:  # a new stage: halve the grid
                stage = name[0]
                last_pool = stage == "5" and not paper  # torchvision's 2x2/2 before 5a
                self.features[f"maxpool{int(stage) - 1}"] = _googlenet_pool(2 if last_pool else 3)
            module = InceptionModule(channels, *config, kernel_5x5=5 if paper else 3, batch_norm=not paper)
            self.features[f"inception{name}"] = module
            channels = module.out_channels

        self.aux_classifiers = None
        if aux_logits:
            self.aux_classifiers = nn.ModuleDict(
                {
                    f"inception{name}": GoogLeNetAux(
                        self.features[f"inception{name}"].out_channels,
                        num_classes,
                        dropout=dropout_aux,
                        batch_norm=not paper,
                        adaptive=small_input,
                    )
                    for name in GOOGLENET_AUX_AFTER
                }
            )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        # torchvision draws truncated normals instead (std 0.01 for GoogLeNet, 0.1 for Inception-v3);
        # He init also keeps the BatchNorm-free paper=True GoogLeNet trainable.
        torchvision_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if self.transform_input:
            x = _to_tf_range(x)
        use_aux = self.training and self.aux_classifiers is not None
        aux = []
        for name, layer in self.features.items():
            x = layer(x)
            if use_aux and name in self.aux_classifiers:
                aux.append(self.aux_classifiers[name](x))
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        logits = self.fc(self.dropout(x))
        return GoogLeNetOutputs(logits, *aux) if use_aux else logits


@register_model(
    paper="Szegedy et al. 2015, Going deeper with convolutions",
    params=[
        published(6_624_904, "torchvision googlenet(aux_logits=False); GoogLeNet_Weights.IMAGENET1K_V1 num_params"),
        published(13_004_888, "torchvision googlenet(weights=None, aux_logits=True)", aux_logits=True),
        published(
            6_998_552,
            "computed: Szegedy et al. 2015, Table 1 layers (true 5x5, biases, no BN); its params column sums to "
            "~6.8M weights, rounded and without biases",
            paper=True,
        ),
        published(13_378_280, "computed, as paper=True, with the two auxiliary heads", paper=True, aux_logits=True),
    ],
)
def googlenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    aux_logits: bool = False,
    small_input: bool = False,
    paper: bool = False,
    transform_input: bool = False,
    dropout: float = 0.4,
    dropout_aux: float = 0.7,
) -> GoogLeNet:
    """GoogLeNet / Inception-v1, layer for layer torchvision's ``googlenet`` (``paper=True``: the paper's layers).

    Input 224x224, or 32x32 with ``small_input=True``. Shapes: (N, in_channels, H, W) ->
    (N, num_classes); in training mode with ``aux_logits=True`` a :class:`GoogLeNetOutputs`
    of three such tensors. The options are :class:`GoogLeNet`'s.
    """
    return GoogLeNet(num_classes, in_channels, aux_logits=aux_logits, small_input=small_input, paper=paper,
                     transform_input=transform_input, dropout=dropout, dropout_aux=dropout_aux)


# --------------------------------------------------------------------------- Inception-v3


class Branches(nn.ModuleDict):
    """Parallel branches on the same input, their outputs concatenated along the channels.

    The base of Inception-v3's blocks; the branches run in insertion order.
    Shapes: (N, C, H, W) -> (N, sum of the branches' channels, H', W').
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.values()], dim=1)


class InceptionA(Branches):
    """35x35 module (Inception-v3 paper, Figure 5): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg-pool-1x1.

    The paper factorises the 5x5 into two 3x3 convs (the third branch); the
    released model, and torchvision, also keep a 5x5 branch (48 -> 64 channels).
    Shapes: (N, in_channels, H, W) -> (N, 224 + pool_features, H, W).
    """

    def __init__(self, in_channels: int, pool_features: int):
        c = in_channels
        super().__init__(
            {
                "branch1x1": _conv(c, 64, 1),
                "branch5x5": nn.Sequential(_conv(c, 48, 1), _conv(48, 64, 5)),
                "branch3x3dbl": nn.Sequential(_conv(c, 64, 1), _conv(64, 96, 3), _conv(96, 96, 3)),
                "branch_pool": nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), _conv(c, pool_features, 1)),
            }
        )
        self.out_channels = 64 + 64 + 96 + pool_features


class InceptionB(Branches):
    """Grid reduction 35x35 -> 17x17 (Figure 10): stride-2 conv branches beside a stride-2 max-pool.

    Reducing the grid with convs and pooling *in parallel* avoids both a
    representational bottleneck (pool first) and triple cost (expand first).
    Shapes: (N, in_channels, H, W) -> (N, 480 + in_channels, (H - 3) // 2 + 1, same for W).
    """

    def __init__(self, in_channels: int):
        c = in_channels
        super().__init__(
            {
                "branch3x3": _conv(c, 384, 3, stride=2, padding=0),
                "branch3x3dbl": nn.Sequential(
                    _conv(c, 64, 1), _conv(64, 96, 3), _conv(96, 96, 3, stride=2, padding=0)
                ),
                "branch_pool": nn.MaxPool2d(3, stride=2),
            }
        )
        self.out_channels = 384 + 96 + in_channels


class InceptionC(Branches):
    """17x17 module (Figure 6, n = 7): 7x7 convs factorised into 1x7 then 7x1 (2 x 7 k^2 weights instead of 49 k^2).

    ``channels_7x7`` is the width inside the factorised branches.
    Shapes: (N, in_channels, H, W) -> (N, 768, H, W).
    """

    def __init__(self, in_channels: int, channels_7x7: int):
        c, c7 = in_channels, channels_7x7
        super().__init__(
            {
                "branch1x1": _conv(c, 192, 1),
                "branch7x7": nn.Sequential(
                    _conv(c, c7, 1), _conv(c7, c7, (1, 7)), _conv(c7, 192, (7, 1))
                ),
                "branch7x7dbl": nn.Sequential(
                    _conv(c, c7, 1),
                    _conv(c7, c7, (7, 1)),
                    _conv(c7, c7, (1, 7)),
                    _conv(c7, c7, (7, 1)),
                    _conv(c7, 192, (1, 7)),
                ),
                "branch_pool": nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), _conv(c, 192, 1)),
            }
        )
        self.out_channels = 4 * 192


class InceptionD(Branches):
    """Grid reduction 17x17 -> 8x8: stride-2 3x3 convs (one after a factorised 7x7) beside a stride-2 max-pool.

    Shapes: (N, in_channels, H, W) -> (N, 512 + in_channels, (H - 3) // 2 + 1, same for W).
    """

    def __init__(self, in_channels: int):
        c = in_channels
        super().__init__(
            {
                "branch3x3": nn.Sequential(_conv(c, 192, 1), _conv(192, 320, 3, stride=2, padding=0)),
                "branch7x7x3": nn.Sequential(
                    _conv(c, 192, 1),
                    _conv(192, 192, (1, 7)),
                    _conv(192, 192, (7, 1)),
                    _conv(192, 192, 3, stride=2, padding=0),
                ),
                "branch_pool": nn.MaxPool2d(3, stride=2),
            }
        )
        self.out_channels = 320 + 192 + in_channels


class InceptionE(Branches):
    """8x8 module with expanded filter banks (Figure 7): a 3x3 split into 1x3 and 3x1 side by side.

    The wide outputs (2048 channels) serve the coarsest grid, where the paper
    wants high-dimensional representations. Shapes: (N, in_channels, H, W) -> (N, 2048, H, W).
    """

    def __init__(self, in_channels: int):
        c = in_channels

        def split(width: int) -> Branches:  # 1x3 and 3x1 convs side by side: 2 * width channels
            return Branches({"1x3": _conv(width, 384, (1, 3)), "3x1": _conv(width, 384, (3, 1))})

        super().__init__(
            {
                "branch1x1": _conv(c, 320, 1),
                "branch3x3": nn.Sequential(_conv(c, 384, 1), split(384)),
                "branch3x3dbl": nn.Sequential(_conv(c, 448, 1), _conv(448, 384, 3), split(384)),
                "branch_pool": nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), _conv(c, 192, 1)),
            }
        )
        self.out_channels = 320 + 768 + 768 + 192


#: Inception-v3's stem as released (torchvision's): (name, (out_channels, kernel, stride, padding)),
#: None for a 3x3/2 max-pool. 299x299x3 -> 35x35x192. (The paper's Table 1 lists a
#: slightly different stem: 3x3 convs to 64, 80 and 192 channels.)
INCEPTION_V3_STEM: tuple[tuple[str, tuple[int, int, int, int] | None], ...] = (
    ("Conv2d_1a_3x3", (32, 3, 2, 0)),  # 149x149x32
    ("Conv2d_2a_3x3", (32, 3, 1, 0)),  # 147x147x32
    ("Conv2d_2b_3x3", (64, 3, 1, 1)),  # 147x147x64
    ("maxpool1", None),  # 73x73x64
    ("Conv2d_3b_1x1", (80, 1, 1, 0)),  # 73x73x80
    ("Conv2d_4a_3x3", (192, 3, 1, 0)),  # 71x71x192
    ("maxpool2", None),  # 35x35x192
)

#: Inception-v3's modules in order (torchvision's names): (name, block, options).
#: The paper's Table 1 counts 3 x Figure 5, 5 x Figure 6 and 2 x Figure 7 modules;
#: the released model has 3 A, a reduction B, 4 C, a reduction D and 2 E.
INCEPTION_V3_BLOCKS: tuple[tuple[str, type, dict], ...] = (
    ("Mixed_5b", InceptionA, {"pool_features": 32}),  # 35x35x256
    ("Mixed_5c", InceptionA, {"pool_features": 64}),  # 35x35x288
    ("Mixed_5d", InceptionA, {"pool_features": 64}),  # 35x35x288
    ("Mixed_6a", InceptionB, {}),  # 17x17x768
    ("Mixed_6b", InceptionC, {"channels_7x7": 128}),  # 17x17x768
    ("Mixed_6c", InceptionC, {"channels_7x7": 160}),  # 17x17x768
    ("Mixed_6d", InceptionC, {"channels_7x7": 160}),  # 17x17x768
    ("Mixed_6e", InceptionC, {"channels_7x7": 192}),  # 17x17x768 -> auxiliary classifier
    ("Mixed_7a", InceptionD, {}),  # 8x8x1280
    ("Mixed_7b", InceptionE, {}),  # 8x8x2048
    ("Mixed_7c", InceptionE, {}),  # 8x8x2048
)

_V3_AUX_AFTER = "Mixed_6e"


class InceptionOutputs(NamedTuple):
    """Inception-v3's training-mode output with ``aux_logits=True`` (as torchvision's)."""

    logits: torch.Tensor
    aux: torch.Tensor  # classifier on Mixed_6e (17x17x768)


class InceptionV3Aux(nn.Module):
    """Inception-v3's auxiliary classifier, with BatchNorm in its convs (the paper's "BN-auxiliary", Section 7).

    5x5/3 average pool (17x17 -> 5x5), 1x1 conv to 128, 5x5 conv to 768 (-> 1x1),
    global average pool, fc ``num_classes``. ``adaptive=True`` pools adaptively to
    5x5 instead, for the ``small_input`` model's smaller grid.
    Shapes: (N, in_channels, 17, 17) -> (N, num_classes).
    """

    def __init__(self, in_channels: int, num_classes: int, adaptive: bool = False):
        super().__init__()
        self.adaptive = adaptive
        self.pool = nn.AdaptiveAvgPool2d(5) if adaptive else nn.AvgPool2d(5, stride=3)
        self.conv0 = _conv(in_channels, 128, 1)
        self.conv1 = _conv(128, 768, 5, padding=0)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.adaptive and min(x.shape[-2:]) < 17:  # 5x5/3 pooling must leave 5x5 for conv1
            raise ValueError(
                f"Inception-v3's auxiliary classifier needs a grid of at least 17x17 (299x299 input), got "
                f"{tuple(x.shape[-2:])}: use 299x299 inputs, small_input=True (adaptive pooling) or eval mode"
            )
        x = self.conv1(self.conv0(self.pool(x)))  # N x 768 x 1 x 1
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _inception_v3_stem(in_channels: int, small_input: bool) -> OrderedDict:
    """:data:`INCEPTION_V3_STEM`; ``small_input``: every conv at stride 1 with 'same' padding, no max-pools.

    299x299 -> 35x35x192, or 32x32 -> 32x32x192 (same weights: same parameter count).
    """
    layers, channels = OrderedDict(), in_channels
    for name, spec in INCEPTION_V3_STEM:
        if spec is None:
            if not small_input:
                layers[name] = nn.MaxPool2d(3, stride=2)
            continue
        out_channels, kernel, stride, padding = spec
        if small_input:
            stride, padding = 1, None  # "same"
        layers[name] = _conv(channels, out_channels, kernel, stride=stride, padding=padding)
        channels = out_channels
    return layers


class InceptionV3(nn.Module):
    """Inception-v3 (Szegedy et al. 2016) as released, in torchvision's layout.

    Stem (:data:`INCEPTION_V3_STEM`) 299x299 -> 35x35x192, then
    :data:`INCEPTION_V3_BLOCKS`: 3 x A (35x35x288), reduction B (17x17x768),
    4 x C (17x17x768), reduction D (8x8x1280), 2 x E (8x8x2048), global average
    pool, dropout, fc. Inputs of at least 75x75 work in eval mode; the auxiliary
    classifier needs 299x299 (a 17x17 grid at Mixed_6e). The paper also trains
    with label smoothing (0.1) and RMSProp: that is the trainer's business.

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        aux_logits: add the auxiliary classifier (:class:`InceptionV3Aux`) on
            Mixed_6e. In ``model.train()`` the forward then returns
            ``InceptionOutputs(logits, aux)`` (train on ``loss(logits) + w * loss(aux)``,
            :func:`inception_loss`); in ``model.eval()`` the logits only.
        small_input: stem convs at stride 1 with padding, no stem max-pools, for
            32x32 images (modules see 32, 15, 7 grids; the auxiliary classifier
            pools adaptively). The weights are unchanged.
        transform_input: first map ImageNet-normalised RGB to [-1, 1], as
            torchvision does for its pretrained weights (it defaults to False
            with ``weights=None``; needs ``in_channels=3``).
        dropout: before the classifier (torchvision's 0.5).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        aux_logits: bool = False,
        small_input: bool = False,
        transform_input: bool = False,
        dropout: float = 0.5,
    ):
        super().__init__()
        _check_network_options(
            num_classes, in_channels, transform_input, aux_logits=aux_logits, small_input=small_input
        )
        check_probability("dropout", dropout)
        self.transform_input = transform_input

        blocks, channels = OrderedDict(), 192
        for name, block_type, options in INCEPTION_V3_BLOCKS:
            blocks[name] = block_type(channels, **options)
            channels = blocks[name].out_channels
        # Split at the auxiliary classifier, which torchvision registers between Mixed_6e and Mixed_7a.
        names = list(blocks)
        split = names.index(_V3_AUX_AFTER) + 1
        stem = _inception_v3_stem(in_channels, small_input)
        self.features = nn.Sequential(OrderedDict([*stem.items(), *((n, blocks[n]) for n in names[:split])]))
        aux_channels = blocks[_V3_AUX_AFTER].out_channels
        self.AuxLogits = InceptionV3Aux(aux_channels, num_classes, adaptive=small_input) if aux_logits else None
        self.last_blocks = nn.Sequential(OrderedDict((n, blocks[n]) for n in names[split:]))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        # torchvision draws truncated normals instead (std 0.01 for GoogLeNet, 0.1 for Inception-v3);
        # He init also keeps the BatchNorm-free paper=True GoogLeNet trainable.
        torchvision_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        if self.transform_input:
            x = _to_tf_range(x)
        x = self.features(x)  # N x 768 x 17 x 17
        use_aux = self.training and self.AuxLogits is not None
        aux = self.AuxLogits(x) if use_aux else None
        x = self.last_blocks(x)  # N x 2048 x 8 x 8
        logits = self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))
        return InceptionOutputs(logits, aux) if use_aux else logits


@register_model(
    input_size=299,
    paper="Szegedy et al. 2016, Rethinking the Inception architecture for computer vision",
    params=[
        published(23_834_568, "torchvision inception_v3(aux_logits=False)"),
        published(
            27_161_264,
            "torchvision inception_v3(weights=None, aux_logits=True); Inception_V3_Weights.IMAGENET1K_V1 num_params",
            aux_logits=True,
        ),
        published(27_161_264, "small_input keeps every weight", small_input=True, aux_logits=True),
    ],
)
def inception_v3(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    aux_logits: bool = False,
    small_input: bool = False,
    transform_input: bool = False,
    dropout: float = 0.5,
) -> InceptionV3:
    """Inception-v3, layer for layer torchvision's ``inception_v3``.

    Input 299x299 (>= 75x75 without the auxiliary classifier), or 32x32 with
    ``small_input=True``. Shapes: (N, in_channels, H, W) -> (N, num_classes); in training
    mode with ``aux_logits=True`` an :class:`InceptionOutputs` of two such tensors.
    The options are :class:`InceptionV3`'s.
    """
    return InceptionV3(num_classes, in_channels, aux_logits=aux_logits, small_input=small_input,
                       transform_input=transform_input, dropout=dropout)
