"""Lab 4, initialization: its graded tests as specifications (see course_lib.grading.spec).

The student writes ``fans(shape)``, four initialisers that return a new tensor
for a weight shape and a ``torch.Generator`` (``xavier_uniform``,
``xavier_normal``, ``he_normal``, ``orthogonal``), ``lsuv(layers, x,
activation, ...)`` and ``activation_stats(x, weights, activation, dout)``.

A generator and a list of ``nn.Module`` cannot cross the wire, so the grader
calls helpers of the lab's preamble (:data:`PREAMBLE`, trusted code run before
the answer cells, in the sandbox and in the student's notebook alike):

* ``draw_<initialiser>(shape, seed, **options)`` calls the student's
  initialiser three times - twice with a generator seeded ``seed`` (torch's
  global generator seeded differently before each call), once with one seeded
  ``seed + 1`` - and returns the three tensors. The judge checks that the first
  two are equal and the third differs (the values come from ``generator`` and
  from nothing else), then judges the first one: by its statistics for the
  random initialisers (:mod:`course_lib.grading.initialization`: mean, standard
  deviation and kurtosis, within tolerances derived from the sample size), by
  its Gram matrix for the orthogonal one;
* ``run_lsuv(kind, sizes, activation, x, seed, tol)`` builds linear or 3x3 conv
  layers with PyTorch's default initialisation, runs the student's ``lsuv`` on
  them and returns their weights and biases; the judge runs ``x`` through them
  itself, in float64.

``fans`` and ``activation_stats`` take and return plain data and are called
directly; ``activation_stats`` is judged against PyTorch's autograd run here
on the same weights. Hidden tests draw shapes, gains, modes, slopes, layers and
seeds from the submission's seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ... import init as course_init
from ..checks import raised
from ..forbid import forbid_calls
from ..initialization import (
    STATS_RTOL,
    Sample,
    explain_backward_stats,
    explain_fans,
    explain_forward_stats,
    explain_lsuv,
    explain_std,
    family_of,
    fans,
    he_candidates,
    he_std,
    mean_tolerance,
    orthogonal_problem,
    stack_stats,
    std_matches,
    std_tolerance,
    xavier_candidates,
    xavier_std,
)
from ..spec import Case, LabSpec, Test, fixed_cases

__all__ = ["SPEC", "PREAMBLE", "MIN_SAMPLE", "MAX_SAMPLE"]

RULES = (
    "Lab 4 asks you to write the initialisers yourself, with torch's random numbers (torch.rand, torch.randn, "
    "Tensor.uniform_/normal_ with your generator) and its linear algebra (torch.linalg.qr, torch.linalg.svd). Not "
    "allowed in an answer: torch.nn.init (its xavier_*, kaiming_*, orthogonal_ and calculate_gain are this lab's "
    "answers), torch.nn.utils.parametrizations.orthogonal, SciPy's random orthogonal matrices, and course_lib (its "
    "course_lib.init is the reference; not importable when your lab is graded, and a copy of it is shown to your "
    "instructor)."
)

NO_SHORTCUTS = (
    "Lab 4 asks you to write the initialisers yourself: torch.nn.init and course_lib.init are this lab's answers "
    "(course_lib cannot be imported when your lab is graded)."
)

_LIBRARY = "a library initialiser (this lab's answer)"
# Static scan (course_lib.grading.scan): a name or attribute an answer may not mention, and why.
FORBIDDEN = {
    "course_lib": "course_lib.init holds this lab's answers (not importable when your lab is graded)",
    "nn.init": "torch.nn.init's initialisers are this lab's answers",
    "xavier_uniform_": _LIBRARY, "xavier_normal_": _LIBRARY, "kaiming_uniform_": _LIBRARY,
    "kaiming_normal_": _LIBRARY, "orthogonal_": _LIBRARY, "trunc_normal_": _LIBRARY, "lsuv_": _LIBRARY,
    "calculate_gain": "the library's gains: the lab asks you to work out the gain yourself",
    "_calculate_fan_in_and_fan_out": "the library's fans (Part 1's answer)",
    "_calculate_correct_fan": "the library's fans (Part 1's answer)",
    "fan_in_and_fan_out": "course_lib's fans (Part 1's answer)",
    "init_model": "course_lib's initialisation of a whole model",
    "parametrizations": "torch.nn.utils.parametrizations.orthogonal keeps a weight orthogonal for you",
    "ortho_group": "SciPy's random orthogonal matrices", "scipy": "SciPy's random orthogonal matrices",
}

# course_lib's initialisers and the ones of torch.nn.init that no layer's constructor calls: refused while the
# visible tests run (nn.Linear's and nn.Conv2d's own initialisation uses kaiming_uniform_ and calculate_gain,
# which the LSUV helper needs; the scan flags them).
REFERENCE_FUNCTIONS = (
    course_init.fan_in_and_fan_out, course_init.calculate_gain, course_init.xavier_uniform_,
    course_init.xavier_normal_, course_init.kaiming_uniform_, course_init.kaiming_normal_, course_init.orthogonal_,
    course_init.lsuv_, course_init.init_model,
    nn.init.xavier_uniform_, nn.init.xavier_normal_, nn.init.kaiming_normal_, nn.init.orthogonal_,
)

PREAMBLE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F

# The activations a stack may use, by name (for your lsuv).
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda z: z}


def _draws(name, shape, seed, options):
    """Three calls of your initialiser `name`: twice with a generator seeded `seed` (torch's global generator
    seeded differently before each), once with one seeded `seed + 1`. Torch's global generator is left as it was."""
    function = globals().get(name)
    if not callable(function):
        raise NameError(f"{name} is not defined: its answer cell did not run, or did not load")
    state = torch.get_rng_state()
    try:
        draws = []
        for global_seed, seed_of_generator in ((1, seed), (2, seed), (3, seed + 1)):
            torch.manual_seed(global_seed)
            generator = torch.Generator().manual_seed(seed_of_generator)
            draws.append(function(tuple(shape), **options, generator=generator))
    finally:
        torch.set_rng_state(state)
    return {"sample": draws[0], "again": draws[1], "other": draws[2]}


