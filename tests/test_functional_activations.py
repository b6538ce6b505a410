"""course_lib's activations equal PyTorch's, values and gradients; maxout equals an independent version.

Inputs are drawn away from the kinks (0, and 6 for ReLU6), where PyTorch and
a from-scratch version may legitimately pick different one-sided derivatives.
Each drawn tensor is checked to reach every branch of the function, so that a
wrong branch cannot hide.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers import functional as CF
from torch_reference import assert_same_values_and_grads, random_tensor

TOLERANCES = {torch.float64: {"atol": 1e-12, "rtol": 1e-12}, torch.float32: {"atol": 1e-6, "rtol": 1e-6}}
KINKS = (0.0, 6.0)
MARGIN = 0.05


def _input(shape, dtype=torch.float64, device="cpu", seed=0) -> torch.Tensor:
    """Seeded values spread over about [-9, 9], none within MARGIN of a kink, as a leaf that requires grad."""
    x = 3 * random_tensor(*shape, seed=seed)
    for kink in KINKS:
        near = (x - kink).abs() < MARGIN
        x[near] += 2 * MARGIN
    return x.to(dtype=dtype, device=device).requires_grad_()


def _id(value) -> str:
    """A test id: a shape as 2x3, keyword arguments as name=value (or 'default')."""
    if isinstance(value, dict):
        return "-".join(f"{k}={v}" for k, v in value.items()) or "default"
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


# The grids (also measured by benchmarks/reference_errors.py).
SHAPES = [(1, 3, 5, 7), (4, 2, 3, 3), (40,), (6, 5)]
ELEMENTWISE = [  # (ours, PyTorch's, keyword arguments)
    (CF.relu6, F.relu6, {}),
    (CF.leaky_relu, F.leaky_relu, {}),
    (CF.leaky_relu, F.leaky_relu, {"negative_slope": 0.2}),
    (CF.leaky_relu, F.leaky_relu, {"negative_slope": -0.5}),
    (CF.elu, F.elu, {}),
    (CF.elu, F.elu, {"alpha": 0.5}),
    (CF.elu, F.elu, {"alpha": 2}),  # an int
]
ELU_LARGE_INPUTS = [-800.0, -30.0, 30.0, 800.0]  # exp(x) overflows in float64 for x > 709
PRELU_CASES = [
    # (input shape, weight shape): one slope for all, one per channel, a 0-d weight, C equal to the
    # last dimension (where broadcasting over the wrong axis would go unnoticed by the shapes).
    ((2, 3, 4, 5), (1,)),
    ((2, 3, 4, 5), (3,)),
    ((2, 3, 4, 5), ()),
    ((2, 3, 4, 3), (3,)),
    ((1, 4, 6), (4,)),
    ((5, 3), (3,)),
    ((7,), (1,)),
]
MAXOUT_CASES = [  # (input shape, num_pieces, dim): 2, 3, all and 1 pieces; a 2-d input; the last and the first dim
    ((2, 6, 4, 5), 2, 1),
    ((2, 6, 4, 5), 3, 1),
    ((1, 6, 3, 3), 6, 1),
    ((1, 4, 3, 2), 1, 1),
    ((3, 8), 4, 1),
    ((2, 3, 4, 6), 3, -1),
    ((6, 5), 3, 0),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize(("ours", "reference", "kwargs"),
                         [pytest.param(*case, id=f"{case[0].__name__}-{_id(case[2])}") for case in ELEMENTWISE])
def test_elementwise_activation_matches_torch(ours, reference, kwargs, shape, dtype):
    x = _input(shape, dtype)
    assert (x < 0).any() and (x > 0).any()
    assert_same_values_and_grads(lambda t: ours(t, **kwargs), lambda t: reference(t, **kwargs), [x], TOLERANCES[dtype])


def test_relu6_inputs_reach_all_three_pieces():
    """The drawn inputs cover x < 0, 0 < x < 6 and x > 6, so the elementwise test checks every piece of relu6."""
    x = _input((1, 3, 5, 7))
    assert (x < 0).any() and ((x > 0) & (x < 6)).any() and (x > 6).any()


def test_elu_gradient_stays_finite_for_large_inputs():
    """exp overflows there; the from-scratch ELU must not turn that into a NaN gradient."""
    x = torch.tensor(ELU_LARGE_INPUTS, dtype=torch.float64, requires_grad=True)
    assert_same_values_and_grads(CF.elu, F.elu, [x], TOLERANCES[torch.float64])


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2])
def test_elu_gradient_at_zero_is_pytorchs(alpha):
    """At exactly 0 PyTorch takes the negative branch's slope, alpha; clamp(max=0) passed no gradient there (0)."""
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    assert_same_values_and_grads(lambda t: CF.elu(t, alpha), lambda t: F.elu(t, alpha), [x], TOLERANCES[torch.float64])


