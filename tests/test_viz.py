"""course_lib.viz: the figures the chapters share (image grids, kernels, timings, classifier diagnostics).

Drawn with matplotlib's non-interactive Agg backend, so that no window opens
wherever pytest runs; the tests read back what was drawn (images, colour
limits, colormaps, bar heights) rather than comparing pixels.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported (course_lib.viz imports it)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_lib.analysis import compare_timings  # noqa: E402
from course_lib.viz import (  # noqa: E402
    show_confusion_matrix,
    show_images,
    show_kernels,
    show_misclassified,
    show_timings,
    to_image_array,
)

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


# --- show_images: colour limits and colormaps ---------------------------------------------------


def _signed(seed: int, scale: float) -> torch.Tensor:
    """A (5, 4) response with values of both signs, of about ``scale``."""
    return scale * (torch.rand(5, 4, generator=torch.Generator().manual_seed(seed)) - 0.3)


def test_show_images_without_limits_scales_each_panel_to_its_own_range():
    images = [_signed(0, 1.0), _signed(1, 10.0)]
    for ax, image in zip(_axes_with_images(show_images(images)), images):
        assert ax.images[0].get_clim() == pytest.approx((image.min().item(), image.max().item()))
        assert ax.images[0].get_cmap().name == "gray"


def test_show_images_vmin_vmax_fix_the_limits_of_every_single_channel_panel():
    images = [_signed(0, 1.0), _signed(1, 10.0), torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(2))]
    drawn = _axes_with_images(show_images(images, vmin=0.0, vmax=1.0))
    assert [ax.images[0].get_clim() for ax in drawn[:2]] == [(0.0, 1.0), (0.0, 1.0)]
    assert drawn[2].images[0].get_array().shape == (5, 4, 3)  # the RGB panel is drawn as it is


def test_show_images_share_limits_uses_one_scale_from_all_images():
    images = [_signed(0, 1.0), _signed(1, 10.0), _signed(2, 3.0)]
    lo = min(image.min().item() for image in images)
    hi = max(image.max().item() for image in images)
    for ax in _axes_with_images(show_images(images, share_limits=True)):
        assert ax.images[0].get_clim() == pytest.approx((lo, hi), rel=1e-6)


def test_show_images_share_limits_with_symmetric_centres_one_scale_on_zero():
    images = [_signed(0, 1.0), _signed(1, -10.0)]  # the second one's largest |value| is negative
    limit = max(image.abs().max().item() for image in images)
    drawn = _axes_with_images(show_images(images, share_limits=True, symmetric=True))
    for ax in drawn:
        assert ax.images[0].get_clim() == pytest.approx((-limit, limit), rel=1e-6)
        assert ax.images[0].get_cmap().name == "RdBu_r"
    # Without share_limits each panel gets its own symmetric scale.
    first, second = _axes_with_images(show_images(images, symmetric=True))
    own = images[0].abs().max().item()
    assert first.images[0].get_clim() == pytest.approx((-own, own), rel=1e-6)
    assert second.images[0].get_clim() == pytest.approx((-limit, limit), rel=1e-6)


def test_show_images_share_limits_ignores_rgb_panels():
    gray = 0.5 * torch.rand(6, 5, generator=torch.Generator().manual_seed(3))
    rgb = 2.0 + torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(4))  # far outside the grey range
    drawn = _axes_with_images(show_images([gray, rgb, 2 * gray], share_limits=True))
    for ax in (drawn[0], drawn[2]):
        assert ax.images[0].get_clim() == pytest.approx((gray.min().item(), 2 * gray.max().item()), rel=1e-6)


def test_show_images_cmaps_sets_one_colormap_per_image():
    photo = torch.rand(6, 5, generator=torch.Generator().manual_seed(5))
    response = _signed(6, 2.0)
    drawn = _axes_with_images(show_images([photo, response, photo], cmaps=["gray", "RdBu_r", None], cmap="viridis"))
    assert [ax.images[0].get_cmap().name for ax in drawn] == ["gray", "RdBu_r", "viridis"]


def test_show_images_cmap_overrides_the_symmetric_default():
    (ax,) = _axes_with_images(show_images([_signed(7, 1.0)], symmetric=True, cmap="coolwarm"))
    assert ax.images[0].get_cmap().name == "coolwarm"
    assert ax.images[0].get_clim()[0] == -ax.images[0].get_clim()[1]


@pytest.mark.parametrize("n_cmaps", [1, 3])
def test_show_images_rejects_cmaps_that_do_not_match(n_cmaps):
    with pytest.raises(ValueError, match=f"cmaps must have one entry per image \\(2\\), got {n_cmaps}"):
        show_images(_images(2), cmaps=["gray"] * n_cmaps)


@pytest.mark.parametrize("other", [{"symmetric": True}, {"share_limits": True}], ids=["symmetric", "share_limits"])
@pytest.mark.parametrize("limits", [{"vmin": 0.0}, {"vmax": 1.0}, {"vmin": 0.0, "vmax": 1.0}], ids=["vmin", "vmax", "both"])
def test_show_images_rejects_fixed_limits_combined_with_computed_ones(limits, other):
    with pytest.raises(ValueError, match="vmin/vmax fix the colour scale"):
        show_images(_images(2), **limits, **other)


# --- show_timings -------------------------------------------------------------------------------

NAMES = ("F.conv2d", "im2col", "loops")


def _timing_rows(sizes=(8, 16, 32), factors=(1.0, 3.0, 40.0), baseline: int = 0, key: str = "size") -> list[dict]:
    """Rows like ``[{key: size, **row} for row in compare_timings(...)]``, with known seconds."""
    rows = []
    for size in sizes:
        seconds = [1e-4 * size * f for f in factors]
        for name, s in zip(NAMES, seconds):
            rows.append({key: size, "name": name, "seconds": s, "ratio": s / seconds[baseline]})
    return rows


def _bar_heights(ax) -> dict[str, list[float]]:
    """Legend label -> heights of its bars, one per run."""
    return {container.get_label(): [bar.get_height() for bar in container] for container in ax.containers}


def test_show_timings_returns_the_pivot_table_and_a_log_ratio_bar_plot():
    table, fig = show_timings(_timing_rows(), xlabel="image size", title="Slowdown", legend_title="implementation")

    expected = pd.DataFrame(
        [[1e-4 * s * f * 1e3 for f in (1.0, 3.0, 40.0)] for s in (8, 16, 32)],
        index=pd.Index([8, 16, 32], name="size"), columns=pd.Index(list(NAMES), name="name"),
    )
    pd.testing.assert_frame_equal(table, expected, rtol=1e-12)

    assert isinstance(fig, Figure) and len(fig.axes) == 1
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    heights = _bar_heights(ax)
    assert list(heights) == ["im2col", "loops"]  # the baseline has no bars
    np.testing.assert_allclose(heights["im2col"], [3.0] * 3, rtol=1e-12)
    np.testing.assert_allclose(heights["loops"], [40.0] * 3, rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "16", "32"]
    assert any(list(line.get_ydata()) == [1.0, 1.0] and line.get_linestyle() == "--" for line in ax.lines)
    assert ax.get_ylabel() == "time / time of F.conv2d (log)"
    assert (ax.get_xlabel(), ax.get_title(), ax.get_legend().get_title().get_text()) == ("image size", "Slowdown", "implementation")


def test_show_timings_finds_the_baseline_from_the_ratios():
    rows = _timing_rows(factors=(2.0, 1.0, 8.0), baseline=1)  # compare_timings(..., baseline="im2col")
    _, fig = show_timings(rows)
    heights = _bar_heights(fig.axes[0])
    assert list(heights) == ["F.conv2d", "loops"]
    np.testing.assert_allclose(heights["F.conv2d"], [2.0] * 3, rtol=1e-12)
    np.testing.assert_allclose(heights["loops"], [8.0] * 3, rtol=1e-12)
    assert fig.axes[0].get_ylabel() == "time / time of im2col (log)"
    assert fig.axes[0].get_title() == "Time relative to im2col" and fig.axes[0].get_xlabel() == "size"


def test_show_timings_with_an_explicit_baseline_recomputes_the_ratios():
    _, fig = show_timings(_timing_rows(factors=(1.0, 4.0, 20.0)), baseline="im2col")
    heights = _bar_heights(fig.axes[0])
    np.testing.assert_allclose(heights["F.conv2d"], [0.25] * 3, rtol=1e-12)
    np.testing.assert_allclose(heights["loops"], [5.0] * 3, rtol=1e-12)


@pytest.mark.parametrize(("unit", "scale"), [("s", 1.0), ("ms", 1e3), ("us", 1e6)])
def test_show_timings_table_unit(unit, scale):
    rows = _timing_rows()
    table, _ = show_timings(rows, unit=unit)
    for row in rows:
        assert table.loc[row["size"], row["name"]] == pytest.approx(row["seconds"] * scale, rel=1e-12)


def test_show_timings_of_a_single_run_needs_no_extra_key():
    rows = [{k: v for k, v in row.items() if k != "size"} for row in _timing_rows(sizes=(8,))]
    table, fig = show_timings(rows, unit="s")
    assert table.shape == (1, 3) and list(table.columns) == list(NAMES)
    np.testing.assert_allclose(table.to_numpy()[0], [row["seconds"] for row in rows], rtol=1e-12)
    assert list(_bar_heights(fig.axes[0])) == ["im2col", "loops"]


def test_show_timings_with_several_extra_keys_uses_by():
    rows = [{"batch": 4, **row} for row in _timing_rows(key="image size")]
    with pytest.raises(ValueError, match=r"several extra keys \['batch', 'image size'\]: pass by="):
        show_timings(rows)
    table, _ = show_timings(rows, by="image size")
    assert table.index.name == "image size" and list(table.index) == [8, 16, 32]


def test_show_timings_keeps_the_order_of_the_rows_and_leaves_gaps_untimed():
    rows = [row for row in _timing_rows(sizes=(32, 8, 16)) if not (row["name"] == "loops" and row["size"] == 16)]
    table, fig = show_timings(rows)
    assert list(table.index) == [32, 8, 16] and list(table.columns) == list(NAMES)
    assert math.isnan(table.loc[16, "loops"]) and not table.drop(index=16).isna().any().any()
    assert len(_bar_heights(fig.axes[0])["loops"]) == 3


def test_show_timings_draws_rows_of_compare_timings():
    rows = []
    for size in (4, 8):
        x = torch.randn(size, size)
        for row in compare_timings({"matmul": torch.matmul, "add": torch.add}, x, x, min_run_time=0.01):
            rows.append({"size": size, **row})
    table, fig = show_timings(rows)
    assert list(table.columns) == ["matmul", "add"] and (table > 0).all().all()
    heights = _bar_heights(fig.axes[0])["add"]
    np.testing.assert_allclose(heights, [row["ratio"] for row in rows if row["name"] == "add"], rtol=1e-12)


BAD_TIMINGS = [
    ("empty", [], {}, "rows must hold at least one timing"),
    ("no-seconds", [{"size": 1, "name": "a", "ratio": 1.0}], {}, r"rows\[0\] lacks \['seconds'\]"),
    ("no-by-key", [{"size": 1, "name": "a", "seconds": 1.0, "ratio": 1.0}, {"name": "b", "seconds": 1.0, "ratio": 1.0}], {},
     r"rows\[1\] lacks \['size'\]"),
    ("repeated", [{"name": "a", "seconds": 1.0, "ratio": 1.0}, {"name": "a", "seconds": 2.0, "ratio": 2.0}], {},
     "rows time 'a' twice: pass by="),
    ("repeated-in-a-run", [{"n": 1, "name": "a", "seconds": 1.0, "ratio": 1.0}] * 2, {}, "rows time 'a' twice for n = 1"),
    ("no-baseline", [{"name": "a", "seconds": 1.0, "ratio": 0.5}, {"name": "b", "seconds": 2.0, "ratio": 2.0}], {},
     "no function has ratio 1 in every run: pass baseline="),
    ("unknown-baseline", [{"name": "a", "seconds": 1.0, "ratio": 1.0}], {"baseline": "b"}, r"baseline must be one of \['a'\], got 'b'"),
    ("only-the-baseline", [{"name": "a", "seconds": 1.0, "ratio": 1.0}], {}, "rows must time at least one function besides the baseline 'a'"),
    ("unit", [{"name": "a", "seconds": 1.0, "ratio": 1.0}], {"unit": "min"}, r"unit must be one of \['s', 'ms', 'us'\], got 'min'"),
]


@pytest.mark.parametrize(("rows", "kwargs", "match"), [pytest.param(r, k, m, id=i) for i, r, k, m in BAD_TIMINGS])
def test_show_timings_bad_arguments_raise(rows, kwargs, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        show_timings(rows, **kwargs)


# --- confusion matrix -----------------------------------------------------------------------------

CONFUSION = np.array([[50, 2, 0], [0, 45, 5], [1, 0, 47]])


def _cell_texts(ax) -> dict[tuple[int, int], str]:
    """(row, column) -> annotation, read back from the text artists at integer positions."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}