def draw_xavier_uniform(shape, seed, gain=1.0):
    return _draws("xavier_uniform", shape, seed, {"gain": gain})


def draw_xavier_normal(shape, seed, gain=1.0):
    return _draws("xavier_normal", shape, seed, {"gain": gain})


def draw_he_normal(shape, seed, mode="fan_in", negative_slope=0.0):
    return _draws("he_normal", shape, seed, {"mode": mode, "negative_slope": negative_slope})


def draw_orthogonal(shape, seed, gain=1.0):
    return _draws("orthogonal", shape, seed, {"gain": gain})


def run_lsuv(kind, sizes, activation, x, seed, tol=0.05):
    """Layers with PyTorch's default initialisation (nn.Linear, or nn.Conv2d 3x3 with padding 1) from sizes[i] to
    sizes[i + 1], seeded; your lsuv on them; their weights and biases afterwards."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        if kind == "linear":
            layers = [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
        else:
            layers = [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes, sizes[1:])]
        lsuv(layers, x.clone(), activation, generator=torch.Generator().manual_seed(seed + 1), tol=tol)
    finally:
        torch.set_rng_state(state)
    return {"weights": [layer.weight.detach().clone() for layer in layers],
            "biases": [None if layer.bias is None else layer.bias.detach().clone() for layer in layers]}
'''

# The sizes of the samples the initialisers are judged on: large enough for tight tolerances
# (3.3% on the std at the smallest), small enough to travel and to factor quickly.
MIN_SAMPLE, MAX_SAMPLE = 16_384, 65_536


# --- fans --------------------------------------------------------------------------------------------


def _fans_case(shape) -> Case:
    kind = "a linear weight" if len(shape) == 2 else f"a conv weight ({len(shape) - 2} kernel dims)"
    return Case((tuple(shape),), {}, f"shape {tuple(shape)}, {kind}")


def _judge_fans(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    (shape,) = case.args
    expected = fans(shape)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return f"should return a tuple (fan_in, fan_out), got {type(value).__name__}" + (
            f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
    if not all(type(v) is int for v in value):
        return (f"should return two Python ints, got {tuple(type(v).__name__ for v in value)} "
                "(convert with int(...))")
    if tuple(value) == expected:
        return None
    cause = explain_fans(value, shape)
    return (f"returned (fan_in, fan_out) = {tuple(value)}, expected {expected}" +
            (f"\nLikely cause: {cause}" if cause else ""))


FANS = [_fans_case(s) for s in [(128, 64), (20, 50), (32, 16, 3, 3), (10, 4, 5, 3)]]


def _hidden_fans(seed: int, count: int = 6) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        out, inp = int(rng.integers(2, 300)), int(rng.integers(2, 300))
        while inp == out:
            inp = int(rng.integers(2, 300))
        dims = number % 3  # linear, conv2d, and a 1d or 3d conv
        count_of_kernel_dims = 0 if dims == 0 else 2 if dims == 1 else int(rng.choice([1, 3]))
        kernel = [int(rng.integers(2, 8)) for _ in range(count_of_kernel_dims)]
        cases.append(_fans_case((out, inp, *kernel)))
    return cases


# --- the random initialisers ---------------------------------------------------------------------------


def _draw_case(shape, seed, **options) -> Case:
    words = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:.4g}" for k, v in options.items())
    kind = "linear" if len(shape) == 2 else "conv"
    return Case((tuple(shape), seed), options,
                f"a {kind} weight of shape {tuple(shape)}, {words}, generator seeded {seed}".replace(", ,", ","))


def _draw_problem(value, shape) -> tuple[str | None, torch.Tensor | None]:
    """What is wrong with the three draws' form and their use of the generator (None), and the first draw."""
    if not isinstance(value, dict) or set(value) != {"sample", "again", "other"}:
        return f"the draw helper returned a {type(value).__name__}: do not redefine it", None
    sample = value["sample"]
    if not isinstance(sample, torch.Tensor):
        return f"should return a torch.Tensor, got {type(sample).__name__}", None
    if tuple(sample.shape) != tuple(shape):
        hint = ""
        if len(shape) == 2 and tuple(sample.shape) == tuple(shape)[::-1]:
            hint = ("\nLikely cause: the matrix is transposed: a weight of shape (out, in) has out rows; when you "
                    "worked on the transposed matrix, transpose the result back")
        elif sample.numel() != math.prod(shape):
            rows = shape[0]
            cols = math.prod(shape) // rows
            if rows < cols and tuple(sample.shape) in {(rows, rows), (rows, rows, *shape[2:])}:
                hint = ("\nLikely cause: torch.linalg.qr of a wide matrix (rows < cols) returns a square Q of shape "
                        "(rows, rows): factor the transposed (cols, rows) matrix instead and transpose its Q")
        return f"returned shape {tuple(sample.shape)}, expected {tuple(shape)}{hint}", None
    if not sample.is_floating_point():
        return f"returned a tensor of dtype {sample.dtype}: weights are floating-point numbers (float32)", None
    if not torch.isfinite(sample).all():
        return "returned values that are nan or infinite", None
    again, other = value["again"], value["other"]
    if not (isinstance(again, torch.Tensor) and again.shape == sample.shape and again.dtype == sample.dtype
            and torch.equal(again, sample)):
        return ("two calls with generators seeded alike returned different tensors (torch's global generator was "
                "seeded differently before each): draw every random number from `generator` (e.g. "
                "torch.randn(shape, generator=generator)), not from torch's global generator"), None
    if isinstance(other, torch.Tensor) and other.shape == sample.shape and torch.equal(other, sample):
        return ("calls with generators seeded differently returned the same tensor: the values must be random, drawn "
                "from `generator`"), None
    return None, sample


