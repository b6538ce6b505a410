"""LeNet: LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), 1998) and the modern PyTorch variant of the lectures.

Both are two *stages* - a 5x5 convolution, a nonlinearity, a 2x2 stride-2
pooling - followed by fully connected layers:

.. math::

    \\text{side after a stage} = \\lfloor (s + 2p - 4) / 2 \\rfloor

- ``lenet5``: the 1998 design, 6 and 16 maps, then 120, 84 and the classes.
  It was designed for 32x32 inputs (MNIST's 28x28 digits centred in a 32x32
  field); ``input_size=28`` pads the first convolution by 2 instead, which
  gives the same shapes: 32 -> C1 28 -> S2 14 -> C3 10 -> S4 5 -> 16*5*5 = 400.
- ``lenet_modern``: the variant of the lecture code (PyImageSearch's
  PyTorch LeNet, the layer sizes of Caffe's MNIST example): 20 and 50 maps
  with ReLU and max-pooling, then 500 and the classes, and a log-softmax
  output: 28 -> 24 -> 12 -> 8 -> 4, 50*4*4 = 800.

Both are built by :class:`LeNet` from their layer sizes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .._checks import check_choice, check_flag, check_int
from ..layers.geometry import output_size
from .registry import published, register_model

__all__ = ["LeNet", "lenet5", "lenet_modern"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}

_PAPER = "LeCun, Bottou, Bengio & Haffner 1998, Gradient-based learning applied to document recognition"


def _stage_side(side: int, padding: int) -> int:
    """Side of the map after one stage: 5x5 conv (``padding``), then 2x2 stride-2 pool."""
    return output_size(output_size(side, 5, padding=padding), 2, stride=2)


class LeNet(nn.Module):
    """Two conv stages (5x5 conv, activation, 2x2/2 pool) and a fully connected classifier.

    Args:
        conv_channels: maps of the two convolutions, e.g. (6, 16) for LeNet-5.
        hidden: widths of the hidden fully connected layers, e.g. (120, 84).
        num_classes, in_channels: outputs of the last layer, channels of the input images.
        input_size: side of the (square) input images; the model checks it in ``forward``.
        padding: zero padding of the first convolution (2 turns a 28x28 input into LeNet-5's 32x32).
        activation: ``"tanh"``, ``"sigmoid"`` or ``"relu"``, after every layer but the last.
        pool: ``"avg"`` or ``"max"``.
        log_softmax: end with ``nn.LogSoftmax(dim=1)`` (log-probabilities, for ``nn.NLLLoss``).

    Layers: ``features`` = conv1, act1, pool1, conv2, act2, pool2; ``classifier`` =
    flatten, fc1, act3, ..., the last fc (and log_softmax). Shapes:
    (N, in_channels, input_size, input_size) -> (N, conv_channels[1], s, s) -> (N, num_classes).
    """

    def __init__(
        self,
        conv_channels: tuple[int, int],
        hidden: tuple[int, ...],
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 32,
        padding: int = 0,
        activation: str = "tanh",
        pool: str = "avg",
        log_softmax: bool = False,
    ):
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("pool", pool, POOLS)
        check_flag("log_softmax", log_softmax)
        check_int("input_size", input_size, 1)
        check_int("padding", padding, 0)
        try:
            side = _stage_side(_stage_side(input_size, padding), 0)
        except ValueError:  # a window no longer fits: say which argument is at fault
            raise ValueError(
                f"input_size is too small for two 5x5 conv + 2x2 pool stages, got {input_size!r}"
            ) from None
        self.input_size = input_size
        act, pool_layer = ACTIVATIONS[activation], POOLS[pool]

        features = OrderedDict()
        channels, pad = in_channels, padding
        for i, out_channels in enumerate(conv_channels, start=1):
            features[f"conv{i}"] = nn.Conv2d(channels, out_channels, kernel_size=5, padding=pad)
            features[f"act{i}"] = act()
            features[f"pool{i}"] = pool_layer(kernel_size=2, stride=2)
            channels, pad = out_channels, 0
        self.features = nn.Sequential(features)

        classifier = OrderedDict(flatten=nn.Flatten())
        widths = [channels * side * side, *hidden, num_classes]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            classifier[f"fc{i}"] = nn.Linear(n_in, n_out)
            if i < len(widths) - 1:
                classifier[f"act{len(conv_channels) + i}"] = act()
        if log_softmax:
            classifier["log_softmax"] = nn.LogSoftmax(dim=1)
        self.classifier = nn.Sequential(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"x must have shape (N, C, {self.input_size}, {self.input_size}) for this model "
                f"(input_size={self.input_size}), got {tuple(x.shape)}"
            )
        return self.classifier(self.features(x))


@register_model(
    input_size=32,
    paper=_PAPER,
    params=[
        published(146_156, "the 10-class, 1-channel count below + 300 (3 input channels in C1) "
                  "+ 84,150 (1000 classes in the output layer)"),
        published(61_706, "simplified LeNet-5 as in Dive into Deep Learning, Sec. 7.6 (LeCun et al. 1998, Fig. 2), "
                  "32x32 inputs", num_classes=10, in_channels=1),
        published(61_706, "the same network on 28x28 MNIST, C1 padded by 2 (Dive into Deep Learning, Sec. 7.6)",
                  num_classes=10, in_channels=1, input_size=28),
    ],
)
def lenet5(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    activation: str = "tanh",
    pool: str = "avg",
    input_size: int = 32,
) -> LeNet:
    """LeNet-5 as it is usually built today (LeCun et al. 1998, Fig. 2).

    ======  =================================  ===============  ==========
    layer   what                               output (32x32)   parameters
    ======  =================================  ===============  ==========
    C1      conv 6@5x5                         6 x 28 x 28      156
    S2      2x2 pool, stride 2                 6 x 14 x 14      0
    C3      conv 16@5x5 (all 6 input maps)     16 x 10 x 10     2,416
    S4      2x2 pool, stride 2                 16 x 5 x 5       0
    C5      fc 400 -> 120                      120              48,120
    F6      fc 120 -> 84                       84               10,164
    output  fc 84 -> classes                   10               850
    ======  =================================  ===============  ==========

    Args:
        activation: ``"tanh"`` (default, the paper's squashing function up to scale),
            ``"sigmoid"`` (as in Dive into Deep Learning) or ``"relu"``.
        pool: ``"avg"`` (default, close to the paper's subsampling) or ``"max"``.
        input_size: 32 (the paper's input) or 28 (MNIST as is: C1 gets ``padding=2``).

    Shapes: (N, in_channels, input_size, input_size) -> (N, num_classes) logits.

    Simplifications of the 1998 network, whose trainable parameters (the per-layer
    counts of the paper's Sec. II.B) sum to 156 + 12 + 1,516 + 32 + 48,120 + 10,164 = 60,000:

    - S2 and S4 multiplied the 2x2 sum by a trainable coefficient, added a trainable bias
      and applied the sigmoid (2 parameters per map: 12 and 32); here they are plain
      average (or max) pools with no parameters.
    - C3 connected each of its 16 maps to a subset of S2's 6 maps (the paper's Table I,
      60 connections, 1,516 parameters) to break symmetry; here every map sees all 6 (2,416).
    - C5 is a 5x5 convolution in the paper; on a 5x5 map it is exactly this 400 -> 120
      linear layer (same 48,120 parameters).
    - The nonlinearity was the scaled ``1.7159 tanh(2a/3)``; here plain tanh.
    - The output was a layer of Euclidean RBF units with fixed (not trained) +-1 codes
      drawn as 7x12 bitmaps; here a linear layer (850 trainable parameters) read with
      softmax / cross-entropy.

    For 10 classes and one channel, the paper's 60,000 + 900 (full C3) - 44 (no subsampling
    coefficients) + 850 (linear output) give the count in the registration: that of the
    simplified LeNet-5 of the textbooks (e.g. Dive into Deep Learning, Sec. 7.6: sigmoid,
    average pooling, C1 padded by 2 on 28x28 MNIST).
    """
    check_choice("input_size", input_size, (28, 32))
    return LeNet(
        conv_channels=(6, 16),
        hidden=(120, 84),
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        padding=(32 - input_size) // 2,
        activation=activation,
        pool=pool,
    )


@register_model(
    input_size=28,
    paper=f"{_PAPER} (layer sizes of Caffe's MNIST example, examples/mnist/lenet.prototxt)",
    params=[
        published(928_070, "the 10-class, 1-channel count below + 1,000 (3 input channels in conv1) "
                  "+ 495,990 (1000 classes in the last layer)"),
        published(431_080, "lecture seed 004 / Caffe examples/mnist/lenet.prototxt on 28x28 MNIST",
                  num_classes=10, in_channels=1),
    ],
)
def lenet_modern(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    input_size: int = 28,
    log_softmax: bool = True,
) -> LeNet:
    """The PyTorch LeNet of the lecture code: conv 20@5x5, ReLU, 2x2 max-pool, conv 50@5x5, ReLU,
    2x2 max-pool, fc 800 -> 500, ReLU, fc 500 -> classes, log-softmax: the layer sizes of
    Caffe's MNIST LeNet (``examples/mnist/lenet.prototxt``).

    Args:
        input_size: side of the input images, 28 by default (any side >= 16: the
            flattened size is ``50 s^2`` with ``s = ((input_size - 4) // 2 - 4) // 2``,
            e.g. 800 at 28, 1,250 at 32).
        log_softmax: end with ``LogSoftmax(dim=1)`` as the lecture code does (default),
            to train with ``nn.NLLLoss``. ``nn.CrossEntropyLoss`` gives the same loss on
            these outputs too (log-softmax of log-probabilities changes nothing);
            ``log_softmax=False`` returns plain logits like every other model of the zoo.

    Shapes: (N, in_channels, input_size, input_size) -> (N, num_classes).
    """
    return LeNet(
        conv_channels=(20, 50),
        hidden=(500,),
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        activation="relu",
        pool="max",
        log_softmax=log_softmax,
    )