def test_show_confusion_matrix_annotates_counts_and_colours_only_the_mistakes():
    fig = show_confusion_matrix(torch.tensor(CONFUSION), classes=["cat", "dog", "owl"], title="Pets")
    ax = fig.axes[0]
    assert ax.get_title() == "Pets" and (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "owl"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "owl"]
    # Every non-zero cell is annotated with its count; empty off-diagonal cells stay blank.
    assert _cell_texts(ax) == {(0, 0): "50", (0, 1): "2", (1, 1): "45", (1, 2): "5", (2, 0): "1", (2, 2): "47"}
    shown = ax.images[0].get_array()
    assert shown.mask.diagonal().all() and not shown.mask[~np.eye(3, dtype=bool)].any()  # the diagonal is not coloured
    assert ax.images[0].get_clim() == (0, 5)  # the scale ends at the largest mistake
    assert fig.axes[1].get_ylabel() == "misclassified samples"  # the colorbar
    assert all(float(tick).is_integer() for tick in fig.axes[1].get_yticks())  # counts: whole ticks only


def test_show_confusion_matrix_normalize_shows_row_percentages():
    fig = show_confusion_matrix(CONFUSION, normalize=True)
    ax = fig.axes[0]
    texts = _cell_texts(ax)
    assert texts[(1, 2)] == "10%" and texts[(1, 1)] == "90%" and texts[(0, 0)] == "96%"
    np.testing.assert_allclose(ax.images[0].get_clim(), (0, 0.1))
    assert fig.axes[1].get_ylabel() == "share of the true class (mistakes)"
    assert fig.axes[1].yaxis.get_major_formatter()(0.05) == "5%"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]  # default class names


