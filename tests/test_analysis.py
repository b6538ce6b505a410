"""course_lib.analysis: output sizes and timings.

The figures of course_lib.viz, timing plots included, are tested in test_viz.py.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from course_lib.analysis import compare_timings, output_size, time_function

# --- output_size --------------------------------------------------------------------------------

IN_SIZES, KERNELS = (1, 2, 5, 8, 13), (1, 2, 3, 5)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation"),
    list(itertools.product((1, 2, 3), (0, 1, 2), (1, 2, 3))),
    ids=str,
)
def test_output_size_agrees_with_conv2d(stride, padding, dilation):
    """On every (in_size, kernel): the size F.conv2d produces, or a ValueError exactly where F.conv2d refuses."""
    for in_size, kernel in itertools.product(IN_SIZES, KERNELS):
        x, w = torch.zeros(1, 1, in_size, in_size), torch.zeros(1, 1, kernel, kernel)
        args = (in_size, kernel, stride, padding, dilation)
        try:
            expected = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
        except RuntimeError:  # the dilated kernel does not fit into the padded input
            with pytest.raises(ValueError, match="kernel_size .* spans .* more than the padded input"):
                output_size(*args)
        else:
            assert output_size(*args) == expected, args


def test_output_size_returns_an_int():
    assert type(output_size(28, 5, 2, 2)) is int


BAD_OUTPUT_SIZE_ARGS = [
    ("kernel-too-big", (4, 5), "kernel_size 5 with dilation 1 spans 5 pixels"),
    ("dilated-kernel-too-big", (5, 3, 1, 0, 3), "kernel_size 3 with dilation 3 spans 7 pixels"),
    ("in_size-float", (28.0, 3), "in_size must be an int >= 1"),
    ("kernel_size-float", (28, 3.0), "kernel_size must be an int >= 1"),
    ("stride-bool", (28, 3, True), "stride must be an int >= 1"),
    ("padding-bool", (28, 3, 1, False), "padding must be an int >= 0"),
    ("dilation-float", (28, 3, 1, 0, 1.5), "dilation must be an int >= 1"),
    ("in_size-0", (0, 1), "in_size must be"),
    ("kernel_size-0", (5, 0), "kernel_size must be"),
    ("stride-0", (28, 3, 0), "stride must be"),
    ("padding-negative", (28, 3, 1, -1), "padding must be"),
    ("dilation-0", (28, 3, 1, 0, 0), "dilation must be"),
    ("in_size-None", (None, 3), "in_size must be"),
]


@pytest.mark.parametrize(("args", "match"), [pytest.param(a, m, id=i) for i, a, m in BAD_OUTPUT_SIZE_ARGS])
def test_output_size_bad_arguments_raise_naming_the_argument(args, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        output_size(*args)


# --- timing -------------------------------------------------------------------------------------

FAST = 0.01  # min_run_time: the tests check the bookkeeping, not the speed


def _recording(calls: list, name: str):
    """A function to time that notes how it was called."""

    def fn(*args, **kwargs):
        calls.append((name, args, kwargs))
        return sum(args)

    return fn


def test_time_function_returns_positive_seconds_and_forwards_arguments():
    calls = []
    seconds = time_function(_recording(calls, "f"), 1, 2, min_run_time=FAST)
    assert isinstance(seconds, float) and seconds > 0
    assert calls and all(call == ("f", (1, 2), {}) for call in calls)


@pytest.mark.parametrize("baseline", [None, "a", "c"], ids=["default-first", "first", "last"])
def test_compare_timings_gives_one_row_per_function_relative_to_the_baseline(baseline):
    calls = []
    functions = {name: _recording(calls, name) for name in ("a", "b", "c")}
    rows = compare_timings(functions, 3, 4, baseline=baseline, min_run_time=FAST)

    assert [row["name"] for row in rows] == ["a", "b", "c"]
    base = next(row for row in rows if row["name"] == (baseline or "a"))
    assert base["ratio"] == 1.0
    for row in rows:
        assert set(row) == {"name", "seconds", "ratio"} and row["seconds"] > 0
        assert row["ratio"] == pytest.approx(row["seconds"] / base["seconds"], rel=1e-12)
    # Every function ran, always on the same arguments.
    assert {name for name, _, _ in calls} == set(functions)
    assert all(args == (3, 4) for _, args, _ in calls)


def test_compare_timings_forwards_keyword_arguments():
    calls = []
    compare_timings({"f": _recording(calls, "f")}, 1, scale=2, min_run_time=FAST)
    assert all(kwargs == {"scale": 2} for _, _, kwargs in calls) and calls


@pytest.mark.parametrize(
    ("functions", "baseline", "match"),
    [
        pytest.param({}, None, "functions must name at least one function", id="empty"),
        pytest.param({"a": abs}, "b", r"baseline must be one of \['a'\], got 'b'", id="unknown-baseline"),
    ],
)
def test_compare_timings_bad_arguments_raise(functions, baseline, match):
    with pytest.raises(ValueError, match=match):
        compare_timings(functions, -1, baseline=baseline, min_run_time=FAST)
