"""course_lib.layers.geometry: the sliding-window rules, checked against PyTorch.

Every size is compared with the shape PyTorch's own layers return over a grid
of sizes, kernels, strides, paddings and dilations; where PyTorch refuses, the
rule must raise a ValueError naming the argument. The windows are compared with
``F.unfold`` and max pooling, and folding them back with the adjoint identity.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import course_lib.analysis
from course_lib.analysis import receptive_field_of
from course_lib.layers.geometry import (
    fold_windows,
    output_size,
    same_padding,
    sliding_windows,
    transposed_output_size,
)

SIZES, KERNELS, STRIDES, PADDINGS, DILATIONS = range(1, 10), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2, 3)


def _width(layer, *args, **kwargs) -> int | None:
    """The last axis of what a PyTorch layer returns, or None where it refuses."""
    try:
        return layer(*args, **kwargs).shape[-1]
    except RuntimeError:
        return None


def _assert_rule(expected: int | None, rule, *args, **kwargs) -> None:
    """``rule(*args, **kwargs)`` is ``expected``, or raises the does-not-fit ValueError where PyTorch refused."""
    if expected is None:
        with pytest.raises(ValueError, match=r"^kernel_size \d+ with dilation \d+ spans \d+ pixels, more than"):
            rule(*args, **kwargs)
    else:
        assert rule(*args, **kwargs) == expected, (args, kwargs)


# --- output_size -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", STRIDES)
def test_output_size_equals_conv_with_dilation_and_asymmetric_padding(stride):
    """F.conv1d's length on an input padded by (before, after); refused exactly where F.conv1d refuses."""
    for size, kernel, dilation, before, after in itertools.product(SIZES, KERNELS, DILATIONS, PADDINGS, PADDINGS):
        x, w = torch.zeros(1, 1, size), torch.zeros(1, 1, kernel)
        expected = _width(F.conv1d, F.pad(x, (before, after)), w, stride=stride, dilation=dilation)
        _assert_rule(expected, output_size, size, kernel, stride, before, dilation, padding_after=after)
        if before == after:
            symmetric = _width(F.conv1d, x, w, stride=stride, padding=before, dilation=dilation)
            _assert_rule(symmetric, output_size, size, kernel, stride, before, dilation)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("stride", STRIDES)