def test_show_confusion_matrix_keeps_an_empty_class_at_zero():
    confusion = np.array([[3, 1], [0, 0]])
    texts = _cell_texts(show_confusion_matrix(confusion, normalize=True).axes[0])
    assert texts == {(0, 0): "75%", (0, 1): "25%", (1, 1): "0%"}


@pytest.mark.parametrize(
    ("confusion", "kwargs", "match"),
    [
        (np.ones((2, 3)), {}, r"confusion must be a square \(C, C\) matrix, got shape \(2, 3\)"),
        (np.ones(4), {}, "confusion must be a square"),
        (-np.ones((2, 2)), {}, "confusion must hold non-negative counts"),
        (np.ones((2, 2)), {"classes": ["a"]}, r"classes must have one name per class \(2\), got 1"),
    ],
    ids=["not-square", "vector", "negative", "classes"],
)
def test_show_confusion_matrix_rejects_bad_input(confusion, kwargs, match):
    with pytest.raises(ValueError, match=match):
        show_confusion_matrix(confusion, **kwargs)


def test_show_confusion_matrix_matches_sklearn_layout():
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    texts = _cell_texts(show_confusion_matrix(confusion_matrix(y_true, y_pred)).axes[0])
    assert texts[(0, 1)] == "1" and texts[(2, 0)] == "1" and (1, 0) not in texts  # row = true, column = predicted


