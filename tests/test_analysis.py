"""course_lib.analysis (output sizes, timings) and course_lib.viz (the figures the chapters share).

The figures are tested here, beside the other measuring tools, with matplotlib's
non-interactive Agg backend so that no window opens wherever pytest runs.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported (course_lib.viz imports it)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_lib.analysis import compare_timings, output_size, time_function  # noqa: E402
from course_lib.viz import show_images, show_kernels, to_image_array  # noqa: E402

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


# --- viz ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures stay in pyplot's registry until closed; close them so tests do not pile them up."""
    yield
    plt.close("all")


def _images(n: int, seed: int = 0) -> list:
    """``n`` images in every accepted form: (1, H, W), (3, H, W) and (H, W) tensors, an (H, W) array."""
    generator = torch.Generator().manual_seed(seed)
    forms = [
        lambda: torch.rand(1, 6, 5, generator=generator),
        lambda: torch.rand(3, 6, 5, generator=generator),
        lambda: torch.rand(6, 5, generator=generator),
        lambda: torch.rand(6, 5, generator=generator).numpy(),
    ]
    return [forms[k % len(forms)]() for k in range(n)]


def _axes_with_images(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


@pytest.mark.parametrize(
    ("n", "ncols", "grid"),
    [(1, None, (1, 1)), (4, None, (1, 4)), (8, None, (2, 6)), (7, 3, (3, 3))],
    ids=["one", "four-in-a-row", "eight-default-six-per-row", "seven-three-per-row"],
)
def test_show_images_draws_one_axis_per_image(n, ncols, grid):
    images = _images(n)
    fig = show_images(images, [f"image {k}" for k in range(n)], ncols=ncols)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == grid[0] * grid[1]
    drawn = _axes_with_images(fig)
    assert len(drawn) == n
    for k, ax in enumerate(drawn):
        assert ax.get_title() == f"image {k}"
        np.testing.assert_allclose(ax.images[0].get_array(), to_image_array(images[k]), rtol=0, atol=0)


@pytest.mark.parametrize("n_titles", [2, 4])
def test_show_images_rejects_titles_that_do_not_match(n_titles):
    with pytest.raises(ValueError, match=f"titles must have one entry per image \\(3\\), got {n_titles}"):
        show_images(_images(3), [str(k) for k in range(n_titles)])


def test_show_images_symmetric_centres_the_colormap_on_zero():
    response = torch.tensor([[-0.5, 0.1], [2.0, 0.0]])
    (ax,) = _axes_with_images(show_images([response], symmetric=True))
    assert ax.images[0].get_clim() == (-2.0, 2.0)
    assert ax.images[0].get_cmap().name == "RdBu_r"


def test_to_image_array_converts_chw_to_hwc():
    image = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(to_image_array(image), image.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(to_image_array(image[:1]), image[0].numpy())


@pytest.mark.parametrize("shape", [(2, 4, 5), (4,), (1, 1, 4, 5)], ids=["two-channels", "1d", "4d"])
def test_to_image_array_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="image must have shape"):
        to_image_array(torch.zeros(shape))


@pytest.mark.parametrize("c_in", [1, 3], ids=["gray", "rgb"])
def test_show_kernels_draws_one_image_per_output_channel(c_in):
    weight = torch.randn(5, c_in, 3, 3, generator=torch.Generator().manual_seed(0))
    drawn = _axes_with_images(show_kernels(weight))
    assert len(drawn) == 5
    for ax in drawn:
        array = ax.images[0].get_array()
        if c_in == 3:  # each kernel rescaled to span [0, 1] for RGB display
            assert array.shape == (3, 3, 3) and array.min() == pytest.approx(0) and array.max() == pytest.approx(1)
        else:  # signed weights around a centred diverging colormap
            assert ax.images[0].get_clim()[0] == -ax.images[0].get_clim()[1]


@pytest.mark.parametrize("shape", [(5, 3, 3), (4, 2, 3, 3), (4, 4, 3, 3)], ids=["3d", "two-in-channels", "four-in-channels"])
def test_show_kernels_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"weight must have shape \(C_out, 1 or 3, kH, kW\)"):
        show_kernels(torch.zeros(shape))
