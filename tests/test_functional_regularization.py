"""course_lib's dropout family and label smoothing, against PyTorch/torchvision and against statistics.

The random ops draw their masks with ``Tensor.bernoulli_`` exactly as
``F.dropout`` (CPU), ``torchvision.ops.drop_block2d`` and
``torchvision.ops.stochastic_depth`` do, so after the same
``torch.manual_seed`` they must give *identical* outputs. Independently of
that, with seeded generators: the dropped fraction lies within 5 binomial
standard deviations of its expectation, the expectation of the output is the
input's, survivors are scaled exactly, and eval mode is the identity (or the
documented deterministic map). Label smoothing is compared with
``F.cross_entropy(label_smoothing=...)``, values and gradients.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops

from course_lib.layers import functional as CF
from torch_reference import assert_same_values_and_grads, random_tensor, random_tensors

TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-9}, torch.float32: {"atol": 1e-5, "rtol": 1e-5}}
# A drawn frequency must lie within Z binomial standard deviations of its probability: with Z = 5 a
# correct implementation fails about once in 1.7 million runs (and the seeds are fixed anyway).
Z = 5.0


def _gen(seed, device="cpu"):
    """A generator for masks. Its seeds are kept apart from the data's (0..99): on the CPU ``bernoulli_``
    and ``randn`` read the same Mersenne Twister stream, so a mask drawn from its data's seed is
    correlated with the data (this once made dropout look biased)."""
    return torch.Generator(device=device).manual_seed(1000 + seed)


def _id(shape) -> str:
    return "x".join(map(str, shape))


def assert_frequency(hits: int, trials: int, probability: float, what: str) -> None:
    """hits / trials is within Z binomial standard deviations of probability."""
    std = math.sqrt(probability * (1 - probability) / trials)
    assert abs(hits / trials - probability) <= Z * std + 1e-12, f"{what}: {hits}/{trials} = {hits / trials:.4f}, expected {probability} +- {Z * std:.4f}"


def assert_same_draws(ours, reference, shape, seed: int, rtol: float = 0.0) -> None:
    """After the same ``torch.manual_seed(seed)``, ``ours`` and ``reference`` give a random input of ``shape``
    the same output, and the same gradient for one random upstream gradient: exactly, or within ``rtol``."""
    x = random_tensor(*shape, requires_grad=True)
    torch.manual_seed(seed)
    out = ours(x)
    torch.manual_seed(seed)
    expected = reference(x)
    torch.testing.assert_close(out, expected, atol=0, rtol=rtol)
    upstream = random_tensor(*shape, seed=1)
    grad, expected_grad = (torch.autograd.grad(y, x, upstream)[0] for y in (out, expected))
    torch.testing.assert_close(grad, expected_grad, atol=0, rtol=rtol, msg=lambda m: f"grad: {m}")


# The grids compared with PyTorch and torchvision (also measured by benchmarks/reference_errors.py).
SHAPES = [(7,), (1, 5), (4, 3, 5, 6), (2, 3, 7)]
DROPOUT_PS = [0.0, 0.1, 0.3, 0.5, 0.9]
LINEAR_CASES = [((5, 4), 3), ((1, 6), 2), ((2, 3, 4), 5), ((4,), 3)]  # (input shape, out_features)
DROP_BLOCK_CASES = [((2, 3, 13, 17), 1), ((2, 3, 13, 17), 3), ((1, 2, 9, 8), 5), ((2, 2, 16, 16), 7), ((1, 3, 5, 7), 9)]
DROP_BLOCK_PS = [0.1, 0.4]
DROP_PATH_SHAPES = [(16, 3, 4, 5), (1, 4), (9, 2, 7)]
DROP_PATH_PS = [0.0, 0.2, 0.5]
LS_SHAPES = [((6, 5), (6,)), ((1, 3), (1,)), ((4, 7, 3), (4, 3)), ((2, 4, 3, 5), (2, 3, 5))]  # (logits, target)
SMOOTHINGS = [0.0, 0.1, 1.0]
REDUCTIONS = ["none", "mean", "sum"]


# --- dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", DROPOUT_PS)
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_dropout_equals_torch_after_the_same_seed(shape, p):
    """Same mask as F.dropout (CPU), the same survivors x * (1 / (1 - p)), and the same gradient."""
    assert_same_draws(lambda x: CF.dropout(x, p), lambda x: F.dropout(x, p), shape, seed=123)


@pytest.mark.parametrize(
    ("op", "p"),
    [(CF.dropout, 0.1), (CF.dropout, 0.5), (CF.dropout, 0.8), (CF.dropout_classic, 0.2), (CF.dropout_classic, 0.5), (CF.dropout_classic, 0.7)],
    ids=lambda v: getattr(v, "__name__", str(v)),
)  # fmt: skip
def test_dropout_statistics(op, p):
    """Dropped fraction ~ p; survivors exactly x * s (s = 1 / (1 - p) inverted, 1 classic: x / (1 - p) to an ulp);
    E[y] = s (1 - p) x, which is the eval output: x inverted, (1 - p) x classic."""
    x = random_tensor(200, 500) + 3.0
    y = op(x, p, generator=_gen(0))
    scale = 1 / (1 - p) if op is CF.dropout else 1.0
    kept = y != 0
    assert_frequency(int((~kept).sum()), x.numel(), p, "dropped fraction")
    assert torch.equal(y[kept], x[kept] * scale)
    torch.testing.assert_close(y[kept], x[kept] / (1 - p) if op is CF.dropout else x[kept], atol=0, rtol=2**-52)
    eval_out = op(x, p, training=False)
    torch.testing.assert_close(eval_out, x * scale * (1 - p), atol=0, rtol=2**-52)
    # The mean of y - E[y] over n independent entries s x (m - (1 - p)) has std s sqrt(p (1 - p)) rms(x) / sqrt(n).
    std_of_mean = scale * math.sqrt(p * (1 - p)) * x.pow(2).mean().sqrt() / math.sqrt(x.numel())
    assert abs((y - eval_out).mean()) <= Z * std_of_mean


def test_dropout_generator_reproduces_masks_and_eval_is_identity():
    x = random_tensor(4, 3, 5, 6)
    a, b, c = (CF.dropout(x, 0.5, generator=_gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b), "the same generator seed must give the same mask"
    assert not torch.equal(a, c), "another seed must give another mask"
    for p in (0.0, 0.5):
        assert torch.equal(CF.dropout(x, p, training=False), x)
    assert torch.equal(CF.dropout(x, 0.0, generator=_gen(7)), x)


def test_dropout_classic_draws_the_same_mask_as_dropout():
    """The two forms differ only by the constant factor 1 / (1 - p), applied in training or at test time."""
    x = random_tensor(6, 7)
    classic, inverted = CF.dropout_classic(x, 0.4, generator=_gen(3)), CF.dropout(x, 0.4, generator=_gen(3))
    torch.testing.assert_close(classic / 0.6, inverted)


# --- DropConnect --------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("x_shape", "out_features"), LINEAR_CASES, ids=[f"x{_id(s)}-o{o}" for s, o in LINEAR_CASES])
def test_drop_connect_eval_and_p0_are_a_linear_layer(x_shape, out_features, bias):
    """Eval mode (and p = 0) is x W^T + b, equal to F.linear, values and gradients."""
    x = random_tensor(*x_shape, requires_grad=True)
    w = random_tensor(out_features, x_shape[-1], seed=2, requires_grad=True)
    b = random_tensor(out_features, seed=3, requires_grad=True) if bias else None
    for ours in (lambda x, w, b: CF.drop_connect(x, w, b, p=0.5, training=False),
                 lambda x, w, b: CF.drop_connect(x, w, b, p=0.0, generator=_gen(0))):
        assert_same_values_and_grads(ours, F.linear, [x, w, b], TOLERANCES[torch.float64])


def test_drop_connect_training_uses_one_weight_mask_per_example():
    """y_n = ((M_n * W) x_n) / (1 - p) + b with M_n the generator's n-th (out, in) block, computed example by example."""
    x, w, b = random_tensor(3, 2, 4), random_tensor(5, 4, seed=1), random_tensor(5, seed=2)
    p = 0.3
    y = CF.drop_connect(x, w, b, p=p, generator=_gen(4))
    masks = torch.empty(6, 5, 4, dtype=torch.float64).bernoulli_(1 - p, generator=_gen(4))
    rows = x.reshape(6, 4)
    expected = torch.stack([(masks[n] * w) @ rows[n] / (1 - p) + b for n in range(6)]).view(3, 2, 5)
    torch.testing.assert_close(y, expected, **TOLERANCES[torch.float64])
    same_rows = CF.drop_connect(x[:1, :1].expand(2, 1, 4), w, b, p=p, generator=_gen(4))
    assert not torch.equal(same_rows[0], same_rows[1]), "two identical examples must see different weight masks"


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_drop_connect_statistics(p):
    """One-hot inputs read single weights: each is dropped with probability p; E[y] = W x + b."""
    out_features, in_features, n = 8, 10, 600
    w = torch.ones(out_features, in_features, dtype=torch.float64)
    one_hot = torch.eye(in_features, dtype=torch.float64).repeat(n // in_features, 1)  # (n, in)
    read = CF.drop_connect(one_hot, w, p=p, generator=_gen(5))  # read[k, o] = M_k[o, i_k] / (1 - p)
    assert set(read.unique().tolist()) <= {0.0, 1 / (1 - p)}
    assert_frequency(int((read == 0).sum()), read.numel(), p, "dropped weights")
    x, w, b = random_tensors((n, in_features), (out_features, in_features), (out_features,), seed=6)
    noise = CF.drop_connect(x, w, b, p=p, generator=_gen(9)) - F.linear(x, w, b)  # zero mean if E[y] = W x + b
    std_of_mean = math.sqrt(p / (1 - p)) * ((x**2) @ (w**2).T).mean(0).sqrt() / math.sqrt(n)  # per output unit
    assert (noise.mean(0).abs() <= Z * std_of_mean).all()


# --- DropBlock ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "block_size"), DROP_BLOCK_CASES, ids=["b1", "b3", "b5-batch1", "b7", "b9-clamped-to-5"])
@pytest.mark.parametrize("p", DROP_BLOCK_PS)
def test_drop_block2d_equals_torchvision_after_the_same_seed(shape, block_size, p):
    """torchvision draws the same seeds with bernoulli_; eps=0 there is our normalization by #kept."""
    assert_same_draws(
        lambda x: CF.drop_block2d(x, p, block_size),
        lambda x: torchvision.ops.drop_block2d(x, p, block_size, eps=0.0),
        shape,
        seed=5,
        rtol=1e-15,
    )


def _expected_dropped_fraction(h: int, w: int, b: int, p: float) -> float:
    """Exact E[fraction dropped]: pixel (i, j) is dropped unless none of the seeds whose square covers it fires."""
    gamma = p / b**2 * h * w / ((h - b + 1) * (w - b + 1))
    covering = lambda i, n: min(i, n - b) - max(0, i - b + 1) + 1  # seed rows r in [i - b + 1, i] within [0, n - b]
    return sum(1 - (1 - gamma) ** (covering(i, h) * covering(j, w)) for i in range(h) for j in range(w)) / (h * w)


@pytest.mark.parametrize(("hw", "block_size", "p"), [((20, 20), 1, 0.1), ((24, 20), 3, 0.1), ((32, 32), 5, 0.2), ((15, 21), 4, 0.3)], ids=["b1", "b3", "b5", "b4-even"])
def test_drop_block2d_dropped_fraction(hw, block_size, p):
    """The dropped fraction matches its exact expectation (close to p for small blocks on large maps).

    Maps are independent, so the mean over 400 maps has the std of one map's fraction / sqrt(400).
    """
    x = torch.ones(50, 8, *hw, dtype=torch.float64)
    dropped = (CF.drop_block2d(x, p, block_size, generator=_gen(2)) == 0).double().mean((2, 3)).flatten()  # per map
    expected = _expected_dropped_fraction(*hw, block_size, p)
    assert abs(dropped.mean() - expected) <= Z * dropped.std() / math.sqrt(dropped.numel())
    if block_size <= 3:  # overlaps and borders cost little here
        assert abs(expected - p) < 0.02


@pytest.mark.parametrize("block_size", [3, 4, 6])
def test_drop_block2d_drops_whole_squares_and_rescales_by_the_kept_count(block_size):
    """Every dropped pixel lies in a fully dropped b x b square; survivors are x * numel / #kept."""
    x = random_tensor(3, 2, 14, 11).abs() + 0.5  # no zeros of its own
    y = CF.drop_block2d(x, 0.15, block_size, generator=_gen(3))
    dropped = y == 0
    assert dropped.any()
    covered = torch.zeros_like(dropped)
    h, w = x.shape[2:]
    for i in range(h - block_size + 1):
        for j in range(w - block_size + 1):
            square = (slice(None), slice(None), slice(i, i + block_size), slice(j, j + block_size))
            full = dropped[square].flatten(2).all(-1)  # (N, C): this square is entirely dropped
            covered[square] |= full[:, :, None, None]
    assert torch.equal(covered, dropped), "a dropped pixel outside any fully dropped square"
    kept = ~dropped
    torch.testing.assert_close(y[kept], x[kept] * (x.numel() / kept.sum().item()), atol=0, rtol=1e-15)


def test_drop_block2d_eval_and_p0_are_identity():
    x = random_tensor(2, 3, 8, 9)
    assert torch.equal(CF.drop_block2d(x, 0.3, 3, training=False), x)
    assert torch.equal(CF.drop_block2d(x, 0.0, 3, generator=_gen(0)), x)


# --- drop path (stochastic depth) ---------------------------------------------------------------


@pytest.mark.parametrize("p", DROP_PATH_PS)
@pytest.mark.parametrize("shape", DROP_PATH_SHAPES, ids=_id)
def test_drop_path_equals_torchvision_stochastic_depth_row(shape, p):
    stochastic_depth = torchvision.ops.stochastic_depth
    assert_same_draws(lambda x: CF.drop_path(x, p), lambda x: stochastic_depth(x, p, mode="row"), shape, seed=11)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_path_drops_whole_examples(p):
    """Each example is either all zero or all x / (1 - p); the fraction dropped ~ p; eval is identity."""
    x = random_tensor(2000, 3, 4).abs() + 0.5
    y = CF.drop_path(x, p, generator=_gen(6))
    dropped = (y == 0).flatten(1)
    assert torch.equal(dropped.all(1), dropped.any(1)), "an example was dropped only in part"
    assert_frequency(int(dropped.all(1).sum()), x.shape[0], p, "dropped examples")
    kept = ~dropped.all(1)
    torch.testing.assert_close(y[kept], x[kept] / (1 - p), atol=0, rtol=2**-52)
    assert torch.equal(CF.drop_path(x, p, training=False), x)


# --- label smoothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize(("logit_shape", "target_shape"), LS_SHAPES, ids=[_id(s) for s, _ in LS_SHAPES])
def test_label_smoothing_cross_entropy_matches_torch(logit_shape, target_shape, smoothing, reduction):
    logits = (3 * random_tensor(*logit_shape)).requires_grad_()
    target = torch.randint(logit_shape[1], target_shape, generator=_gen(1))
    assert_same_values_and_grads(
        lambda logits, target: CF.label_smoothing_cross_entropy(logits, target, smoothing, reduction),
        lambda logits, target: F.cross_entropy(logits, target, label_smoothing=smoothing, reduction=reduction),
        [logits, target],
        TOLERANCES[torch.float64],
    )


def test_label_smoothing_is_cross_entropy_against_the_smoothed_target():
    """The loss equals -sum_k q_k log softmax_k with q = (1 - eps) one_hot + eps / K."""
    logits, target, eps = random_tensor(5, 4), torch.tensor([0, 3, 1, 1, 2]), 0.2
    q = (1 - eps) * F.one_hot(target, 4).double() + eps / 4
    expected = -(q * logits.log_softmax(1)).sum(1)
    torch.testing.assert_close(CF.label_smoothing_cross_entropy(logits, target, eps, "none"), expected)


# --- bad arguments: a ValueError that names the argument ----------------------------------------


def _z(*shape):
    return torch.zeros(shape)


BAD_ARGS = [
    ("dropout-p-1", CF.dropout, dict(input=_z(3), p=1.0), r"^p must lie in \[0, 1\), got 1\.0"),
    ("dropout-p-negative", CF.dropout, dict(input=_z(3), p=-0.1), r"^p must lie in \[0, 1\)"),
    ("dropout-p-string", CF.dropout, dict(input=_z(3), p="0.5"), r"^p must lie"),
    ("dropout-input-list", CF.dropout, dict(input=[1.0, 2.0]), r"^input must be a torch\.Tensor"),
    ("dropout-training-string", CF.dropout, dict(input=_z(3), training="yes"), r"^training must be a bool"),
    ("classic-p-1", CF.dropout_classic, dict(input=_z(3), p=1.0), r"^p must lie in \[0, 1\)"),
    ("dropconnect-weight-1d", CF.drop_connect, dict(input=_z(2, 3), weight=_z(3)), r"^weight must have shape \(out_features, in_features\)"),
    ("dropconnect-in-mismatch", CF.drop_connect, dict(input=_z(2, 3), weight=_z(4, 5)), r"^input\.shape\[-1\] must be in_features = weight\.shape\[1\] = 5"),
    ("dropconnect-bias-shape", CF.drop_connect, dict(input=_z(2, 3), weight=_z(4, 3), bias=_z(3)), r"^bias must have shape \(out_features,\) = \(4,\), got \(3,\)"),
    ("dropconnect-input-0d", CF.drop_connect, dict(input=torch.tensor(1.0), weight=_z(4, 1)), r"^input must have shape \(\*, in_features\)"),
    ("dropconnect-p-1", CF.drop_connect, dict(input=_z(2, 3), weight=_z(4, 3), p=1.0), r"^p must lie"),
    ("dropblock-input-3d", CF.drop_block2d, dict(input=_z(2, 8, 8)), r"^input must have shape \(N, C, H, W\)"),
    ("dropblock-block-0", CF.drop_block2d, dict(input=_z(1, 1, 8, 8), block_size=0), r"^block_size must be an int >= 1, got 0"),
    ("dropblock-block-float", CF.drop_block2d, dict(input=_z(1, 1, 8, 8), block_size=3.0), r"^block_size must be"),
    ("dropblock-p-1", CF.drop_block2d, dict(input=_z(1, 1, 8, 8), p=1.0), r"^p must lie"),
    ("droppath-input-0d", CF.drop_path, dict(input=torch.tensor(1.0), p=0.5), r"^input must have shape \(N, \*\)"),
    ("droppath-p-1", CF.drop_path, dict(input=_z(3, 2), p=1.0), r"^p must lie"),
    ("ls-logits-1d", CF.label_smoothing_cross_entropy, dict(logits=_z(5), target=torch.tensor(1)), r"^logits must have shape \(N, K\)"),
    ("ls-target-shape", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.zeros(5, dtype=torch.long)), r"^target must have shape \(N, d1, \.\.\.\) = \(4,\)"),
    ("ls-target-2d-for-2d", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.zeros(4, 1, dtype=torch.long)), r"^target must have shape"),
    ("ls-target-float", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.zeros(4)), r"^target must hold integer class indices"),
    ("ls-target-too-big", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.tensor([0, 1, 5, 2])), r"^target must lie in \[0, K\) = \[0, 5\)"),
    ("ls-target-negative", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.tensor([0, -1, 4, 2])), r"^target must lie in"),
    ("ls-smoothing-above-1", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.zeros(4, dtype=torch.long), smoothing=1.5), r"^smoothing must lie in \[0, 1\], got 1\.5"),
    ("ls-reduction", CF.label_smoothing_cross_entropy, dict(logits=_z(4, 5), target=torch.zeros(4, dtype=torch.long), reduction="avg"), r"^reduction must be one of"),
]  # fmt: skip