# --- misclassified examples -----------------------------------------------------------------------


def _digits(n: int = 6):
    images = torch.stack([torch.full((1, 4, 4), float(k)) for k in range(n)])  # image k is filled with k
    targets = torch.tensor([0, 1, 2, 3, 4, 5][:n])
    predictions = torch.tensor([0, 7, 2, 8, 4, 9][:n])  # wrong at 1, 3, 5
    return images, targets, predictions


def test_show_misclassified_shows_only_the_mistakes_in_order():
    images, targets, predictions = _digits()
    fig = show_misclassified(images, targets, predictions)
    axes = _axes_with_images(fig)
    assert [ax.get_title() for ax in axes] == ["true 1 / pred 7", "true 3 / pred 8", "true 5 / pred 9"]
    assert [float(ax.images[0].get_array().mean()) for ax in axes] == [1.0, 3.0, 5.0]  # the right images
    assert fig._suptitle.get_text() == "3 of 3 misclassified examples"


def test_show_misclassified_with_scores_puts_the_most_confident_first_and_caps_the_count():
    images, targets, predictions = _digits()
    scores = np.array([0.9, 0.55, 0.99, 0.97, 0.8, 0.7])
    names = [f"c{k}" for k in range(10)]
    fig = show_misclassified(images, targets, predictions, classes=names, scores=scores, max_images=2, suptitle="Worst")
    titles = [ax.get_title() for ax in _axes_with_images(fig)]
    assert titles == ["true c3 / pred c8\np=0.97", "true c5 / pred c9\np=0.70"]
    assert fig._suptitle.get_text() == "Worst"


