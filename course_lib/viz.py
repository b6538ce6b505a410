"""Figures the chapters share: image grids, kernels, timings and classifier diagnostics, with matplotlib.

Every function returns the matplotlib ``Figure`` so a notebook can adjust it
further; in a notebook the figure is shown when the cell ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator, PercentFormatter

__all__ = [
    "describe_figure",
    "to_image_array",
    "show_images",
    "show_kernels",
    "show_timings",
    "show_confusion_matrix",
    "show_misclassified",
]


def describe_figure(figure) -> str:
    """A one-line description of a matplotlib figure from its titles (the book's alt text).

    ``"<suptitle>: <panel title>; <panel title>; ..."``, each title once, in
    panel order; a figure with no title at all gets matplotlib's own
    ``<Figure size ... with N Axes>``, which the book build reports as untitled.
    """
    suptitle = figure._suptitle.get_text().strip() if getattr(figure, "_suptitle", None) else ""
    panels: list[str] = []
    for axes in figure.axes:
        title = " ".join(t.strip() for t in (axes.get_title("left"), axes.get_title(), axes.get_title("right")) if t.strip())
        if title and title not in panels:
            panels.append(title)
    if not suptitle and not panels:
        return repr(figure)
    if not panels:
        return suptitle
    return f"{suptitle}: {'; '.join(panels)}" if suptitle else "; ".join(panels)


def to_image_array(image) -> np.ndarray:
    """A (C, H, W) tensor/array with C in (1, 3), an (H, W, 3) array or an (H, W) one,
    as an (H, W) or (H, W, 3) NumPy array for ``imshow``."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image must have shape (C, H, W) with C in (1, 3), (H, W, 3) or (H, W), got {array.shape}")
    return array


def _abs_max(arrays: Sequence[np.ndarray]) -> float:
    """Largest |value| in ``arrays``, or 1 when all are 0 (a colour scale needs a range)."""
    return max(float(np.abs(a).max()) for a in arrays) or 1.0


def _panel_limits(arrays: list[np.ndarray], symmetric: bool, share: bool, vmin, vmax) -> list[tuple]:
    """(vmin, vmax) of each panel; None where matplotlib picks the limit (and for RGB panels, which have none)."""
    flat = [a for a in arrays if a.ndim == 2]
    shared = None
    if vmin is not None or vmax is not None:
        shared = (vmin, vmax)
    elif share and flat:
        if symmetric:
            shared = (-_abs_max(flat), _abs_max(flat))
        else:
            shared = (min(float(a.min()) for a in flat), max(float(a.max()) for a in flat))
    limits = []
    for array in arrays:
        if array.ndim != 2:
            limits.append((None, None))
        elif shared is not None:
            limits.append(shared)
        elif symmetric:
            limits.append((-_abs_max([array]), _abs_max([array])))
        else:
            limits.append((None, None))
    return limits


