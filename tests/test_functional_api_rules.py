"""Rules of the whole functional API (course_lib.layers.functional), checked against PyTorch.

* One sample or a batch: every function that takes images (convolutions, pooling and their
  explicit backward passes) takes a batch (N, C, H, W) or one image (C, H, W) - (C, L) for
  conv1d - as PyTorch's do, and gives what it gives the batch of one. (Normalization takes
  (N, C, *) as PyTorch's does: a 3-dim input is a batch of signals there.)
* The 1-tuples that modules store (``nn.Conv1d(stride=2).stride == (2,)``) are accepted
  wherever PyTorch's functions accept them.
* An empty batch is normalized to an empty result (group_norm crashed on it).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers import functional as CF
from torch_reference import random_tensor


IMAGE = random_tensor(3, 9, 8)
WEIGHT = random_tensor(4, 3, 3, 3, seed=1)
BIAS = random_tensor(4, seed=2)

# (id, course_lib function, torch function, arguments after the image)
FORWARD = [
    ("conv2d", CF.conv2d, F.conv2d, (WEIGHT, BIAS), dict(stride=2, padding=1)),
    ("conv2d_naive", CF.conv2d_naive, F.conv2d, (WEIGHT, BIAS), dict(padding="same", dilation=2)),
    ("conv_transpose2d", CF.conv_transpose2d, F.conv_transpose2d, (random_tensor(3, 2, 3, 3, seed=3),), dict(stride=2, padding=1)),
    ("max_pool2d", CF.max_pool2d, F.max_pool2d, (3,), dict(stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", CF.avg_pool2d, F.avg_pool2d, (3,), dict(stride=2, padding=1, count_include_pad=False)),
    ("lp_pool2d", CF.lp_pool2d, F.lp_pool2d, (2.0, 2), {}),
    ("adaptive_avg_pool2d", CF.adaptive_avg_pool2d, F.adaptive_avg_pool2d, ((4, 3),), {}),
    ("adaptive_max_pool2d", CF.adaptive_max_pool2d, F.adaptive_max_pool2d, ((4, 3),), {}),
    # F.interpolate reads a 3-dim input as (N, C, L): give it the image as a batch of one.
    ("upsample_nearest", CF.upsample_nearest,
     lambda x, s: F.interpolate(x[None], scale_factor=s, mode="nearest")[0], (2,), {}),
]  # fmt: skip


@pytest.mark.parametrize(("ours", "theirs", "args", "kwargs"), [pytest.param(*f[1:], id=f[0]) for f in FORWARD])
def test_one_image_is_a_batch_of_one(ours, theirs, args, kwargs):
    expected = theirs(IMAGE, *args, **kwargs)
    out = ours(IMAGE, *args, **kwargs)
    assert out.shape == expected.shape and out.ndim == 3
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, ours(IMAGE.unsqueeze(0), *args, **kwargs).squeeze(0))


def test_one_signal_is_a_batch_of_one_for_conv1d():
    signal, weight = random_tensor(3, 17), random_tensor(4, 3, 5, seed=1)
    out = CF.conv1d(signal, weight, BIAS, stride=2, padding=2)
    torch.testing.assert_close(out, F.conv1d(signal, weight, BIAS, stride=2, padding=2))
    assert out.shape == (4, 9)


def test_max_pool2d_indices_of_one_image_unpool_it():
    out, indices = CF.max_pool2d(IMAGE, 2, return_indices=True)
    expected, expected_indices = F.max_pool2d(IMAGE, 2, return_indices=True)
    torch.testing.assert_close(out, expected)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(CF.max_unpool2d(out, indices, 2, output_size=IMAGE.shape[-2:]),
                               F.max_unpool2d(expected, expected_indices, 2, output_size=IMAGE.shape[-2:]))


def _autograd_input_gradient(forward, upstream_seed=7):
    x = IMAGE.clone().requires_grad_()
    out = forward(x)
    upstream = random_tensor(*out.shape, seed=upstream_seed)
    out.backward(upstream)
    return upstream, x.grad


def test_conv2d_backward_of_one_image():
    upstream, expected = _autograd_input_gradient(lambda x: F.conv2d(x, WEIGHT, BIAS, stride=2, padding=1))
    grad_input, grad_weight, grad_bias = CF.conv2d_backward(upstream, IMAGE, WEIGHT, stride=2, padding=1)
    torch.testing.assert_close(grad_input, expected)
    batched = CF.conv2d_backward(upstream.unsqueeze(0), IMAGE.unsqueeze(0), WEIGHT, stride=2, padding=1)
    torch.testing.assert_close(grad_weight, batched[1])  # the weight's gradient keeps its own shape
    torch.testing.assert_close(grad_bias, batched[2])
    assert grad_weight.shape == WEIGHT.shape and grad_bias.shape == (4,)


@pytest.mark.parametrize(("backward", "forward", "kwargs"), [
    pytest.param(CF.max_pool2d_backward, F.max_pool2d, dict(kernel_size=3, stride=2, padding=1), id="max_pool2d"),
    pytest.param(CF.avg_pool2d_backward, F.avg_pool2d, dict(kernel_size=3, stride=2, padding=1), id="avg_pool2d"),
])
def test_pooling_backward_of_one_image(backward, forward, kwargs):
    upstream, expected = _autograd_input_gradient(lambda x: forward(x, **kwargs))
    torch.testing.assert_close(backward(upstream, IMAGE, **kwargs), expected)


@pytest.mark.parametrize("fn", [CF.conv2d, CF.max_pool2d, CF.conv2d_backward], ids=lambda f: f.__name__)
def test_neither_a_batch_nor_an_image_is_refused_naming_both_shapes(fn):
    flat = random_tensor(9, 8)
    args = {"conv2d": (flat, WEIGHT), "max_pool2d": (flat, 2), "conv2d_backward": (flat, flat, WEIGHT)}[fn.__name__]
    with pytest.raises(ValueError, match=r"must have shape \(N, C(_in)?, H, W\) or \(C(_in)?, H, W\), got shape \(9, 8\)"):
        fn(*args)


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), [
    pytest.param(CF.conv1d, F.conv1d, dict(stride=(2,), padding=(1,), dilation=(2,)), id="conv1d"),
    pytest.param(CF.avg_pool2d, F.avg_pool2d, dict(kernel_size=(3,), stride=(2,), padding=(1,)), id="avg_pool2d"),
    pytest.param(CF.max_pool2d, F.max_pool2d, dict(kernel_size=(3,), stride=(2,), padding=(1,)), id="max_pool2d"),
    pytest.param(CF.conv2d, F.conv2d, dict(stride=(2,), padding=(1,)), id="conv2d"),
])
def test_one_tuples_as_modules_store_them(ours, theirs, kwargs):
    if ours is CF.conv1d:
        args = (random_tensor(2, 3, 17), random_tensor(4, 3, 3, seed=1))
    elif ours is CF.conv2d:
        args = (IMAGE.unsqueeze(0), WEIGHT)
    else:
        args = (IMAGE.unsqueeze(0),)
    torch.testing.assert_close(ours(*args, **kwargs), theirs(*args, **kwargs))


def test_conv1d_takes_the_settings_nn_conv1d_stores():
    layer = torch.nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2, dtype=torch.float64)
    x = random_tensor(2, 3, 17)
    out = CF.conv1d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    torch.testing.assert_close(out, layer(x))


@pytest.mark.parametrize("affine", [False, True])
def test_group_norm_of_an_empty_batch_is_empty(affine, recwarn):
    x = torch.zeros(0, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    weight, bias = (random_tensor(4), random_tensor(4, seed=1)) if affine else (None, None)
    out = CF.group_norm(x, 2, weight, bias)
    expected = F.group_norm(x, 2, weight, bias)
    assert out.shape == expected.shape == (0, 4, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert not [w for w in recwarn if "degrees of freedom" in str(w.message)], "no warning about 0 elements"


def test_group_norm_refuses_an_image_without_positions():
    with pytest.raises(ValueError, match=r"^input must have at least one position per channel"):
        CF.group_norm(torch.zeros(2, 4, 0, 5), 2)