def _judge_distribution(sample: torch.Tensor, std: float, family: str, expected: str, candidates) -> str | None:
    stats = Sample.of(sample)
    n = stats.n
    limit = mean_tolerance(n, std)
    if abs(stats.mean) > limit:
        cause = None
        if family == "uniform" and abs(stats.mean - math.sqrt(3) * std / 2) <= limit:
            cause = "U(0, b) instead of U(-b, b): torch.rand draws from [0, 1); (2*torch.rand(...) - 1)*b is centred"
        elif abs(stats.mean) > stats.std:
            cause = "the values are not centred on 0 (an offset added, or torch.rand without shifting it)"
        return (f"the values' mean is {stats.mean:.4g}; an initialiser draws around 0 (for {n} values of std "
                f"{std:.4g}, within ±{limit:.2g})" + (f"\nLikely cause: {cause}" if cause else ""))
    if not std_matches(stats, std):
        cause = explain_std(stats, candidates)
        return (f"the values have std {stats.std:.4g}, expected {expected} (within ±{std_tolerance(n):.1%} for {n} "
                f"values): {stats.std / std:.3g} times the right one" + (f"\nLikely cause: {cause}" if cause else ""))
    got = family_of(stats)
    if got != family:
        cause = explain_std(stats, [c for c in candidates if c.family == got])
        return (f"the values have the right std but look {got} (kurtosis {stats.kurtosis:.2f}; a uniform's is 1.8, a "
                f"normal's 3), expected {family}" + (f"\nLikely cause: {cause}" if cause else ""))
    if family == "uniform":
        bound = math.sqrt(3) * std
        if stats.max_abs > bound * (1 + 1e-5):
            return f"values reach {stats.max_abs:.4g}, beyond the bound b = {bound:.4g} of U(-b, b)"
    return None


