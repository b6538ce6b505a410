"""course_lib's normalization layers equal PyTorch's, values, gradients and running statistics.

Every function with a ``torch.nn.functional`` twin is compared with it on the
same seeded tensors: the output, the gradients autograd gives for every tensor
argument from one random upstream gradient, and the running statistics that
training updates in place. Local contrast normalization has no twin: it is
checked against a loop-by-loop transcription of its formula and for the
properties it exists for. ``batch_norm_backward`` is checked against autograd.
Weight and spectral normalization are compared with PyTorch's parametrizations
(``torch.nn.utils.parametrizations``): the same weights, the same gradients
and, for spectral norm, the same power-iteration vectors step after step.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from course_lib.layers import functional as CF
from torch_reference import assert_same_values_and_grads, random_tensor

# float64 leaves room for summation order only; float32 for its 24-bit mantissa divided by small stds.
TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-9}, torch.float32: {"atol": 1e-4, "rtol": 1e-4}}


def _running_stats(channels, dtype=torch.float64, device="cpu"):
    """A plausible running mean and a positive running variance."""
    mean = random_tensor(channels, seed=10, dtype=dtype, device=device)
    var = random_tensor(channels, seed=11, dtype=dtype, device=device).abs() + 0.5
    return mean, var


def _id(value) -> str:
    """A shape as 2x3 for a test id; any other value as str does."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


# The grids (also measured by benchmarks/reference_errors.py).
BN_SHAPES = [(5, 3), (1, 4, 7), (3, 2, 6), (2, 3, 6, 5), (1, 2, 3, 4), (2, 2, 3, 4, 2)]
BN_TRAINING = [(0.1, 1e-5), (0.7, 0.1)]  # (momentum, eps)
BN_EVAL_EPS = 1e-3
BN_BACKWARD_SHAPES = [(6, 4), (1, 3, 5), (3, 2, 5, 4), (2, 3, 1, 7)]
BN_BACKWARD_EPS = [1e-5, 0.5]
IN_SHAPES = [(1, 3, 7), (3, 2, 6), (2, 3, 6, 5), (1, 2, 3, 4), (2, 2, 3, 4, 2)]
IN_OPTIONS = dict(momentum=0.3, eps=1e-4)
LN_CASES = [  # (input shape, normalized_shape)
    ((4, 10), 10),
    ((4, 10), [10]),
    ((1, 3, 5, 6), (3, 5, 6)),  # one pair per example, the CNN use
    ((2, 3, 5, 6), (5, 6)),
    ((2, 3, 5, 6), 6),
    ((3, 7, 4), torch.Size([7, 4])),
]
LN_EPS = [1e-5, 0.1]
GN_CASES = [((3, 4), 2), ((2, 6, 7), 3), ((1, 6, 4, 5), 1), ((2, 6, 4, 5), 2), ((2, 6, 3, 5), 6), ((2, 4, 3, 2, 2), 4)]
GN_EPS = 1e-3
# Windows of odd and even sizes, and wider than the channel count (size 9 > C).
LRN_SHAPES = [(2, 6, 7), (1, 7, 4, 5), (2, 5, 3, 4, 2)]
LRN_SIZES = [1, 2, 3, 4, 5, 9]
LRN_PARAMS = [(1e-4, 0.75, 1.0), (2.0, 1.5, 0.5)]  # (alpha, beta, k)
LCN_CASES = [  # (input shape, kernel_size, sigma)
    ((1, 1, 6, 5), 3, 1.0),
    ((2, 3, 7, 6), 5, None),  # the default sigma
    ((1, 2, 4, 9), 9, 2.0),  # a window wider than the image
    ((1, 3, 4, 5), 1, None),  # k = 1: the channel mean alone
    ((2, 2, 12, 10), 9, None),  # a window inside a larger image, two examples
]
WN_CASES = [  # (weight shape, dim): a vector, a linear layer, conv1d, conv2d; per output, per input, whole tensor
    ((5,), 0),
    ((4, 6), 0),
    ((4, 6), 1),
    ((4, 6), None),
    ((3, 2, 5), 2),
    ((4, 3, 3, 3), 0),
    ((4, 3, 3, 3), 1),
    ((4, 3, 3, 3), None),
]
SN_CASES = [  # (weight shape, dim): linear (tall and wide), conv2d, a transposed conv's dim 1, a negative dim
    ((4, 6), 0),
    ((7, 3), 0),
    ((5, 3, 3, 3), 0),
    ((3, 5, 2, 2), 1),
    ((4, 3, 5), -1),
]
SN_ITERATIONS = [1, 3]


# --- batch norm ---------------------------------------------------------------------------------


def _weight_and_bias(shape, dtype=torch.float64, device="cpu"):
    """An affine transform's weight and bias of ``shape``, leaves that require grad."""
    return tuple(random_tensor(*shape, seed=seed, dtype=dtype, device=device, requires_grad=True) for seed in (2, 3))


def _batch_norm_case(shape, affine, dtype=torch.float64, device="cpu"):
    """input, weight, bias (None without affine) for one channel count."""
    x = random_tensor(*shape, dtype=dtype, device=device, requires_grad=True)
    return (x, *_weight_and_bias((shape[1],), dtype, device)) if affine else (x, None, None)


