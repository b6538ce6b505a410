"""Network in Network (Lin, Chen & Yan, "Network In Network", ICLR 2014, arXiv:1312.4400).

Two ideas:

- **mlpconv**: after a k x k convolution, a small multilayer perceptron is applied
  at every pixel, shared across positions - that is, 1x1 convolutions (the
  paper's "cascaded cross channel parametric pooling", ``cccp`` in the authors'
  Caffe files), each followed by ReLU:

  .. math::

      f^{(1)}_{i,j,c} = \\max(w^{(1)\\top}_c x_{i,j} + b_c, 0), \\qquad
      f^{(\\ell)}_{i,j,c} = \\max(w^{(\\ell)\\top}_c f^{(\\ell-1)}_{i,j} + b_c, 0)

- **global average pooling** instead of fully connected layers: the last mlpconv
  has one map per class and the class score is the map's mean - no classifier
  parameters to overfit, and each map is a confidence map of its class.

This file builds the authors' CIFAR-10 model (the Caffe Model Zoo's "NIN-CIFAR10",
gist mavenlin/e56253735ef32c3c296d), for 32x32 inputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .._checks import check_probability
from .registry import published, register_model

__all__ = ["CLASSES", "NIN", "NIN_CIFAR10", "mlpconv", "nin"]

CLASSES = "classes"  # placeholder in a layer table: as many maps as the model has classes

# The authors' CIFAR-10 model: (kernel size of the spatial conv, maps of that conv and of its two 1x1 convs),
# and the 3x3 stride-2 pool ("max" or "avg", followed by dropout) between the mlpconv blocks.
NIN_CIFAR10 = [
    (5, (192, 160, 96)), "max",
    (5, (192, 192, 192)), "avg",
    (3, (192, 192, CLASSES)),
]  # fmt: skip

_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def mlpconv(in_channels: int, kernel_size: int, channels: tuple[int, ...]) -> nn.Sequential:
    """A ``kernel_size`` conv ("same" padding) then 1x1 convs, with ReLU after each.

    ``channels`` are the maps of each conv in turn, e.g. (192, 160, 96): a 5x5 conv to 192
    maps, then a per-pixel MLP 192 -> 160 -> 96. Shapes: (N, in_channels, H, W) -> (N, channels[-1], H, W).
    """
    layers: list[nn.Module] = []
    for i, out_channels in enumerate(channels):
        k = kernel_size if i == 0 else 1
        layers += [nn.Conv2d(in_channels, out_channels, k, padding=k // 2), nn.ReLU(inplace=True)]
        in_channels = out_channels
    return nn.Sequential(*layers)


class NIN(nn.Module):
    """Network in Network: mlpconv blocks joined by pool + dropout, then global average pooling.

    Args:
        config: the layer table, e.g. :data:`NIN_CIFAR10`.
        num_classes: maps of the last 1x1 conv (the ``CLASSES`` placeholder) = outputs.
        in_channels: channels of the input images.
        dropout: drop probability after each pool between blocks (0.5 in the authors' model).

    Layers: ``features`` = block1, pool1, drop1, block2, pool2, drop2, block3 (each block a
    :func:`mlpconv`), then ``avgpool`` = ``AdaptiveAvgPool2d(1)``. The pools are 3x3 stride 2
    with Caffe's rounding up (``ceil_mode=True``): 32 -> 16 -> 8.

    Shapes: (N, in_channels, 32, 32) -> block3 (N, num_classes, 8, 8) -> (N, num_classes).
    """

    def __init__(self, config: list = NIN_CIFAR10, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        check_probability("dropout", dropout)
        layers, block = OrderedDict(), 0
        for item in config:
            if item in _POOLS:  # between blocks: pool (named after the block before it) and dropout
                layers[f"pool{block}"] = _POOLS[item](kernel_size=3, stride=2, ceil_mode=True)
                layers[f"drop{block}"] = nn.Dropout(dropout)
            else:
                block += 1
                kernel_size, channels = item
                channels = tuple(num_classes if c == CLASSES else c for c in channels)
                layers[f"block{block}"] = mlpconv(in_channels, kernel_size, channels)
                in_channels = channels[-1]
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


@register_model(
    input_size=32,
    paper="Lin, Chen & Yan 2014, Network in network",
    params=[
        published(1_158_056, "the 10-class count below + 191,070 (1000 maps in the last 1x1 conv)"),
        published(966_986, "the authors' CIFAR-10 Caffe model (gist mavenlin/e56253735ef32c3c296d)", num_classes=10),
    ],
)
def nin(num_classes: int = 1000, in_channels: int = 3, *, dropout: float = 0.5) -> NIN:
    """Network in Network for CIFAR-10 (32x32 inputs), the authors' released model.

    ========  ==========================================  =============  ==========
    block     layers (each conv followed by ReLU)         output         parameters
    ========  ==========================================  =============  ==========
    mlpconv1  conv 192@5x5, 1x1 160, 1x1 96               96 x 32 x 32   60,928
              3x3/2 max-pool, dropout 0.5                 96 x 16 x 16
    mlpconv2  conv 192@5x5, 1x1 192, 1x1 192              192 x 16 x 16  535,104
              3x3/2 average pool, dropout 0.5             192 x 8 x 8
    mlpconv3  conv 192@3x3, 1x1 192, 1x1 classes          10 x 8 x 8     370,954
              global average pooling                      10
    ========  ==========================================  =============  ==========

    Source: the paper describes the CIFAR-10 network only as "three stacked mlpconv layers"
    with pooling and dropout (Sec. 4.1, 4.2: 10.41% test error, 8.81% with augmentation)
    and gives neither the widths nor a parameter count. The widths, pools and dropout
    above are those of the model the authors released (Caffe Model Zoo, "NIN-CIFAR10",
    gist mavenlin/e56253735ef32c3c296d, 89.6% accuracy; ported to Python in
    Lasagne's Recipes, ``modelzoo/cifar10_nin.py``); the registered count is computed from them.
    Differences from the paper's text: the second pool averages (the text says max
    pooling after every mlpconv), and ReLU follows even the last 1x1 conv, as in that
    model. The authors trained it on GCN + ZCA-whitened images with Caffe's initialization.

    Args:
        dropout: drop probability after the first two blocks.

    Shapes: (N, in_channels, 32, 32) -> (N, num_classes); 28x28 MNIST works too (28 -> 14 -> 7).
    """
    return NIN(NIN_CIFAR10, num_classes=num_classes, in_channels=in_channels, dropout=dropout)
