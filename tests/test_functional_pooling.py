"""course_lib.layers.functional.pooling equals PyTorch's pooling: values, indices and gradients.

Every function with a ``torch.nn.functional`` twin is run with it on the same
seeded tensors over a grid of shapes and hyper-parameters, and compared: the
outputs, the returned indices (exactly), and the input gradients autograd gives
for the same random upstream gradient. Inputs with many equal values test that
ties go to the same pixel as in PyTorch. The grid cases PyTorch refuses must
raise a ValueError here. The explicit backward passes are compared with
autograd through PyTorch's pooling; the functions without a twin
(global average and stochastic pooling) with formulas computed another way,
and stochastic pooling's draws statistically.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers import functional as CF
from torch_reference import random_tensor

# float64 leaves room for summation order only; float32 for its 24-bit mantissa over sums of a few terms.
TOLERANCES = {torch.float64: {"atol": 1e-12, "rtol": 1e-12}, torch.float32: {"atol": 1e-5, "rtol": 1e-5}}
F64 = TOLERANCES[torch.float64]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: starting intra-op threads costs more than it saves, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_input(shape, kind="randn", dtype=torch.float64, device="cpu", seed=0) -> torch.Tensor:
    """A seeded leaf that requires grad. kind: 'randn'; 'ties' (integers 0..2: many equal maxima,
    to test which one wins); 'positive' (in [0.1, 1.1): safe for any power)."""
    if kind == "randn":
        return random_tensor(*shape, seed=seed, dtype=dtype, device=device, requires_grad=True)
    generator = torch.Generator().manual_seed(seed)
    if kind == "ties":
        x = torch.randint(0, 3, shape, generator=generator).to(dtype)
    else:
        x = torch.rand(shape, generator=generator, dtype=dtype) + 0.1
    return x.to(device).requires_grad_()


def assert_matches(ours, reference, x: torch.Tensor, tol=F64) -> None:
    """``ours(x)`` equals ``reference(x)``: values, indices if both return (values, indices), and the
    gradient with respect to ``x`` for one random upstream gradient."""
    out, expected = ours(x), reference(x)
    if isinstance(expected, tuple):
        (out, indices), (expected, expected_indices) = out, expected
        assert indices.dtype == torch.int64
        torch.testing.assert_close(indices, expected_indices, atol=0, rtol=0, msg=lambda m: f"indices: {m}")
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, **tol, msg=lambda m: f"values: {m}")
    upstream = random_tensor(*expected.shape, seed=1, dtype=expected.dtype, device=expected.device)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad, expected_grad, **tol, msg=lambda m: f"grad of input: {m}")


def _fmt(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _id(value) -> str:
    """A test id: a shape as 2x3, keyword arguments as name=value joined by '-'."""
    if isinstance(value, dict):
        return "-".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return _fmt(value)


def _grid(torch_fn, shapes, **axes) -> tuple[list, list]:
    """Every (shape, kind) with every combination of ``axes`` (keyword -> values), as (shape, kind, kwargs):
    those ``torch_fn`` accepts, and those it refuses."""
    accepted, refused = [], []
    for (shape, kind), values in itertools.product(shapes, itertools.product(*axes.values())):
        kwargs = dict(zip(axes, values))
        try:
            torch_fn(torch.zeros(shape, dtype=torch.float64), **kwargs)
            accepted.append((shape, kind, kwargs))
        except RuntimeError:
            refused.append((shape, kind, kwargs))
    return accepted, refused


# The grids (also measured by benchmarks/reference_errors.py).
# Batch 1 and non-square; many ties. Kernels odd and even; strides overlapping (1), not (None = kernel), mixed.
SHAPES = [((1, 2, 9, 5), "randn"), ((2, 3, 8, 11), "ties")]
WINDOWS = dict(kernel_size=[3, (2, 3)], stride=[None, 1, (2, 3)], padding=[0, 1, (1, 0)])
MAX_CASES, _ = _grid(F.max_pool2d, SHAPES, **WINDOWS, dilation=[1, (2, 1)], ceil_mode=[False, True])
AVG_CASES, _ = _grid(
    F.avg_pool2d, SHAPES, **WINDOWS, ceil_mode=[False, True], count_include_pad=[True, False],
    divisor_override=[None, 3],
)  # fmt: skip
LP_CASES, _ = _grid(
    F.lp_pool2d,
    [((2, 3, 8, 11), "positive"), ((1, 2, 7, 6), "positive")],
    norm_type=[1, 2, 3, 1.5, -1, math.inf, -math.inf],
    kernel_size=[2, (3, 2)],
    stride=[None, (2, 1)],
    ceil_mode=[False, True],
)
# Signed input: x^p keeps its sign, so sums can be negative and their root NaN - as in PyTorch.
LP_SIGNED_CASES, _ = _grid(
    F.lp_pool2d, [((2, 2, 6, 7), "randn")], norm_type=[1, 2, 3, 1.5, math.inf, -math.inf], kernel_size=[2], stride=[1]
)
# Near the limits: kernels about as large as the (padded, dilated) input - ceil_mode lets a kernel larger than the
# input through if its window starts inside it - and paddings over half the kernel, which PyTorch refuses.
MAX_EDGE_CASES, MAX_REFUSED = _grid(
    F.max_pool2d, SHAPES, kernel_size=[3, 6, (2, 8)], padding=[0, 2, (0, 3)], dilation=[1, 3], ceil_mode=[False, True]
)
AVG_EDGE_CASES, AVG_REFUSED = _grid(
    F.avg_pool2d, SHAPES, kernel_size=[3, 6, (2, 8)], padding=[0, 2, (0, 3)], ceil_mode=[False, True]
)
ADAPTIVE_SHAPES = [((1, 1, 7, 7), "randn"), ((2, 3, 10, 6), "ties"), ((1, 2, 5, 9), "randn")]
ADAPTIVE_SIZES = [1, 3, (2, 4), (None, 3), (4, None), (7, 7), (12, 13)]
ADAPTIVE_CASES, _ = _grid(F.adaptive_avg_pool2d, ADAPTIVE_SHAPES, output_size=ADAPTIVE_SIZES)
# max_unpool2d: the (kernel, stride, padding) of the pooling undone, on inputs of these leading shapes.
UNPOOL_SETTINGS = [
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (2, 2), (1, 1)),
    ((2, 3), (1, 2), (1, 0)),
    ((3, 3), (1, 1), (1, 1)),  # overlapping: indices repeat (with equal values)
]
UNPOOL_BATCHES = [(1, 1), (2, 3)]
GLOBAL_SHAPES = [(1, 1, 7, 7), (2, 3, 8, 11), (4, 5, 1, 3)]
STOCHASTIC_SETTINGS = [((2, 2), None), ((3, 3), (2, 2)), ((2, 3), (1, 2))]  # (kernel, stride)
# The explicit backward passes, against autograd through PyTorch's pooling.
BACKWARD_SHAPES = [((2, 3, 8, 9), "ties"), ((1, 2, 7, 6), "randn")]
BACKWARD_WINDOWS = dict(kernel_size=[3, (3, 2)], stride=[1, 2, (1, 2)], padding=[0, 1], ceil_mode=[False, True])
MAX_BACKWARD_CASES, _ = _grid(F.max_pool2d, BACKWARD_SHAPES, **BACKWARD_WINDOWS, dilation=[1, 2])
AVG_BACKWARD_CASES, _ = _grid(
    F.avg_pool2d, BACKWARD_SHAPES, **BACKWARD_WINDOWS, count_include_pad=[True, False], divisor_override=[None, 5]
)


def test_the_grids_cover_overlap_padding_and_partial_windows():
    """The grids hold the cases that matter, and some PyTorch refuses (tested to raise below)."""
    kwargs = [k for _, _, k in MAX_CASES]
    assert any(k["stride"] == 1 and k["kernel_size"] != 1 for k in kwargs)  # overlapping windows
    assert any(k["padding"] == 1 and k["ceil_mode"] for k in kwargs)
    assert any(k["kernel_size"] == 6 and k["ceil_mode"] for _, _, k in MAX_EDGE_CASES)
    assert len(MAX_CASES) > 100 and len(AVG_CASES) > 150 and len(MAX_REFUSED) > 10 and len(AVG_REFUSED) > 10


# --- max pooling -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kind", "kwargs"), MAX_CASES + MAX_EDGE_CASES, ids=_id)
def test_max_pool2d_matches_torch(shape, kind, kwargs):
    assert_matches(
        lambda x: CF.max_pool2d(x, **kwargs, return_indices=True),
        lambda x: F.max_pool2d(x, **kwargs, return_indices=True),
        make_input(shape, kind),
    )


@pytest.mark.parametrize(("shape", "kind", "kwargs"), MAX_REFUSED, ids=_id)
def test_max_pool2d_refuses_what_torch_refuses(shape, kind, kwargs):
    with pytest.raises(ValueError, match=r"^(kernel_size|padding)"):
        CF.max_pool2d(torch.zeros(shape, dtype=torch.float64), **kwargs)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([[-math.inf] * 5] * 5, id="all-minus-inf"),  # the max is -inf: an input pixel, never padding
        pytest.param([[1, math.nan, 2, 0, 3], [math.nan, 0, 5, 5, 1], [2, 2, math.nan, 1, 0]] * 2, id="nans"),
    ],
)
def test_max_pool2d_picks_the_same_index_as_torch_for_inf_and_nan(values):
    """PyTorch moves to a value larger than the maximum so far, or NaN: the first of tied maxima, the last NaN."""
    x = torch.tensor(values, dtype=torch.float64)[None, None]
    for kwargs in [dict(kernel_size=2, padding=1), dict(kernel_size=3, stride=1, padding=1, ceil_mode=True)]:
        out, indices = CF.max_pool2d(x, **kwargs, return_indices=True)
        expected, expected_indices = F.max_pool2d(x, **kwargs, return_indices=True)
        torch.testing.assert_close(out, expected, atol=0, rtol=0, equal_nan=True)
        torch.testing.assert_close(indices, expected_indices, atol=0, rtol=0)


# --- average pooling -------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kind", "kwargs"), AVG_CASES + AVG_EDGE_CASES, ids=_id)
def test_avg_pool2d_matches_torch(shape, kind, kwargs):
    assert_matches(lambda x: CF.avg_pool2d(x, **kwargs), lambda x: F.avg_pool2d(x, **kwargs), make_input(shape, kind))


@pytest.mark.parametrize(("shape", "kind", "kwargs"), AVG_REFUSED, ids=_id)
def test_avg_pool2d_refuses_what_torch_refuses(shape, kind, kwargs):
    with pytest.raises(ValueError, match=r"^(kernel_size|padding)"):
        CF.avg_pool2d(torch.zeros(shape, dtype=torch.float64), **kwargs)


def test_avg_pool2d_ceil_mode_divisor_stops_at_the_padding():
    """The last ceil_mode window reaches past the padding: that part counts in no divisor (hand-computed)."""
    out = CF.avg_pool2d(torch.ones(1, 1, 6, 6, dtype=torch.float64), 3, 2, padding=1, ceil_mode=True)
    # Output row 3 covers rows 5, 6 (padding) and 7 (past it): 1 input row out of 2 counted; likewise columns.
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0, 3, 3].item() == pytest.approx(1 / 4)
    assert out[0, 0, 0, 3].item() == pytest.approx(2 / 6)
    assert out[0, 0, 1, 1].item() == pytest.approx(1.0)


# --- Lp pooling ------------------------------------------------------------------------------------


TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def skip_without_torch_reference(norm_type) -> None:
    """F.lp_pool2d, the reference here, computes p = +-inf only from torch 2.13 (NaN before)."""
    if math.isinf(norm_type) and TORCH_VERSION < (2, 13):
        pytest.skip(f"torch {torch.__version__}: F.lp_pool2d has no p = {norm_type} to compare with (torch >= 2.13 has)")


@pytest.mark.parametrize(("shape", "kind", "kwargs"), LP_CASES, ids=_id)
def test_lp_pool2d_matches_torch(shape, kind, kwargs):
    skip_without_torch_reference(kwargs["norm_type"])
    assert_matches(lambda x: CF.lp_pool2d(x, **kwargs), lambda x: F.lp_pool2d(x, **kwargs), make_input(shape, kind))


@pytest.mark.parametrize(("shape", "kind", "kwargs"), LP_SIGNED_CASES, ids=_id)
def test_lp_pool2d_matches_torch_on_signed_input(shape, kind, kwargs):
    skip_without_torch_reference(kwargs["norm_type"])
    x, tol = make_input(shape, kind), {**F64, "equal_nan": True}
    assert_matches(lambda t: CF.lp_pool2d(t, **kwargs), lambda t: F.lp_pool2d(t, **kwargs), x, tol)


def test_lp_pool2d_gives_zero_gradient_for_a_zero_window():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64).index_fill_(3, torch.tensor([3]), 1.0).requires_grad_()
    assert_matches(lambda t: CF.lp_pool2d(t, 2, 2), lambda t: F.lp_pool2d(t, 2, 2), x)
    (grad,) = torch.autograd.grad(CF.lp_pool2d(x, 2, 2).sum(), x)
    assert torch.isfinite(grad).all() and grad[..., :2].abs().sum() == 0


@pytest.mark.parametrize("norm_type", [1, 2])
def test_lp_pool2d_is_the_power_sum_of_full_windows(norm_type):
    """Without partial windows, Lp pooling is (sum x^p)^(1/p): p = 1 sums, p = 2 is the window's L2 norm."""
    x = make_input((2, 3, 6, 8), "positive").detach()
    cols = F.unfold(x, (2, 2), stride=2).view(2, 3, 4, 3, 4)  # (N, C, kH kW, H_out, W_out)
    torch.testing.assert_close(CF.lp_pool2d(x, norm_type, 2), cols.pow(norm_type).sum(2).pow(1 / norm_type), **F64)


