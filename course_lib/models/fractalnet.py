"""FractalNet (Larsson, Maire & Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals", ICLR 2017).

A fractal block is built by repeating one expansion rule (Sec. 2):

.. math::

    f_1(z) = \\mathrm{conv}(z), \\qquad
    f_{C+1}(z) = \\mathrm{join}\\big( (f_C \\circ f_C)(z),\\ \\mathrm{conv}(z) \\big)

where conv is a 3x3 convolution + BatchNorm + ReLU and join is the
*element-wise mean* of its inputs (not a sum, not a concatenation). ``f_C`` has
``C`` columns; column ``c`` (1 = shallowest) is a chain of ``2**(c - 1)``
convolutions, so the deepest column of a block has ``2**(C - 1)`` of them. As
in the paper's Fig. 1, consecutive joins are merged into one join with several
inputs: the last join of a C-column block averages all C columns. There is no
identity shortcut anywhere: every signal passes through a convolution.

A FractalNet stacks ``B`` blocks with a 2x2 max-pool after each. The CIFAR
model (Sec. 4): B = 5 blocks, C = 3 columns, (64, 128, 256, 512, 512)
channels, so 32x32 -> 1x1 and ``B * 2**(C - 1) = 20`` convolutions on the
deepest path ("FractalNet, 20 layers" of Table 1), then a linear classifier.

Drop-path (Sec. 3) regularises the columns against each other:

- *local*: every join drops each of its inputs with probability ``p`` (0.15 in
  the paper), keeping at least one; one draw per join per mini-batch.
- *global*: one column is chosen for the whole network and only it is kept,
  so every column learns to be a good predictor on its own. The paper uses a
  50/50 mix of local and global mini-batches.

Neither is applied in eval mode, where each join averages all its inputs.
``model(x, column=c)`` runs the column-``c`` subnetwork alone (e.g. the deepest,
a plain 20-layer net: the "deepest column alone" rows of Table 1).

Parameters: Table 1 of the paper lists 38.6M for the 20-layer CIFAR model, which
the described architecture does not reproduce: the authors' released generator
(github.com/gustavla/fractalnet, generation/fractalnet.py, same settings) gives
the count recorded with :func:`fractalnet`'s registration, as do other
reimplementations (khanrc/pt.fractalnet notes the gap).

Differences from the authors' Caffe model: conv without bias followed by an
affine BatchNorm (theirs: conv with bias, BatchNorm without scale/shift), the
join before the pooling as the paper describes it (their code pools each
column, then joins), and global average pooling before the classifier (the
same as flattening once the map is 1x1, and it lets other input sizes run).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_int, check_probability
from .registry import published, register_model

__all__ = ["FractalJoin", "FractalBlock", "FractalNet", "FRACTALNET_CIFAR", "fractalnet"]

# The paper's CIFAR/SVHN configuration (Sec. 4).
FRACTALNET_CIFAR = {
    "channels": (64, 128, 256, 512, 512),  # one block per entry
    "columns": 3,
    "dropout_step": 0.1,  # dropout 0, 0.1, 0.2, 0.3, 0.4 in blocks 1-5 ("+ dropout" rows of Table 1)
    "drop_path_local": 0.15,
    "drop_path_global": 0.5,  # share of mini-batches trained on a single column
}


def _conv_unit(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """conv3x3 - dropout - BN - ReLU (the authors' order); (N, C_in, H, W) -> (N, C_out, H, W)."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FractalJoin(nn.Module):
    """Element-wise mean of the columns that reach it; in training, local drop-path first.

    Args:
        columns: the column number of each input, in input order (deepest first).
        drop_prob: local drop-path probability of each input.

    ``forward(inputs)``: a list of same-shape tensors (N, C, H, W) -> (N, C, H, W).
    In training each input is dropped with probability ``drop_prob``, one draw
    per input for the whole mini-batch, and the mean is taken over those kept
    (at least one always is). In eval mode: the mean of all inputs.
    """

    def __init__(self, columns: Sequence[int], drop_prob: float = 0.15):
        super().__init__()
        check_probability("drop_path_local", drop_prob)
        self.columns = tuple(columns)
        self.drop_prob = drop_prob

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.columns):
            raise ValueError(f"inputs must hold one tensor per column {self.columns}, got {len(inputs)}")
        keep = list(inputs)
        if self.training and self.drop_prob > 0:
            survives = torch.rand(len(inputs)) >= self.drop_prob
            if not survives.any():
                survives[torch.randint(len(inputs), ())] = True
            keep = [x for x, s in zip(inputs, survives) if s]
        return torch.stack(keep).mean(dim=0)

    def extra_repr(self) -> str:
        return f"columns={self.columns}, drop_prob={self.drop_prob}"