@pytest.mark.parametrize(("momentum", "eps"), BN_TRAINING, ids=lambda v: str(v))
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=_id)
def test_batch_norm_training_matches_torch(shape, affine, momentum, eps):
    """Batch statistics for the output; the running statistics are updated exactly like PyTorch's."""
    x, w, b = _batch_norm_case(shape, affine)
    ours_stats, torch_stats = _running_stats(shape[1]), _running_stats(shape[1])
    assert_same_values_and_grads(
        lambda x, w, b: CF.batch_norm(x, *ours_stats, w, b, training=True, momentum=momentum, eps=eps),
        lambda x, w, b: F.batch_norm(x, *torch_stats, w, b, training=True, momentum=momentum, eps=eps),
        [x, w, b],
        TOLERANCES[torch.float64],
    )
    # Each function ran once, so both running statistics went through one update.
    assert not torch.equal(ours_stats[0], _running_stats(shape[1])[0]), "running_mean was not updated"
    for ours, theirs in zip(ours_stats, torch_stats):
        torch.testing.assert_close(ours, theirs, atol=1e-14, rtol=1e-13)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=_id)
def test_batch_norm_training_without_running_stats_matches_torch(shape):
    x, w, b = _batch_norm_case(shape, affine=True)
    assert_same_values_and_grads(
        lambda x, w, b: CF.batch_norm(x, None, None, w, b, training=True),
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        [x, w, b],
        TOLERANCES[torch.float64],
    )


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("shape", BN_SHAPES + [(1, 3)], ids=_id)
def test_batch_norm_eval_matches_torch_and_leaves_running_stats_alone(shape, affine):
    """Eval mode uses the running statistics (even for a batch of one value per channel)."""
    x, w, b = _batch_norm_case(shape, affine)
    stats = _running_stats(shape[1])
    before = [s.clone() for s in stats]
    assert_same_values_and_grads(
        lambda x, w, b: CF.batch_norm(x, *stats, w, b, training=False, eps=BN_EVAL_EPS),
        lambda x, w, b: F.batch_norm(x, *stats, w, b, training=False, eps=BN_EVAL_EPS),
        [x, w, b],
        TOLERANCES[torch.float64],
    )
    for s, s0 in zip(stats, before):
        assert torch.equal(s, s0)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=["m0.1", "m0.5", "cumulative"])
def test_batch_norm_running_stats_after_several_steps_equal_nn_batchnorm2d(momentum):
    """Five training steps on different batches, then eval: same running stats and outputs as nn.BatchNorm2d.

    momentum=None (cumulative average) is nn.BatchNorm's 1 / num_batches_tracked, passed explicitly.
    """
    module = torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(random_tensor(3, seed=2))
        module.bias.copy_(random_tensor(3, seed=3))
    running_mean, running_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    module.train()
    for step in range(1, 6):
        x = random_tensor(4, 3, 5, 6, seed=100 + step) * step + step  # a different scale and offset each time
        m = 1.0 / step if momentum is None else momentum
        ours = CF.batch_norm(x, running_mean, running_var, module.weight, module.bias, training=True, momentum=m)
        torch.testing.assert_close(ours, module(x), **TOLERANCES[torch.float64])
    torch.testing.assert_close(running_mean, module.running_mean, atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(running_var, module.running_var, atol=1e-13, rtol=1e-13)
    module.eval()
    x = random_tensor(2, 3, 4, 4, seed=7)
    torch.testing.assert_close(CF.batch_norm(x, running_mean, running_var, module.weight, module.bias), module(x))


def test_batch_norm_stores_the_unbiased_variance():
    """momentum=1 replaces the running variance by the batch's n/(n-1) variance, not the biased one."""
    x = random_tensor(3, 2, 2)  # n = 6 values per channel
    mean, var = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    CF.batch_norm(x, mean, var, training=True, momentum=1.0)
    torch.testing.assert_close(mean, x.mean((0, 2)))
    torch.testing.assert_close(var, x.var((0, 2), correction=1))


def test_batch_norm_float32_matches_torch():
    x, w, b = _batch_norm_case((4, 3, 5, 6), True, dtype=torch.float32)
    ours_stats, torch_stats = _running_stats(3, torch.float32), _running_stats(3, torch.float32)
    assert_same_values_and_grads(
        lambda x, w, b: CF.batch_norm(x, *ours_stats, w, b, training=True),
        lambda x, w, b: F.batch_norm(x, *torch_stats, w, b, training=True),
        [x, w, b],
        TOLERANCES[torch.float32],
    )
    torch.testing.assert_close(ours_stats, torch_stats, **TOLERANCES[torch.float32])


# --- batch_norm_backward ------------------------------------------------------------------------


@pytest.mark.parametrize("eps", BN_BACKWARD_EPS)
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "no-weight"])
@pytest.mark.parametrize("shape", BN_BACKWARD_SHAPES, ids=_id)
def test_batch_norm_backward_matches_autograd(shape, with_weight, eps):
    """The closed form equals autograd through F.batch_norm(training=True) for input, weight and bias."""
    x, w, b = _batch_norm_case(shape, affine=True)
    dy = random_tensor(*shape, seed=5)
    y = F.batch_norm(x, None, None, w if with_weight else None, b, training=True, eps=eps)
    expected_dx, expected_dw, expected_db = torch.autograd.grad(y, [x, w, b], dy, allow_unused=True)
    if not with_weight:  # the gradient for gamma = 1: dL/dgamma = sum dy * x_hat
        expected_dw = (dy * F.batch_norm(x, None, None, training=True, eps=eps)).sum([0, *range(2, x.ndim)])
    dx, dw, db = CF.batch_norm_backward(dy, x.detach(), w.detach() if with_weight else None, eps=eps)
    for name, ours, expected in [("input", dx, expected_dx), ("weight", dw, expected_dw), ("bias", db, expected_db)]:
        torch.testing.assert_close(ours, expected, **TOLERANCES[torch.float64], msg=lambda m, n=name: f"grad_{n}: {m}")