# --- adaptive pooling ------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kind", "kwargs"), ADAPTIVE_CASES, ids=_id)
def test_adaptive_avg_pool2d_matches_torch(shape, kind, kwargs):
    x = make_input(shape, kind)
    assert_matches(lambda t: CF.adaptive_avg_pool2d(t, **kwargs), lambda t: F.adaptive_avg_pool2d(t, **kwargs), x)


@pytest.mark.parametrize(("shape", "kind", "kwargs"), ADAPTIVE_CASES, ids=_id)
def test_adaptive_max_pool2d_matches_torch(shape, kind, kwargs):
    assert_matches(
        lambda x: CF.adaptive_max_pool2d(x, **kwargs, return_indices=True),
        lambda x: F.adaptive_max_pool2d(x, **kwargs, return_indices=True),
        make_input(shape, kind),
    )


@pytest.mark.parametrize("output_size", [0, (0, 3), (2, 0)], ids=_fmt)
def test_adaptive_pooling_to_an_empty_output_matches_torch(output_size):
    """PyTorch allows output size 0 (but cannot differentiate it): compare values and shapes only."""
    x = make_input((2, 3, 5, 4)).detach()
    torch.testing.assert_close(CF.adaptive_avg_pool2d(x, output_size), F.adaptive_avg_pool2d(x, output_size))
    out, indices = CF.adaptive_max_pool2d(x, output_size, return_indices=True)
    expected, expected_indices = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(indices, expected_indices)


