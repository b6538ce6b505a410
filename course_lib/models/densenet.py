"""DenseNet (Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks", CVPR 2017).

Inside a dense block every layer receives the feature maps of *all* the
layers before it, concatenated along the channels, and adds ``k`` new maps
(the growth rate):

.. math::

    x_\\ell = H_\\ell([x_0, x_1, \\dots, x_{\\ell-1}])

so the block's output has ``C_0 + L k`` channels. This file builds the
DenseNet-BC form of the paper's ImageNet models (Table 1):

- ``H_l`` = BN-ReLU-Conv1x1(4k) - BN-ReLU-Conv3x3(k): the 1x1 *bottleneck*
  ("B") caps the input of the 3x3 conv at ``4k`` channels;
- transition layers between blocks, BN-ReLU-Conv1x1-AvgPool2x2, keep
  ``floor(theta m)`` of their ``m`` channels (*compression* theta = 0.5, the "C");
- a 7x7 stride-2 stem conv with ``2k`` channels and a 3x3 stride-2 max-pool.

Layers are listed in the order of ``torchvision.models.densenet121`` /
``densenet169``, so :func:`course_lib.models.transfer_state_dict` copies
torchvision's weights. Input: 224x224 images (any size >= 32 works; the
head averages whatever map is left). ``small_input=True`` swaps the stem for a
3x3 stride-1 conv without the max-pool, for 32x32 CIFAR images (the blocks
are unchanged: a 4x4 map reaches the head).

Memory. The plain forward pass concatenates as the formula reads: layer ``l``
gets a new tensor ``[x_0, ..., x_{l-1}]`` of ``C_0 + (l - 1) k`` channels, and its
first batch norm keeps that tensor for the backward pass, so the activations a
block keeps grow with the *square* of its depth. ``memory_efficient=True``
(Pleiss et al. 2017, "Memory-efficient implementation of DenseNets"; torchvision's
option of the same name) recomputes each layer's concatenation, BN, ReLU and 1x1
conv during the backward pass (``torch.utils.checkpoint``) instead of keeping them:
the same outputs and gradients, activations linear in depth, more compute. Like
torchvision's, the recomputation runs the first batch norm of each layer a second
time in training mode, so its running statistics take two steps per mini-batch.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._checks import check_flag, check_probability
from .registry import published, register_model

__all__ = ["DENSENET_BLOCKS", "DenseBlock", "DenseNet", "densenet121", "densenet169"]

# Layers per dense block (paper, Table 1). Growth rate k = 32 for both.
DENSENET_BLOCKS: dict[str, tuple[int, ...]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
}


def _dense_layer(in_channels: int, growth_rate: int, bn_size: int, drop_rate: float) -> nn.Sequential:
    """H_l: BN-ReLU-Conv1x1(bn_size k)-BN-ReLU-Conv3x3(k); (N, C, H, W) -> (N, k, H, W)."""
    inner = bn_size * growth_rate
    layers = OrderedDict(
        norm1=nn.BatchNorm2d(in_channels),
        relu1=nn.ReLU(inplace=True),
        conv1=nn.Conv2d(in_channels, inner, kernel_size=1, bias=False),
        norm2=nn.BatchNorm2d(inner),
        relu2=nn.ReLU(inplace=True),
        conv2=nn.Conv2d(inner, growth_rate, kernel_size=3, padding=1, bias=False),
    )
    if drop_rate > 0:
        layers["dropout"] = nn.Dropout(drop_rate)
    return nn.Sequential(layers)


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed the concatenation of the block input and all earlier outputs.

    ``memory_efficient=True`` recomputes each layer's concatenation-BN-ReLU-conv1x1 in the
    backward pass instead of keeping it (see the module docstring): same results, activation
    memory linear instead of quadratic in ``num_layers``.

    Shapes: (N, C, H, W) -> (N, C + num_layers * growth_rate, H, W).
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0,
                 memory_efficient: bool = False):
        super().__init__()
        check_flag("memory_efficient", memory_efficient)
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = _dense_layer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate)
        self.out_channels = in_channels + num_layers * growth_rate
        self.memory_efficient = memory_efficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled():
            return self._forward_recomputing(x)
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)  # [x_0, ..., x_{l-1}] grows by k channels per layer
        return x

    def _forward_recomputing(self, x: torch.Tensor) -> torch.Tensor:
        """The same function; for backward it keeps, per layer, only its k new maps and the
        bn_size k-channel maps around its 3x3 conv (the concatenation and the 1x1 conv are recomputed)."""
        features = [x]
        for layer in self.values():
            def bottleneck(*maps, layer=layer):  # [x_0, ..., x_{l-1}] -> BN-ReLU-conv1x1, (N, bn_size k, H, W)
                return layer.conv1(layer.relu1(layer.norm1(torch.cat(maps, dim=1))))

            inner = checkpoint(bottleneck, *features, use_reentrant=False)
            new = layer.conv2(layer.relu2(layer.norm2(inner)))
            if hasattr(layer, "dropout"):  # drop_rate > 0
                new = layer.dropout(new)
            features.append(new)
        return torch.cat(features, dim=1)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-Conv1x1-AvgPool2x2 between dense blocks; (N, C, H, W) -> (N, C', H/2, W/2)."""
    return nn.Sequential(
        OrderedDict(
            norm=nn.BatchNorm2d(in_channels),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            pool=nn.AvgPool2d(kernel_size=2, stride=2),
        )
    )