def show_images(
    images: Sequence,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    cmap: str | None = None,
    cmaps: Sequence[str | None] | None = None,
    size: float = 2.6,
    suptitle: str | None = None,
    symmetric: bool = False,
    share_limits: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Show images side by side, one per axis, without ticks.

    Args:
        images: tensors or arrays of shape (C, H, W) with C in (1, 3), (H, W, 3) or (H, W).
        titles: one title per image.
        ncols: images per row (default: all in one row, at most 6).
        cmap: colormap of the single-channel images (default 'gray', or
            'RdBu_r' with ``symmetric``). RGB images are shown as they are.
        cmaps: one colormap per image, e.g. ``["gray", "RdBu_r"]`` for a photo
            beside its signed Sobel response; a None entry falls back to ``cmap``.
        symmetric: centre the colour scale on 0, from ``-m`` to ``m`` with
            ``m`` the largest ``|value|`` (for signed filter responses).
        share_limits: one colour scale for all single-channel panels, from
            the smallest to the largest value of all of them (with
            ``symmetric``: ``m`` over all of them), so panels compare directly.
            Without it, each panel is scaled to its own range.
        vmin, vmax: fixed limits of the colour scale, the same for every
            single-channel panel (e.g. ``vmin=0, vmax=1`` for images in [0, 1]);
            not combined with ``symmetric`` or ``share_limits``.
    """
    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    if cmaps is not None and len(cmaps) != n:
        raise ValueError(f"cmaps must have one entry per image ({n}), got {len(cmaps)}")
    if (vmin is not None or vmax is not None) and (symmetric or share_limits):
        raise ValueError("vmin/vmax fix the colour scale: do not combine them with symmetric or share_limits")
    arrays = [to_image_array(image) for image in images]
    limits = _panel_limits(arrays, symmetric, share_limits, vmin, vmax)
    default_cmap = cmap or ("RdBu_r" if symmetric else "gray")
    ncols = ncols or min(n, 6)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        if arrays[k].ndim == 2:
            panel_cmap = (cmaps[k] if cmaps is not None else None) or default_cmap
            ax.imshow(arrays[k], cmap=panel_cmap, vmin=limits[k][0], vmax=limits[k][1])
        else:
            ax.imshow(arrays[k])
        if titles is not None:
            ax.set_title(titles[k], fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_kernels(weight: torch.Tensor, *, ncols: int = 8, size: float = 1.2, suptitle: str | None = None):
    """Show conv kernels (C_out, C_in, kH, kW) as small images, one per output channel.

    Single-channel kernels use a diverging colormap centred on 0; 3-channel
    kernels are shown as RGB after scaling each to [0, 1].
    """
    if weight.ndim != 4 or weight.shape[1] not in (1, 3):
        raise ValueError(f"weight must have shape (C_out, 1 or 3, kH, kW), got {tuple(weight.shape)}")
    w = weight.detach().cpu()
    if w.shape[1] == 3:
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        w = (w - lo) / (hi - lo).clamp_min(1e-12)
        return show_images(list(w), ncols=ncols, size=size, suptitle=suptitle)
    return show_images(list(w), ncols=min(ncols, len(w)), size=size, suptitle=suptitle, symmetric=True)


_TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}
_TIMING_KEYS = ("name", "seconds", "ratio")


def _timing_frame(rows: Sequence[Mapping], by: str | None) -> tuple[pd.DataFrame, str | None]:
    """The rows as a DataFrame, after checking them; and the key that tells the runs apart."""
    if not rows:
        raise ValueError("rows must hold at least one timing")
    extra = list(dict.fromkeys(key for row in rows for key in row if key not in _TIMING_KEYS))
    if by is None and len(extra) > 1:
        raise ValueError(f"rows have several extra keys {extra}: pass by= the one that tells the runs apart")
    by = by if by is not None else (extra[0] if extra else None)
    for k, row in enumerate(rows):
        missing = [key for key in ("name", "seconds", by) if key is not None and key not in row]
        if missing:
            raise ValueError(f"rows[{k}] lacks {missing}: each row needs 'name', 'seconds'" + (f" and {by!r}" if by else ""))
    frame = pd.DataFrame([dict(row) for row in rows])
    if by is None:
        frame["run"] = ""  # a single run: one group of bars
    repeated = frame.duplicated([by or "run", "name"]).to_numpy()
    if repeated.any():
        first = rows[int(repeated.argmax())]
        where = f" for {by} = {first[by]!r}" if by else ""
        raise ValueError(f"rows time {first['name']!r} twice{where}" + ("" if by else ": pass by= the key that tells the runs apart"))
    return frame, by


def show_timings(
    rows: Sequence[Mapping],
    *,
    by: str | None = None,
    baseline: str | None = None,
    unit: str = "ms",
    xlabel: str | None = None,
    title: str | None = None,
    legend_title: str = "function",
    figsize: tuple[float, float] = (7, 3.8),
):
    """Timings of several functions as a table, and their slowdowns as a log-scale bar plot.

    Args:
        rows: dicts with ``name``, ``seconds`` and ``ratio``, as returned by
            :func:`course_lib.analysis.compare_timings`, from one run or from
            several, each row then carrying the setting that varies between
            runs under an extra key (e.g. ``{"size": 64, **row}``).
        by: that extra key (default: the only key besides name, seconds, ratio).
        baseline: the function the others are compared with (default: the one
            whose ``ratio`` is 1 in every run, i.e. ``compare_timings``'
            baseline). The plotted ratios are ``seconds / seconds of baseline``
            in the same run.
        unit: of the table's times: ``"s"``, ``"ms"`` or ``"us"``.
        xlabel, title: of the plot (defaults: ``by`` and "Time relative to <baseline>").
        legend_title: title of the plot's legend.

    Returns:
        ``(table, fig)``: ``table`` is a DataFrame of median times in ``unit``,
        one row per value of ``by`` and one column per function, in the order
        the rows first name them (a combination not timed is NaN); ``fig`` shows
        for every run one bar per function other than the baseline, its time
        divided by the baseline's, on a log scale with a dashed line at 1
        (above it: slower than the baseline).
    """
    if unit not in _TIME_UNITS:
        raise ValueError(f"unit must be one of {list(_TIME_UNITS)}, got {unit!r}")
    frame, by = _timing_frame(rows, by)
    index = by or "run"
    names = list(dict.fromkeys(frame["name"]))
    seconds = frame.pivot(index=index, columns="name", values="seconds").reindex(
        index=list(dict.fromkeys(frame[index])), columns=names
    )
    if baseline is None:
        if "ratio" not in frame:
            raise ValueError("rows have no 'ratio': pass baseline= the function to compare with")
        ratios = frame.pivot(index=index, columns="name", values="ratio")
        candidates = [name for name in names if (ratios[name] == 1.0).all()]
        if not candidates:
            raise ValueError("no function has ratio 1 in every run: pass baseline= the function to compare with")
        baseline = candidates[0]
    elif baseline not in names:
        raise ValueError(f"baseline must be one of {names}, got {baseline!r}")
    if len(names) < 2:
        raise ValueError(f"rows must time at least one function besides the baseline {baseline!r}")

    table = seconds * _TIME_UNITS[unit]
    if by is None:
        table.index.name = None
    slowdown = seconds.div(seconds[baseline], axis=0).drop(columns=baseline)
    fig, ax = plt.subplots(figsize=figsize)
    slowdown.plot.bar(ax=ax, logy=True, rot=0)
    ax.axhline(1.0, color="k", linewidth=1, linestyle="--")
    ax.set_xlabel(xlabel if xlabel is not None else (by or ""))
    ax.set_ylabel(f"time / time of {baseline} (log)")
    ax.set_title(title if title is not None else f"Time relative to {baseline}")
    ax.legend(title=legend_title)
    return table, fig


# --- classifier diagnostics -----------------------------------------------------------------------


def _as_numpy(values, name: str) -> np.ndarray:
    """A tensor, array or sequence as a NumPy array (tensors detached and moved to the CPU)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a tensor, an array or a sequence of numbers, got {type(values).__name__}") from None


def _class_names(classes, count: int) -> list[str]:
    """``classes`` as ``count`` strings, or "0", "1", ... when None."""
    if classes is None:
        return [str(k) for k in range(count)]
    names = [str(name) for name in classes]
    if len(names) != count:
        raise ValueError(f"classes must have one name per class ({count}), got {len(names)}")
    return names


def show_confusion_matrix(
    confusion,
    classes: Sequence | None = None,
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
    cmap: str = "Reds",
    size: float = 5.0,
):
    """A confusion matrix as a grid of numbers, the mistakes coloured.

    Args:
        confusion: (C, C) counts, a tensor or array: entry ``[i, j]`` counts the samples of true
            class ``i`` predicted as class ``j`` (``course_lib.train.evaluate(...).confusion``, or
            ``sklearn.metrics.confusion_matrix(y_true, y_pred)``).
        classes: C class names for the axes (default ``0 .. C-1``).
        normalize: show each row divided by its sum (the fraction of class ``i`` predicted as
            ``j``; the diagonal is then each class's recall), as percentages. A class without
            samples keeps a row of zeros.
        title: of the axes.
        cmap: colormap of the off-diagonal cells.
        size: width of the figure in inches (the height follows).

    Rows are true classes, columns predicted classes, and every non-zero cell is
    annotated. With a good classifier the diagonal holds nearly everything, and one
    colour scale for all cells would leave the mistakes invisible; so only the
    off-diagonal cells are coloured, on a scale from 0 to the largest mistake
    (the colorbar), and the diagonal is drawn grey. Returns the Figure.
    """
    matrix = _as_numpy(confusion, "confusion")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or (matrix < 0).any():
        raise ValueError("confusion must hold non-negative counts")
    count = matrix.shape[0]
    names = _class_names(classes, count)
    values = matrix.astype(float)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    errors = values.copy()
    np.fill_diagonal(errors, np.nan)  # drawn in the colormap's "bad" colour
    top = np.nanmax(errors) if count > 1 else 0.0
    colormap = plt.get_cmap(cmap).with_extremes(bad="0.85")  # the colour of the (NaN) diagonal

    fig, ax = plt.subplots(figsize=(size, size * 0.88))
    image = ax.imshow(np.ma.masked_invalid(errors), cmap=colormap, vmin=0, vmax=top if top > 0 else 1)
    for (i, j), value in np.ndenumerate(values):
        if value == 0 and i != j:
            continue  # an empty cell says nothing: leave it blank
        text = f"{100 * value:.0f}%" if normalize else f"{matrix[i, j]:g}"
        dark = i != j and top > 0 and value > 0.6 * top
        ax.text(j, i, text, ha="center", va="center", fontsize=8 if count > 12 else 9,
                color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(count), names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(count), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if normalize:
        colorbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        colorbar.set_label("share of the true class (mistakes)")
    else:
        colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.25 ticks
        colorbar.set_label("misclassified samples")
    fig.tight_layout()
    return fig


def show_misclassified(
    images,
    targets,
    predictions,
    *,
    classes: Sequence | None = None,
    scores=None,
    max_images: int = 24,
    ncols: int = 8,
    size: float = 1.4,
    suptitle: str | None = None,
    cmap: str = "gray",
):
    """A grid of the examples a classifier got wrong, each titled with its true and predicted class.

    Args:
        images: (N, C, H, W) with C in (1, 3), or (N, H, W): the inputs, as a tensor or array.
        targets, predictions: (N,) true and predicted class indices.
        classes: names of the classes (default: the indices themselves).
        scores: optional (N,) confidence of each prediction (e.g. its softmax probability):
            the most confident mistakes are then shown first, and each title gives the score.
            Without it, mistakes come in the order of ``images``.
        max_images: show at most this many mistakes.
        ncols: panels per row.
        size: inches per panel.
        suptitle: title of the figure (default: "<shown> of <all> misclassified examples").
        cmap: colormap of single-channel images.

    Titles read ``true 4 / pred 9`` (and ``p=0.97`` below with ``scores``). With no
    mistake at all, the figure holds one empty panel that says so. Returns the Figure.
    """
    targets_np = _as_numpy(targets, "targets").reshape(-1)
    predictions_np = _as_numpy(predictions, "predictions").reshape(-1)
    if len(images) != len(targets_np) or len(predictions_np) != len(targets_np):
        raise ValueError(
            f"images, targets and predictions must have the same length, got {len(images)}, "
            f"{len(targets_np)} and {len(predictions_np)}"
        )
    if not isinstance(max_images, int) or isinstance(max_images, bool) or max_images < 1:
        raise ValueError(f"max_images must be a positive int, got {max_images!r}")
    wrong = np.flatnonzero(targets_np != predictions_np)
    scores_np = None
    if scores is not None:
        scores_np = _as_numpy(scores, "scores").reshape(-1).astype(float)
        if len(scores_np) != len(targets_np):
            raise ValueError(f"scores must have one value per example ({len(targets_np)}), got {len(scores_np)}")
        wrong = wrong[np.argsort(-scores_np[wrong], kind="stable")]  # most confident mistakes first
    shown = wrong[:max_images]
    if classes is None:
        names = None
    else:
        names = [str(name) for name in classes]
        largest = int(max(targets_np.max(initial=0), predictions_np.max(initial=0)))
        if largest >= len(names):
            raise ValueError(f"classes must name every class index up to {largest}, got {len(names)} names")
    label = (lambda k: str(int(k))) if names is None else (lambda k: names[int(k)])

    if len(shown) == 0:
        fig, ax = plt.subplots(figsize=(3 * size, 1.5 * size))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no misclassified examples", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(suptitle or f"0 of {len(targets_np)} examples misclassified")
        return fig

    titles = []
    for k in shown:
        title = f"true {label(targets_np[k])} / pred {label(predictions_np[k])}"
        if scores_np is not None:
            title += f"\np={scores_np[k]:.2f}"
        titles.append(title)
    panels = [images[int(k)] for k in shown]
    fig = show_images(panels, titles, ncols=min(ncols, len(panels)), size=size, cmap=cmap,
                      suptitle=suptitle or f"{len(shown)} of {len(wrong)} misclassified examples")
    for ax in fig.axes:
        ax.title.set_fontsize(8)
    fig.tight_layout()
    return fig
