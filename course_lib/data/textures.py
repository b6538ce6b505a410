"""Textures: square patches of three scikit-image photos, brick, grass and gravel, one class each.

``skimage.data.brick()``, ``grass()`` and ``gravel()`` ship inside the
scikit-image wheel as 512x512 grayscale uint8 photos. Each patch is cut from
one of them at a seeded random position; its label is the photo's index in
``TEXTURE_CLASSES``.

========== ======================================= ============================
name       what                                    shape of ``x``
========== ======================================= ============================
textures   brick / grass / gravel patches          (N, 1, p, p) in [0, 1]
========== ======================================= ============================

The region rule, which keeps train and test apart: the train patches lie in
the left three quarters of each photo (columns 0..383), the test patches in
the right quarter (columns 384..511), every patch wholly inside its region,
at any row. No test pixel is ever seen in training, so a test score measures
how well a model recognises a texture, not how well it remembers a picture.
``texture_region`` gives the columns of each region and
``texture_patch_origins`` the top-left corner of every patch.

The test part has ``patches_per_class // 4`` patches per class (50 by
default), the train part ``patches_per_class`` (200 by default): the same
3 : 1 ratio as the areas of the two regions. Within a class the positions
are distinct (patches may overlap); the patches come in a seeded random
order, the classes mixed.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .._checks import check_choice, check_int

__all__ = ["TEXTURE_CLASSES", "load_textures", "texture_patch_origins", "texture_region"]

TEXTURE_CLASSES = ("brick", "grass", "gravel")  # indexed by label; each a skimage.data photo

_PHOTO_SIZE = 512  # height and width of each of the three photos
_BORDER = 3 * _PHOTO_SIZE // 4  # first column of the test region (384)
_SPLITS = ("train", "test")


def texture_region(split: str) -> tuple[int, int]:
    """The columns ``[start, stop)`` of each 512x512 photo that the patches of ``split`` lie in (all rows).

    ``(0, 384)`` for ``"train"``, ``(384, 512)`` for ``"test"``: disjoint, so no
    pixel is in both a train and a test patch.
    """
    check_choice("split", split, _SPLITS)
    return (0, _BORDER) if split == "train" else (_BORDER, _PHOTO_SIZE)


@functools.lru_cache(maxsize=1)
def _texture_photos() -> tuple[np.ndarray, ...]:
    """The three photos as (512, 512) uint8 arrays, in the order of TEXTURE_CLASSES, read once per process."""
    import skimage.data

    photos = []
    for name in TEXTURE_CLASSES:
        photo = np.ascontiguousarray(getattr(skimage.data, name)())
        if photo.shape != (_PHOTO_SIZE, _PHOTO_SIZE) or photo.dtype != np.uint8:
            raise RuntimeError(f"skimage.data.{name}() is no longer a 512x512 uint8 image: {photo.shape} {photo.dtype}")
        photo.flags.writeable = False
        photos.append(photo)
    return tuple(photos)


def _check_arguments(split: str, patch_size: int, patches_per_class: int, seed: int) -> int:
    """Validate the arguments shared by load_textures and texture_patch_origins; the patches per class of ``split``."""
    check_choice("split", split, _SPLITS)
    narrowest = min(stop - start for start, stop in map(texture_region, _SPLITS))  # the test region: 128
    check_int("patch_size", patch_size, 1)
    if patch_size > narrowest:
        raise ValueError(f"patch_size must be at most {narrowest} (the width of the test region), got {patch_size!r}")
    check_int("patches_per_class", patches_per_class, 4)  # the test part gets patches_per_class // 4 >= 1
    check_int("seed", seed, 0)
    per_class = patches_per_class if split == "train" else patches_per_class // 4
    start, stop = texture_region(split)
    positions = (_PHOTO_SIZE - patch_size + 1) * (stop - start - patch_size + 1)
    if per_class > positions:
        raise ValueError(
            f"patches_per_class asks for {per_class} distinct {split} patches of size {patch_size} per class, "
            f"but the {split} region has only {positions} positions for them, got {patches_per_class!r}"
        )
    return per_class


def _sample_origins(split: str, patch_size: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2) int64 top-left (row, column) of each patch, (N,) int64 labels), in a seeded random order."""
    start, stop = texture_region(split)
    rows, cols = _PHOTO_SIZE - patch_size + 1, stop - start - patch_size + 1
    rng = np.random.default_rng([seed, _SPLITS.index(split)])  # train and test draw from unrelated streams
    origins, labels = [], []
    for label in range(len(TEXTURE_CLASSES)):
        flat = rng.choice(rows * cols, size=per_class, replace=False)  # distinct positions within a class
        origins.append(np.stack([flat // cols, start + flat % cols], axis=1))
        labels.append(np.full(per_class, label))
    order = rng.permutation(per_class * len(TEXTURE_CLASSES))
    return np.concatenate(origins)[order].astype(np.int64), np.concatenate(labels)[order].astype(np.int64)


def texture_patch_origins(
    split: str = "train", *, patch_size: int = 32, patches_per_class: int = 200, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the patches of ``load_textures`` with the same arguments come from, in the same order.

    Returns:
        origins: (N, 2) int64, the (row, column) of each patch's top-left pixel in its photo;
            the patch covers rows ``row:row + patch_size`` and columns ``column:column + patch_size``.
        labels: (N,) int64, which photo (``TEXTURE_CLASSES[label]``): the labels ``load_textures`` returns.
    """
    per_class = _check_arguments(split, patch_size, patches_per_class, seed)
    origins, labels = _sample_origins(split, patch_size, per_class, seed)
    return torch.from_numpy(origins), torch.from_numpy(labels)


def load_textures(
    split: str = "train", *, patch_size: int = 32, patches_per_class: int = 200, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One part of the three-class texture dataset, as (patches, labels).

    Args:
        split: ``"train"`` (patches from columns 0..383 of each photo) or
            ``"test"`` (columns 384..511); see ``texture_region``.
        patch_size: the side of the square patches, 1 to 128 pixels.
        patches_per_class: train patches per class, at least 4; the test part
            gets ``patches_per_class // 4`` per class.
        seed: seeds the positions of the patches and their order.

    Returns:
        patches: (N, 1, patch_size, patch_size) float32 in [0, 1], N = 3 * patches per class
            (600 train or 150 test patches by default).
        labels: (N,) int64 in {0, 1, 2} (``TEXTURE_CLASSES[label]``), as many of each.
    """
    per_class = _check_arguments(split, patch_size, patches_per_class, seed)
    origins, labels = _sample_origins(split, patch_size, per_class, seed)
    photos = np.stack(_texture_photos())  # (3, 512, 512) uint8
    windows = np.lib.stride_tricks.sliding_window_view(photos, (patch_size, patch_size), axis=(1, 2))
    patches = windows[labels, origins[:, 0], origins[:, 1]]  # (N, patch_size, patch_size), a copy
    x = torch.from_numpy(patches).unsqueeze(1).float().div_(255.0)
    return x, torch.from_numpy(labels)