@pytest.mark.parametrize(("fn", "kwargs", "match"), [pytest.param(f, k, m, id=i) for i, f, k, m in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


# --- float32, and on a GPU ----------------------------------------------------------------------


def _check_all(dtype, device) -> None:
    """Each op on ``device``: masks from a generator there, reference equality where the RNG streams agree."""
    x = random_tensor(32, 4, 10, 10, dtype=dtype, device=device).abs() + 0.5
    p = 0.3
    for op in (CF.dropout, CF.dropout_classic):
        y = op(x, p, generator=_gen(0, device))
        assert y.device == x.device and y.dtype == dtype
        kept = y != 0
        assert_frequency(int((~kept).sum()), x.numel(), p, op.__name__)
        scale = 1 / (1 - p) if op is CF.dropout else 1.0
        # CUDA may divide by a scalar as a product with its reciprocal: allow the last bit.
        torch.testing.assert_close(y[kept], x[kept] * scale, atol=0, rtol=2 * torch.finfo(dtype).eps)
        assert torch.equal(op(x, p, generator=_gen(0, device)), y)
    # torchvision draws with the device's default generator, as ours does with generator=None.
    for ours, reference in [
        (lambda t: CF.drop_block2d(t, p, 3), lambda t: torchvision.ops.drop_block2d(t, p, 3, eps=0.0)),
        (lambda t: CF.drop_path(t, p), lambda t: torchvision.ops.stochastic_depth(t, p, "row")),
    ]:
        torch.manual_seed(1)
        y = ours(x)
        torch.manual_seed(1)
        torch.testing.assert_close(y, reference(x), atol=0, rtol=1e-6 if dtype == torch.float32 else 1e-15)
    w, b = random_tensors((5, 10), (5,), seed=1, dtype=dtype, device=device)
    torch.testing.assert_close(CF.drop_connect(x, w, b, training=False), F.linear(x, w, b), **TOLERANCES[dtype])
    assert CF.drop_connect(x[:, 0, 0], w, b, generator=_gen(0, device)).device == x.device
    logits = random_tensor(6, 4, 3, dtype=dtype, device=device, requires_grad=True)
    target = torch.randint(4, (6, 3), generator=_gen(1)).to(device)
    ours, expected = CF.label_smoothing_cross_entropy(logits, target, 0.1), F.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(ours, expected, **TOLERANCES[dtype])
    grads = [torch.autograd.grad(t, logits)[0] for t in (ours, expected)]
    torch.testing.assert_close(*grads, **TOLERANCES[dtype])


def test_float32():
    _check_all(torch.float32, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_on_cuda(monkeypatch, dtype):
    """Masks drawn on the GPU with a CUDA generator; torchvision's ops and F.cross_entropy on the GPU as references."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # full float32 products for drop_connect
    _check_all(dtype, "cuda")
