"""Highway networks (Srivastava, Greff & Schmidhuber, "Training Very Deep Networks", NIPS 2015).

A highway layer lets each unit choose between transforming its input and
carrying it through unchanged:

.. math::

    y = H(x) \\cdot T(x) + x \\cdot (1 - T(x)), \\qquad T(x) = \\sigma(W_T x + b_T)

``T`` is the *transform gate* and ``C = 1 - T`` the *carry gate*. With a
negative gate bias ``b_T`` every layer starts close to the identity, so a stack
of tens of layers trains like a shallow net at first (topic T58; the residual
block of ResNet is the gate-free version ``y = H(x) + x``).

Two models of the paper, both for 28x28 MNIST digits:

- :func:`highway_net`: the fully connected nets of the optimisation experiments
  (Sec. 3.1, Fig. 1): "each layer has 50 blocks"; "the first layer is a fully
  connected plain layer followed by 9, 19, 49, or 99 fully connected plain or
  highway layers"; then a softmax layer. The paper gives ~5000 parameters per
  highway layer (2 x (50 x 50 + 50) = 5,100) but no total.
- :func:`highway_convnet`: the 10-layer convolutional highway nets of Table 1
  (MNIST, widths 16 and 32), laid out as in the authors' released Caffe model
  (github.com/flukeskywalker/highway-networks, examples/highways/mnist-10layers):
  a plain 5x5 conv, eight 3x3 highway convs in three stages separated by
  max-pooling, dropout, and a linear classifier.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layers import HighwayLayer
from ..layers.geometry import output_size
from .._checks import check_flag, check_int, check_number
from .registry import published, register_model

__all__ = [
    "HighwayNet",
    "HighwayConv2d",
    "HighwayConvNet",
    "HIGHWAY_CONVNET_STAGES",
    "highway_net",
    "highway_convnet",
]


class HighwayNet(nn.Module):
    """Fully connected highway net: plain layer, ``depth - 1`` highway layers, linear classifier.

    ``depth`` counts layers as the paper does: a "10-layer" highway net is one
    plain layer followed by 9 highway layers (the classifier is not counted).

    Args:
        in_features: inputs per example (784 for 28x28 MNIST).
        num_classes: outputs of the classifier.
        depth: plain + highway layers, >= 2 (the paper: 10, 20, 50, 100).
        width: units per layer (the paper: 50 for highway nets, 71 for plain nets).
        gate_bias: initial transform-gate bias ``b_T``; negative starts every
            layer near carry (identity).

    Shapes: (N, C, H, W) with ``C*H*W == in_features``, or (N, in_features) -> (N, num_classes).
    """

    def __init__(
        self, in_features: int, num_classes: int, *, depth: int = 10, width: int = 50, gate_bias: float = -2.0
    ):
        super().__init__()
        check_int("depth", depth, 2)
        check_int("width", width, 1)
        check_number("gate_bias", gate_bias)
        self.in_features = in_features
        # The first layer changes the width, so it cannot carry its input: a plain layer.
        self.stem = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(inplace=True))
        self.highway = nn.Sequential(*(HighwayLayer(width, gate_bias=gate_bias) for _ in range(depth - 1)))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(
                f"x must have shape (N, C, H, W) with C*H*W == {self.in_features}, or (N, {self.in_features}); "
                f"got {tuple(x.shape)}"
            )
        x = torch.flatten(x, 1)  # (N, in_features)
        return self.classifier(self.highway(self.stem(x)))


class HighwayConv2d(nn.Module):
    """Convolutional highway layer: ``y = ReLU(conv_H(x)) * T + x * (1 - T)``, ``T = sigmoid(conv_T(x))``.

    Both convolutions are ``kernel_size`` x ``kernel_size``, stride 1, "same"
    padding, so that ``x`` and ``y`` have the same shape, as the carry requires.
    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, gate_bias: float = -1.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding keeps the shape), got {kernel_size!r}")
        padding = kernel_size // 2
        self.transform = nn.Conv2d(channels, channels, kernel_size, padding=padding)
        self.gate = nn.Conv2d(channels, channels, kernel_size, padding=padding)
        with torch.no_grad():
            self.gate.bias.fill_(gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return torch.relu(self.transform(x)) * t + x * (1 - t)


# The authors' 10-layer MNIST model, stage by stage: (highway convs, max-pool kernel, max-pool stride,
# dropout rate before the stage). The plain 5x5 conv opens stage 1; dropout 0.5 precedes the classifier.
HIGHWAY_CONVNET_STAGES: tuple[tuple[int, int, int, float], ...] = (
    (2, 3, 2, 0.2),
    (3, 3, 2, 0.3),
    (3, 2, 2, 0.4),
)
_CLASSIFIER_DROPOUT = 0.5


class HighwayConvNet(nn.Module):
    """Convolutional highway net for MNIST: plain 5x5 conv, 3 stages of highway convs + max-pool, linear.

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        width: feature maps of every layer (Table 1: 16 or 32; the released model: 32).
        gate_bias: initial transform-gate bias (-1 in the released model).
        dropout: the released model's dropout (0.2, 0.3, 0.4 before the stages, 0.5 before the
            classifier); False drops none.
        input_size: side of the square input images (28 for MNIST); fixes the classifier's inputs.

    Pooling rounds up (``ceil_mode=True``) as Caffe does, so 28x28 inputs give
    24 (5x5 valid conv) -> 12 -> 6 -> 3: the classifier sees ``width * 3 * 3`` features.

    Shapes: (N, in_channels, input_size, input_size) -> (N, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        width: int = 32,
        gate_bias: float = -1.0,
        dropout: bool = True,
        input_size: int = 28,
    ):
        super().__init__()
        check_int("width", width, 1)
        check_int("input_size", input_size, 5)  # the 5x5 valid conv
        check_number("gate_bias", gate_bias)
        check_flag("dropout", dropout)

        def drop(p: float) -> nn.Module:
            return nn.Dropout(p) if dropout else nn.Identity()

        self.input_size = input_size
        layers: list[nn.Module] = []
        size = output_size(input_size, 5)  # after the 5x5 valid conv
        for i, (num_highway, kernel, stride, p) in enumerate(HIGHWAY_CONVNET_STAGES):
            layers.append(drop(p))
            if i == 0:
                layers += [nn.Conv2d(in_channels, width, kernel_size=5), nn.ReLU(inplace=True)]
            layers += [HighwayConv2d(width, 3, gate_bias) for _ in range(num_highway)]
            layers.append(nn.MaxPool2d(kernel, stride, ceil_mode=True))
            if size < kernel:
                raise ValueError(
                    f"input_size {input_size} is too small: stage {i + 1}'s {kernel}x{kernel} max-pool "
                    f"would get a {size}x{size} map (28 for MNIST)"
                )
            size = output_size(size, kernel, stride, ceil_mode=True)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(drop(_CLASSIFIER_DROPOUT), nn.Linear(width * size * size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"x must have shape (N, C, {self.input_size}, {self.input_size}) (input_size), got {tuple(x.shape)}"
            )
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(
    input_size=28,
    paper="Srivastava, Greff & Schmidhuber 2015, Training very deep networks",
    params=[
        published(214_550, "computed for the defaults (3x28x28 -> 1000); the paper gives no total"),
        published(
            85_660,
            "computed for the paper's MNIST net (Sec. 3.1): 784 -> 50, 9 highway layers of 2 x (50 x 50 + 50) = 5,100 "
            "('~5000 per layer'), 50 -> 10",
            num_classes=10,
            in_channels=1,
        ),
    ],
)
def highway_net(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    depth: int = 10,
    width: int = 50,
    gate_bias: float = -2.0,
    input_size: int = 28,
) -> HighwayNet:
    """Fully connected highway net of the paper's Fig. 1 experiments (10 layers of 50 units by default).

    The images are flattened: ``in_features = in_channels * input_size**2``
    (784 for MNIST: ``in_channels=1``, ``input_size=28``). ``depth`` counts the
    plain first layer and the ``depth - 1`` highway layers. ``gate_bias``: the
    paper suggests -1 to -3 (Sec. 2.2) and searched the initial transform-gate
    bias between -1 and -10 for these runs (Sec. 3.1); -2 by default.

    Shapes: (N, in_channels, input_size, input_size) -> (N, num_classes).
    """
    check_int("input_size", input_size, 1)
    return HighwayNet(in_channels * input_size * input_size, num_classes, depth=depth, width=width, gate_bias=gate_bias)


@register_model(
    input_size=28,
    paper="Srivastava, Greff & Schmidhuber 2015, Training very deep networks",
    params=[
        published(439_400, "computed for the defaults (3x28x28 -> 1000)"),
        published(
            151_690,
            "Srivastava et al. 2015, Table 1, Highway 10-layer (width 32): 151 K",
            num_classes=10,
            in_channels=1,
        ),
        published(
            38_986,
            "Srivastava et al. 2015, Table 1, Highway 10-layer (width 16): 39 K",
            num_classes=10,
            in_channels=1,
            width=16,
        ),
    ],
)
def highway_convnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    width: int = 32,
    gate_bias: float = -1.0,
    dropout: bool = True,
    input_size: int = 28,
) -> HighwayConvNet:
    """10-layer convolutional highway net for MNIST (paper's Table 1; the authors' released Caffe model).

    The options are :class:`HighwayConvNet`'s. Shapes: (N, in_channels, input_size, input_size) -> (N, num_classes).
    """
    return HighwayConvNet(num_classes, in_channels, width=width, gate_bias=gate_bias, dropout=dropout,
                          input_size=input_size)
