"""course_lib's nearest-neighbour and bed-of-nails upsampling equal PyTorch's, values and gradients.

Nearest neighbour is compared with ``F.interpolate(mode="nearest")``; bed of nails with
``F.max_unpool2d`` given the top-left index of every block (the unpooling of a max pooling
that always picked the top-left pixel), and with a stride-S transposed convolution whose
kernel is a single 1 at its top-left (zero insertion alone).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers.functional.upsampling import bed_of_nails, upsample_nearest
from torch_reference import assert_same_values_and_grads, random_tensor

# Values are copies (exact); the gradients of nearest neighbour are sums over blocks, added in another order.
TOLERANCES = {torch.float64: {"atol": 1e-12, "rtol": 1e-12}, torch.float32: {"atol": 1e-6, "rtol": 1e-6}}

# (input shape, scale): square and non-square inputs, one channel and several, int and pair scales, 1 included.
CASES = [
    ((1, 1, 3, 3), 2),
    ((2, 3, 4, 5), 2),
    ((2, 3, 4, 5), 3),
    ((3, 2, 5, 2), (2, 3)),
    ((1, 4, 2, 6), (3, 1)),
    ((2, 2, 3, 4), 1),
    ((1, 2, 1, 1), 4),
]


def _ids(case) -> str:
    shape, scale = case
    return "x".join(map(str, shape)) + f"-s{scale if isinstance(scale, int) else '%dx%d' % scale}"


def _pair(scale):
    return (scale, scale) if isinstance(scale, int) else scale


def _top_left_indices(shape, scale) -> torch.Tensor:
    """int64 indices (of ``shape``) of each block's top-left pixel in the flattened (s_h H, s_w W) output plane."""
    n, c, h, w = shape
    sh, sw = _pair(scale)
    rows = torch.arange(h)[:, None] * sh
    cols = torch.arange(w)[None, :] * sw
    return (rows * (w * sw) + cols).expand(n, c, h, w).contiguous()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_upsample_nearest_equals_interpolate(case, dtype):
    shape, scale = case
    x = random_tensor(*shape, dtype=dtype, requires_grad=True)
    assert torch.equal(upsample_nearest(x, scale), F.interpolate(x, scale_factor=_pair(scale), mode="nearest"))
    assert_same_values_and_grads(
        lambda t: upsample_nearest(t, scale),
        lambda t: F.interpolate(t, scale_factor=_pair(scale), mode="nearest"),
        [x], TOLERANCES[dtype], names=["input"],
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_bed_of_nails_equals_max_unpool_with_top_left_indices(case, dtype):
    shape, scale = case
    x = random_tensor(*shape, dtype=dtype, requires_grad=True)
    indices = _top_left_indices(shape, scale)
    sh, sw = _pair(scale)
    size = (shape[2] * sh, shape[3] * sw)
    assert torch.equal(bed_of_nails(x, scale), F.max_unpool2d(x, indices, _pair(scale), output_size=size))
    assert_same_values_and_grads(
        lambda t: bed_of_nails(t, scale),
        lambda t: F.max_unpool2d(t, indices, _pair(scale), output_size=(shape[2] * sh, shape[3] * sw)),
        [x], TOLERANCES[dtype], names=["input"],
    )


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_bed_of_nails_is_zero_insertion_of_a_transposed_conv(case):
    """A stride-S transposed conv whose S x S kernel is 1 at its top-left, 0 elsewhere, only inserts zeros."""
    shape, scale = case
    sh, sw = _pair(scale)
    channels = shape[1]
    x = random_tensor(*shape, requires_grad=True)
    weight = torch.zeros(channels, 1, sh, sw, dtype=x.dtype)
    weight[:, :, 0, 0] = 1.0
    assert_same_values_and_grads(
        lambda t: bed_of_nails(t, scale),
        lambda t: F.conv_transpose2d(t, weight, stride=(sh, sw), groups=channels),
        [x], TOLERANCES[torch.float64], names=["input"],
    )


def test_gradients_sum_each_block_or_take_its_corner():
    x = random_tensor(1, 2, 3, 4, requires_grad=True)
    upstream = random_tensor(1, 2, 6, 8, seed=1)
    (grad,) = torch.autograd.grad(upsample_nearest(x, 2), x, upstream)
    torch.testing.assert_close(grad, upstream.reshape(1, 2, 3, 2, 4, 2).sum(dim=(3, 5)), atol=1e-12, rtol=0)
    (grad,) = torch.autograd.grad(bed_of_nails(x, 2), x, upstream)
    torch.testing.assert_close(grad, upstream[:, :, ::2, ::2], atol=0, rtol=0)


def test_worked_example():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None]  # one image (C=1, 2, 2)
    assert upsample_nearest(x, 2).tolist() == [[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]
    assert bed_of_nails(x, 2).tolist() == [[[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]]


@pytest.mark.parametrize("fn", [upsample_nearest, bed_of_nails])
def test_one_image_is_a_batch_of_one(fn):
    image = random_tensor(3, 4, 5)
    out = fn(image, (2, 3))
    assert out.shape == (3, 8, 15)
    torch.testing.assert_close(out, fn(image[None], (2, 3))[0], atol=0, rtol=0)


@pytest.mark.parametrize("fn", [upsample_nearest, bed_of_nails])
def test_integer_label_maps_keep_their_dtype(fn):
    labels = torch.randint(0, 4, (2, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    out = fn(labels, 2)
    assert out.dtype == torch.int64 and out.shape == (2, 1, 6, 6)
    assert torch.equal(out[:, :, ::2, ::2], labels)
    if fn is upsample_nearest:
        assert torch.equal(out, F.interpolate(labels.double(), scale_factor=2, mode="nearest").long())


@pytest.mark.parametrize("fn", [upsample_nearest, bed_of_nails])
@pytest.mark.parametrize("scale", [0, -1, 1.5, (2,  0), (2, 2, 2), "2", True])
def test_bad_scale_is_refused_naming_it(fn, scale):
    with pytest.raises(ValueError, match="scale"):
        fn(random_tensor(1, 1, 2, 2), scale)


@pytest.mark.parametrize("fn", [upsample_nearest, bed_of_nails])
@pytest.mark.parametrize("shape", [(4,), (2, 3), (1, 1, 1, 2, 2)])
def test_bad_input_rank_is_refused_naming_both_shapes(fn, shape):
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\) or \(C, H, W\)"):
        fn(random_tensor(*shape), 2)


@pytest.mark.parametrize("fn", [upsample_nearest, bed_of_nails])
def test_non_tensor_input_is_refused_naming_it(fn):
    with pytest.raises(ValueError, match="input must be a torch.Tensor"):
        fn([[1.0, 2.0]], 2)