def test_output_size_equals_max_pool2d(stride, ceil_mode):
    """Including ceil mode's last window, kept only if it starts inside the input or the padding before it."""
    for size, kernel, dilation in itertools.product(SIZES, (1, 2, 3, 4), DILATIONS):
        for padding in range(kernel // 2 + 1):  # PyTorch's pooling limit
            x = torch.zeros(1, 1, size, size)
            kwargs = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
            expected = _width(F.max_pool2d, x, kernel, **kwargs)
            _assert_rule(expected, output_size, size, kernel, stride, padding, dilation, ceil_mode=ceil_mode)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_output_size_equals_avg_pool2d(ceil_mode):
    """Average pooling sizes its output by the same rule (it has no dilation)."""
    for size, kernel, stride in itertools.product(SIZES, (1, 2, 3, 4), STRIDES):
        for padding in range(kernel // 2 + 1):
            x = torch.zeros(1, 1, size, size)
            expected = _width(F.avg_pool2d, x, kernel, stride, padding, ceil_mode=ceil_mode)
            _assert_rule(expected, output_size, size, kernel, stride, padding, ceil_mode=ceil_mode)


def test_ceil_mode_drops_a_window_that_would_start_in_the_padding_after():
    """3 pixels padded by 1, windows of 2 at stride 2: rounding up gives 3 windows, the third starting
    at pixel 3 of the padded axis, which is padding; PyTorch (and the rule) keep 2."""
    assert -(-(3 + 2 - 2) // 2) + 1 == 3
    assert output_size(3, 2, 2, 1, ceil_mode=True) == 2
    assert F.max_pool2d(torch.zeros(1, 1, 3, 3), 2, 2, 1, ceil_mode=True).shape[-1] == 2


def test_a_ceil_window_may_reach_past_the_padded_input_by_less_than_a_stride():
    """PyTorch keeps a lone ceil window wider than the input (5 pixels, kernel 3 dilated by 3 spans 7)."""
    x = torch.zeros(1, 1, 5, 5)
    assert F.max_pool2d(x, 3, 3, dilation=3, ceil_mode=True).shape[-1] == 1
    assert output_size(5, 3, 3, 0, 3, ceil_mode=True) == 1
    with pytest.raises(ValueError, match=r"spans 7 pixels, more than the padded input \(5 \+ 2\*0 = 5\) plus stride"):
        output_size(5, 3, 2, 0, 3, ceil_mode=True)


def test_analysis_output_size_is_the_geometry_rule():
    """Chapter 2 and the grader call course_lib.analysis.output_size: the same function, not a copy."""
    assert course_lib.analysis.output_size is output_size


# --- transposed_output_size ------------------------------------------------------------------------


@pytest.mark.parametrize("stride", STRIDES)
def test_transposed_output_size_equals_conv_transpose2d(stride):
    """F.conv_transpose2d's size with every output_padding PyTorch allows; below 1 where it refuses."""
    for size, kernel, padding, dilation in itertools.product(range(1, 6), KERNELS, PADDINGS, DILATIONS):
        for output_padding in range(max(stride, dilation)):
            x, w = torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel)
            expected = _width(
                F.conv_transpose2d, x, w, stride=stride, padding=padding, output_padding=output_padding,
                dilation=dilation,
            )
            size_out = transposed_output_size(size, kernel, stride, padding, dilation, output_padding)
            if expected is None:
                assert size_out < 1, (size, kernel, stride, padding, dilation, output_padding)
            else:
                assert size_out == expected, (size, kernel, stride, padding, dilation, output_padding)


@pytest.mark.parametrize("stride", STRIDES)
def test_transposed_output_size_goes_back_to_the_input_size(stride):
    """For every input size a convolution maps to W_out, one output_padding returns exactly to it."""
    for size, kernel, padding, dilation in itertools.product(range(4, 12), (1, 2, 3), (0, 1), (1, 2)):
        if dilation * (kernel - 1) + 1 > size + 2 * padding:
            continue
        out = output_size(size, kernel, stride, padding, dilation)
        paddings = range(max(stride, dilation))
        assert size in [transposed_output_size(out, kernel, stride, padding, dilation, op) for op in paddings]


# --- same_padding ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dilation", DILATIONS)
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 6])
def test_same_padding_splits_as_conv2d_padding_same(kernel, dilation):
    """nn.Conv2d(padding="same")'s values, odd and even kernels: the extra pixel goes right/bottom."""
    generator = torch.Generator().manual_seed(kernel * 10 + dilation)
    conv = nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator, dtype=torch.float64))
    x = torch.randn(1, 2, 7, 8, generator=generator, dtype=torch.float64)
    before, after = same_padding(kernel, dilation)
    padded = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias, dilation=dilation)
    assert torch.allclose(padded, conv(x), atol=1e-12, rtol=1e-12)
    for size, stride in itertools.product(range(1, 9), STRIDES):  # ceil(W / S) outputs at any stride
        assert output_size(size, kernel, stride, before, dilation, padding_after=after) == math.ceil(size / stride)


# --- sliding_windows and fold_windows --------------------------------------------------------------

WINDOW_CASES = [  # kernel, stride, padding, dilation
    ((3, 3), (1, 1), (0, 0), (1, 1)),
    ((2, 3), (2, 1), (1, 1), (1, 1)),
    ((3, 2), (1, 2), (1, 0), (2, 1)),
    ((3, 3), (3, 2), (1, 1), (2, 2)),
    ((1, 1), (2, 2), (0, 0), (1, 1)),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), WINDOW_CASES, ids=str)
def test_sliding_windows_are_unfolds_columns(kernel, stride, padding, dilation):
    """windows[n, c, i, j, u, v] is F.unfold's entry (c, u, v) of column (i, j), for zero padding."""
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    windows = sliding_windows(x, kernel, stride, padding, dilation)
    n, c, h_out, w_out, kh, kw = windows.shape
    for size, size_out, k, s, p, d in zip((7, 8), (h_out, w_out), kernel, stride, padding, dilation):
        assert size_out == output_size(size, k, s, p, d)
    columns = windows.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, h_out * w_out)
    assert torch.equal(columns, F.unfold(x, kernel, dilation, padding, stride))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), WINDOW_CASES, ids=str)