# --- prelu --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("shape", "weight_shape"), PRELU_CASES, ids=lambda s: _id(s) or "scalar")
def test_prelu_matches_torch(shape, weight_shape, dtype):
    x = _input(shape, dtype)
    weight = torch.rand(weight_shape, generator=torch.Generator().manual_seed(2), dtype=dtype).requires_grad_()
    assert_same_values_and_grads(CF.prelu, F.prelu, [x, weight], TOLERANCES[dtype])


def test_prelu_uses_each_channels_own_slope():
    """Channel c's negative inputs are scaled by weight[c] (dimension 1), not by the weight of their last index."""
    x = -torch.ones(1, 2, 2, 2, dtype=torch.float64)
    out = CF.prelu(x, torch.tensor([0.1, 0.5], dtype=torch.float64))
    assert torch.equal(out[0, 0], torch.full((2, 2), -0.1, dtype=torch.float64))
    assert torch.equal(out[0, 1], torch.full((2, 2), -0.5, dtype=torch.float64))


# --- maxout -------------------------------------------------------------------------------------


def maxout_by_strided_selection(x: torch.Tensor, num_pieces: int, dim: int) -> torch.Tensor:
    """Independent maxout: piece i of every group is channels i, i + k, i + 2k, ...; pairwise maximum of the pieces."""
    channels = x.shape[dim]
    pieces = [x.index_select(dim, torch.arange(i, channels, num_pieces, device=x.device)) for i in range(num_pieces)]
    return functools.reduce(torch.maximum, pieces)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("shape", "num_pieces", "dim"), MAXOUT_CASES, ids=_id)
def test_maxout_matches_an_independent_version(shape, num_pieces, dim, dtype):
    x = _input(shape, dtype)
    expected_shape = list(shape)
    expected_shape[dim] //= num_pieces
    assert CF.maxout(x, num_pieces, dim).shape == tuple(expected_shape)
    ours = functools.partial(CF.maxout, num_pieces=num_pieces, dim=dim)
    independent = functools.partial(maxout_by_strided_selection, num_pieces=num_pieces, dim=dim)
    assert_same_values_and_grads(ours, independent, [x], TOLERANCES[dtype])


