"""course_lib.train.augment: random rotation, scaling and shift of a batch, checked against exact cases."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.data.datasets import TensorSplit
from course_lib.train.augment import RandomAffine
from course_lib.train.gpu_loader import GPULoader


def _batch(b: int = 3, c: int = 2, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _params(b: int, angle_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0)):
    return (torch.full((b,), math.radians(angle_deg)), torch.full((b,), scale), torch.tensor([shift] * b))


def test_identity_parameters_return_the_input():
    x = _batch()
    torch.testing.assert_close(RandomAffine.apply(x, *_params(3)), x, atol=1e-6, rtol=0)


def test_zero_ranges_leave_every_image_unchanged():
    x = _batch()
    out = RandomAffine(degrees=0, scale=(1, 1), translate=0)(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 2), (-2, 1)])
def test_integer_shift_moves_the_content_right_and_down_with_a_zero_border(dx, dy):
    x = _batch(h=7, w=9)
    out = RandomAffine.apply(x, *_params(3, shift=(float(dx), float(dy))))
    expected = torch.zeros_like(x)
    h, w = x.shape[-2:]
    expected[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_positive_quarter_turn_is_clockwise_on_screen():
    x = _batch(h=6, w=6)
    out = RandomAffine.apply(x, *_params(3, angle_deg=90.0))
    # torch.rot90 with k=-1 over (H, W) turns clockwise: row 0 becomes the last column.
    torch.testing.assert_close(out, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_quarter_turn_of_a_non_square_image_keeps_the_pixel_geometry():
    """A 90-degree turn of a 4x8 image: the centre 4x4 block turns like a square image would."""
    x = _batch(b=1, c=1, h=4, w=8)
    out = RandomAffine.apply(x, *_params(1, angle_deg=90.0))
    torch.testing.assert_close(out[..., 2:6], torch.rot90(x[..., 2:6], k=-1, dims=(2, 3)), atol=1e-5, rtol=0)
    assert out[..., :2].abs().max() < 1e-6 and out[..., 6:].abs().max() < 1e-6  # nothing maps there


def test_scale_two_enlarges_the_centre():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 3:5, 3:5] = 1.0  # a 2x2 square in the middle
    out = RandomAffine.apply(x, *_params(1, scale=2.0))
    assert out.sum().item() == pytest.approx(4 * x.sum().item(), rel=0.15)  # area x4
    assert out[..., 3:5, 3:5].min() == pytest.approx(1.0)
    assert out[..., 0, :].abs().max() == 0 and out[..., :, 0].abs().max() == 0


def test_sample_draws_in_the_ranges_and_in_a_fixed_order():
    aug = RandomAffine(degrees=15, scale=(0.8, 1.2), translate=3)
    angle, scale, shift = aug.sample(1000, torch.Generator().manual_seed(0))
    assert angle.shape == scale.shape == (1000,) and shift.shape == (1000, 2)
    assert angle.abs().max() <= math.radians(15) and angle.abs().max() > math.radians(14)
    assert 0.8 <= scale.min() and scale.max() <= 1.2
    assert shift.abs().max() <= 3 and shift.abs().max() > 2.9
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(angle, (torch.rand(1000, generator=g) * 2 - 1) * math.radians(15))


def test_call_equals_apply_of_sample_and_is_reproducible():
    aug = RandomAffine()
    x = _batch(b=5)
    out = aug(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, aug.apply(x, *aug.sample(5, torch.Generator().manual_seed(3))))
    torch.testing.assert_close(out, aug(x, torch.Generator().manual_seed(3)))
    assert not torch.allclose(out, aug(x, torch.Generator().manual_seed(4)))


def test_each_image_gets_its_own_transform():
    x = _batch(b=4, c=1).expand(4, 1, 8, 8).clone()
    x[:] = x[0]  # four copies of one image
    out = RandomAffine(degrees=20, translate=2)(x, torch.Generator().manual_seed(0))
    assert all(not torch.allclose(out[0], out[k]) for k in range(1, 4))


def test_integer_images_come_back_as_floats():
    x = torch.ones(2, 1, 5, 5, dtype=torch.uint8)
    out = RandomAffine.apply(x, *_params(2))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.ones(2, 1, 5, 5), atol=1e-6)


def test_plugs_into_gpu_loader():
    x = _batch(b=10, c=1, h=6, w=6)
    y = torch.arange(10)
    split = TensorSplit("toy", x, y, x[:2], y[:2], tuple(str(k) for k in range(10)))
    loader = GPULoader.from_split(split, batch_size=4, device="cpu", seed=0, augment=RandomAffine())
    batches = list(loader)
    assert [tuple(b.shape) for b, _ in batches] == [(4, 1, 6, 6), (4, 1, 6, 6), (2, 1, 6, 6)]
    assert not torch.allclose(torch.cat([b for b, _ in batches]), x[torch.cat([yb for _, yb in batches])])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"degrees": -1}, "degrees must be a finite number >= 0, got -1"),
        ({"degrees": float("nan")}, "degrees must be a finite number >= 0"),
        ({"translate": True}, "translate must be a finite number >= 0, got True"),
        ({"scale": (1.2, 0.8)}, r"scale must be a pair \(low, high\) with 0 < low <= high, got \(1.2, 0.8\)"),
        ({"scale": (0, 1)}, "scale must be a pair"),
        ({"scale": 1.1}, "scale must be a pair"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomAffine(**kwargs)


def test_bad_shapes_raise():
    aug = RandomAffine()
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\), got \(8, 8\)"):
        aug(torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"angle and scale must have shape \(2,\) and shift \(2, 2\)"):
        RandomAffine.apply(torch.zeros(2, 1, 4, 4), *_params(3))


def test_repr():
    assert repr(RandomAffine(5, (0.9, 1.0), 1)) == "RandomAffine(degrees=5, scale=(0.9, 1.0), translate=1)"
