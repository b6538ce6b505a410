"""Comparisons for lab tests that say *why* an answer is wrong, not only that it is."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["check_tensor", "describe_difference", "matches", "RTOL", "ATOL"]

# How close an answer must be. An answer computed in float32 is right: its rounding error grows with
# the size of the values (a sum of 75 products of order-1 numbers is off by ~1e-6 in float32), so the
# absolute tolerance scales with the reference's largest value. A real mistake is off by far more.
RTOL = 1e-5
ATOL = 1e-5  # times max(1, largest |value| of the reference)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Elementwise: ``actual`` equals ``expected`` within the tolerance above (same shapes)."""
    expected = expected.detach().double()
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    return (actual.detach().double() - expected).abs() <= ATOL * scale + RTOL * expected.abs()


def matches(actual, expected: torch.Tensor) -> bool:
    """``actual`` is a tensor of ``expected``'s shape whose every value is within the tolerance."""
    return (isinstance(actual, torch.Tensor) and not actual.is_complex()
            and tuple(actual.shape) == tuple(expected.shape) and bool(_close(actual, expected).all()))


def describe_difference(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """One line on where and how much two same-shaped tensors differ."""
    diff = (actual.detach().double() - expected.detach().double()).abs()
    worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    wrong = int((~_close(actual, expected)).sum())
    return (
        f"{wrong} of {diff.numel()} values differ; the largest difference is {diff.max().item():.3g} "
        f"at index {worst} (yours {actual.detach()[worst].item():.4g}, expected {expected.detach()[worst].item():.4g})"
    )


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
    shape_ok = tuple(actual.shape) == tuple(expected.shape)
    if matches(actual, expected):
        return
    diagnosis = explain(actual) if explain is not None else None
    hint = f"\nLikely cause: {diagnosis}" if diagnosis else ""
    if not shape_ok:
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.{hint}")
    if actual.is_complex():
        raise AssertionError(f"{what} is complex ({actual.dtype}); it should hold real numbers.{hint}")
    raise AssertionError(
        f"{what} has the right shape but wrong values: "
        f"{describe_difference(actual.to(expected.dtype), expected)}.{hint}"
    )
