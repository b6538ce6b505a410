"""Checks for the convolution lab that recognise the usual mistakes and name them.

A wrong answer is compared with the outputs of a few *wrong* convolutions -
padding off by one, a flipped kernel, a forgotten stride, dilation or bias.
When the student's output matches one of them, the test message says which
mistake it is, which is what a student needs to fix it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..analysis.shapes import output_size
from ..layers import functional as reference
from .checks import check_tensor, matches
from .forbid import forbid_calls

__all__ = ["check_conv2d", "check_output_size", "explain_conv2d", "explain_output_size", "NO_SHORTCUTS"]

NO_SHORTCUTS = (
    "Lab 1 asks you to compute the convolution yourself, with loops or with im2col and a matrix product: "
    "torch.nn.functional.conv2d, nn.Conv2d, F.unfold and course_lib's own convolutions are not allowed in your answer."
)

# course_lib's reference implementations: the answers a student must not call.
REFERENCE_FUNCTIONS = (reference.conv2d, reference.conv2d_naive, reference.conv1d, reference.im2col)


def _known_conv2d_mistakes(x, weight, bias, stride, padding, dilation, groups):
    """(description, output) of the wrong convolutions a student's answer is compared with."""
    conv = lambda **changes: F.conv2d(  # noqa: E731
        x,
        changes.get("weight", weight),
        changes.get("bias", bias),
        changes.get("stride", stride),
        changes.get("padding", padding),
        changes.get("dilation", dilation),
        groups,
    )
    wider = conv(padding=padding + 1)
    yield f"padding off by one: your output equals a convolution with padding={padding + 1} instead of {padding}", wider
    # The input padded one pixel too wide, but the output size computed right: the windows start one
    # pixel up and left, so the output is the top-left corner of the wider convolution.
    height, width = conv().shape[-2:]
    yield (
        f"padding off by one: you padded the input with {padding + 1} pixels instead of {padding}; your output "
        f"size is right, so every window sits one pixel up and to the left",
        wider[..., :height, :width],
    )
    if padding > 0:
        yield f"padding off by one: your output equals a convolution with padding={padding - 1} instead of {padding}", conv(
            padding=padding - 1
        )
        yield "padding ignored: your output equals a convolution of the unpadded input", conv(padding=0)
    yield (
        "kernel flipped: you computed a true convolution (kernel rotated by 180 degrees); "
        "CNN layers compute cross-correlation, which uses the kernel as it is",
        conv(weight=weight.flip(-1, -2)),
    )
    if stride > 1:
        yield f"stride ignored: your output equals a convolution with stride 1 instead of {stride}", conv(stride=1)
    if dilation > 1:
        yield f"dilation ignored: your output equals a convolution with dilation 1 instead of {dilation}", conv(
            dilation=1
        )
    if bias is not None:
        yield "bias missing: your output equals the convolution without the bias added", conv(bias=torch.zeros_like(bias))
        yield "bias added twice", conv(bias=2 * bias)


def explain_conv2d(actual, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> str | None:
    """The known mistake whose output ``actual`` matches, or None."""
    for description, wrong in _known_conv2d_mistakes(x, weight, bias, stride, padding, dilation, groups):
        if matches(actual, wrong):
            return description
    return None


def check_conv2d(
    student_conv2d: Callable,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    name: str = "conv2d",
) -> None:
    """Call ``student_conv2d`` with shortcuts refused and compare it with PyTorch.

    Raises ``AssertionError`` (or :class:`ForbiddenCallError`) with a message
    that names the call, the expected shape and, when recognised, the mistake.
    """
    expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    call = (
        f"{name}(x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, "
        f"bias={'None' if bias is None else 'given'}, stride={stride}, padding={padding}, "
        f"dilation={dilation}, groups={groups})"
    )
    with forbid_calls(functions=REFERENCE_FUNCTIONS, why=NO_SHORTCUTS):
        actual = student_conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    check_tensor(
        actual,
        expected,
        what=f"the output of {call}",
        explain=lambda out: explain_conv2d(out, x, weight, bias, stride, padding, dilation, groups),
    )


def explain_output_size(value, in_size, kernel_size, stride=1, padding=0, dilation=1) -> str | None:
    """Name the formula slip a wrong ``output_size`` answer matches, or None."""
    w, k, s, p, d = in_size, kernel_size, stride, padding, dilation
    if isinstance(value, float):
        return "the result should be an int: use floor division // (the last window that fits counts, a partial one does not)"
    slips = [
        ("dilation ignored: a dilated kernel spans D*(F-1)+1 pixels, not F", (w + 2 * p - k) // s + 1),
        ("padding counted once: zeros are added on both sides, so the input grows by 2P", (w + p - d * (k - 1) - 1) // s + 1),
        ("the +1 is missing: the first window sits at position 0", (w + 2 * p - d * (k - 1) - 1) // s),
    ]
    for description, wrong in slips:
        if value == wrong:
            return description
    return None


def check_output_size(student_output_size: Callable, in_size, kernel_size, stride=1, padding=0, dilation=1) -> None:
    """Compare one call of a student's ``output_size`` with the reference."""
    expected = output_size(in_size, kernel_size, stride, padding, dilation)
    value = student_output_size(in_size, kernel_size, stride=stride, padding=padding, dilation=dilation)
    if value != expected or not isinstance(value, int):
        diagnosis = explain_output_size(value, in_size, kernel_size, stride, padding, dilation)
        raise AssertionError(
            f"output_size({in_size}, {kernel_size}, stride={stride}, padding={padding}, dilation={dilation}) "
            f"returned {value!r}, expected {expected}."
            + (f"\nLikely cause: {diagnosis}" if diagnosis else "")
        )