def test_batch_norm_backward_gives_zero_mean_gradients_orthogonal_to_x_hat():
    """Why the two subtracted sums are there: per channel, sum dx = 0 and sum dx * x_hat = 0 (gamma = 1)."""
    x, dy = random_tensor(5, 3, 4), random_tensor(5, 3, 4, seed=9)
    dx, _, _ = CF.batch_norm_backward(dy, x, None, eps=0.0)
    x_hat = (x - x.mean((0, 2), keepdim=True)) / x.std((0, 2), correction=0, keepdim=True)
    torch.testing.assert_close(dx.sum((0, 2)), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close((dx * x_hat).sum((0, 2)), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


# --- instance norm ------------------------------------------------------------------------------


@pytest.mark.parametrize("running", [False, True], ids=["no-running", "running"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("shape", IN_SHAPES, ids=_id)
def test_instance_norm_input_stats_matches_torch(shape, affine, running):
    """Per-(example, channel) statistics; running statistics get the batch mean of the per-instance ones."""
    x, w, b = _batch_norm_case(shape, affine)
    ours_stats = _running_stats(shape[1]) if running else (None, None)
    torch_stats = _running_stats(shape[1]) if running else (None, None)
    assert_same_values_and_grads(
        lambda x, w, b: CF.instance_norm(x, *ours_stats, w, b, use_input_stats=True, **IN_OPTIONS),
        lambda x, w, b: F.instance_norm(x, *torch_stats, w, b, use_input_stats=True, **IN_OPTIONS),
        [x, w, b],
        TOLERANCES[torch.float64],
    )
    if running:
        assert not torch.equal(ours_stats[1], _running_stats(shape[1])[1]), "running_var was not updated"
        torch.testing.assert_close(ours_stats, torch_stats, atol=1e-14, rtol=1e-13)


@pytest.mark.parametrize("shape", IN_SHAPES + [(2, 3, 1)], ids=_id)
def test_instance_norm_running_stats_path_matches_torch(shape):
    """use_input_stats=False normalizes with the running statistics (a spatial size of 1 is fine then)."""
    x, w, b = _batch_norm_case(shape, affine=True)
    stats = _running_stats(shape[1])
    assert_same_values_and_grads(
        lambda x, w, b: CF.instance_norm(x, *stats, w, b, use_input_stats=False),
        lambda x, w, b: F.instance_norm(x, *stats, w, b, use_input_stats=False),
        [x, w, b],
        TOLERANCES[torch.float64],
    )


# --- layer norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", LN_EPS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize(("shape", "normalized_shape"), LN_CASES, ids=[f"{_id(s)}-n{n}" for s, n in LN_CASES])
def test_layer_norm_matches_torch(shape, normalized_shape, affine, eps):
    norm = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = random_tensor(*shape, requires_grad=True)
    w, b = _weight_and_bias(norm) if affine else (None, None)
    assert_same_values_and_grads(
        lambda x, w, b: CF.layer_norm(x, normalized_shape, w, b, eps=eps),
        lambda x, w, b: F.layer_norm(x, norm, w, b, eps=eps),  # F.layer_norm takes no bare int (nn.LayerNorm does)
        [x, w, b],
        TOLERANCES[torch.float64],
    )


# --- group norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize(("shape", "groups"), GN_CASES, ids=[f"{_id(s)}-g{g}" for s, g in GN_CASES])
def test_group_norm_matches_torch(shape, groups, affine):
    x, w, b = _batch_norm_case(shape, affine)
    assert_same_values_and_grads(
        lambda x, w, b: CF.group_norm(x, groups, w, b, eps=GN_EPS),
        lambda x, w, b: F.group_norm(x, groups, w, b, eps=GN_EPS),
        [x, w, b],
        TOLERANCES[torch.float64],
    )


def test_group_norm_extremes_are_layer_and_instance_norm():
    """G = 1 standardizes each example over (C, H, W), G = C each (example, channel) map."""
    x = random_tensor(2, 4, 3, 5)
    torch.testing.assert_close(CF.group_norm(x, 1), CF.layer_norm(x, x.shape[1:]))
    torch.testing.assert_close(CF.group_norm(x, 4), CF.instance_norm(x))


# --- local response normalization ---------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "beta", "k"), LRN_PARAMS)
@pytest.mark.parametrize("size", LRN_SIZES)
@pytest.mark.parametrize("shape", LRN_SHAPES, ids=_id)
def test_local_response_norm_matches_torch(shape, size, alpha, beta, k):
    x = random_tensor(*shape, requires_grad=True)
    assert_same_values_and_grads(
        lambda x: CF.local_response_norm(x, size, alpha, beta, k),
        lambda x: F.local_response_norm(x, size, alpha, beta, k),
        [x],
        TOLERANCES[torch.float64],
    )


def test_local_response_norm_window_is_centred_with_the_extra_channel_before():
    """size 2 on channel c sums channels c-1 and c: a spike in channel 2 damps channels 2 and 3 only."""
    x = torch.ones(1, 5, 1, 1, dtype=torch.float64)
    x[0, 2] = 10.0
    y = CF.local_response_norm(x, size=2, alpha=2.0, beta=1.0, k=1.0)
    # divisor 1 + (2 / 2) * (x_{c-1}^2 + x_c^2)
    expected = torch.tensor([1 / 2, 1 / 3, 10 / 102, 1 / 102, 1 / 3], dtype=torch.float64)
    torch.testing.assert_close(y.flatten(), expected)


# --- local contrast normalization ---------------------------------------------------------------


def _lcn_by_loops(x: torch.Tensor, kernel_size: int, sigma: float, eps: float) -> torch.Tensor:
    """Jarrett et al.'s formulas, one position and one window offset at a time (no convolution)."""
    n, c, h, w = x.shape
    r = kernel_size // 2
    g = [[torch.exp(torch.tensor(-(p * p + q * q) / (2 * sigma**2), dtype=x.dtype)) for q in range(-r, r + 1)] for p in range(-r, r + 1)]
    total = sum(sum(row) for row in g)
    weight = [[g[p][q] / total / c for q in range(kernel_size)] for p in range(kernel_size)]  # sums to 1 over (c, p, q)

    def weighted_sum(t, b, i, j):
        """sum over channels and the window of w * t, pixels outside the image counting as 0."""
        s = torch.zeros((), dtype=x.dtype)
        for p in range(-r, r + 1):
            for q in range(-r, r + 1):
                if 0 <= i + p < h and 0 <= j + q < w:
                    s = s + weight[p + r][q + r] * t[b, :, i + p, j + q].sum()
        return s

    v = torch.empty_like(x)
    for b, i, j in itertools.product(range(n), range(h), range(w)):
        v[b, :, i, j] = x[b, :, i, j] - weighted_sum(x, b, i, j)
    y = torch.empty_like(x)
    for b in range(n):
        sigma_map = torch.stack([torch.sqrt(weighted_sum(v * v, b, i, j)) for i in range(h) for j in range(w)]).view(h, w)
        divisor = torch.clamp(torch.maximum(sigma_map, sigma_map.mean()), min=eps)
        y[b] = v[b] / divisor
    return y


@pytest.mark.parametrize(("shape", "kernel_size", "sigma"), LCN_CASES, ids=_id)
def test_local_contrast_norm_matches_the_formula_computed_by_loops(shape, kernel_size, sigma):
    x = random_tensor(*shape) * 2 + 1
    expected = _lcn_by_loops(x, kernel_size, kernel_size / 4.5 if sigma is None else sigma, eps=1e-4)
    torch.testing.assert_close(CF.local_contrast_norm(x, kernel_size, sigma), expected, **TOLERANCES[torch.float64])


def test_local_contrast_norm_is_locally_zero_mean_in_the_interior():
    """A constant plus noise: the subtractive stage removes the constant (3 / divisor would be ~30 stds)."""
    x = 3.0 + 0.1 * random_tensor(2, 3, 24, 24)
    y = CF.local_contrast_norm(x, kernel_size=5)
    interior = y[:, :, 2:-2, 2:-2]
    assert interior.mean().abs() < 0.1 * interior.std(), (interior.mean(), interior.std())
    # A constant image has v = 0 wherever the window lies inside the image.
    flat = CF.local_contrast_norm(torch.full((1, 2, 9, 9), 5.0, dtype=torch.float64), kernel_size=5)
    assert flat[:, :, 2:-2, 2:-2].abs().max() < 1e-12
    assert flat[:, :, 0, 0].abs().min() > 0.1, "zero padding makes the corners non-zero"


@pytest.mark.parametrize("scale", [0.5, 3.0, 100.0])
def test_local_contrast_norm_is_invariant_to_scaling_the_input(scale):
    """x -> a x scales v, sigma and its mean by a, so y is unchanged while the divisor stays above eps."""
    x = random_tensor(2, 3, 10, 8)
    y = CF.local_contrast_norm(x)
    assert y.shape == x.shape
    torch.testing.assert_close(CF.local_contrast_norm(scale * x), y, atol=1e-12, rtol=1e-10)
    # ... but not to adding a constant: only the interior forgets it (the border sees zero padding).
    assert not torch.allclose(CF.local_contrast_norm(x + 5.0), y, atol=1e-3)


def test_local_contrast_norm_gradients_are_right_and_finite_on_flat_regions():
    """gradcheck on random input; on a digit-like image with an exactly zero background no NaN appears."""
    x = random_tensor(1, 2, 5, 4, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: CF.local_contrast_norm(t, kernel_size=3), (x,))
    digit = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    digit[0, 0, 4:8, 5:7] = 1.0
    digit.requires_grad_()
    CF.local_contrast_norm(digit, kernel_size=3).pow(2).sum().backward()
    assert torch.isfinite(digit.grad).all()


# --- weight normalization -----------------------------------------------------------------------


def _holder(weight: torch.Tensor) -> nn.Module:
    """A module whose only parameter is ``weight``, for PyTorch's parametrizations."""
    module = nn.Module()
    module.weight = nn.Parameter(weight.detach().clone())
    return module


def _weight_norm_case(shape, dim, dtype=torch.float64, device="cpu"):
    """v, g (our shape) and PyTorch's weight-norm parametrization registered on a module holding v."""
    v = random_tensor(*shape, dtype=dtype, device=device, requires_grad=True)
    g_shape = () if dim is None else (shape[dim],)
    g = random_tensor(*g_shape, seed=4, dtype=dtype, device=device).abs().add(0.5).requires_grad_()
    module = parametrizations.weight_norm(_holder(v), dim=dim)
    return v, g, module


def _torch_weight_norm(module, dim):
    """PyTorch's parametrization as a function of (v, g), g given in our shape and viewed as PyTorch stores it."""
    stored = module.parametrizations.weight.original0.shape
    return lambda v, g: module.parametrizations.weight[0](g.reshape(stored), v)


@pytest.mark.parametrize(("shape", "dim"), WN_CASES, ids=[f"{_id(s)}-dim{d}" for s, d in WN_CASES])
def test_weight_norm_matches_torch(shape, dim):
    v, g, module = _weight_norm_case(shape, dim)
    ours = lambda v, g: CF.weight_norm(v, g, dim)  # noqa: E731
    assert_same_values_and_grads(ours, _torch_weight_norm(module, dim), [v, g], TOLERANCES[torch.float64], ["v", "g"])


def test_weight_norm_of_a_registered_layer_trains_like_torchs():
    """nn.Linear with PyTorch's weight norm, one loss: same weight (w = v at creation), same gradients for g and v."""
    layer = nn.Linear(6, 4, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(random_tensor(4, 6, seed=2))
        layer.bias.copy_(random_tensor(4, seed=3))
    parametrizations.weight_norm(layer, dim=0)
    g, v = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
    ours_g, ours_v = g.detach().flatten().clone().requires_grad_(), v.detach().clone().requires_grad_()
    x = random_tensor(8, 6, seed=5)
    torch.testing.assert_close(CF.weight_norm(ours_v, ours_g), random_tensor(4, 6, seed=2), atol=1e-14, rtol=0)
    layer(x).pow(2).sum().backward()
    F.linear(x, CF.weight_norm(ours_v, ours_g), layer.bias.detach()).pow(2).sum().backward()
    torch.testing.assert_close(ours_g.grad, g.grad.flatten(), **TOLERANCES[torch.float64])
    torch.testing.assert_close(ours_v.grad, v.grad, **TOLERANCES[torch.float64])


def test_weight_norm_separates_length_and_direction():
    """Each output row of w has norm |g_i|; scaling v changes nothing; dL/dv is orthogonal to v, row by row."""
    v = random_tensor(5, 3, 2, 2, requires_grad=True)
    g = torch.tensor([0.5, 1.0, 2.0, -3.0, 4.0], dtype=torch.float64, requires_grad=True)
    w = CF.weight_norm(v, g)
    torch.testing.assert_close(w.flatten(1).norm(dim=1), g.detach().abs())
    torch.testing.assert_close(CF.weight_norm(7.0 * v.detach(), g.detach()), w.detach())
    (w * random_tensor(*w.shape, seed=6)).sum().backward()
    along_v = (v.grad * v.detach()).flatten(1).sum(1)
    torch.testing.assert_close(along_v, torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    # ... while the gradient of g is the upstream gradient projected on each row's unit direction.
    unit = v.detach() / v.detach().flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(g.grad, (random_tensor(*w.shape, seed=6) * unit).flatten(1).sum(1))


# --- spectral normalization ---------------------------------------------------------------------


def _spectral_norm_case(shape, dim, n_power_iterations, dtype=torch.float64, device="cpu"):
    """A weight, PyTorch's spectral-norm parametrization registered on a module holding it, and copies of its u, v."""
    weight = random_tensor(*shape, dtype=dtype, device=device, requires_grad=True)
    torch.manual_seed(0)  # PyTorch draws the first u and v from the global generator
    module = parametrizations.spectral_norm(_holder(weight), n_power_iterations=n_power_iterations, dim=dim)
    sn = module.parametrizations.weight[0]
    return weight, module, sn._u.clone(), sn._v.clone()


@pytest.mark.parametrize("n_power_iterations", SN_ITERATIONS)
@pytest.mark.parametrize(("shape", "dim"), SN_CASES, ids=[f"{_id(s)}-dim{d}" for s, d in SN_CASES])
def test_spectral_norm_matches_torch(shape, dim, n_power_iterations):
    """One training-mode call: the same normalized weight, gradient and updated u, v as PyTorch's."""
    weight, module, u, v = _spectral_norm_case(shape, dim, n_power_iterations)
    sn = module.parametrizations.weight[0]
    ours = lambda w: CF.spectral_norm(w, u, v, n_power_iterations, dim=dim)  # noqa: E731
    assert_same_values_and_grads(ours, sn, [weight], TOLERANCES[torch.float64], ["weight"])
    # Each side ran its power iteration once (assert_same_values_and_grads calls each function once).
    assert not torch.equal(u, _spectral_norm_case(shape, dim, n_power_iterations)[2]), "u was not updated"
    torch.testing.assert_close(u, sn._u, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(v, sn._v, atol=1e-12, rtol=1e-10)


def test_spectral_norm_follows_torch_over_training_steps_and_in_eval():
    """Five steps of a changing weight (one power iteration each), then eval (none): PyTorch's numbers throughout."""
    weight, module, u, v = _spectral_norm_case((6, 4, 3, 3), 0, 1)
    original = module.parametrizations.weight.original
    for step in range(1, 6):
        with torch.no_grad():
            original.add_(0.3 * random_tensor(6, 4, 3, 3, seed=20 + step))
        ours = CF.spectral_norm(original.detach(), u, v)
        torch.testing.assert_close(ours, module.weight, **TOLERANCES[torch.float64])
    module.eval()
    u_before = u.clone()
    torch.testing.assert_close(CF.spectral_norm(original.detach(), u, v, n_power_iterations=0), module.weight)
    assert torch.equal(u, u_before), "n_power_iterations=0 must leave u alone"


def test_spectral_norm_estimate_rises_to_the_largest_singular_value():
    """sigma_k = u^T W v never exceeds sigma_max, never decreases and reaches it; the result then has spectral norm 1."""
    weight = random_tensor(8, 5, seed=3)
    sigma_max = torch.linalg.matrix_norm(weight, ord=2)
    u = F.normalize(random_tensor(8, seed=4), dim=0)
    v = F.normalize(random_tensor(5, seed=5), dim=0)
    estimates = [(weight / CF.spectral_norm(weight, u, v))[0, 0] for _ in range(60)]
    estimates = torch.stack(estimates)
    assert (estimates <= sigma_max * (1 + 1e-12)).all()
    assert (estimates.diff() >= -1e-12).all(), estimates
    assert estimates[0] < sigma_max * 0.999, "the check is void if one iteration already converged"
    torch.testing.assert_close(estimates[-1], sigma_max, atol=1e-10, rtol=1e-10)
    normalized = CF.spectral_norm(weight, u, v)
    torch.testing.assert_close(torch.linalg.matrix_norm(normalized, ord=2), torch.tensor(1.0, dtype=torch.float64))


# --- bad arguments: a ValueError that names the argument ----------------------------------------


def _z(*shape):
    return torch.zeros(shape)


BAD_ARGS = [
    # (id, function, kwargs, regex the message must match)
    ("bn-input-1d", CF.batch_norm, dict(input=_z(4), running_mean=None, running_var=None, training=True), r"^input must have shape \(N, C, \*\)"),
    ("bn-input-list", CF.batch_norm, dict(input=[[1.0]], running_mean=None, running_var=None), r"^input must be a torch\.Tensor"),
    ("bn-running-mean-shape", CF.batch_norm, dict(input=_z(2, 3), running_mean=_z(4), running_var=_z(3)), r"^running_mean must have shape \(C,\) = \(3,\), got \(4,\)"),
    ("bn-running-var-shape", CF.batch_norm, dict(input=_z(2, 3), running_mean=_z(3), running_var=_z(3, 1)), r"^running_var must have shape"),
    ("bn-only-mean", CF.batch_norm, dict(input=_z(2, 3), running_mean=_z(3), running_var=None), r"^running_mean and running_var must be given together"),
    ("bn-weight-shape", CF.batch_norm, dict(input=_z(2, 3, 4), running_mean=None, running_var=None, weight=_z(2), training=True), r"^weight must have shape \(C,\) = \(3,\), got \(2,\)"),
    ("bn-bias-shape", CF.batch_norm, dict(input=_z(2, 3, 4), running_mean=None, running_var=None, bias=_z(1), training=True), r"^bias must have shape"),
    ("bn-eval-no-stats", CF.batch_norm, dict(input=_z(2, 3), running_mean=None, running_var=None, training=False), r"^running_mean and running_var must be tensors when training=False"),
    ("bn-one-value", CF.batch_norm, dict(input=_z(1, 3), running_mean=None, running_var=None, training=True), r"^input must have more than 1 value per channel"),
    ("bn-momentum-none", CF.batch_norm, dict(input=_z(2, 3), running_mean=_z(3), running_var=_z(3), training=True, momentum=None), r"^momentum must be a number in \[0, 1\], got None"),
    ("bn-momentum-2", CF.batch_norm, dict(input=_z(2, 3), running_mean=_z(3), running_var=_z(3), momentum=2.0), r"^momentum must be"),
    ("bn-eps-negative", CF.batch_norm, dict(input=_z(2, 3), running_mean=_z(3), running_var=_z(3), eps=-1.0), r"^eps must be a number >= 0, got -1.0"),
    ("bn-eps-0-training", CF.batch_norm, dict(input=_z(2, 3), running_mean=None, running_var=None, training=True, eps=0.0), r"^eps must be a number > 0, got 0.0"),
    ("in-input-2d", CF.instance_norm, dict(input=_z(2, 3)), r"^input must have shape \(N, C, \*spatial\)"),
    ("in-one-spatial", CF.instance_norm, dict(input=_z(2, 3, 1)), r"^input must have more than 1 spatial value"),
    ("in-weight-shape", CF.instance_norm, dict(input=_z(2, 3, 4), weight=_z(4)), r"^weight must have shape \(C,\)"),
    ("in-running-shape", CF.instance_norm, dict(input=_z(2, 3, 4), running_mean=_z(2), running_var=_z(2)), r"^running_mean must have shape"),
    ("in-no-stats", CF.instance_norm, dict(input=_z(2, 3, 4), use_input_stats=False), r"^running_mean and running_var must be tensors"),
    ("ln-shape-mismatch", CF.layer_norm, dict(input=_z(2, 3, 4), normalized_shape=(3,)), r"^input's last 1 dims must be normalized_shape = \(3,\)"),
    ("ln-shape-too-long", CF.layer_norm, dict(input=_z(3, 4), normalized_shape=(2, 3, 4)), r"^input must have shape \(\*, 2, 3, 4\)"),
    ("ln-shape-zero", CF.layer_norm, dict(input=_z(3, 4), normalized_shape=0), r"^normalized_shape must be"),
    ("ln-shape-empty", CF.layer_norm, dict(input=_z(3, 4), normalized_shape=()), r"^normalized_shape must be"),
    ("ln-shape-float", CF.layer_norm, dict(input=_z(3, 4), normalized_shape=4.0), r"^normalized_shape must be"),
    ("ln-weight-shape", CF.layer_norm, dict(input=_z(3, 4), normalized_shape=4, weight=_z(3)), r"^weight must have shape normalized_shape = \(4,\)"),
    ("ln-bias-shape", CF.layer_norm, dict(input=_z(3, 4), normalized_shape=4, bias=_z(1, 4)), r"^bias must have shape"),
    ("gn-not-dividing", CF.group_norm, dict(input=_z(2, 6, 3), num_groups=4), r"^num_groups must divide the number of channels C = 6"),
    ("gn-groups-0", CF.group_norm, dict(input=_z(2, 6, 3), num_groups=0), r"^num_groups must be an int >= 1"),
    ("gn-input-1d", CF.group_norm, dict(input=_z(6), num_groups=2), r"^input must have shape"),
    ("gn-weight-shape", CF.group_norm, dict(input=_z(2, 6, 3), num_groups=2, weight=_z(2)), r"^weight must have shape \(C,\) = \(6,\)"),
    ("lrn-input-2d", CF.local_response_norm, dict(input=_z(2, 6), size=3), r"^input must have shape \(N, C, \*spatial\)"),
    ("lrn-size-0", CF.local_response_norm, dict(input=_z(2, 6, 3), size=0), r"^size must be an int >= 1, got 0"),
    ("lrn-size-float", CF.local_response_norm, dict(input=_z(2, 6, 3), size=2.0), r"^size must be"),
    ("lcn-input-3d", CF.local_contrast_norm, dict(input=_z(2, 6, 3)), r"^input must have shape \(N, C, H, W\)"),
    ("lcn-even-kernel", CF.local_contrast_norm, dict(input=_z(1, 1, 8, 8), kernel_size=4), r"^kernel_size must be an odd int >= 1, got 4"),
    ("lcn-kernel-0", CF.local_contrast_norm, dict(input=_z(1, 1, 8, 8), kernel_size=0), r"^kernel_size must be"),
    ("lcn-sigma-0", CF.local_contrast_norm, dict(input=_z(1, 1, 8, 8), sigma=0.0), r"^sigma must be a number > 0"),
    ("lcn-eps-negative", CF.local_contrast_norm, dict(input=_z(1, 1, 8, 8), eps=-1e-4), r"^eps must be"),
    ("bnb-shape-mismatch", CF.batch_norm_backward, dict(grad_output=_z(2, 3), input=_z(2, 3, 4), weight=None), r"^grad_output must have input's shape \(2, 3, 4\), got \(2, 3\)"),
    ("bnb-weight-shape", CF.batch_norm_backward, dict(grad_output=_z(2, 3), input=_z(2, 3), weight=_z(2)), r"^weight must have shape \(C,\)"),
    ("bnb-one-value", CF.batch_norm_backward, dict(grad_output=_z(1, 3), input=_z(1, 3), weight=None), r"^input must have more than 1 value per channel"),
    ("wn-v-list", CF.weight_norm, dict(v=[1.0, 2.0], g=_z(2)), r"^v must be a torch\.Tensor"),
    ("wn-v-0d", CF.weight_norm, dict(v=torch.tensor(1.0), g=_z(1)), r"^v must have shape \(out, \*\)"),
    ("wn-g-shape", CF.weight_norm, dict(v=_z(4, 3), g=_z(3)), r"^g must have shape \(v\.shape\[dim\],\) = \(4,\), got \(3,\)"),
    ("wn-g-keepdim", CF.weight_norm, dict(v=_z(4, 3), g=_z(4, 1)), r"^g must have shape \(v\.shape\[dim\],\) = \(4,\), got \(4, 1\)"),
    ("wn-g-missing", CF.weight_norm, dict(v=_z(4, 3), g=None), r"^g must be a torch\.Tensor"),
    ("wn-g-dim-none", CF.weight_norm, dict(v=_z(4, 3), g=_z(1), dim=None), r"^g must be a 0-dim tensor \(one length\) when dim=None, got \(1,\)"),
    ("wn-dim-negative", CF.weight_norm, dict(v=_z(4, 3), g=_z(3), dim=-1), r"^dim must be None \(one norm for the whole of v\) or an int in \[0, 1\]"),
    ("wn-dim-too-large", CF.weight_norm, dict(v=_z(4, 3), g=_z(3), dim=2), r"^dim must be None .* got 2"),
    ("sn-weight-1d", CF.spectral_norm, dict(weight=_z(4), u=_z(4), v=_z(1)), r"^weight must have shape \(out, in, \*\)"),
    ("sn-u-shape", CF.spectral_norm, dict(weight=_z(4, 3), u=_z(3), v=_z(3)), r"^u must have shape \(weight\.shape\[dim\],\) = \(4,\), got \(3,\)"),
    ("sn-v-shape", CF.spectral_norm, dict(weight=_z(4, 3, 2), u=_z(4), v=_z(3)), r"^v must have shape \(numel / weight\.shape\[dim\],\) = \(6,\), got \(3,\)"),
    ("sn-u-missing", CF.spectral_norm, dict(weight=_z(4, 3), u=None, v=_z(3)), r"^u must be a torch\.Tensor"),
    ("sn-v-dim1", CF.spectral_norm, dict(weight=_z(4, 3, 2), u=_z(3), v=_z(6), dim=1), r"^v must have shape \(numel / weight\.shape\[dim\],\) = \(8,\), got \(6,\)"),
    ("sn-iterations-negative", CF.spectral_norm, dict(weight=_z(4, 3), u=_z(4), v=_z(3), n_power_iterations=-1), r"^n_power_iterations must be an int >= 0, got -1"),
    ("sn-iterations-float", CF.spectral_norm, dict(weight=_z(4, 3), u=_z(4), v=_z(3), n_power_iterations=1.0), r"^n_power_iterations must be an int"),
    ("sn-dim-out-of-range", CF.spectral_norm, dict(weight=_z(4, 3), u=_z(4), v=_z(3), dim=2), r"^dim must be an int in \[-2, 1\] \(an axis of weight\), got 2"),
    ("sn-eps-0", CF.spectral_norm, dict(weight=_z(4, 3), u=_z(4), v=_z(3), eps=0.0), r"^eps must be a number > 0, got 0.0"),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "kwargs", "match"), [pytest.param(f, k, m, id=i) for i, f, k, m in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


# --- float32, and on a GPU ----------------------------------------------------------------------


def _compare_all(dtype, device) -> None:
    """Every function with a PyTorch twin (or parametrization) on one case each, plus batch_norm_backward and LCN."""
    tol = TOLERANCES[dtype]
    x, w, b = _batch_norm_case((3, 4, 5, 6), True, dtype=dtype, device=device)
    w6, b6 = _weight_and_bias((6,), dtype, device)
    stats = [_running_stats(4, dtype, device) for _ in range(2)]
    cases = [
        (lambda x, w, b: CF.batch_norm(x, *stats[0], w, b, True), lambda x, w, b: F.batch_norm(x, *stats[1], w, b, True), [x, w, b]),
        (lambda x, w, b: CF.batch_norm(x, *stats[0], w, b), lambda x, w, b: F.batch_norm(x, *stats[1], w, b), [x, w, b]),
        (lambda x, w, b: CF.instance_norm(x, None, None, w, b), lambda x, w, b: F.instance_norm(x, None, None, w, b), [x, w, b]),
        (lambda x, w, b: CF.group_norm(x, 2, w, b), lambda x, w, b: F.group_norm(x, 2, w, b), [x, w, b]),
        (lambda x, w, b: CF.layer_norm(x, (6,), w, b), lambda x, w, b: F.layer_norm(x, (6,), w, b), [x, w6, b6]),
        (lambda x: CF.local_response_norm(x, 3, 0.5), lambda x: F.local_response_norm(x, 3, 0.5), [x]),
    ]  # fmt: skip
    for ours, reference, tensors in cases:
        assert_same_values_and_grads(ours, reference, tensors, tol)
    torch.testing.assert_close(stats[0], stats[1], **tol)
    dy = random_tensor(3, 4, 5, 6, seed=5, dtype=dtype, device=device)
    expected = torch.autograd.grad(F.batch_norm(x, None, None, w, b, True), [x, w, b], dy)
    for ours, theirs in zip(CF.batch_norm_backward(dy, x.detach(), w.detach()), expected):
        torch.testing.assert_close(ours, theirs, **tol)
    v, g, wn_module = _weight_norm_case((4, 3, 3, 3), 0, dtype, device)
    assert_same_values_and_grads(CF.weight_norm, _torch_weight_norm(wn_module, 0), [v, g], tol)
    weight, sn_module, u, v = _spectral_norm_case((5, 3, 3, 3), 0, 2, dtype, device)
    sn = sn_module.parametrizations.weight[0]
    assert_same_values_and_grads(lambda w: CF.spectral_norm(w, u, v, 2), sn, [weight], tol)
    torch.testing.assert_close([u, v], [sn._u, sn._v], **tol)
    y = CF.local_contrast_norm(x.detach())
    assert y.device == x.device and y.dtype == dtype
    torch.testing.assert_close(CF.local_contrast_norm(3 * x.detach()), y, **tol)
    torch.testing.assert_close(y.cpu().double(), _lcn_by_loops(x.detach().cpu().double(), 9, 2.0, 1e-4), **tol)


def test_float32_matches_torch():
    _compare_all(torch.float32, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_matches_torch_on_cuda(monkeypatch, dtype):
    """The same comparisons with every tensor on the GPU (cuDNN's batch norm as the reference)."""
    # local_contrast_norm's Gaussian blur is a cuDNN convolution, which may use TF32 (10-bit mantissa)
    # for float32: ask for full float32 so the float32 tolerance holds.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    _compare_all(dtype, "cuda")