def _judge_xavier(family: str):
    def judge(case: Case, value, error) -> str | None:
        if error is not None:
            return raised(error)
        shape, _ = case.args
        gain = case.kwargs.get("gain", 1.0)
        problem, sample = _draw_problem(value, shape)
        if problem is not None:
            return problem
        fan_in, fan_out = fans(shape)
        std = xavier_std(shape, gain)
        formula = f"gain*sqrt(2/(fan_in + fan_out)) = {gain:.4g}*sqrt(2/({fan_in} + {fan_out})) = {std:.4g}"
        if family == "uniform":
            formula = (f"b/sqrt(3) = {std:.4g}, with the bound b = gain*sqrt(6/(fan_in + fan_out)) = {gain:.4g}*"
                       f"sqrt(6/({fan_in} + {fan_out})) = {math.sqrt(3) * std:.4g}")
        return _judge_distribution(sample, std, family, formula, xavier_candidates(shape, gain, family))

    return judge


def _judge_he(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    shape, _ = case.args
    mode, slope = case.kwargs.get("mode", "fan_in"), case.kwargs.get("negative_slope", 0.0)
    problem, sample = _draw_problem(value, shape)
    if problem is not None:
        return problem
    fan = fans(shape)[0 if mode == "fan_in" else 1]
    std = he_std(shape, mode, slope)
    gain = std * math.sqrt(fan)
    formula = (f"gain/sqrt({mode}) = {gain:.4g}/sqrt({fan}) = {std:.4g}, with gain = sqrt(2/(1 + "
               f"negative_slope^2)) = {gain:.4g}")
    return _judge_distribution(sample, std, "normal", formula, he_candidates(shape, mode, slope))


def _hidden_shape(rng) -> tuple[int, ...]:
    """A linear or conv weight shape of MIN_SAMPLE to MAX_SAMPLE values, fan_in and fan_out at least 1.5x apart."""
    while True:
        if rng.random() < 0.5:
            out = int(rng.choice([32, 48, 64, 96, 128, 160, 192, 256, 384, 512]))
            shape = (out, int(out * rng.choice([0.25, 0.5, 2, 4])))
        else:
            kernel = [(3, 3), (5, 5), (3, 1), (1, 3), (7, 7), (3, 5)][int(rng.integers(6))]
            out, inp = (int(v) for v in rng.choice([8, 16, 24, 32, 48, 64, 96, 128], size=2, replace=False))
            shape = (out, inp, *kernel)
        fan_in, fan_out = fans(shape)
        if MIN_SAMPLE <= math.prod(shape) <= MAX_SAMPLE and max(fan_in, fan_out) >= 1.5 * min(fan_in, fan_out):
            return shape


_GAINS = (1.0, 5 / 3, math.sqrt(2), 0.75)


def _hidden_xavier(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [_draw_case(_hidden_shape(rng), int(rng.integers(2**31)), gain=float(_GAINS[i % len(_GAINS)]))
            for i in range(count)]


def _hidden_he(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    options = [("fan_in", 0.0), ("fan_out", 0.0), ("fan_in", float(rng.choice([0.5, 1.0, 2.0]))),
               ("fan_out", float(rng.choice([0.2, 0.5, 1.0])))]
    return [_draw_case(_hidden_shape(rng), int(rng.integers(2**31)), mode=mode, negative_slope=slope)
            for mode, slope in options[:count]]


# Gains chosen so that every known mistake gives its own std (with gain sqrt(2), forgetting it is the same mistake
# as forgetting the 2; with 5/3 it is 4% from the bound-for-std one, told apart at 65,536 values only).
XAVIER_UNIFORM = [_draw_case((256, 128), 11, gain=1.0), _draw_case((32, 64, 3, 3), 12, gain=1.0),
                  _draw_case((256, 256), 13, gain=5 / 3)]
XAVIER_NORMAL = [_draw_case((128, 256), 21, gain=1.0), _draw_case((64, 32, 3, 3), 22, gain=1.0),
                 _draw_case((256, 256), 23, gain=5 / 3)]
HE_NORMAL = [_draw_case((128, 256), 31, mode="fan_in", negative_slope=0.0),
             _draw_case((32, 64, 3, 3), 32, mode="fan_in", negative_slope=0.0)]
HE_OPTIONS = [_draw_case((256, 64), 41, mode="fan_out", negative_slope=0.0),
              _draw_case((64, 16, 5, 5), 42, mode="fan_out", negative_slope=0.0),
              _draw_case((256, 128), 43, mode="fan_in", negative_slope=0.5)]


# --- orthogonal --------------------------------------------------------------------------------------


def _judge_orthogonal(case: Case, value, error) -> str | None:
    shape, _ = case.args
    gain = case.kwargs.get("gain", 1.0)
    rows = shape[0]
    cols = math.prod(shape) // rows
    if error is not None:
        message = raised(error)
        if rows < cols and any(word in error for word in ("shape", "size")):
            message += ("\nLikely cause: torch.linalg.qr of a wide matrix (rows < cols) returns a square Q of shape "
                        "(rows, rows): factor the transposed (cols, rows) matrix instead and transpose its Q")
        return message
    problem, sample = _draw_problem(value, shape)
    if problem is not None:
        return problem
    return orthogonal_problem(sample, shape, gain)


def _hidden_orthogonal(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        while True:  # square, tall and wide matrices, and conv weights; at least 32 rows and 32 columns
            if number == 3:
                shape = (int(rng.choice([32, 64, 96, 128])), int(rng.choice([8, 16, 32])), 3, 3)
            else:
                rows = int(rng.choice([32, 48, 64, 96, 128, 192, 256]))
                shape = (rows, [rows, rows // 2, rows * 2][number])
            if min(shape[0], math.prod(shape[1:])) >= 32 and math.prod(shape) <= MAX_SAMPLE:
                break
        cases.append(_draw_case(shape, int(rng.integers(2**31)), gain=float(_GAINS[int(rng.integers(len(_GAINS)))])))
    return cases


ORTHOGONAL = [_draw_case((128, 128), 51, gain=1.0), _draw_case((256, 64), 52, gain=1.0),
              _draw_case((64, 256), 53, gain=math.sqrt(2))]
ORTHOGONAL_CONV = [_draw_case((64, 32, 3, 3), 54, gain=1.0), _draw_case((256, 16, 2, 2), 55, gain=5 / 3)]


# --- LSUV --------------------------------------------------------------------------------------------


def _lsuv_case(kind, sizes, activation, batch, seed, scale=2.0, tol=0.05) -> Case:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, sizes[0]) if kind == "linear" else (batch, sizes[0], 12, 12)
    x = torch.randn(*shape, generator=gen) * scale + 0.5
    layers = "linear layers" if kind == "linear" else "3x3 conv layers (padding 1)"
    return Case((kind, list(sizes), activation, x, seed), {"tol": tol},
                f"{len(sizes) - 1} {layers} of sizes {' -> '.join(map(str, sizes))}, activation {activation!r}, "
                f"x of shape {tuple(x.shape)}, tol={tol:g}")


def _judge_lsuv(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    kind, sizes, activation, x, seed = case.args
    tol = case.kwargs.get("tol", 0.05)
    if not isinstance(value, dict) or not isinstance(value.get("weights"), list):
        return f"the LSUV helper returned a {type(value).__name__}: do not redefine it"
    weights, biases = value["weights"], value.get("biases", [])
    expected = [(b, a, 3, 3) if kind == "conv" else (b, a) for a, b in zip(sizes, sizes[1:])]
    if [tuple(w.shape) if isinstance(w, torch.Tensor) else None for w in weights] != expected:
        return "the layers' weights changed shape: lsuv must rescale each layer's weight in place, keeping its shape"
    default = _default_weights(kind, sizes, seed)
    if all(torch.equal(w, d) for w, d in zip(weights, default)):
        return ("the layers are unchanged: lsuv must change each layer's weight (and bias) in place, e.g. "
                "layer.weight.copy_(...) under torch.no_grad(); building new layers does not change the ones it "
                "receives")
    return explain_lsuv(kind, x, weights, biases, activation, tol)


def _default_weights(kind, sizes, seed) -> list[torch.Tensor]:
    """The weights run_lsuv's layers start from (PyTorch's default initialisation, seeded as the helper seeds it)."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        if kind == "linear":
            return [nn.Linear(a, b).weight.detach() for a, b in zip(sizes, sizes[1:])]
        return [nn.Conv2d(a, b, 3, padding=1).weight.detach() for a, b in zip(sizes, sizes[1:])]
    finally:
        torch.set_rng_state(state)


LSUV = [_lsuv_case("linear", (64, 128, 96, 128, 64), "tanh", 256, 61)]
LSUV_CONV = [_lsuv_case("conv", (3, 16, 32, 32), "relu", 8, 62, scale=3.0)]


def _hidden_lsuv(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    linear = [int(rng.choice([32, 48, 64, 96, 128])) for _ in range(int(rng.integers(4, 7)))]
    conv = [3] + [int(rng.choice([8, 16, 24, 32])) for _ in range(int(rng.integers(3, 5)))]
    activations = ["tanh", "relu", "linear"]
    return [_lsuv_case("linear", linear, activations[int(rng.integers(3))], 128, int(rng.integers(2**31)),
                       scale=float(rng.uniform(0.3, 4.0))),
            _lsuv_case("conv", conv, activations[int(rng.integers(2))], 8, int(rng.integers(2**31)),
                       scale=float(rng.uniform(0.3, 4.0)))]


# --- activation statistics ---------------------------------------------------------------------------------


def _stats_case(depth, width, batch, activation, scale, seed) -> Case:
    """A stack of ``depth`` (width, width) float64 weights N(0, scale^2 / width), x and dout N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    weights = [torch.randn(width, width, generator=gen, dtype=torch.float64) * scale / math.sqrt(width)
               for _ in range(depth)]
    dout = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    return Case((x, weights, activation, dout), {},
                f"x of shape {tuple(x.shape)}, {depth} weights of shape ({width}, {width}) with std "
                f"{scale:.3g}/sqrt({width}), activation {activation!r}, dout of shape {tuple(dout.shape)}")


def _stats_message(actual, expected, what, explain) -> str | None:
    if not isinstance(actual, torch.Tensor):
        return f"{what} should be a torch.Tensor of shape {tuple(expected.shape)}, got {type(actual).__name__}"
    if tuple(actual.shape) != tuple(expected.shape):
        return f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)} (one value per layer)"
    if not actual.is_floating_point():
        return f"{what} has dtype {actual.dtype}; expected floating-point numbers"
    wrong = ((actual.double() - expected).abs() > STATS_RTOL * expected.abs()).nonzero().flatten()
    if len(wrong) == 0:
        return None
    layer = int(wrong[0])
    cause = explain(actual)
    return (f"{what} is wrong from layer {layer + 1} on ({len(wrong)} of {len(expected)} layers differ by more than "
            f"{STATS_RTOL:.1%}): layer {layer + 1} has {actual[layer].item():.5g}, expected "
            f"{expected[layer].item():.5g}"
            + (f"\nLikely cause: {cause}" if cause else ""))


def _judge_stats(parts=(0, 1)):
    names = ("act_std (the std of each layer's activations)", "grad_std (the std of dLoss/dz_l at each layer)")

    def judge(case: Case, value, error) -> str | None:
        if error is not None:
            return raised(error)
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return f"should return a tuple (act_std, grad_std), got {type(value).__name__}"
        x, weights, activation, dout = case.args
        expected = stack_stats(x, weights, activation, dout)
        explainers = (lambda a: explain_forward_stats(a, x, weights, activation, dout),
                      lambda a: explain_backward_stats(a, x, weights, activation, dout))
        for part in parts:
            message = _stats_message(value[part], expected[part], names[part], explainers[part])
            if message is not None:
                return message
        return None

    return judge


STATS = [_stats_case(8, 48, 32, "tanh", 1.0, 71), _stats_case(8, 64, 32, "relu", math.sqrt(2), 72),
         _stats_case(6, 40, 32, "linear", 1.3, 73)]


def _hidden_stats(seed: int, count: int = 3) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for activation in ("tanh", "relu", str(rng.choice(["tanh", "relu", "linear"])))[:count]:
        width = int(rng.choice([32, 48, 64, 96]))
        cases.append(_stats_case(int(rng.integers(10, 21)), width, int(rng.choice([32, 48, 64])), activation,
                                 float(rng.choice([0.5, 1.0, math.sqrt(2), 5 / 3, 2.0])), int(rng.integers(2**31))))
    return cases


SPEC = LabSpec(
    name="lab04_initialization",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=(course_init.fan_in_and_fan_out, course_init.xavier_uniform_, course_init.xavier_normal_,
               course_init.kaiming_normal_, course_init.orthogonal_, course_init.lsuv_),
    guard=lambda: forbid_calls(ops={}, functions=REFERENCE_FUNCTIONS, why=NO_SHORTCUTS),  # no operator is refused
    tests=[
        Test("test_fans", "fans", "fans", fixed_cases(FANS), _judge_fans),
        Test("test_fans_hidden", "fans", "fans, hidden cases", _hidden_fans, _judge_fans, hidden=True),
        Test("test_xavier_uniform", "draw_xavier_uniform", "xavier_uniform", fixed_cases(XAVIER_UNIFORM),
             _judge_xavier("uniform")),
        Test("test_xavier_normal", "draw_xavier_normal", "xavier_normal", fixed_cases(XAVIER_NORMAL),
             _judge_xavier("normal")),
        Test("test_xavier_uniform_hidden", "draw_xavier_uniform", "xavier_uniform, hidden cases", _hidden_xavier,
             _judge_xavier("uniform"), hidden=True),
        Test("test_xavier_normal_hidden", "draw_xavier_normal", "xavier_normal, hidden cases", _hidden_xavier,
             _judge_xavier("normal"), hidden=True),
        Test("test_he_normal", "draw_he_normal", "he_normal", fixed_cases(HE_NORMAL), _judge_he),
        Test("test_he_options", "draw_he_normal", "he_normal, fan_out and leaky ReLU", fixed_cases(HE_OPTIONS),
             _judge_he),
        Test("test_he_hidden", "draw_he_normal", "he_normal, hidden cases", _hidden_he, _judge_he, hidden=True),
        Test("test_orthogonal", "draw_orthogonal", "orthogonal", fixed_cases(ORTHOGONAL), _judge_orthogonal),
        Test("test_orthogonal_conv", "draw_orthogonal", "orthogonal, conv weights", fixed_cases(ORTHOGONAL_CONV),
             _judge_orthogonal),
        Test("test_orthogonal_hidden", "draw_orthogonal", "orthogonal, hidden cases", _hidden_orthogonal,
             _judge_orthogonal, hidden=True),
        Test("test_lsuv", "run_lsuv", "lsuv", fixed_cases(LSUV), _judge_lsuv),
        Test("test_lsuv_conv", "run_lsuv", "lsuv, conv layers", fixed_cases(LSUV_CONV), _judge_lsuv),
        Test("test_lsuv_hidden", "run_lsuv", "lsuv, hidden cases", _hidden_lsuv, _judge_lsuv, hidden=True),
        Test("test_stats_forward", "activation_stats", "activation_stats, activations", fixed_cases(STATS),
             _judge_stats((0,))),
        Test("test_stats_backward", "activation_stats", "activation_stats, gradients", fixed_cases(STATS),
             _judge_stats((1,))),
        Test("test_stats_hidden", "activation_stats", "activation_stats, hidden cases", _hidden_stats, _judge_stats(),
             hidden=True),
    ],
)
