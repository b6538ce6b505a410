"""``shapes``: procedurally drawn images with exact masks and boxes, for detection and segmentation.

Each image holds a few filled circles, squares and triangles, each in its own colour, drawn
one after the other on a background (plain grey, Gaussian noise, or a texture of random
gratings plus noise). Because the images are drawn here, every label is exact:

* ``masks`` (N, H, W) int64: the class of each pixel, 0 for the background,
  ``1 + SHAPE_CLASSES.index(kind)`` for a shape (what semantic segmentation predicts);
* ``instances``: per image, a (K, H, W) bool tensor, the *visible* pixels of each of its K
  shapes (a shape drawn later hides what it covers; what instance segmentation predicts);
* ``boxes``: per image, (K, 4) float32 ``(x0, y0, x1, y1)``, the tight box around each visible
  instance, in pixels, ``x1`` and ``y1`` exclusive (what a detector predicts);
* ``labels``: per image, (K,) int64 class of each instance (1 = circle, 2 = square, 3 = triangle).

Seeded: the same arguments give the same images; any size from 16 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_choice, check_int

__all__ = ["BACKGROUNDS", "SHAPE_CLASSES", "Shapes", "make_shapes", "shape_pixels"]

#: The shape kinds; a pixel of kind k has class ``1 + SHAPE_CLASSES.index(k)``, the background 0.
SHAPE_CLASSES = ("circle", "square", "triangle")
BACKGROUNDS = ("plain", "noise", "texture")
# A shape is kept only if this many of its pixels stay visible: a sliver is no object.
MIN_VISIBLE_PIXELS = 12


@dataclass(frozen=True)
class Shapes:
    """N images with their exact labels (see the module's docstring for each field's meaning)."""

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    masks: torch.Tensor  # (N, H, W) int64, 0 = background
    instances: list[torch.Tensor]  # N tensors (K_i, H, W) bool
    boxes: list[torch.Tensor]  # N tensors (K_i, 4) float32, (x0, y0, x1, y1), x1 and y1 exclusive
    labels: list[torch.Tensor]  # N tensors (K_i,) int64 in 1..3

    def __len__(self) -> int:
        return self.images.shape[0]


def shape_pixels(kind: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """(size, size) bool: the pixels whose centre lies inside the shape.

    ``centre`` is (x, y) in pixels, ``radius`` half the shape's extent: a circle of that
    radius, a square of side 2 * radius, an upright triangle with its apex ``radius`` above
    the centre and its base ``radius`` below, as wide as the square.
    """
    check_choice("kind", kind, SHAPE_CLASSES)
    y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    dx, dy = x - centre[0], y - centre[1]
    if kind == "circle":
        return dx**2 + dy**2 <= radius**2
    if kind == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    # Triangle: inside the base line and inside both slanted sides (apex (0, -r), base corners (+-r, r)).
    # |dx| <= half-width at height dy, which grows from 0 at the apex to radius at the base.
    return (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(3, size, size) float in [0, 1]."""
    if kind == "plain":
        return np.full((3, size, size), 0.5)
    noise = rng.normal(0.0, 0.08, (3, size, size))
    if kind == "noise":
        return np.clip(0.5 + noise, 0, 1)
    # Texture: two random gratings (orientation, frequency, phase), in a random tint.
    y, x = np.mgrid[0:size, 0:size]
    pattern = np.zeros((size, size))
    for _ in range(2):
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(4, 12), rng.uniform(0, 2 * np.pi)
        pattern += np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    tint = rng.uniform(0.3, 0.7, (3, 1, 1))
    return np.clip(tint + 0.12 * pattern + noise, 0, 1)


def make_shapes(
    n: int,
    size: int = 64,
    *,
    max_shapes: int = 3,
    background: str = "noise",
    seed: int = 0,
) -> Shapes:
    """N images of ``size`` x ``size`` pixels, each with 1 to ``max_shapes`` shapes, and their exact labels.

    Shapes have radii between size / 10 and size / 4, centres anywhere their whole extent fits,
    and saturated colours far from the background's grey. Shapes drawn later may hide earlier
    ones; a shape with fewer than ``MIN_VISIBLE_PIXELS`` visible pixels is dropped from the
    labels and its few pixels show the background, so every label
    describes something one can see.
    """
    check_int("n", n, 1)
    check_int("size", size, 16)
    check_int("max_shapes", max_shapes, 1)
    check_choice("background", background, BACKGROUNDS)
    check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    instances, boxes, labels = [], [], []
    for i in range(n):
        canvas = _background(background, size, rng)
        owner = np.full((size, size), -1)  # index of the shape that shows at each pixel
        drawn = []  # (class, colour) per shape drawn
        for _ in range(int(rng.integers(1, max_shapes + 1))):
            kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
            radius = rng.uniform(size / 10, size / 4)
            centre = tuple(rng.uniform(radius, size - radius, 2))
            # A saturated colour: one channel high, one low, one anywhere (never the background's grey).
            colour = rng.permutation([rng.uniform(0.8, 1.0), rng.uniform(0.0, 0.2), rng.uniform(0.0, 1.0)])
            owner[shape_pixels(kind, centre, radius, size)] = len(drawn)
            drawn.append((1 + SHAPE_CLASSES.index(kind), colour))
        kept_masks, kept_boxes, kept_labels = [], [], []
        for index, (label, colour) in enumerate(drawn):
            visible = owner == index
            if visible.sum() < MIN_VISIBLE_PIXELS:
                continue
            canvas[:, visible] = np.asarray(colour)[:, None]
            masks[i][visible] = label
            rows, cols = np.nonzero(visible)
            kept_masks.append(visible)
            kept_boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            kept_labels.append(label)
        images[i] = canvas
        instances.append(torch.from_numpy(np.stack(kept_masks) if kept_masks else np.zeros((0, size, size), bool)))
        boxes.append(torch.tensor(kept_boxes, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(kept_labels, dtype=torch.int64))
    return Shapes(torch.from_numpy(images), torch.from_numpy(masks), instances, boxes, labels)
