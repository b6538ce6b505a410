"""course_lib.analysis.invariance: image transformations and invariance measured layer by layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.analysis.invariance import feature_similarity, invariance_by_layer, transform_images

F64 = torch.float64


def _images(n: int = 4, c: int = 1, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _circular_gap_net(seed: int = 0) -> nn.Module:
    """Circularly padded convs, ReLU, global average pooling, linear: exactly invariant to circular shifts."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    ).double()


# --- transforms ---------------------------------------------------------------------------------------


def test_whole_pixel_translation_copies_and_fills():
    x = _images(2, 3, 5, 6)
    moved = transform_images(x, "translation", 2, fill=-1.0)
    torch.testing.assert_close(moved[..., 2:], x[..., :4], rtol=0, atol=0)
    assert (moved[..., :2] == -1.0).all()
    left = transform_images(x, "translation", -1)
    torch.testing.assert_close(left[..., :5], x[..., 1:], rtol=0, atol=0)
    assert (left[..., 5] == 0).all()
    assert (transform_images(x, "translation", 6) == 0).all()
    torch.testing.assert_close(transform_images(x, "translation", 0), x, rtol=0, atol=0)


def test_fractional_translation_interpolates_between_the_whole_pixel_shifts():
    x = torch.zeros(1, 1, 5, 9, dtype=torch.float32)
    x[..., 4] = 1.0  # a vertical line in the middle column
    half = transform_images(x, "translation", 0.5)
    # bilinear: the line's mass is shared by columns 4 and 5 and stays 1 per row
    torch.testing.assert_close(half[0, 0, 2].sum(), torch.tensor(1.0))
    assert half[0, 0, 2, 4] > 0 and half[0, 0, 2, 5] > 0


def test_circular_shift_is_a_roll_and_wants_whole_pixels():
    x = _images(1, 1, 4, 5)
    torch.testing.assert_close(transform_images(x, "circular_shift", 2), torch.roll(x, 2, dims=-1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="whole number of pixels"):
        transform_images(x, "circular_shift", 1.5)


def test_rotation_by_90_degrees_is_a_counter_clockwise_quarter_turn_and_scale_1_is_identity():
    x = _images(2, 1, 7, 7).float()
    torch.testing.assert_close(transform_images(x, "rotation", 90), torch.rot90(x, 1, dims=(-2, -1)),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(transform_images(x, "scale", 1.0), x, rtol=1e-6, atol=1e-6)
    zoomed = transform_images(x, "scale", 0.5)
    assert (zoomed[..., 0, :] == 0).all() and (zoomed[..., :, -1] == 0).all()  # shrunk: the border is fill


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(3, 4, 4), "rotation", 10), r"x must have shape \(N, C, H, W\)"),
        ((torch.zeros(1, 1, 4, 4), "shear", 10), "kind must be one of"),
        ((torch.zeros(1, 1, 4, 4), "scale", 0.0), "magnitude must be a finite number > 0"),
        ((torch.zeros(1, 1, 4, 4), "rotation", float("inf")), "magnitude must be a finite number"),
    ],
)
def test_transform_images_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        transform_images(*args)


# --- similarity -----------------------------------------------------------------------------------------


def test_feature_similarity_is_the_cosine_after_centring():
    g = torch.Generator().manual_seed(0)
    a, b, centre = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g), torch.randn(7, generator=g)
    got = feature_similarity(a, b, centre=centre)
    expected = torch.nn.functional.cosine_similarity((a - centre).double(), (b - centre).double(), dim=1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(feature_similarity(a, 3 * a), torch.ones(5, dtype=F64))
    torch.testing.assert_close(feature_similarity(a, -a), -torch.ones(5, dtype=F64))
    assert feature_similarity(torch.zeros(2, 3), torch.ones(2, 3)).tolist() == [0.0, 0.0]  # not 0/0
    with pytest.raises(ValueError, match="same shape"):
        feature_similarity(a, b[:, :3])
    with pytest.raises(ValueError, match=r"centre must be a \(7,\) tensor"):
        feature_similarity(a, b, centre=centre[:3])


# --- invariance by layer -----------------------------------------------------------------------------------


def test_a_gap_network_is_exactly_invariant_to_circular_shifts_but_its_conv_maps_are_not():
    model = _circular_gap_net()
    x = _images(6)
    rows = invariance_by_layer(model, x, ["1", "3", "4", "6"], "circular_shift", [0, 1, 3, 6])
    by = {(r["layer"], r["magnitude"]): r for r in rows}
    assert [r["layer"] for r in rows] == ["1"] * 4 + ["3"] * 4 + ["4"] * 4 + ["6"] * 4
    for layer in ("4", "6"):  # global average pooling and the logits: invariant
        for shift in (0, 1, 3, 6):
            assert math.isclose(by[layer, shift]["similarity"], 1.0, abs_tol=1e-12)
            assert by[layer, shift]["std"] < 1e-12
    for layer in ("1", "3"):  # the maps themselves move: equivariant, not invariant
        assert math.isclose(by[layer, 0]["similarity"], 1.0, abs_tol=1e-12)
        assert by[layer, 3]["similarity"] < 0.9


def test_invariance_with_a_callable_transform_and_without_centring_matches_a_direct_computation():
    model = _circular_gap_net(seed=2)
    x = _images(5, seed=3)

    def flip(images, magnitude):
        return images.flip(-1) if magnitude else images

    rows = invariance_by_layer(model, x, ["1"], flip, [0, 1], centre=False)
    with torch.no_grad():
        a, b = model[:2](x).flatten(1), model[:2](x.flip(-1)).flatten(1)
    expected = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert math.isclose(rows[0]["similarity"], 1.0, abs_tol=1e-12)
    assert math.isclose(rows[1]["similarity"], expected.mean().item(), rel_tol=1e-12)
    assert math.isclose(rows[1]["std"], expected.std(correction=0).item(), rel_tol=1e-9, abs_tol=1e-12)


def test_centred_similarity_of_unrelated_images_is_near_zero_on_average():
    model = _circular_gap_net(seed=1)
    x = _images(64, seed=5)
    perm = torch.roll(torch.arange(64), 1)

    def swap(images, magnitude):  # "transform" each image into another, unrelated one
        return images[perm] if magnitude else images

    rows = invariance_by_layer(model, x, ["3"], swap, [1])
    assert abs(rows[0]["similarity"]) < 0.1
    raw = invariance_by_layer(model, x, ["3"], swap, [1], centre=False)
    assert raw[0]["similarity"] > 0.5  # ReLU features: all positive, so the raw cosine is high anyway


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": _images(1)}, "at least 2 images"),
        ({"transform": "shear"}, "transform must be one of"),
        ({"transform": 3}, "transform must be one of"),
        ({"magnitudes": []}, "magnitudes must be a non-empty sequence"),
        ({"magnitudes": "12"}, "magnitudes must be a non-empty sequence"),
        ({"magnitudes": [1, float("nan")]}, "magnitudes"),
        ({"centre": 1}, "centre must be a bool"),
        ({"transform": lambda x, m: x[:, :, :4]}, "transform must return a tensor of x's shape"),
        ({"layers": ["7"]}, "no module named '7'"),
    ],
)
def test_invariance_by_layer_refuses_bad_arguments(kwargs, message):
    arguments = {"model": _circular_gap_net(), "x": _images(3), "layers": ["1"], "transform": "rotation",
                 "magnitudes": [0, 10]}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        invariance_by_layer(**arguments)
