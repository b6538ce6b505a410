"""Argument checks shared by every part of course_lib (layers, models, training, analysis).

Every check raises ``ValueError`` naming the argument, what was expected and
what was received, so that a wrong shape never broadcasts silently.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from numbers import Real

import torch
from torch import nn

Pair = tuple[int, int]


def as_pair(name: str, value, least: int) -> Pair:
    """An int, a 1-tuple (as ``nn.Conv1d`` stores it) or a pair of ints, each at least ``least``, as a pair."""
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is not None and len(pair) == 1:
        pair = pair * 2
    if pair is None or len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= least for v in pair
    ):
        raise ValueError(f"{name} must be an int or a pair of ints >= {least}, got {value!r}")
    return pair


def as_int(name: str, value, least: int) -> int:
    """An int or a 1-tuple of one (as ``nn.Conv1d`` stores ``stride=(2,)``), at least ``least``, as an int."""
    single = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if not isinstance(single, int) or isinstance(single, bool) or single < least:
        raise ValueError(f"{name} must be an int >= {least} or a 1-tuple of one, got {value!r}")
    return single


def check_rank(name: str, tensor, rank: int, layout: str) -> None:
    """``tensor`` is a torch.Tensor with ``rank`` dimensions, described by ``layout`` e.g. '(N, C, H, W)'."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}")
    if tensor.ndim != rank:
        raise ValueError(f"{name} must have shape {layout} ({rank} dims), got shape {tuple(tensor.shape)}")


def check_probability(name: str, p: float) -> None:
    """0 <= p < 1 (a drop probability of 1 would divide by zero in the rescaling)."""
    if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {p!r}")


def check_flag(name: str, value) -> None:
    """``value`` is a bool (not merely truthy: ``small_input="no"`` must not pass as True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


def check_int(name: str, value, least: int) -> None:
    """``value`` is an int (not a bool) of at least ``least``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")


def check_number(name: str, value, *, positive: bool = False, non_negative: bool = False) -> None:
    """``value`` is a finite real number (not a bool, not a tensor: a fixed hyper-parameter),
    > 0 if ``positive``, >= 0 if ``non_negative``."""
    bound = " > 0" if positive else " >= 0" if non_negative else ""
    if (
        not isinstance(value, Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or (positive and value <= 0)
        or (non_negative and value < 0)
    ):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")


def did_you_mean(value, names) -> str:
    """``"; did you mean 'resnet18'?"`` for the ``names`` closest to a mistyped string ``value``, else ``""``."""
    close = difflib.get_close_matches(value, list(names), n=3) if isinstance(value, str) else []
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def check_choice(name: str, value, choices) -> None:
    """``value`` is one of ``choices``, of the same type (``True`` is not the choice ``1``).

    A mistyped string gets the closest choices as a hint (``"; did you mean 'full'?"``).
    """
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        names = [c for c in choices if isinstance(c, str)]
        shown = sorted(choices) if len(names) == len(choices) else list(choices)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}{did_you_mean(value, names)}")


def check_tensor(name: str, value, least_dims: int = 0, layout: str = "") -> None:
    """``value`` is a torch.Tensor with at least ``least_dims`` dimensions, described by ``layout`` e.g. '(N, C, ...)'."""
    shape = f" of shape {layout}" if layout else ""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor{shape}, got {type(value).__name__}")
    if value.ndim < least_dims:
        raise ValueError(f"{name} must have shape {layout or '...'} (at least {least_dims} dims), "
                         f"got shape {tuple(value.shape)}")


def check_shape(name: str, tensor, shape: tuple, what: str) -> None:
    """``tensor`` is None or a tensor of exactly ``shape`` (described by ``what``, e.g. '(C,)')."""
    if tensor is not None and (not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(shape)):
        got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name} must have shape {what} = {tuple(shape)}, got {got}")


def check_module(name: str, value) -> None:
    """``value`` is a torch.nn.Module."""
    if not isinstance(value, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")


def accepts_unbatched(layout: str, batched: tuple[str, ...] = ("input",), results: tuple[int, ...] | None = None):
    """Let a function written for a batch (``layout`` e.g. ``"(N, C, H, W)"``) also take one sample
    (``"(C, H, W)"``), as PyTorch's convolutions and pooling do: the rule of the whole functional API.

    When the argument named first in ``batched`` has one dimension fewer than ``layout``, every
    argument named in ``batched`` gets a batch axis of 1, and the axis is removed from the result:
    the result itself, each tensor of a tuple result, or only the tuple's items at the positions in
    ``results`` (conv2d_backward's grad_input, not its grad_weight). A tensor of any other rank is
    refused here, naming both shapes.
    """
    rank = layout.count(",") + 1
    unbatched = "(" + layout[1:-1].split(", ", 1)[1] + ")"

    def decorate(function):
        signature = inspect.signature(function)
        position = list(signature.parameters).index(batched[0])

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            first = args[position] if position < len(args) else kwargs.get(batched[0])
            if not isinstance(first, torch.Tensor) or first.ndim == rank:
                return function(*args, **kwargs)  # the function's own checks report a non-tensor
            bound = signature.bind(*args, **kwargs)  # only now: the batched call stays a plain call
            if first.ndim != rank - 1:
                raise ValueError(f"{batched[0]} must have shape {layout} or {unbatched}, got shape {tuple(first.shape)}")
            for name in batched:
                value = bound.arguments.get(name)
                if isinstance(value, torch.Tensor):
                    if value.ndim != first.ndim:
                        raise ValueError(f"{name} must be one sample like {batched[0]} ({first.ndim} dims: {batched[0]} "
                                         f"has shape {tuple(first.shape)}), got shape {tuple(value.shape)}")
                    bound.arguments[name] = value.unsqueeze(0)
            out = function(*bound.args, **bound.kwargs)
            if not isinstance(out, tuple):
                return out.squeeze(0)
            return tuple(t.squeeze(0) if isinstance(t, torch.Tensor) and (results is None or i in results) else t
                         for i, t in enumerate(out))

        return wrapper

    return decorate
