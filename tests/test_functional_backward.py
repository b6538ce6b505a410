"""The hand-written convolution backward equals autograd through F.conv2d; col2im is the adjoint of im2col.

conv2d_backward is run under ``torch.no_grad()`` and on tensors that do not
require grad, so the comparison shows it computes the gradients itself.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers import functional as CF
from torch_reference import assert_same_values_and_grads, random_tensor, random_tensors

TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-9}, torch.float32: {"atol": 1e-4, "rtol": 1e-4}}

# PyTorch warns that padding='same' with an even kernel and odd dilation copies the input; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _pair(value) -> tuple:
    return value if isinstance(value, tuple) else (value, value)


def _fmt(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _fits(x_shape, kernel, stride, padding, dilation) -> bool:
    """Whether F.conv2d accepts the settings: 'same' needs stride 1, the dilated kernel must fit the padded input."""
    if padding == "same":
        return _pair(stride) == (1, 1)
    pad = (0, 0) if padding == "valid" else _pair(padding)
    return all(d * (k - 1) + 1 <= n + 2 * p for n, k, d, p in zip(x_shape[2:], kernel, _pair(dilation), pad))


def _random_problem(x_shape, kernel, c_out, groups, conv_kwargs, dtype=torch.float64, device="cpu"):
    """Seeded x, w, b, the upstream gradient dY, and autograd's gradients of F.conv2d for (x, w, b)."""
    shapes = [x_shape, (c_out, x_shape[1] // groups, *kernel), (c_out,)]
    x, w, b = random_tensors(*shapes, dtype=dtype, device=device, requires_grad=True)
    y = F.conv2d(x, w, b, groups=groups, **conv_kwargs)
    dy = random_tensor(*y.shape, seed=1, dtype=dtype, device=device)
    return x.detach(), w.detach(), dy, torch.autograd.grad(y, (x, w, b), dy)


def assert_backward_matches_autograd(x_shape, kernel, c_out, groups=1, dtype=torch.float64, device="cpu", **conv_kwargs):
    x, w, dy, expected = _random_problem(x_shape, kernel, c_out, groups, conv_kwargs, dtype, device)
    with torch.no_grad():
        grads = CF.conv2d_backward(dy, x, w, groups=groups, **conv_kwargs)
    for name, grad, expected_grad in zip(("grad_input", "grad_weight", "grad_bias"), grads, expected):
        assert grad.shape == expected_grad.shape, name
        torch.testing.assert_close(grad, expected_grad, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


# The grids (also measured by benchmarks/reference_errors.py): (input shape, kernel, C_out, groups, stride,
# padding, dilation).
SHAPES = [
    ((1, 3, 8, 8), (3, 3), 4),  # square, batch 1
    ((2, 2, 7, 10), (2, 4), 3),  # non-square input and kernel, even kernel sides
    ((3, 1, 11, 6), (5, 1), 2),  # tall kernel, one input channel
]
BACKWARD_CASES = [
    (shape, kernel, c_out, 1, s, p, d)
    for (shape, kernel, c_out), s, p, d in itertools.product(
        SHAPES, [1, 3, (1, 2)], [1, (2, 0), "same", "valid"], [1, (2, 1)]
    )
    if _fits(shape, kernel, s, p, d)
]
# groups 1, 2, 4 with two outputs per channel, and depthwise (groups = C_in = C_out).
GROUP_BACKWARD_CASES = [
    ((2, 4, 7, 6), (3, 2), c_out, groups, s, p, d)
    for (s, p, d), (groups, c_out) in itertools.product(
        [(1, 0, 1), (2, 1, 1), (1, "same", 2), ((2, 1), (1, 2), (1, 2))], [(1, 8), (2, 8), (4, 8), (4, 4)]
    )
]
COL2IM_CASES = [  # (input shape, kernel, stride, dilation)
    ((1, 1, 7, 7), (3, 3), (1, 1), (1, 1)),
    ((2, 3, 9, 8), (2, 3), (2, 2), (1, 1)),
    ((2, 2, 10, 9), (3, 2), (1, 3), (2, 1)),
    ((1, 2, 8, 8), (3, 3), (3, 3), (1, 1)),  # stride leaves the last two rows and columns unread
    ((1, 3, 6, 11), (1, 4), (2, 1), (1, 2)),
]


@pytest.mark.parametrize(
    ("shape", "kernel", "c_out", "groups", "stride", "padding", "dilation"),
    BACKWARD_CASES + GROUP_BACKWARD_CASES,
    ids=_fmt,
)
def test_conv2d_backward_matches_autograd(shape, kernel, c_out, groups, stride, padding, dilation):
    assert_backward_matches_autograd(shape, kernel, c_out, groups, stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize(
    ("shape", "kernel", "c_out", "groups", "kwargs"),
    [
        ((2, 3, 9, 7), (3, 3), 5, 1, {"padding": 1}),
        ((1, 4, 8, 10), (2, 3), 4, 2, {"stride": (2, 1), "dilation": 2}),
    ],
    ids=["pad1", "groups2-stride2x1-dil2"],
)
def test_conv2d_backward_float32_matches_autograd(shape, kernel, c_out, groups, kwargs):
    assert_backward_matches_autograd(shape, kernel, c_out, groups, dtype=torch.float32, **kwargs)


def test_rows_and_columns_the_stride_skips_get_zero_gradient():
    """8 pixels, kernel 3, stride 3: windows read pixels 0-5 only, so rows/columns 6 and 7 get exactly 0."""
    x, w, dy, expected = _random_problem((2, 2, 8, 8), (3, 3), 3, 1, {"stride": 3})
    grad_input = CF.conv2d_backward(dy, x, w, stride=3)[0]
    assert torch.all(grad_input[:, :, 6:, :] == 0) and torch.all(grad_input[:, :, :, 6:] == 0)
    assert grad_input[:, :, :6, :6].abs().min() > 0
    torch.testing.assert_close(grad_input, expected[0], **TOLERANCES[torch.float64])


# --- the formulas of the docstring --------------------------------------------------------------

FORMULA_CASES = [  # (x shape, kernel, C_out, stride, padding, dilation)
    ((2, 3, 9, 8), (3, 2), 4, 1, 0, 1),
    ((1, 2, 10, 9), (3, 3), 3, 2, 1, 1),
    ((2, 2, 11, 9), (2, 3), 2, 3, (1, 2), (2, 1)),
]


@pytest.mark.parametrize(("shape", "kernel", "c_out", "stride", "padding", "dilation"), FORMULA_CASES)
def test_grad_input_is_a_transposed_convolution_of_grad_output(shape, kernel, c_out, stride, padding, dilation):
    """dX = full convolution of dY (zeros inserted for the stride) with the flipped kernel = conv_transpose2d(dY, W)."""
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation}
    x, w, dy, _ = _random_problem(shape, kernel, c_out, 1, kwargs)
    # conv2d floors (H + 2P - D (k - 1) - 1) / S; output_padding gives back the rows the floor dropped.
    unused = tuple(
        (h + 2 * p - d * (k - 1) - 1) % s
        for h, k, s, p, d in zip(shape[2:], kernel, _pair(stride), _pair(padding), _pair(dilation))
    )
    expected = CF.conv_transpose2d(dy, w, output_padding=unused, **kwargs)
    torch.testing.assert_close(CF.conv2d_backward(dy, x, w, **kwargs)[0], expected, **TOLERANCES[torch.float64])


@pytest.mark.parametrize(("shape", "kernel", "c_out", "stride", "padding", "dilation"), FORMULA_CASES)
def test_grad_weight_is_a_correlation_of_input_with_grad_output(shape, kernel, c_out, stride, padding, dilation):
    """dW = the padded input correlated with dY as the kernel (dilation S, stride D), cropped to kH x kW.

    Batch plays the role of the channels being summed: move it to dimension 1 in both.
    """
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation}
    x, w, dy, _ = _random_problem(shape, kernel, c_out, 1, kwargs)
    (ph, pw), (kh, kw) = _pair(padding), kernel
    x_padded = F.pad(x, (pw, pw, ph, ph))
    correlation = F.conv2d(x_padded.transpose(0, 1), dy.transpose(0, 1), stride=dilation, dilation=stride)
    expected = correlation[:, :, :kh, :kw].transpose(0, 1)  # (C_in, C_out, ...) -> (C_out, C_in, kH, kW)
    torch.testing.assert_close(CF.conv2d_backward(dy, x, w, **kwargs)[1], expected, **TOLERANCES[torch.float64])


# --- col2im -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kernel", "stride", "dilation"), COL2IM_CASES, ids=lambda v: _fmt(v))
def test_col2im_matches_fold(shape, kernel, stride, dilation):
    """Same values as F.fold (the sum over overlapping windows), and the same gradient for the columns."""
    n, c, h, w = shape
    length = CF.im2col(torch.zeros(shape), kernel, stride, dilation).shape[2]
    cols = random_tensor(n, c * kernel[0] * kernel[1], length, requires_grad=True)
    assert_same_values_and_grads(
        lambda cols: CF.col2im(cols, (h, w), kernel, stride, dilation),
        lambda cols: F.fold(cols, (h, w), kernel, dilation=dilation, stride=stride),
        [cols],
        TOLERANCES[torch.float64],
    )


@pytest.mark.parametrize(("shape", "kernel", "stride", "dilation"), COL2IM_CASES, ids=lambda v: _fmt(v))
def test_col2im_is_the_adjoint_of_im2col(shape, kernel, stride, dilation):
    """<im2col(x), cols> = <x, col2im(cols)>."""
    x = random_tensor(*shape)
    columns_of_x = CF.im2col(x, kernel, stride, dilation)
    cols = random_tensor(*columns_of_x.shape, seed=1)
    back = CF.col2im(cols, shape[2:], kernel, stride, dilation)
    torch.testing.assert_close((columns_of_x * cols).sum(), (x * back).sum(), **TOLERANCES[torch.float64])


# --- bad arguments ------------------------------------------------------------------------------


def _zeros(*shape):
    return torch.zeros(shape)


BAD_BACKWARD_ARGS = [
    ("grad_output-wrong-spatial", dict(grad_output=_zeros(1, 2, 5, 5), input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3)), r"^grad_output must have the forward output's shape .* = \(1, 2, 6, 6\), got \(1, 2, 5, 5\)"),
    ("grad_output-wrong-channels", dict(grad_output=_zeros(1, 3, 6, 6), input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3)), r"^grad_output must have"),
    ("grad_output-stride-ignored", dict(grad_output=_zeros(1, 2, 6, 6), input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3), stride=2), r"^grad_output must have .* \(1, 2, 3, 3\)"),
    ("grad_output-list", dict(grad_output=[0.0], input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3)), r"^grad_output must have .* got list"),
    ("input-2d", dict(grad_output=_zeros(1, 2, 6, 6), input=_zeros(8, 8), weight=_zeros(2, 3, 3, 3)), r"^input must have shape \(N, C_in, H, W\) or \(C_in, H, W\)"),
    ("image-with-batch-grad", dict(grad_output=_zeros(1, 2, 6, 6), input=_zeros(3, 8, 8), weight=_zeros(2, 3, 3, 3)), r"^grad_output must be one sample like input \(3 dims"),
    ("weight-channel-mismatch", dict(grad_output=_zeros(1, 2, 6, 6), input=_zeros(1, 3, 8, 8), weight=_zeros(2, 2, 3, 3)), r"^weight\.shape\[1\] must be"),
    ("groups-not-dividing", dict(grad_output=_zeros(1, 3, 6, 6), input=_zeros(1, 4, 8, 8), weight=_zeros(3, 2, 3, 3), groups=2), r"^groups=2 must divide"),
    ("padding-negative", dict(grad_output=_zeros(1, 2, 6, 6), input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3), padding=-1), r"^padding must be"),
    ("padding-same-stride-2", dict(grad_output=_zeros(1, 2, 4, 4), input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3), padding="same", stride=2), r"^padding='same' needs stride 1"),
    ("kernel-too-big", dict(grad_output=_zeros(1, 1, 1, 1), input=_zeros(1, 1, 4, 4), weight=_zeros(1, 1, 5, 5)), r"^weight does not fit input along H"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "match"), [pytest.param(k, m, id=i) for i, k, m in BAD_BACKWARD_ARGS])