class _Fractal(nn.Module):
    """``f_C`` before its last join: returns the outputs of its C columns, deepest first.

    ``conv`` is ``conv(z)``, the shallowest column; ``first`` and ``second`` are
    the two copies of ``f_{C-1}`` in ``f_{C-1}(f_{C-1}(z))``, with ``join``
    between them. Columns are numbered as in the whole block, from
    ``first_column + C - 1`` (deepest) down to ``first_column`` (``conv``).
    """

    def __init__(self, num_columns: int, in_channels: int, out_channels: int, dropout: float, drop_prob: float,
                 first_column: int = 1):
        super().__init__()
        self.columns = tuple(range(first_column + num_columns - 1, first_column - 1, -1))
        self.conv = _conv_unit(in_channels, out_channels, dropout)  # conv(z)
        self.first = self.join = self.second = None
        if num_columns > 1:
            deeper = first_column + 1  # f_{C-1} o f_{C-1} carries the C-1 deeper columns
            self.first = _Fractal(num_columns - 1, in_channels, out_channels, dropout, drop_prob, deeper)
            if num_columns > 2:  # f_1 has one output: nothing to join
                self.join = FractalJoin(self.columns[:-1], drop_prob)
            self.second = _Fractal(num_columns - 1, out_channels, out_channels, dropout, drop_prob, deeper)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        outputs = [self.conv(z)]
        if self.first is not None:
            mid = self.first(z)
            mid = self.join(mid) if self.join is not None else mid[0]
            outputs = self.second(mid) + outputs
        return outputs

    def column_forward(self, z: torch.Tensor, column: int) -> torch.Tensor:
        """Column ``column`` alone, a plain chain of convs: conv(z), or the column through both copies of f_{C-1}."""
        if column == self.columns[-1]:
            return self.conv(z)
        return self.second.column_forward(self.first.column_forward(z, column), column)

    def extra_repr(self) -> str:
        return f"columns={self.columns}"


class FractalBlock(nn.Module):
    """One fractal block: ``f_C`` with its final C-input join, then a 2x2 max-pool.

    Args:
        num_columns: C; the deepest column has ``2**(C - 1)`` convs, the block ``2**C - 1``.
        in_channels, out_channels: channels entering and leaving the block.
        dropout: dropout rate after every conv of the block.
        drop_prob: local drop-path probability of every join.

    ``forward(x, column=None)``: (N, C_in, H, W) -> (N, C_out, H/2, W/2).
    """

    def __init__(self, num_columns: int, in_channels: int, out_channels: int, dropout: float = 0.0,
                 drop_prob: float = 0.15):
        super().__init__()
        self.num_columns = num_columns
        self.fractal = _Fractal(num_columns, in_channels, out_channels, dropout, drop_prob)
        self.join = FractalJoin(range(num_columns, 0, -1), drop_prob) if num_columns > 1 else None
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor, column: int | None = None) -> torch.Tensor:
        if column is not None:  # global drop-path, or a single-column subnetwork
            return self.pool(self.fractal.column_forward(x, column))
        outputs = self.fractal(x)
        x = self.join(outputs) if self.join is not None else outputs[0]
        return self.pool(x)