def test_adaptive_windows_follow_the_floor_ceil_formula():
    """Averaging 0..H-1 gives each window's centre: windows [floor(i H / o), ceil((i + 1) H / o))."""
    h, out = 10, 4  # windows [0, 3), [2, 5), [5, 8), [7, 10)
    x = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    expected = [(math.floor(i * h / out) + math.ceil((i + 1) * h / out) - 1) / 2 for i in range(out)]
    assert expected == [1.0, 3.0, 6.0, 8.0]
    assert CF.adaptive_avg_pool2d(x, (out, 1)).flatten().tolist() == expected


def test_adaptive_max_pool2d_index_with_nan_matches_torch():
    x = torch.tensor([[1.0, math.nan, 0.0], [math.nan, 2.0, math.nan], [0.0, 1.0, 3.0]], dtype=torch.float64)
    for size in [1, 2, (2, 3)]:
        indices = CF.adaptive_max_pool2d(x[None, None], size, return_indices=True)[1]
        torch.testing.assert_close(indices, F.adaptive_max_pool2d(x[None, None], size, return_indices=True)[1])


# --- max unpooling ---------------------------------------------------------------------------------


def unpool_pair(batch, kernel, stride, padding, pooled=(3, 4), larger=False):
    """(pooled values requiring grad, indices, input shape): PyTorch's max pooling of a random input whose
    size is max_unpool2d's default ``(H_pooled - 1) S - 2P + k`` - or the largest size that pools to the
    same ``pooled`` size (S - 1 more) if ``larger``."""
    size = [(n - 1) * s - 2 * p + k + (s - 1 if larger else 0) for n, k, s, p in zip(pooled, kernel, stride, padding)]
    shape = (*batch, *size)
    values, indices = F.max_pool2d(make_input(shape).detach(), kernel, stride, padding, return_indices=True)
    assert values.shape[-2:] == pooled
    return values.requires_grad_(), indices, shape