def test_conv2d_backward_bad_arguments_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CF.conv2d_backward(**kwargs)


@pytest.mark.parametrize(
    ("cols", "match"),
    [
        (_zeros(1, 9, 25), r"^cols must have shape \(N, C \* kH \* kW, H_out \* W_out\) .* H_out \* W_out = 5 \* 5 = 25, got shape \(1, 9, 25\)"),
        (_zeros(1, 18, 24), r"^cols must have shape .* got shape \(1, 18, 24\)"),
        (_zeros(18, 25), r"^cols must have shape \(N, C \* kH \* kW, H_out \* W_out\) \(3 dims\)"),
    ],
    ids=["rows-not-multiple-of-kernel", "wrong-length", "2d"],
)
def test_col2im_bad_cols_raise(cols, match):
    """Columns for a 3x2 kernel on a 7x6 image (5 x 5 positions) need a multiple of 6 rows and 25 columns."""
    with pytest.raises(ValueError, match=match):
        CF.col2im(cols, (7, 6), (3, 2))


# --- on a GPU -----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_conv2d_backward_matches_autograd_on_cuda(monkeypatch, dtype):
    # cuDNN may use TF32 for float32 (10-bit mantissa): ask for full float32 in the reference too.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert_backward_matches_autograd(
        (2, 4, 9, 7), (3, 2), 6, 2, dtype=dtype, device="cuda", stride=(2, 1), padding=1, dilation=(1, 2)
    )
