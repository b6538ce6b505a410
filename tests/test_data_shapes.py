"""course_lib.data.shapes: the labels agree with the drawing, exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.data.shapes import BACKGROUNDS, MIN_VISIBLE_PIXELS, SHAPE_CLASSES, make_shapes, shape_pixels


@pytest.fixture(scope="module", params=BACKGROUNDS)
def data(request):
    return make_shapes(40, 48, max_shapes=4, background=request.param, seed=3)


def test_shapes_and_types(data):
    assert data.images.shape == (40, 3, 48, 48) and data.images.dtype == torch.float32
    assert data.masks.shape == (40, 48, 48) and data.masks.dtype == torch.int64
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert len(data) == len(data.instances) == len(data.boxes) == len(data.labels) == 40
    for inst, box, label in zip(data.instances, data.boxes, data.labels):
        k = len(label)
        assert inst.shape == (k, 48, 48) and inst.dtype == torch.bool
        assert box.shape == (k, 4) and label.dtype == torch.int64


def test_class_mask_is_the_union_of_the_instances(data):
    for i in range(len(data)):
        rebuilt = torch.zeros(48, 48, dtype=torch.int64)
        for mask, label in zip(data.instances[i], data.labels[i]):
            assert not (rebuilt[mask] != 0).any(), "instances overlap"
            rebuilt[mask] = label
        assert torch.equal(rebuilt, data.masks[i])


def test_boxes_are_the_tight_boxes_of_the_visible_pixels(data):
    for inst, boxes in zip(data.instances, data.boxes):
        for mask, (x0, y0, x1, y1) in zip(inst, boxes.tolist()):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            assert mask.sum() >= MIN_VISIBLE_PIXELS


def test_each_instance_has_one_colour_and_the_background_another(data):
    for i in range(len(data)):
        image = data.images[i]
        for mask in data.instances[i]:
            pixels = image[:, mask]  # (3, pixels)
            assert torch.equal(pixels.min(dim=1).values, pixels.max(dim=1).values), "a shape is one colour"
            # Saturated: one channel >= 0.8 and one <= 0.2, never the background's grey.
            assert pixels[:, 0].max() >= 0.8 and pixels[:, 0].min() <= 0.2


def test_seeded_and_varied():
    a, b, c = make_shapes(5, 32, seed=1), make_shapes(5, 32, seed=1), make_shapes(5, 32, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    every = make_shapes(300, 32, max_shapes=3, seed=0)
    counts = torch.bincount(torch.cat(every.labels), minlength=4)[1:]
    assert (counts > 150).all(), f"every kind drawn often: {counts.tolist()}"


@pytest.mark.parametrize("kind, area", [("circle", math.pi * 100), ("square", 400.0), ("triangle", 200.0)])
def test_drawn_shape_has_its_area_and_extent(kind, area):
    pixels = shape_pixels(kind, (32.0, 32.0), 10.0, 64)
    assert abs(pixels.sum() - area) / area < 0.05
    rows, cols = np.nonzero(pixels)
    assert cols.min() >= 22 and cols.max() <= 41 and rows.min() >= 22 and rows.max() <= 41
    if kind == "triangle":  # apex at the top: the first row is narrower than the last
        assert pixels[rows.min()].sum() < pixels[rows.max()].sum()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="size"):
        make_shapes(2, 8)
    with pytest.raises(ValueError, match="background"):
        make_shapes(2, 32, background="stripes")
    with pytest.raises(ValueError, match="kind"):
        shape_pixels("hexagon", (5.0, 5.0), 3.0, 16)
    assert SHAPE_CLASSES == ("circle", "square", "triangle")


def test_on_a_plain_background_the_mask_is_exactly_where_something_was_drawn():
    plain = make_shapes(30, 40, max_shapes=4, background="plain", seed=5)
    grey = (plain.images == 0.5).all(dim=1)  # (N, H, W): pixels left as the background
    assert torch.equal(grey, plain.masks == 0)