@pytest.mark.parametrize("larger", [False, True], ids=["default-size", "given-size"])
@pytest.mark.parametrize(("kernel", "stride", "padding"), UNPOOL_SETTINGS, ids=lambda v: _fmt(v))
@pytest.mark.parametrize("batch", UNPOOL_BATCHES, ids=_fmt)
def test_max_unpool2d_matches_torch(batch, kernel, stride, padding, larger):
    pooled, indices, shape = unpool_pair(batch, kernel, stride, padding, larger=larger)
    # Given, output_size is the input's full (N, C, H, W) shape, as in CF.max_unpool2d(y, i, ..., output_size=x.shape).
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, output_size=shape if larger else None)
    assert_matches(lambda v: CF.max_unpool2d(v, indices, **kwargs), lambda v: F.max_unpool2d(v, indices, **kwargs), pooled)


def test_max_unpool2d_puts_maxima_back_in_place():
    x = make_input((2, 3, 8, 6)).detach()
    pooled, indices = CF.max_pool2d(x, 2, return_indices=True)
    restored = CF.max_unpool2d(pooled, indices, 2)
    kept = restored != 0
    assert kept.view(2, 3, 4, 2, 3, 2).sum((3, 5)).eq(1).all()  # one survivor per 2x2 window
    torch.testing.assert_close(restored[kept], x[kept], atol=0, rtol=0)


# --- global average pooling ------------------------------------------------------------------------


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape", GLOBAL_SHAPES, ids=_fmt)
def test_global_avg_pool2d_is_the_mean_per_channel(shape, keepdim):
    def reference(x):
        out = F.adaptive_avg_pool2d(x, 1)  # (N, C, 1, 1); computed by PyTorch's own kernel, not by mean
        return out if keepdim else out.flatten(1)

    assert_matches(lambda x: CF.global_avg_pool2d(x, keepdim=keepdim), reference, make_input(shape))
    assert CF.global_avg_pool2d(torch.zeros(shape), keepdim=keepdim).shape == (shape[:2] + ((1, 1) if keepdim else ()))


