"""Comparisons for lab tests that say *why* an answer is wrong, not only that it is."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["check_tensor", "describe_difference"]


def describe_difference(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """One line on where and how much two same-shaped tensors differ."""
    diff = (actual.detach().double() - expected.detach().double()).abs()
    worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    wrong = int((diff > 1e-6 * (1 + expected.detach().abs().double())).sum())
    return (
        f"{wrong} of {diff.numel()} values differ; the largest difference is {diff.max().item():.3g} "
        f"at index {worst} (yours {actual.detach()[worst].item():.4g}, expected {expected.detach()[worst].item():.4g})"
    )


def check_tensor(
    actual,
    expected: torch.Tensor,
    *,
    what: str = "your output",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    explain: Callable[[torch.Tensor], str | None] | None = None,
) -> None:
    """Assert that ``actual`` equals ``expected`` within ``atol + rtol * |expected|``.

    The ``AssertionError`` says what is wrong: not a tensor, wrong shape, or
    which values differ. ``explain(actual)`` may add a diagnosis (a known
    mistake the wrong answer matches); it is asked only when the check fails.
    """
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(actual).__name__}")
    shape_ok = tuple(actual.shape) == tuple(expected.shape)
    if shape_ok and torch.allclose(actual.detach().to(expected.dtype), expected.detach(), atol=atol, rtol=rtol):
        return
    diagnosis = explain(actual) if explain is not None else None
    hint = f"\nLikely cause: {diagnosis}" if diagnosis else ""
    if not shape_ok:
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.{hint}")
    raise AssertionError(
        f"{what} has the right shape but wrong values: "
        f"{describe_difference(actual.to(expected.dtype), expected)}.{hint}"
    )