def test_maxout_groups_consecutive_channels():
    """Channels [0, 5 | 1, 4 | 2, 3] in pieces of 2 give [5, 4, 3]; interleaved groups would give something else."""
    x = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.0, 3.0]).view(1, 6, 1, 1)
    assert CF.maxout(x, 2).flatten().tolist() == [5.0, 4.0, 3.0]


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) and (N, C, ...) -> (N, 2C, ...) with channels a0, b0, a1, b1, ...: each pair one maxout group."""
    return torch.stack([a, b], dim=2).flatten(1, 2)


@pytest.mark.parametrize(
    ("second_piece", "reference"),
    [(torch.zeros_like, F.relu), (torch.neg, torch.abs)],
    ids=["relu-is-maxout-of-x-and-0", "abs-is-maxout-of-x-and-minus-x"],
)
def test_relu_and_abs_are_maxouts(second_piece, reference):
    x = _input((2, 3, 4, 5))
    assert_same_values_and_grads(
        lambda t: CF.maxout(_interleave(t, second_piece(t)), 2), reference, [x], TOLERANCES[torch.float64]
    )


# --- bad arguments ------------------------------------------------------------------------------

X = torch.zeros(2, 3, 4, 4)

BAD_ARGS = [
    ("relu6-list", CF.relu6, dict(input=[1.0]), r"^input must be a torch\.Tensor"),
    ("leaky_relu-numpy", CF.leaky_relu, dict(input=X.numpy()), r"^input must be a torch\.Tensor"),
    ("leaky_relu-slope-tensor", CF.leaky_relu, dict(input=X, negative_slope=torch.tensor(0.1)), r"^negative_slope must be a finite number, got tensor"),
    ("leaky_relu-slope-str", CF.leaky_relu, dict(input=X, negative_slope="0.1"), r"^negative_slope must be"),
    ("elu-alpha-none", CF.elu, dict(input=X, alpha=None), r"^alpha must be a finite number, got None"),
    ("elu-alpha-bool", CF.elu, dict(input=X, alpha=True), r"^alpha must be"),
    ("elu-alpha-inf", CF.elu, dict(input=X, alpha=math.inf), r"^alpha must be a finite number, got inf"),
    ("prelu-weight-list", CF.prelu, dict(input=X, weight=[0.1]), r"^weight must be a torch\.Tensor"),
    ("prelu-weight-too-long", CF.prelu, dict(input=X, weight=torch.zeros(4)), r"^weight must be .* 1 or C = input\.shape\[1\] = 3 elements, got shape \(4,\)"),
    ("prelu-weight-2d", CF.prelu, dict(input=X, weight=torch.zeros(3, 1)), r"^weight must be a 0-d or 1-D tensor"),
    ("prelu-weight-for-1d-input", CF.prelu, dict(input=torch.zeros(5), weight=torch.zeros(5)), r"^weight must be .* C = input\.shape\[1\] = 1"),
    ("maxout-not-dividing", CF.maxout, dict(input=X, num_pieces=2), r"^num_pieces=2 must divide .*input\.shape\[1\] = 3"),
    ("maxout-zero-pieces", CF.maxout, dict(input=X, num_pieces=0), r"^num_pieces must be an int >= 1, got 0"),
    ("maxout-float-pieces", CF.maxout, dict(input=X, num_pieces=1.5), r"^num_pieces must be"),
    ("maxout-bool-pieces", CF.maxout, dict(input=X, num_pieces=True), r"^num_pieces must be"),
    ("maxout-dim-too-large", CF.maxout, dict(input=X, num_pieces=1, dim=4), r"^dim must be an int in \[-4, 3\]"),
    ("maxout-input-list", CF.maxout, dict(input=[1.0], num_pieces=1), r"^input must be a torch\.Tensor"),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "kwargs", "match"), [pytest.param(f, k, m, id=i) for i, f, k, m in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


# --- on a GPU -----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_activations_match_torch_on_cuda(dtype):
    x = _input((2, 6, 5, 4), dtype, device="cuda")
    weight = torch.rand(6, generator=torch.Generator().manual_seed(2), dtype=dtype).to("cuda").requires_grad_()
    tol = TOLERANCES[dtype]
    for ours, reference in [(CF.relu6, F.relu6), (CF.leaky_relu, F.leaky_relu), (CF.elu, F.elu)]:
        assert_same_values_and_grads(ours, reference, [x], tol)
    assert_same_values_and_grads(CF.prelu, F.prelu, [x, weight], tol)
    assert_same_values_and_grads(lambda t: CF.maxout(t, 3), lambda t: maxout_by_strided_selection(t, 3, 1), [x], tol)
