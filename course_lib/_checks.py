"""Argument checks shared by every part of course_lib (layers, models, training, analysis).

Every check raises ``ValueError`` naming the argument, what was expected and
what was received, so that a wrong shape never broadcasts silently.
"""

from __future__ import annotations

import torch

Pair = tuple[int, int]


def as_pair(name: str, value, least: int) -> Pair:
    """An int or a pair of ints, each at least ``least``, as a pair."""
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= least for v in pair
    ):
        raise ValueError(f"{name} must be an int or a pair of ints >= {least}, got {value!r}")
    return pair


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
