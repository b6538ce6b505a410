"""Each module's train/eval flag, kept: the one rule for running a model "for a moment" in another mode.

``model.train(flag)`` sets the flag of *every* submodule. Code that switches a model to eval mode
and back with ``model.train(was_training)`` therefore wakes up a BatchNorm that was frozen on
purpose (``bn.eval()`` in transfer learning keeps its running statistics fixed while the rest
trains). Here every module's own flag is remembered and put back, one by one:

    with evaluating(model):          # eval mode, no autograd
        logits = model(x)
    # model.training and every submodule's flag as before, a frozen BatchNorm still frozen

Used by ``train.evaluate`` and ``fit``'s validation, ``train.tta_predict``, ``train.lr_range_test``,
``init.lsuv_`` and the counting functions of ``analysis``; ``fit`` trains every epoch with the
flags the model had when it was handed over (:func:`modes_of`, :func:`set_modes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["Modes", "evaluating", "kept_modes", "modes_of", "set_modes"]

Modes = list[tuple[nn.Module, bool]]  # each module of a model with its train/eval flag


def modes_of(model: nn.Module) -> Modes:
    """Every module of ``model`` (itself included) with its flag now."""
    return [(module, module.training) for module in model.modules()]


def set_modes(modes: Modes) -> None:
    """Give each module the flag recorded for it."""
    for module, flag in modes:
        module.training = flag  # not module.train(flag): that would set its children's flags too


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Whatever the block does to the modes, every module of ``model`` gets its own flag back."""
    modes = modes_of(model)
    try:
        yield model
    finally:
        set_modes(modes)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the block; afterwards every module's own flag (:func:`kept_modes`)."""
    with kept_modes(model):
        model.eval()
        with torch.no_grad():
            yield model