def _stem(in_channels: int, out_channels: int, small_input: bool) -> OrderedDict:
    """7x7/2 conv + 3x3/2 max-pool (224 -> 56), or a 3x3/1 conv alone for 32x32 inputs."""
    if small_input:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    stem = OrderedDict(conv0=conv, norm0=nn.BatchNorm2d(out_channels), relu0=nn.ReLU(inplace=True))
    if not small_input:
        stem["pool0"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return stem


class DenseNet(nn.Module):
    """DenseNet-BC: stem, dense blocks joined by compressing transitions, BN-ReLU, global average pool, linear.

    Args:
        block_config: layers per dense block, e.g. (6, 12, 24, 16) for DenseNet-121.
        growth_rate: k, the channels each dense layer adds.
        num_init_features: channels of the stem conv (2k in the paper).
        bn_size: the bottleneck 1x1 conv has ``bn_size * k`` channels (4k in the paper).
        compression: theta in (0, 1]: a transition keeps ``int(theta * m)`` of its ``m`` channels.
        drop_rate: dropout after each dense layer (0 for the ImageNet models; 0.2 on CIFAR without augmentation).
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        small_input: 3x3 stride-1 stem without max-pool, for 32x32 inputs.
        memory_efficient: recompute instead of keep inside the dense blocks (see :class:`DenseBlock`).

    Shapes: (N, in_channels, H, W) -> (N, num_classes). DenseNet-121 at 224x224:
    stem 56x56x64 -> block1 56x56x256 -> trans 28x28x128 -> block2 28x28x512 ->
    trans 14x14x256 -> block3 14x14x1024 -> trans 7x7x512 -> block4 7x7x1024 -> 1000.
    """

    def __init__(
        self,
        block_config: tuple[int, ...] = DENSENET_BLOCKS["densenet121"],
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        memory_efficient: bool = False,
    ):
        super().__init__()
        if not (isinstance(compression, (int, float)) and 0 < compression <= 1):
            raise ValueError(f"compression must lie in (0, 1], got {compression!r}")
        check_probability("drop_rate", drop_rate)
        check_flag("small_input", small_input)

        self.features = nn.Sequential(_stem(in_channels, num_init_features, small_input))
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i}", block)
            channels = block.out_channels
            if i < len(block_config):
                self.features.add_module(f"transition{i}", _transition(channels, int(channels * compression)))
                channels = int(channels * compression)
        self.features.add_module("norm5", nn.BatchNorm2d(channels))  # followed by ReLU in forward
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        self._init_weights()

    def _init_weights(self) -> None:
        """As torchvision (and the authors' Torch code): He-normal convs, BN to identity, zero linear bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.features(x))  # (N, C, h, w)
        return self.classifier(torch.flatten(self.avgpool(x), 1))


_PAPER = "Huang, Liu, van der Maaten & Weinberger 2017, Densely connected convolutional networks"


@register_model(
    paper=_PAPER,
    params=[published(7_978_856, "torchvision.models.densenet121 (Huang et al. 2017, Table 1, k = 32)")],
)
def densenet121(
    num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, drop_rate: float = 0.0
) -> DenseNet:
    """DenseNet-121 (k = 32, blocks 6-12-24-16), layer for layer torchvision's ``densenet121``.

    Args:
        small_input: a 3x3 stride-1 stem without max-pool, for 32x32 inputs (default: 224x224).
        drop_rate: dropout after each dense layer.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """
    return DenseNet(DENSENET_BLOCKS["densenet121"], num_classes=num_classes, in_channels=in_channels,
                    small_input=small_input, drop_rate=drop_rate)


@register_model(
    paper=_PAPER,
    params=[published(14_149_480, "torchvision.models.densenet169 (Huang et al. 2017, Table 1, k = 32)")],
)
def densenet169(
    num_classes: int = 1000, in_channels: int = 3, *, small_input: bool = False, drop_rate: float = 0.0
) -> DenseNet:
    """DenseNet-169 (k = 32, blocks 6-12-32-32), layer for layer torchvision's ``densenet169``; options as
    :func:`densenet121`. Shapes: (N, in_channels, H, W) -> (N, num_classes)."""
    return DenseNet(DENSENET_BLOCKS["densenet169"], num_classes=num_classes, in_channels=in_channels,
                    small_input=small_input, drop_rate=drop_rate)
