"""How much memory a forward pass leaves behind for the backward pass, measured rather than estimated.

Training needs, besides the weights, the activations that the backward pass will
read: a convolution keeps its input (to compute the weight gradient), a ReLU its
output, a batch norm its input. They are allocated during the forward pass and
live until the backward pass has used them, so they, not the weights, dominate
the memory of training a CNN at a large batch size.

:func:`activation_memory` runs one forward pass and watches every operation
PyTorch executes (a ``TorchDispatchMode``, below autograd), with three views of
the same pass:

- ``kept_bytes``: the storages created during the pass that are still alive when
  it returns: what autograd holds for the backward pass, plus the output. This
  is the memory that ``torch.utils.checkpoint`` (recompute instead of keep)
  reduces, and it is measured the same way with or without it.
- ``saved_bytes``: the storages autograd saved for backward
  (``torch.autograd.graph.saved_tensors_hooks``), the weights excluded; it may
  include the input. Tensors saved *inside* a checkpointed region are invisible
  here (checkpoint installs its own hooks), so compare checkpointed models by
  ``kept_bytes``.
- ``allocated_bytes`` and ``allocated_by_op``: the bytes of every new storage an
  operation wrote, by operation (``"cat"``, ``"convolution"``, ...): the traffic
  of the pass, e.g. the copies a concatenation makes. Views and in-place
  operations allocate nothing.

Bytes are counted once per storage (a view and its base are one allocation), on
any device.
"""

from __future__ import annotations

import gc
import weakref
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .._checks import check_flag, check_module
from ..modes import kept_modes

__all__ = ["ActivationMemory", "activation_memory"]


@dataclass(frozen=True)
class ActivationMemory:
    """Result of :func:`activation_memory` (all sizes in bytes).

    kept_bytes: storages created by the forward pass and alive after it (held for backward, and the output).
    saved_bytes: storages autograd saved for backward, weights excluded (the input included if saved).
    allocated_bytes: all new storages the pass wrote, alive or freed since.
    allocated_by_op: ``allocated_bytes`` split by operation name (``"convolution"``, ``"cat"``, ...).
    """

    kept_bytes: int
    saved_bytes: int
    allocated_bytes: int
    allocated_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def kept_mb(self) -> float:
        """``kept_bytes`` in megabytes (10**6 bytes)."""
        return self.kept_bytes / 1e6


def _storage_key(tensor: torch.Tensor) -> tuple:
    storage = tensor.untyped_storage()
    return (storage.device, storage.data_ptr())


class _AllocationTracker(TorchDispatchMode):
    """Records, for every operation, the output tensors whose storage none of its inputs already had."""

    def __init__(self):
        super().__init__()
        self.created: list[tuple[weakref.ref, int]] = []  # (the tensor, its storage's bytes)
        self.by_op: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        new = {}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and _storage_key(t) not in inputs:  # not a view, not in-place
                new.setdefault(_storage_key(t), t)
        for tensor in new.values():
            nbytes = tensor.untyped_storage().nbytes()
            self.created.append((weakref.ref(tensor), nbytes))
            self.by_op[func.overloadpacket.__name__] += nbytes
        return out


def activation_memory(model: nn.Module, x: torch.Tensor, *, train: bool = True) -> ActivationMemory:
    """Measure the memory of one forward pass of ``model`` on ``x``, with autograd on.

    Args:
        model: any module; it runs in training mode (``train=True``, batch norm on batch
            statistics, dropout active) or eval mode, and gets its own modes back afterwards.
        x: the input batch, e.g. (N, C, H, W); it need not require grad (the weights do).
        train: the mode to measure in.

    Returns an :class:`ActivationMemory`; the output of the pass is dropped.
    """
    check_module("model", model)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor input batch such as (N, C, H, W), got {type(x).__name__}")
    check_flag("train", train)
    weights = {_storage_key(p) for p in model.parameters()}
    saved: dict[tuple, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in weights:
            saved[key] = tensor.untyped_storage().nbytes()
        return tensor

    tracker = _AllocationTracker()
    with kept_modes(model), torch.enable_grad():
        model.train(train)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), tracker:
            output = model(x)
        gc.collect()  # nothing of the pass should survive by a reference cycle alone
        alive: dict[tuple, int] = {}
        for ref, nbytes in tracker.created:
            tensor = ref()
            if tensor is not None:
                alive[_storage_key(tensor)] = nbytes
        del output
    return ActivationMemory(
        kept_bytes=sum(alive.values()),
        saved_bytes=sum(saved.values()),
        allocated_bytes=sum(tracker.by_op.values()),
        allocated_by_op=dict(tracker.by_op),
    )
