"""course_lib.train.augment: random rotation, scaling and shift of a batch, checked against exact cases;
AlexNet's fancy PCA colour shift checked against numpy's covariance and its own statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.data.datasets import TensorSplit
from course_lib.train.augment import RandomAffine, fancy_pca, pca_colour_basis
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


# --- fancy PCA (AlexNet, section 4.1) ---


def _colour_images(n: int = 6, h: int = 5, w: int = 7, seed: int = 0) -> torch.Tensor:
    """RGB images whose channels are correlated (as in photos), so the three eigenvalues differ."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.2, 0.1], [0.8, 0.6, 0.0], [0.5, 0.3, 0.4]])
    raw = torch.rand(n, h, w, 3, generator=g)
    return (raw @ mix.T).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)


def test_pca_basis_diagonalises_the_numpy_covariance():
    images = _colour_images()
    values, vectors = pca_colour_basis(images)
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    cov = np.cov(pixels)
    assert values.shape == (3,) and vectors.shape == (3, 3) and values.dtype == torch.float32
    np.testing.assert_allclose(values.double().numpy(), np.linalg.eigvalsh(cov)[::-1], rtol=1e-5, atol=1e-7)
    v = vectors.double().numpy()
    np.testing.assert_allclose(v @ np.diag(values.double().numpy()) @ v.T, cov, rtol=0, atol=1e-6)
    np.testing.assert_allclose(v.T @ v, np.eye(3), rtol=0, atol=1e-6)  # orthonormal columns
    assert values[0] > values[1] > values[2] > 0  # descending


def test_pca_basis_signs_are_fixed_and_dtype_follows_the_input():
    values, vectors = pca_colour_basis(_colour_images().double())
    assert values.dtype == vectors.dtype == torch.float64
    largest = vectors.gather(0, vectors.abs().argmax(0, keepdim=True))
    assert (largest > 0).all()
    # the result is the same for the channels of a negated image (only the signs of the axes could differ)
    values2, vectors2 = pca_colour_basis(-_colour_images().double())
    torch.testing.assert_close(values2, values)
    torch.testing.assert_close(vectors2, vectors)


def test_grey_images_have_one_axis_along_the_grey_diagonal():
    grey = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(2)).expand(4, 3, 6, 6)
    values, vectors = pca_colour_basis(grey)
    assert values[1].abs() < 1e-6 and values[2].abs() < 1e-6 and values[0] > 0.01
    torch.testing.assert_close(vectors[:, 0], torch.full((3,), 1 / math.sqrt(3)), atol=1e-6, rtol=0)


def test_fancy_pca_adds_one_colour_per_image_in_the_span_with_the_right_statistics():
    images = _colour_images(n=4000, h=2, w=2, seed=1)
    values, vectors = pca_colour_basis(images)
    out = fancy_pca(images, values, vectors, alpha_std=0.1, generator=torch.Generator().manual_seed(0))
    shift = out - images
    assert shift.shape == images.shape
    per_image = shift[:, :, 0, 0]  # (N, 3)
    torch.testing.assert_close(shift, per_image[:, :, None, None].expand_as(shift), atol=1e-6, rtol=0)
    # in the eigenvector basis, coordinate k of the shift is alpha_k * lambda_k with alpha ~ N(0, 0.1^2)
    coords = (per_image.double() @ vectors.double()) / values.double()  # = alpha, (N, 3)
    assert coords.mean(0).abs().max() < 4 * 0.1 / math.sqrt(4000)
    torch.testing.assert_close(coords.std(0), torch.full((3,), 0.1, dtype=torch.float64), atol=0.006, rtol=0)
    corr = torch.corrcoef(coords.T)
    assert (corr - torch.eye(3, dtype=torch.float64)).abs().max() < 0.06  # independent alphas


def test_fancy_pca_alphas_come_from_one_randn_call():
    images = _colour_images(n=5)
    values, vectors = pca_colour_basis(images)
    out = fancy_pca(images, values, vectors, alpha_std=0.3, generator=torch.Generator().manual_seed(7))
    alpha = torch.randn(5, 3, generator=torch.Generator().manual_seed(7)) * 0.3
    expected = images + (vectors @ (alpha * values).T).T[:, :, None, None]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_fancy_pca_is_reproducible_and_zero_std_is_the_identity():
    images = _colour_images()
    values, vectors = pca_colour_basis(images)
    a = fancy_pca(images, values, vectors, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, fancy_pca(images, values, vectors, generator=torch.Generator().manual_seed(3)))
    assert not torch.allclose(a, fancy_pca(images, values, vectors, generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(fancy_pca(images, values, vectors, alpha_std=0.0), images)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(3, 8, 8), r"images must have shape \(N, 3, H, W\) \(4 dims\), got shape \(3, 8, 8\)"),
        (torch.zeros(2, 1, 8, 8), r"images must have 3 colour channels, shape \(N, 3, H, W\), got shape \(2, 1, 8, 8\)"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "images must be a floating-point tensor"),
        (np.zeros((2, 3, 4, 4)), r"images must be a torch.Tensor of shape \(N, 3, H, W\), got ndarray"),
        (torch.zeros(1, 3, 1, 1), "images must hold at least 2 pixels"),
    ],
)
def test_pca_basis_bad_images_raise(images, match):
    with pytest.raises(ValueError, match=match):
        pca_colour_basis(images)


def test_fancy_pca_bad_arguments_raise():
    images = _colour_images()
    values, vectors = pca_colour_basis(images)
    with pytest.raises(ValueError, match=r"images must have 3 colour channels"):
        fancy_pca(images[:, :2], values, vectors)
    with pytest.raises(ValueError, match=r"eigenvalues must have shape \(3,\) and eigenvectors \(3, 3\), got \(2,\) and \(3, 3\)"):
        fancy_pca(images, values[:2], vectors)
    with pytest.raises(ValueError, match=r"eigenvectors must have shape \(3, 3\) \(2 dims\), got shape \(9,\)"):
        fancy_pca(images, values, vectors.reshape(9))
    with pytest.raises(ValueError, match=r"alpha_std must be a finite number >= 0, got -0.1"):
        fancy_pca(images, values, vectors, alpha_std=-0.1)


def test_fancy_pca_is_exported_from_course_lib_train():
    import course_lib.train as train

    assert train.fancy_pca is fancy_pca and train.pca_colour_basis is pca_colour_basis