# --- stochastic pooling ----------------------------------------------------------------------------


def stochastic_expectation(x: torch.Tensor, kernel_size, stride) -> torch.Tensor:
    """sum_i p_i a_i with p_i = a_i / sum_j a_j, by F.unfold (0 for an all-zero window)."""
    n, c = x.shape[:2]
    h_out = (x.shape[2] - kernel_size[0]) // stride[0] + 1
    cols = F.unfold(x, kernel_size, stride=stride).view(n, c, kernel_size[0] * kernel_size[1], h_out, -1)
    total = cols.sum(2)
    probabilities = cols / torch.where(total > 0, total, 1.0).unsqueeze(2)
    return (probabilities * cols).sum(2)


@pytest.mark.parametrize(("kernel", "stride"), STOCHASTIC_SETTINGS, ids=lambda v: _fmt(v))
def test_stochastic_pool2d_eval_is_the_probability_weighted_average(kernel, stride):
    x = make_input((2, 3, 9, 8), "positive")  # no zero window: the gradient is defined everywhere
    assert_matches(
        lambda t: CF.stochastic_pool2d(t, kernel, stride, training=False),
        lambda t: stochastic_expectation(t, kernel, stride or kernel),
        x,
    )


def _relu_with_zero_windows(shape=(2, 3, 8, 8), seed=0) -> torch.Tensor:
    """ReLU'd activations with whole 2x2 windows of zeros (the top-left quarter)."""
    x = make_input(shape, seed=seed).detach().relu()
    x[:, :, :4, :4] = 0
    return x


def test_stochastic_pool2d_zero_windows_give_zero():
    x = _relu_with_zero_windows()
    for training in (True, False):
        out = CF.stochastic_pool2d(x, 2, training=training, generator=torch.Generator().manual_seed(0))
        assert out[:, :, :2, :2].abs().sum() == 0
    torch.testing.assert_close(CF.stochastic_pool2d(x, 2, training=False), stochastic_expectation(x, (2, 2), (2, 2)))


def test_stochastic_pool2d_draws_a_positive_value_of_its_own_window():
    x = _relu_with_zero_windows()
    out = CF.stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(0))
    windows = F.unfold(x, 2, stride=2).view(2, 3, 4, 4, 4)
    assert (windows == out.unsqueeze(2)).any(2).all()
    assert (out[windows.sum(2) > 0] > 0).all()  # a zero in a window with a positive sum has probability 0


def test_stochastic_pool2d_draws_each_position_with_probability_a_over_sum():
    """One window [1, 2, 3, 4], drawn T times: each count within 5 binomial standard deviations of T p_i."""
    draws = 20_000
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).expand(draws, 1, 2, 2)
    out = CF.stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(0)).flatten()
    for value in (1.0, 2.0, 3.0, 4.0):
        p = value / 10
        count = (out == value).sum().item()
        assert abs(count - draws * p) < 5 * math.sqrt(draws * p * (1 - p)), (value, count)
    assert (out == 1.0).sum() + (out == 2.0).sum() + (out == 3.0).sum() + (out == 4.0).sum() == draws


def test_stochastic_pool2d_mean_of_draws_converges_to_the_eval_value():
    """Over T draws the mean is within 5 standard errors of sum p_i a_i (variance sum p_i a_i^2 - mean^2)."""
    draws = 4000
    x = _relu_with_zero_windows((1, 2, 6, 6), seed=3)
    mean = CF.stochastic_pool2d(x.expand(draws, -1, -1, -1), 2, generator=torch.Generator().manual_seed(1)).mean(0)
    expected = CF.stochastic_pool2d(x, 2, training=False)[0]
    cols = F.unfold(x, 2, stride=2).view(2, 4, 3, 3)
    second_moment = cols.pow(3).sum(1) / torch.where(cols.sum(1) > 0, cols.sum(1), 1.0)  # sum p_i a_i^2
    standard_error = (second_moment - expected.square()).clamp(min=0).div(draws).sqrt()
    assert ((mean - expected).abs() <= 5 * standard_error + 1e-12).all()
    assert (standard_error > 0).sum() > 4  # the check is not vacuous: most windows have spread


def test_stochastic_pool2d_is_reproducible_with_a_seeded_generator():
    x = _relu_with_zero_windows()

    def draw(seed):
        return CF.stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(draw(0), draw(0), atol=0, rtol=0)
    assert not torch.equal(draw(0), draw(1))


