"""Counting a network's parameters and floating-point operations.

Parameters of the common layers (no groups):

.. math::

    \\text{Conv2d}: C_\\text{out} (C_\\text{in} k_h k_w + 1), \\qquad
    \\text{Linear}: n_\\text{out} (n_\\text{in} + 1)

(``+ 1``: the bias). FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``,
which records the matrix products and convolutions the forward pass runs and
counts a multiply-add as **2** FLOPs: a convolution without bias costs

.. math::

    2\\, C_\\text{in} k_h k_w\\, C_\\text{out} H_\\text{out} W_\\text{out}

per image. Papers often quote multiply-accumulates instead: MACs = FLOPs / 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .._checks import check_module
from ..modes import evaluating

__all__ = ["FlopCount", "count_flops", "count_parameters", "parameter_table"]

def _count(parameters) -> int:
    """Total number of entries; ValueError for lazy parameters, whose size is not known yet."""
    total = 0
    for param in parameters:
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError("model has lazy (uninitialized) parameters: run one forward pass before counting")
        total += param.numel()
    return total


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (shared parameters counted once).

    With ``trainable_only=True``, only those with ``requires_grad`` (e.g. the
    new head of a network whose backbone is frozen).
    """
    check_module("model", model)
    return _count(p for p in model.parameters() if p.requires_grad or not trainable_only)


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _rows_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Modules that get a table row: the leaves, and containers that own parameters directly."""
    for name, module in model.named_modules():
        if _is_leaf(module) or next(module.parameters(recurse=False), None) is not None:
            yield name, module


def _shape(output):
    """Shape of a module's output: a tuple for a tensor, a tuple of shapes for a tuple/list, else None."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return tuple(_shape(item) for item in output)
    return None


def _dummy_input(model: nn.Module, input_shape) -> torch.Tensor:
    """Zeros of ``input_shape`` with the dtype and device of the model's first parameter (float32 CPU if none)."""
    if not (isinstance(input_shape, (tuple, list, torch.Size)) and input_shape):
        raise ValueError(f"input_shape must be a tuple of ints like (N, C, H, W), got {input_shape!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in input_shape):
        raise ValueError(f"input_shape must hold ints >= 1, got {input_shape!r}")
    param = next(model.parameters(), None)
    like = {"dtype": param.dtype, "device": param.device} if param is not None else {}
    return torch.zeros(tuple(input_shape), **like)


def parameter_table(model: nn.Module, input_shape=None) -> list[dict]:
    """One row per leaf module (and per container that owns parameters directly), in registration order.

    Row keys: ``name`` (as in ``named_modules``; ``""`` is the model itself),
    ``type`` (class name), ``parameters`` (its own parameters, not its
    children's) and, when ``input_shape`` is given, ``output_shape``: the
    shape of the module's output (first call) in an eval-mode forward pass of
    zeros of ``input_shape``, or None if the pass does not reach it. The
    ``parameters`` column sums to :func:`count_parameters` (unless parameters
    are shared between modules). Plain dicts, ready for ``pandas.DataFrame``.
    """
    check_module("model", model)
    rows = [
        {"name": name, "type": type(module).__name__, "parameters": _count(module.parameters(recurse=False))}
        for name, module in _rows_modules(model)
    ]
    if input_shape is None:
        return rows
    x = _dummy_input(model, input_shape)
    shapes: dict[str, tuple] = {}

    def make_hook(name):
        def hook(module, args, output):  # returns None: a forward hook's return value would replace the output
            shapes.setdefault(name, _shape(output))

        return hook

    modules = dict(model.named_modules())
    handles = [modules[row["name"]].register_forward_hook(make_hook(row["name"])) for row in rows]
    try:
        with evaluating(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [{**row, "output_shape": shapes.get(row["name"])} for row in rows]


@dataclass(frozen=True)
class FlopCount:
    """Result of :func:`count_flops`.

    total: FLOPs of one forward pass (a multiply-add = 2 FLOPs).
    rows: one dict per leaf module, registration order: ``name``, ``type``,
        ``flops`` and ``macs`` of all its calls.
    """

    total: int
    rows: list[dict] = field(default_factory=list)

    @property
    def macs(self) -> int:
        """Multiply-accumulate operations, ``total / 2``."""
        return self.total // 2


def count_flops(model: nn.Module, input_shape) -> FlopCount:
    """FLOPs of one eval-mode forward pass of zeros of ``input_shape`` (batch included), by ``FlopCounterMode``.

    FlopCounterMode counts matrix products (linear layers, einsum, ...),
    convolutions and attention: ``2 * C_in/groups * kH * kW * C_out * H_out * W_out``
    per image for a conv, ``2 * n_in * n_out`` for a linear layer. Bias
    additions, activations, pooling and normalisation count as 0 - they are
    cheap next to the products. Operations a container runs itself (e.g. a
    functional call in its ``forward``) are in ``total`` but in no leaf row.
    """
    check_module("model", model)
    x = _dummy_input(model, input_shape)
    counter = FlopCounterMode(display=False)
    with evaluating(model), counter:
        model(x)
    # FlopCounterMode names modules "<RootClass>.<name in named_modules>".
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    rows = []
    for name, module in model.named_modules():
        if _is_leaf(module):
            flops = counts.get(f"{root}.{name}" if name else root, 0)
            rows.append({"name": name, "type": type(module).__name__, "flops": flops, "macs": flops // 2})
    return FlopCount(total=counter.get_total_flops(), rows=rows)
