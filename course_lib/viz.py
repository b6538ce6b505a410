"""Figures the chapters share: image grids and kernels, with matplotlib.

Every function returns the matplotlib ``Figure`` so a notebook can adjust it
further; in a notebook the figure is shown when the cell ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["to_image_array", "show_images", "show_kernels"]


def to_image_array(image) -> np.ndarray:
    """A (C, H, W) tensor/array with C in (1, 3), an (H, W, 3) array or an (H, W) one,
    as an (H, W) or (H, W, 3) NumPy array for ``imshow``."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"image must have shape (C, H, W) with C in (1, 3), (H, W, 3) or (H, W), got {array.shape}")
    return array


def show_images(
    images: Sequence,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    cmap: str = "gray",
    size: float = 2.6,
    suptitle: str | None = None,
    symmetric: bool = False,
):
    """Show images side by side, one per axis, without ticks.

    Args:
        images: tensors or arrays of shape (C, H, W) or (H, W).
        titles: one title per image.
        ncols: images per row (default: all in one row, at most 6).
        cmap: colormap for single-channel images.
        symmetric: centre the colormap on 0 (for signed filter responses; uses 'RdBu_r').
    """
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image ({len(images)}), got {len(titles)}")
    ncols = ncols or min(len(images), 6)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        array = to_image_array(images[k])
        if symmetric and array.ndim == 2:
            limit = float(np.abs(array).max()) or 1.0
            ax.imshow(array, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(array, cmap=cmap if array.ndim == 2 else None)
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