def test_stochastic_pool2d_training_gradient_goes_to_the_drawn_pixel():
    x = make_input((2, 3, 6, 8), "positive")  # continuous values: the drawn pixel is the only one equal to the output
    out = CF.stochastic_pool2d(x, 2, generator=torch.Generator().manual_seed(0))
    upstream = random_tensor(*out.shape, seed=1)
    (grad,) = torch.autograd.grad(out, x, upstream)
    windows = F.unfold(x.detach(), 2, stride=2).view(2, 3, 4, 12)
    drawn = windows == out.detach().flatten(2).unsqueeze(2)  # (N, C, 4, L) one-hot
    expected = F.fold((drawn * upstream.flatten(2).unsqueeze(2)).view(2, 12, 12), (6, 8), 2, stride=2)
    torch.testing.assert_close(grad, expected, atol=0, rtol=0)


# --- explicit backward passes against autograd -----------------------------------------------------

def assert_backward_matches_autograd(backward, forward, shape, kind, kwargs) -> None:
    """``backward(grad_output, input, **kwargs)`` is the gradient autograd gives through ``forward``."""
    x = make_input(shape, kind)
    out = forward(x, **kwargs)
    upstream = random_tensor(*out.shape, seed=1)
    (expected,) = torch.autograd.grad(out, x, upstream)
    torch.testing.assert_close(backward(upstream, x.detach(), **kwargs), expected, **F64, msg=lambda m: f"grad: {m}")


@pytest.mark.parametrize(("shape", "kind", "kwargs"), MAX_BACKWARD_CASES, ids=_id)
def test_max_pool2d_backward_matches_autograd(shape, kind, kwargs):
    assert_backward_matches_autograd(CF.max_pool2d_backward, F.max_pool2d, shape, kind, kwargs)


@pytest.mark.parametrize(("shape", "kind", "kwargs"), AVG_BACKWARD_CASES, ids=_id)
def test_avg_pool2d_backward_matches_autograd(shape, kind, kwargs):
    assert_backward_matches_autograd(CF.avg_pool2d_backward, F.avg_pool2d, shape, kind, kwargs)


def test_max_pool2d_backward_accumulates_over_overlapping_windows():
    """A single peak is the maximum of all nine overlapping 3x3 windows of a 5x5 input: it collects their gradients."""
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0
    grad = CF.max_pool2d_backward(torch.ones(1, 1, 3, 3, dtype=torch.float64), x, 3, stride=1)
    assert grad[0, 0, 2, 2].item() == 9.0 and grad.sum().item() == 9.0
    # Padded, 25 windows: the nine that hold the peak send it their gradient, the others (all zeros) their first pixel.
    grad = CF.max_pool2d_backward(torch.ones(1, 1, 5, 5, dtype=torch.float64), x, 3, stride=1, padding=1)
    assert grad[0, 0, 2, 2].item() == 9.0 and grad.sum().item() == 25.0


# --- one image, other dtypes and memory layouts ----------------------------------------------------

TWINS = [
    pytest.param(lambda f, x: f(x, 3, 2, 1, ceil_mode=True, return_indices=True), CF.max_pool2d, F.max_pool2d, id="max_pool2d"),
    pytest.param(lambda f, x: f(x, (3, 2), 1, 1, count_include_pad=False), CF.avg_pool2d, F.avg_pool2d, id="avg_pool2d"),
    pytest.param(lambda f, x: f(x.abs(), 2.5, 2, ceil_mode=True), CF.lp_pool2d, F.lp_pool2d, id="lp_pool2d"),
    pytest.param(lambda f, x: f(x, (3, None)), CF.adaptive_avg_pool2d, F.adaptive_avg_pool2d, id="adaptive_avg_pool2d"),
    pytest.param(lambda f, x: f(x, (4, 3), True), CF.adaptive_max_pool2d, F.adaptive_max_pool2d, id="adaptive_max_pool2d"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "ours", "reference"), TWINS)
def test_one_image_without_batch_axis_matches_torch(call, ours, reference):
    assert_matches(lambda x: call(ours, x), lambda x: call(reference, x), make_input((3, 7, 9)))


def test_max_unpool2d_one_image_matches_torch():
    pooled, indices, shape = unpool_pair((3,), (2, 2), (2, 2), (0, 0), larger=True)  # (C, H, W) = (3, 5, 7)
    kwargs = dict(kernel_size=2, output_size=shape[1:])
    assert_matches(lambda v: CF.max_unpool2d(v, indices, **kwargs), lambda v: F.max_unpool2d(v, indices, **kwargs), pooled)


@pytest.mark.parametrize(("call", "ours", "reference"), TWINS)
def test_float32_matches_torch(call, ours, reference):
    x = make_input((2, 3, 9, 8), dtype=torch.float32)
    assert_matches(lambda t: call(ours, t), lambda t: call(reference, t), x, TOLERANCES[torch.float32])


@pytest.mark.parametrize(("call", "ours", "reference"), TWINS)
def test_channels_last_input_matches_torch(call, ours, reference):
    x = make_input((2, 3, 9, 8)).detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert not x.is_contiguous()
    assert_matches(lambda t: call(ours, t), lambda t: call(reference, t), x)