def test_show_misclassified_accepts_arrays_without_a_channel_axis():
    images, targets, predictions = _digits()
    fig = show_misclassified(images[:, 0].numpy(), targets.numpy(), predictions.numpy(), ncols=2)
    assert len(_axes_with_images(fig)) == 3 and len(fig.axes) == 4  # a 2 x 2 grid, one panel empty


def test_show_misclassified_without_mistakes_says_so():
    images, targets, _ = _digits()
    fig = show_misclassified(images, targets, targets)
    assert not _axes_with_images(fig)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no misclassified examples"]
    assert fig._suptitle.get_text() == "0 of 6 examples misclassified"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"predictions": torch.zeros(5, dtype=torch.long)}, "images, targets and predictions must have the same length"),
        ({"scores": np.ones(4)}, r"scores must have one value per example \(6\), got 4"),
        ({"max_images": 0}, "max_images must be a positive int, got 0"),
        ({"classes": ["a", "b"]}, "classes must name every class index up to 9, got 2 names"),
    ],
    ids=["lengths", "scores", "max-images", "classes"],
)
def test_show_misclassified_rejects_bad_input(change, match):
    images, targets, predictions = _digits()
    arguments = {"predictions": predictions, **change}
    predictions = arguments.pop("predictions")
    with pytest.raises(ValueError, match=match):
        show_misclassified(images, targets, predictions, **arguments)