class FractalNet(nn.Module):
    """Fractal blocks with max-pooling after each, global average pool, linear classifier.

    Args:
        num_classes, in_channels: outputs of the classifier, channels of the input images.
        channels: output channels of each block; one block per entry (CIFAR: 64, 128, 256, 512, 512).
        columns: C, columns per block (CIFAR: 3, the 20-layer net; 4 gives 40 layers).
        dropout: dropout rate per block (one per entry of ``channels``), one rate for all blocks,
            or None for the paper's schedule: 0 in the first block, +0.1 per block (0, 0.1, ..., 0.4).
        drop_path_local: probability that a join drops each of its inputs (training only).
        drop_path_global: probability that a training mini-batch runs a single random column.

    ``forward(x, column=None)``: (N, in_channels, H, W) -> (N, num_classes), H and W
    divisible by ``2**len(channels)`` (32x32 for the CIFAR model: 32 -> 1).
    ``column=c`` runs the column-``c`` subnetwork alone: ``len(channels) * 2**(c - 1)`` convs.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        channels: Sequence[int] = FRACTALNET_CIFAR["channels"],
        columns: int = FRACTALNET_CIFAR["columns"],
        dropout: float | Sequence[float] | None = None,
        drop_path_local: float = FRACTALNET_CIFAR["drop_path_local"],
        drop_path_global: float = FRACTALNET_CIFAR["drop_path_global"],
    ):
        super().__init__()
        if not isinstance(channels, (tuple, list)) or not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
        ):
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels!r}")
        check_int("columns", columns, 1)
        if dropout is None:
            rates = tuple(FRACTALNET_CIFAR["dropout_step"] * i for i in range(len(channels)))
        elif isinstance(dropout, (int, float)):
            rates = (dropout,) * len(channels)
        else:
            rates = tuple(dropout)
        if len(rates) != len(channels):
            raise ValueError(f"dropout must hold one rate per block ({len(channels)}), got {dropout!r}")
        for rate in rates:
            check_probability("dropout", rate)
        check_probability("drop_path_local", drop_path_local)
        if not isinstance(drop_path_global, (int, float)) or not 0 <= drop_path_global <= 1:
            raise ValueError(f"drop_path_global must lie in [0, 1], got {drop_path_global!r}")

        self.num_columns = columns
        self.drop_path_global = drop_path_global
        self.blocks = nn.ModuleList()
        for out_channels, rate in zip(channels, rates):
            self.blocks.append(FractalBlock(columns, in_channels, out_channels, rate, drop_path_local))
            in_channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor, column: int | None = None) -> torch.Tensor:
        if column is not None and (not isinstance(column, int) or not 1 <= column <= self.num_columns):
            raise ValueError(f"column must be None or an int in [1, {self.num_columns}], got {column!r}")
        factor = 2 ** len(self.blocks)
        if x.ndim != 4 or x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"x must have shape (N, C, H, W) with H and W divisible by {factor} (one 2x2 pool per block), "
                f"got {tuple(x.shape)}"
            )
        if column is None and self.training and torch.rand(()) < self.drop_path_global:
            column = int(torch.randint(1, self.num_columns + 1, ()))  # global drop-path: one column, this mini-batch
        for block in self.blocks:
            x = block(x, column)
        return self.classifier(torch.flatten(self.avgpool(x), 1))


@register_model(
    input_size=32,
    paper="Larsson, Maire & Shakhnarovich 2017, FractalNet: ultra-deep neural networks without residuals",
    params=[
        published(34_232_488, "computed for the defaults (1000 classes)"),
        published(
            33_724_618,
            "computed: B=5, C=3, 64-128-256-512-512 for CIFAR-10, as the authors' generator "
            "(github.com/gustavla/fractalnet); Larsson et al. 2017, Table 1 lists 38.6M, not reproduced",
            num_classes=10,
        ),
    ],
)
def fractalnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    channels: Sequence[int] = FRACTALNET_CIFAR["channels"],
    columns: int = FRACTALNET_CIFAR["columns"],
    dropout: float | Sequence[float] | None = None,
    drop_path_local: float = FRACTALNET_CIFAR["drop_path_local"],
    drop_path_global: float = FRACTALNET_CIFAR["drop_path_global"],
) -> FractalNet:
    """The 20-layer CIFAR FractalNet (B = 5 blocks, C = 3 columns, 64-128-256-512-512 channels).

    Regularised as in the paper by default: dropout 0-0.4 by block, local drop-path 0.15 and
    global drop-path on half of the mini-batches (``dropout=0.0, drop_path_local=0.0,
    drop_path_global=0.0`` turns all off); the options are :class:`FractalNet`'s. Input 32x32.
    Shapes: (N, in_channels, 32, 32) -> (N, num_classes); ``model(x, column=c)`` runs column c alone.
    """
    return FractalNet(num_classes, in_channels, channels=channels, columns=columns, dropout=dropout,
                      drop_path_local=drop_path_local, drop_path_global=drop_path_global)
