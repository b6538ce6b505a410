"""Comparisons for lab tests that say *why* an answer is wrong, not only that it is."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["check_tensor", "describe_difference", "matches", "raised", "tensor_message", "RTOL", "ATOL"]

# How close an answer must be. An answer computed in float32 is right: its rounding error grows with
# the size of the values (a sum of 75 products of order-1 numbers is off by ~1e-6 in float32), so the
# absolute tolerance scales with the reference's largest value. A real mistake is off by far more.
RTOL = 1e-5
ATOL = 1e-5  # times max(1, largest |value| of the reference)


def _tolerance(expected: torch.Tensor) -> dict:
    """The rule above as ``torch.testing.assert_close``'s atol and rtol for the reference ``expected``."""
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    return {"atol": ATOL * scale, "rtol": RTOL}


def _difference(actual: torch.Tensor, expected: torch.Tensor) -> str | None:
    """None if ``actual`` equals ``expected`` (same shapes) within the tolerance, else the report of
    ``torch.testing.assert_close``: how many values differ, the greatest absolute and relative differences,
    where, and what is allowed. Both are compared as float64 on the CPU, so float32 answers and GPU tensors
    are judged by the values alone."""
    try:
        torch.testing.assert_close(
            actual.detach().double().cpu(), expected.detach().double().cpu(), **_tolerance(expected)
        )
    except AssertionError as difference:
        return str(difference).split("\n\n", 1)[-1]  # without its headline "Tensor-likes are not close!"
    return None


def matches(actual, expected: torch.Tensor) -> bool:
    """``actual`` is a tensor of ``expected``'s shape whose every value is within the tolerance."""
    return (isinstance(actual, torch.Tensor) and not actual.is_complex()
            and tuple(actual.shape) == tuple(expected.shape) and _difference(actual, expected) is None)


def describe_difference(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """Where and how much two same-shaped tensors differ beyond the tolerance, as ``torch.testing.assert_close``
    reports it (one line each: mismatched elements, greatest absolute and relative difference with their index)."""
    return _difference(actual, expected) or "every value is within the tolerance"


def check_tensor(
    actual,
    expected: torch.Tensor,
    *,
    what: str = "your output",
    explain: Callable[[torch.Tensor], str | None] | None = None,
) -> None:
    """Assert that ``actual`` equals ``expected`` within the tolerance (:data:`ATOL`, :data:`RTOL`).

    The ``AssertionError`` says what is wrong: not a tensor, wrong shape, or
    which values differ. ``explain(actual)`` may add a diagnosis (a known
    mistake the wrong answer matches); it is asked only when the check fails.
    """
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected.shape):
        problem = f"has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}."
    elif actual.is_complex():
        problem = f"is complex ({actual.dtype}); it should hold real numbers."
    else:
        difference = _difference(actual, expected)
        if difference is None:
            return
        problem = f"has the right shape but wrong values:\n{difference}"
    diagnosis = explain(actual) if explain is not None else None
    hint = f"\nLikely cause: {diagnosis}" if diagnosis else ""
    raise AssertionError(f"{what} {problem}{hint}")


def tensor_message(actual, expected: torch.Tensor, what: str, explain=None) -> str | None:
    """:func:`check_tensor` for a judge: None when ``actual`` is right, else the message it would raise."""
    try:
        check_tensor(actual, expected, what=what, explain=explain)
    except AssertionError as failure:
        return str(failure)
    return None


def raised(error: str | None) -> str | None:
    """A judge's message for a call that raised ``error`` ("TypeName: message"), None if it did not."""
    return None if error is None else f"raised {error}"
