"""Faces and non-faces: the 200 images of scikit-image's ``lfw_subset``, with a seeded stratified split.

``skimage.data.lfw_subset()`` ships inside the scikit-image wheel: 200 grayscale
25x25 crops from the Labeled Faces in the Wild dataset. Its docstring says that
the first 100 images are faces and the following 100 are non-faces (patches of
background cut from the same photos), so the label of image ``i`` is
``1`` ("face") for ``i < 100`` and ``0`` ("non-face") otherwise.

========== ======================================= =========================
name       what                                    shape of ``x``
========== ======================================= =========================
faces      100 faces + 100 non-faces (``skimage``) (N, 1, 25, 25) in [0, 1]
========== ======================================= =========================

The split is stratified: each class gives ``round(test_fraction * 100)``
images to the test part and the rest to the train part, so both parts hold
the two classes in equal numbers (75 + 75 and 25 + 25 with the defaults).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .._checks import check_choice, check_int, check_number

__all__ = ["FACE_CLASSES", "load_faces"]

FACE_CLASSES = ("non-face", "face")  # indexed by label: 0 = non-face, 1 = face

_N_PER_CLASS = 100  # lfw_subset: images 0..99 are faces, 100..199 non-faces
_SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _lfw_arrays() -> tuple[np.ndarray, np.ndarray]:
    """lfw_subset as ((200, 25, 25) float32 images in [0, 1], (200,) int64 labels), read once per process.

    scikit-image stores the images as float64 in [0, 1] (not uint8, whatever its
    docstring says), so they are only cast. Read-only: load_faces copies what it hands out.
    """
    import skimage.data

    images = np.ascontiguousarray(skimage.data.lfw_subset(), dtype=np.float32)
    if images.shape != (2 * _N_PER_CLASS, 25, 25):
        raise RuntimeError(f"skimage.data.lfw_subset() changed shape: {images.shape}")
    labels = np.repeat(np.array([1, 0], dtype=np.int64), _N_PER_CLASS)  # faces first, then non-faces
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _split_indices(test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Indices into lfw_subset of the train and the test part, each in a seeded random order."""
    n_test = math.floor(test_fraction * _N_PER_CLASS + 0.5)  # per class; round half up
    if not 1 <= n_test <= _N_PER_CLASS - 1:
        raise ValueError(
            f"test_fraction must leave each class at least one image in train and in test "
            f"(round(test_fraction * {_N_PER_CLASS}) in [1, {_N_PER_CLASS - 1}]), got {test_fraction!r}"
        )
    rng = np.random.default_rng(seed)
    parts = {"train": [], "test": []}
    for first in (0, _N_PER_CLASS):  # the faces, then the non-faces
        order = first + rng.permutation(_N_PER_CLASS)
        parts["test"].append(order[:n_test])
        parts["train"].append(order[n_test:])
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def load_faces(
    split: str = "train", *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One part of the faces / non-faces dataset, as (images, labels).

    Args:
        split: ``"train"`` or ``"test"``. Two calls with the same ``test_fraction``
            and ``seed`` give complementary parts: together they hold each of the
            200 images exactly once.
        test_fraction: the share of each class in the test part; each class gives
            ``round(test_fraction * 100)`` images to it (25 by default).
        seed: seeds the split and the order of the images in each part.

    Returns:
        images: (N, 1, 25, 25) float32 in [0, 1], N = 150 (train) or 50 (test) by default.
        labels: (N,) int64, 1 for a face and 0 for a non-face (``FACE_CLASSES[label]``),
            as many of each.
    """
    check_choice("split", split, _SPLITS)
    check_number("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    check_int("seed", seed, 0)
    images, labels = _lfw_arrays()
    index = _split_indices(float(test_fraction), seed)[split]
    x = torch.from_numpy(images[index]).unsqueeze(1)  # fancy indexing copies: the cache stays intact
    y = torch.from_numpy(labels[index])
    return x, y