# --- bad arguments: a ValueError that names the argument -------------------------------------------


def _zeros(*shape, dtype=torch.float32):
    return torch.zeros(shape, dtype=dtype)


_INDICES = torch.zeros(1, 1, 2, 2, dtype=torch.int64)
BAD_ARGS = [
    ("max-input-2d", CF.max_pool2d, dict(input=_zeros(8, 8), kernel_size=2), r"^input must have shape \(N, C, H, W\) or \(C, H, W\)"),
    ("max-input-5d", CF.max_pool2d, dict(input=_zeros(1, 1, 1, 8, 8), kernel_size=2), r"^input must have shape"),
    ("max-input-list", CF.max_pool2d, dict(input=[[1.0]], kernel_size=2), r"^input must be a torch\.Tensor"),
    ("max-input-int", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4, dtype=torch.int64), kernel_size=2), r"^input must be a floating-point"),
    ("max-input-empty", CF.max_pool2d, dict(input=_zeros(1, 1, 0, 4), kernel_size=1), r"^input must have H, W >= 1"),
    ("max-kernel-0", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=0), r"^kernel_size must be"),
    ("max-kernel-too-big", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=5), r"^kernel_size \(5, 5\) .* does not fit"),
    ("max-dilated-too-big", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, dilation=4), r"^kernel_size .* does not fit"),
    ("max-stride-0", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, stride=0), r"^stride must be"),
    ("max-stride-float", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, stride=1.5), r"^stride must be"),
    ("max-padding-negative", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, padding=-1), r"^padding must be"),
    ("max-padding-over-half", CF.max_pool2d, dict(input=_zeros(1, 1, 8, 8), kernel_size=3, padding=2), r"^padding must be at most half"),
    ("max-dilation-0", CF.max_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, dilation=0), r"^dilation must be"),
    ("avg-divisor-0", CF.avg_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, divisor_override=0), r"^divisor_override must be"),
    ("avg-divisor-float", CF.avg_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=2, divisor_override=2.5), r"^divisor_override"),
    ("avg-padding-over-half", CF.avg_pool2d, dict(input=_zeros(1, 1, 8, 8), kernel_size=(2, 4), padding=(2, 0)), r"^padding"),
    ("avg-kernel-pair-of-3", CF.avg_pool2d, dict(input=_zeros(1, 1, 8, 8), kernel_size=(2, 2, 2)), r"^kernel_size must be"),
    ("lp-norm-0", CF.lp_pool2d, dict(input=_zeros(1, 1, 4, 4), norm_type=0, kernel_size=2), r"^norm_type must be a non-zero number"),
    ("lp-norm-str", CF.lp_pool2d, dict(input=_zeros(1, 1, 4, 4), norm_type="2", kernel_size=2), r"^norm_type"),
    ("lp-norm-nan", CF.lp_pool2d, dict(input=_zeros(1, 1, 4, 4), norm_type=math.nan, kernel_size=2), r"^norm_type"),
    ("lp-kernel-too-big", CF.lp_pool2d, dict(input=_zeros(1, 1, 4, 4), norm_type=2, kernel_size=5), r"^kernel_size"),
    ("adaptive-size-negative", CF.adaptive_avg_pool2d, dict(input=_zeros(1, 1, 4, 4), output_size=-1), r"^output_size must be"),
    ("adaptive-size-triple", CF.adaptive_avg_pool2d, dict(input=_zeros(1, 1, 4, 4), output_size=(2, 2, 2)), r"^output_size must be"),
    ("adaptive-size-str", CF.adaptive_max_pool2d, dict(input=_zeros(1, 1, 4, 4), output_size="2"), r"^output_size must be"),
    ("adaptive-input-2d", CF.adaptive_max_pool2d, dict(input=_zeros(4, 4), output_size=2), r"^input must have shape"),
    ("adaptive-input-empty", CF.adaptive_avg_pool2d, dict(input=_zeros(1, 1, 4, 0), output_size=2), r"^input must have H, W >= 1"),
    ("unpool-indices-shape", CF.max_unpool2d, dict(input=_zeros(1, 1, 2, 2), indices=_INDICES[..., :1], kernel_size=2), r"^indices must be an int64 tensor of input's shape"),
    ("unpool-indices-float", CF.max_unpool2d, dict(input=_zeros(1, 1, 2, 2), indices=_INDICES.float(), kernel_size=2), r"^indices must be an int64"),
    ("unpool-indices-too-large", CF.max_unpool2d, dict(input=_zeros(1, 1, 2, 2), indices=_INDICES + 16, kernel_size=2), r"^indices must lie in \[0, H_out \* W_out\) = \[0, 16\)"),
    ("unpool-indices-negative", CF.max_unpool2d, dict(input=_zeros(1, 1, 2, 2), indices=_INDICES - 1, kernel_size=2), r"^indices must lie"),
    ("unpool-size-too-large", CF.max_unpool2d, dict(input=_zeros(1, 1, 2, 2), indices=_INDICES, kernel_size=2, output_size=(6, 4)), r"^output_size .* along H must lie strictly between 2 and 6, got 6"),
    ("unpool-size-length-3", CF.max_unpool2d, dict(input=_zeros(1, 1, 2, 2), indices=_INDICES, kernel_size=2, output_size=(1, 4, 4)), r"^output_size must be"),
    ("global-input-3d", CF.global_avg_pool2d, dict(input=_zeros(3, 4, 4)), r"^input must have shape \(N, C, H, W\)"),
    ("stochastic-negative", CF.stochastic_pool2d, dict(input=-torch.ones(1, 1, 4, 4), kernel_size=2), r"^input must be non-negative"),
    ("stochastic-kernel-too-big", CF.stochastic_pool2d, dict(input=_zeros(1, 1, 4, 4), kernel_size=5), r"^kernel_size"),
    ("max-backward-grad-shape", CF.max_pool2d_backward, dict(grad_output=_zeros(1, 1, 3, 3), input=_zeros(1, 1, 4, 4), kernel_size=2), r"^grad_output must have the output's shape .* = \(1, 1, 2, 2\)"),
    ("avg-backward-grad-shape", CF.avg_pool2d_backward, dict(grad_output=_zeros(1, 2, 2, 2), input=_zeros(1, 1, 4, 4), kernel_size=2), r"^grad_output must have"),
    ("avg-backward-input-2d", CF.avg_pool2d_backward, dict(grad_output=_zeros(2, 2), input=_zeros(4, 4), kernel_size=2), r"^input must have shape \(N, C, H, W\) or \(C, H, W\)"),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "kwargs", "match"), [pytest.param(f, k, m, id=i) for i, f, k, m in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


# --- on a GPU --------------------------------------------------------------------------------------


def _cuda_stochastic(device, dtype):
    """Eval against the formula, and a training draw reproducible with a CUDA generator."""
    x = make_input((2, 3, 8, 8), "positive", dtype, device)
    tol = TOLERANCES[dtype]
    assert_matches(
        lambda t: CF.stochastic_pool2d(t, 2, training=False), lambda t: stochastic_expectation(t, (2, 2), (2, 2)), x, tol
    )
    draws = [CF.stochastic_pool2d(x, 2, generator=torch.Generator(device).manual_seed(0)) for _ in range(2)]
    torch.testing.assert_close(draws[0], draws[1], atol=0, rtol=0)
    assert draws[0].device == x.device


def _cuda_unpool(device, dtype):
    pooled, indices = F.max_pool2d(make_input((2, 3, 9, 8), dtype=dtype, device=device).detach(), 3, 2, 1, return_indices=True)
    assert_matches(
        lambda v: CF.max_unpool2d(v, indices, 3, 2, 1, (9, 8)), lambda v: F.max_unpool2d(v, indices, 3, 2, 1, (9, 8)),
        pooled.requires_grad_(), TOLERANCES[dtype],
    )  # fmt: skip


def _cuda_backward(device, dtype):
    for backward, forward, kwargs in [
        (CF.max_pool2d_backward, F.max_pool2d, dict(kernel_size=3, stride=1, padding=1, ceil_mode=True)),
        (CF.avg_pool2d_backward, F.avg_pool2d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ]:
        x = make_input((2, 3, 9, 8), "ties", dtype, device)
        out = forward(x, **kwargs)
        upstream = random_tensor(*out.shape, seed=1, dtype=dtype, device=device)
        (expected,) = torch.autograd.grad(out, x, upstream)
        torch.testing.assert_close(backward(upstream, x.detach(), **kwargs), expected, **TOLERANCES[dtype])


def _cuda_twin(call, ours, reference):
    """A check that ``call(ours, x)`` equals ``call(reference, x)`` on the given device and dtype."""

    def check(device, dtype):
        x = make_input((2, 3, 9, 8), "ties", dtype, device)
        assert_matches(lambda t: call(ours, t), lambda t: call(reference, t), x, TOLERANCES[dtype])

    return check


CUDA_CHECKS = [pytest.param(_cuda_twin(*twin.values), id=twin.id) for twin in TWINS] + [
    pytest.param(_cuda_unpool, id="max_unpool2d"),
    pytest.param(_cuda_backward, id="backward"),
    pytest.param(_cuda_stochastic, id="stochastic_pool2d"),
]  # fmt: skip


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("check", CUDA_CHECKS)
def test_matches_torch_on_cuda(check, dtype):
    """The same comparisons with every tensor on the GPU, PyTorch's CUDA kernels as the reference."""
    check("cuda", dtype)