def test_the_largest_of_each_window_is_max_pool2d(kernel, stride, padding, dilation, ceil_mode):
    """-inf padding and ceil mode's overhang: the windows are max pooling's."""
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    windows = sliding_windows(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode, value=-math.inf)
    expected = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    assert torch.equal(windows.amax((-2, -1)), expected)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), WINDOW_CASES, ids=str)
def test_fold_windows_is_the_adjoint_of_sliding_windows(kernel, stride, padding, dilation, ceil_mode):
    """<sliding_windows(x), w> = <x, fold_windows(w)> for every x and w: folding is the windows' gradient."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 7, 8, generator=generator, dtype=torch.float64)
    windows = sliding_windows(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    w = torch.randn(windows.shape, generator=generator, dtype=torch.float64)
    folded = fold_windows(w, (7, 8), stride, padding, dilation)
    assert folded.shape == x.shape
    assert torch.isclose((windows * w).sum(), (x * folded).sum(), atol=1e-12, rtol=1e-12)


def test_fold_windows_equals_fold_on_im2col_layout():
    generator = torch.Generator().manual_seed(3)
    kernel, stride, dilation = (3, 2), (2, 1), (1, 2)
    w = torch.randn(2, 3, 3, 6, *kernel, generator=generator, dtype=torch.float64)  # (N, C, H_out, W_out, kH, kW)
    columns = w.permute(0, 1, 4, 5, 2, 3).reshape(2, 3 * 6, 3 * 6)
    expected = F.fold(columns, (7, 8), kernel, dilation=dilation, stride=stride)
    assert torch.allclose(fold_windows(w, (7, 8), stride, dilation=dilation), expected, atol=1e-12, rtol=1e-12)


# --- a rule's users agree with it ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(3, 3, dilation=3, ceil_mode=True), nn.MaxPool2d(2, 2, 1, ceil_mode=True),
     nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), nn.AvgPool2d(3, 2, 1, ceil_mode=True)],
    ids=str,
)
def test_receptive_field_of_sizes_pools_as_pytorch_does(pool):
    """Including a lone ceil window wider than the input, which PyTorch keeps."""
    x = torch.zeros(1, 1, 5, 6)
    assert receptive_field_of(nn.Sequential(pool), x.shape).output_size == tuple(pool(x).shape[2:])


# --- bad arguments ---------------------------------------------------------------------------------

BAD_ARGS = [
    ("output_size-in_size", output_size, (0, 3), {}, r"^in_size must be an int >= 1"),
    ("output_size-kernel_size", output_size, (5, 2.0), {}, r"^kernel_size must be an int >= 1"),
    ("output_size-stride", output_size, (5, 2, 0), {}, r"^stride must be an int >= 1"),
    ("output_size-padding", output_size, (5, 2, 1, -1), {}, r"^padding must be an int >= 0"),
    ("output_size-dilation", output_size, (5, 2, 1, 0, True), {}, r"^dilation must be an int >= 1"),
    ("output_size-padding_after", output_size, (5, 2), {"padding_after": -1}, r"^padding_after must be an int >= 0"),
    ("output_size-ceil_mode", output_size, (5, 2), {"ceil_mode": 1}, r"^ceil_mode must be a bool"),
    ("output_size-too-big", output_size, (4, 3), {"dilation": 2, "padding_after": 0},
     r"^kernel_size 3 with dilation 2 spans 5 pixels, more than the padded input \(4 \+ 0 \+ 0 = 4\)$"),
    ("transposed-output_padding", transposed_output_size, (4, 3, 2), {"output_padding": 2},
     r"^output_padding must be smaller than either stride or dilation, got output_padding=2, stride=2, dilation=1"),
    ("transposed-in_size", transposed_output_size, (0, 3), {}, r"^in_size must be an int >= 1"),
    ("same_padding-kernel_size", same_padding, (0,), {}, r"^kernel_size must be an int >= 1"),
    ("same_padding-dilation", same_padding, (3, 0), {}, r"^dilation must be an int >= 1"),
    ("sliding_windows-too-big", sliding_windows, (torch.zeros(1, 1, 4, 4), (3, 5)), {},
     r"^kernel_size 5 with dilation 1 spans 5"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "args", "kwargs", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(rule, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rule(*args, **kwargs)
