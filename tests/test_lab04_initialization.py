"""Lab 4 (initialization): its tests judge right answers right, never fail them by bad luck, and name the usual
mistakes.

The instructor's answers, taken from the solution notebook, must pass every visible and hidden test - the random
initialisers on hundreds of hidden draws, since they are judged by statistics; each deliberately wrong answer
below (written as a student might write it) must fail, with the "Likely cause" that names its mistake. The
notebook's graded cells must be the specification's tests; shortcuts must be refused in the notebook and flagged by
the grader's scan; and in the real sandbox, an answer that tampers with its own process, reads files, prints a
verdict or hangs must still be judged on what it returns.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn as nn

from course_lib.grading.initialization import (
    Candidate,
    Sample,
    explain_std,
    fans,
    he_candidates,
    he_std,
    std_tolerance,
    xavier_candidates,
    xavier_std,
)
from course_lib.grading.labs import get_spec
from course_lib.grading.labs.lab04_initialization import MAX_SAMPLE, MIN_SAMPLE, PREAMBLE
from course_lib.grading.scan import copied_from, scan_answer
from nbgrader_course import cells_of_kind, handed_in_answers, kernel_after
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "lab04_initialization" / "lab04_initialization.ipynb"
SPEC = get_spec("lab04_initialization")
NOTEBOOK = nbformat.read(SOURCE, as_version=4)

# The instructor's answer cells as a student hands them in: (grade_id, source) without the solution markers.
SOLUTION_CELLS = handed_in_answers(NOTEBOOK)
FUNCTIONS = ("fans", "xavier_uniform", "xavier_normal", "he_normal", "orthogonal", "lsuv", "activation_stats")
# The graded tests of the random initialisers (judged by statistics) and of the orthogonal one.
DRAW_TESTS = [t.grade_id for t in SPEC.tests if t.function.startswith("draw_")]


def namespace(**replaced) -> dict:
    """The preamble and the solution's answer cells as the grader loads them, with ``replaced`` definitions."""
    return kernel_after(PREAMBLE, SOLUTION_CELLS, **replaced)


SOLUTION = namespace()


def failure(grade_id: str, seeds=(0,), **replaced) -> str | None:
    """The judge's message for the first case of test ``grade_id`` that the answers (the solution's, with
    ``replaced``) get wrong, or None. Calls the judge directly (no guard)."""
    test = SPEC.test(grade_id)
    names = namespace(**replaced) if replaced else SOLUTION
    for seed in seeds:
        for case in test.cases(seed):
            try:
                value, error = names[test.function](*case.args, **dict(case.kwargs)), None
            except Exception as exc:  # noqa: BLE001 - the judge decides
                value, error = None, f"{type(exc).__name__}: {exc}"
            message = test.judge(case, value, error)
            if message is not None:
                return f"{case.label}: {message}"
    return None


# --- the reference answer passes everything ----------------------------------------------------------------


@pytest.mark.parametrize("grade_id", [t.grade_id for t in SPEC.tests])
def test_solution_passes_every_test_for_several_seeds(grade_id):
    seeds = (0, 1, 2, 3) if SPEC.test(grade_id).hidden else (0,)
    assert failure(grade_id, seeds) is None


def test_solution_passes_the_visible_tests_in_the_notebook_with_the_guard_on(capsys):
    names = namespace()
    for test in SPEC.tests:
        SPEC.run(test.grade_id, names)
    printed = capsys.readouterr().out
    assert printed.count(": passed (") == sum(not t.hidden for t in SPEC.tests)


@pytest.mark.parametrize("grade_id", [g for g in DRAW_TESTS if SPEC.test(g).hidden])
def test_the_right_initialiser_passes_40_hidden_draws(grade_id):
    """A quick version of the 200-seed check below (which is marked slow)."""
    assert failure(grade_id, seeds=range(100, 140)) is None


@pytest.mark.slow
@pytest.mark.parametrize("grade_id", [g for g in DRAW_TESTS if SPEC.test(g).hidden])
def test_the_right_initialiser_never_fails_on_200_submission_seeds(grade_id):
    """No flaky verdict: the statistical judges pass the instructor's initialisers on 200 submissions' hidden cases
    (800 samples per test; each statistic's tolerance is 6 standard errors, a false failure about once in 10^8)."""
    assert failure(grade_id, seeds=range(1000, 1200)) is None


def test_the_tolerances_follow_from_the_sample_size():
    # A normal sample's std has relative standard error sqrt(1 / (2n)); the tolerance is 6 of them.
    assert std_tolerance(16_384) == pytest.approx(6 * math.sqrt(1 / (2 * 16_384)))
    assert std_tolerance(MIN_SAMPLE) < 0.034 and std_tolerance(MAX_SAMPLE) < 0.017
    # Measured: the std of 2,000 right samples of 16,384 values stays far inside the tolerance.
    g = torch.Generator().manual_seed(0)
    stds = torch.randn(2000, MIN_SAMPLE, generator=g).std(dim=1)
    assert (stds - 1).abs().max().item() < std_tolerance(MIN_SAMPLE) / 1.5
    assert (stds - 1).std().item() == pytest.approx(math.sqrt(1 / (2 * MIN_SAMPLE)), rel=0.1)


def _hidden_cases(grade_id, seeds):
    return [case for seed in seeds for case in SPEC.test(grade_id).cases(seed)]


def test_hidden_draws_are_large_and_their_fans_differ():
    for grade_id in DRAW_TESTS:
        for case in _hidden_cases(grade_id, range(30)) if SPEC.test(grade_id).hidden else SPEC.test(grade_id).cases(0):
            shape = case.args[0]
            if "orthogonal" in grade_id:  # judged exactly (its Gram matrix): any size, at least 32 rows and columns
                assert min(shape[0], math.prod(shape[1:])) >= 32 and math.prod(shape) <= MAX_SAMPLE, case.label
                continue
            assert MIN_SAMPLE <= math.prod(shape) <= MAX_SAMPLE, (grade_id, case.label)
            if SPEC.test(grade_id).hidden:
                fan_in, fan_out = fans(shape)
                assert max(fan_in, fan_out) >= 1.5 * min(fan_in, fan_out), case.label


def _separated(candidates: list[Candidate], right: float, tolerance: float) -> list[str]:
    """The candidates whose std is within 2 tolerances of the right one (a mistake the test could not see)."""
    return [c.description for c in candidates if c.family is None and abs(c.std / right - 1) <= 2 * tolerance]


def test_every_named_mistake_is_far_from_the_right_answer_on_the_visible_cases():
    """Guards the statistical judges: on each visible case, each known mistake's std (with the family it draws
    from) differs from the right one by more than twice the tolerance, and from every other mistake's, so that the
    message names one mistake, not two."""
    for grade_id in ("test_xavier_uniform", "test_xavier_normal", "test_he_normal", "test_he_options"):
        for case in SPEC.test(grade_id).cases(0):
            shape = case.args[0]
            tolerance = std_tolerance(math.prod(shape))
            if grade_id.startswith("test_xavier"):
                family = "uniform" if "uniform" in grade_id else "normal"
                gain = case.kwargs["gain"]
                right, candidates = xavier_std(shape, gain), xavier_candidates(shape, gain, family)
            else:
                mode, slope = case.kwargs["mode"], case.kwargs["negative_slope"]
                right, candidates = he_std(shape, mode, slope), he_candidates(shape, mode, slope)
            assert not _separated(candidates, right, tolerance), (grade_id, case.label)
            stds = sorted(c.std for c in candidates if c.family is None)
            close = [(a, b) for a, b in zip(stds, stds[1:]) if b / a - 1 <= 2 * tolerance]
            assert not close, (grade_id, case.label, close)


def test_the_explainer_names_nothing_for_a_right_sample():
    g = torch.Generator().manual_seed(3)
    shape = (128, 256)
    right = torch.randn(shape, generator=g) * he_std(shape)
    assert explain_std(Sample.of(right), he_candidates(shape, "fan_in", 0.0)) is None


# --- wrong answers, each named ---------------------------------------------------------------------------------


def right_fans(shape):
    r = math.prod(shape[2:])
    return shape[1] * r, shape[0] * r


def xavier_uniform_with(mistake):
    """xavier_uniform as a student writes it, with one ``mistake``."""

    def xavier_uniform(shape, gain=1.0, generator=None):
        fan_in, fan_out = (shape[1], shape[0]) if mistake == "receptive field ignored" else right_fans(shape)
        bound = {
            "std as bound": gain * math.sqrt(2 / (fan_in + fan_out)),
            "gain forgotten": math.sqrt(6 / (fan_in + fan_out)),
            "no 2": gain * math.sqrt(3 / (fan_in + fan_out)),
            "fan_in only": gain * math.sqrt(3 / fan_in),
        }.get(mistake, gain * math.sqrt(6 / (fan_in + fan_out)))
        if mistake == "normal":
            return torch.randn(shape, generator=generator) * bound / math.sqrt(3)
        if mistake == "not centred":
            return torch.rand(shape, generator=generator) * bound
        if mistake == "global generator":
            return (2 * torch.rand(shape) - 1) * bound
        return (2 * torch.rand(shape, generator=generator) - 1) * bound

    return xavier_uniform


def xavier_normal_with(mistake):
    def xavier_normal(shape, gain=1.0, generator=None):
        fan_in, fan_out = (shape[1], shape[0]) if mistake == "receptive field ignored" else right_fans(shape)
        std = {
            "bound as std": gain * math.sqrt(6 / (fan_in + fan_out)),
            "variance as std": gain**2 * 2 / (fan_in + fan_out),
            "gain forgotten": math.sqrt(2 / (fan_in + fan_out)),
        }.get(mistake, gain * math.sqrt(2 / (fan_in + fan_out)))
        if mistake == "uniform":
            return (2 * torch.rand(shape, generator=generator) - 1) * std * math.sqrt(3)
        return torch.randn(shape, generator=generator) * std

    return xavier_normal


def he_normal_with(mistake):
    def he_normal(shape, mode="fan_in", negative_slope=0.0, generator=None):
        fan_in, fan_out = (shape[1], shape[0]) if mistake == "receptive field ignored" else right_fans(shape)
        if mistake == "swapped":
            fan = fan_out if mode == "fan_in" else fan_in
        elif mistake == "mode ignored":
            fan = fan_in
        else:
            fan = fan_in if mode == "fan_in" else fan_out
        gain = {
            "gain forgotten": 1.0, "slope ignored": math.sqrt(2),
            "slope not squared": math.sqrt(2 / (1 + negative_slope)),
        }.get(mistake, math.sqrt(2 / (1 + negative_slope**2)))
        std = gain / math.sqrt(fan)
        if mistake == "bound as std":
            std *= math.sqrt(3)
        elif mistake == "variance as std":
            std = gain**2 / fan
        if mistake == "uniform":
            return (2 * torch.rand(shape, generator=generator) - 1) * std * math.sqrt(3)
        return torch.randn(shape, generator=generator) * std

    return he_normal


def orthogonal_with(mistake):
    def orthogonal(shape, gain=1.0, generator=None):
        rows, cols = shape[0], math.prod(shape[1:])
        if mistake == "conv flattened wrong":
            rows, cols = shape[0] * shape[1], math.prod(shape[2:])
        if mistake == "gaussian":
            return torch.randn(shape, generator=generator) * gain / math.sqrt(cols)
        if mistake == "rows normalised":
            a = torch.randn(rows, cols, generator=generator)
            return (gain * a / a.norm(dim=1, keepdim=True)).reshape(shape)
        if mistake == "identity":
            return (gain * torch.eye(rows, cols)).reshape(shape)
        if mistake == "wide not handled":
            q, r = torch.linalg.qr(torch.randn(rows, cols, generator=generator))
            return (gain * q * torch.sign(torch.diagonal(r))).reshape(shape)
        q, r = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=generator))
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.reshape(rows, cols) if mistake == "reshaped not transposed" else q.T
        if mistake == "not transposed back" and rows < cols:
            q = q.T
            return gain * q
        return (q if mistake == "gain forgotten" else gain * q).reshape(shape)

    return orthogonal


def lsuv_with(mistake):
    """lsuv as a student writes it (with the solution's orthogonal), with one ``mistake``."""
    orthogonal = SOLUTION["orthogonal"]
    activations = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda z: z}

    def lsuv(layers, x, activation, generator=None, tol=0.05, max_iters=10):
        act = activations[activation]
        if mistake == "new layers":
            layers = [copy.deepcopy(layer) for layer in layers]
        with torch.no_grad():
            for layer in layers:
                if mistake != "no orthogonal init":
                    layer.weight.copy_(orthogonal(tuple(layer.weight.shape), generator=generator))
                if layer.bias is not None and mistake != "bias kept":
                    layer.bias.zero_()
            if mistake == "all at once":
                h, variances = x, []
                for layer in layers:
                    z = layer(h)
                    variances.append(z.var().item())
                    h = act(z)
                for layer, variance in zip(layers, variances):
                    layer.weight.div_(math.sqrt(variance))
                return
            h = x
            for layer in layers[:-1] if mistake == "last layer skipped" else layers:
                for _ in range(max_iters):
                    out = act(layer(h)) if mistake == "after activation" else layer(h)
                    variance = out.var().item()
                    if abs(variance - 1) < tol:
                        break
                    layer.weight.div_(variance if mistake == "variance not std" else math.sqrt(variance))
                h = act(layer(h))

    return lsuv


def activation_stats_with(mistake):
    """activation_stats as a student writes it, with one ``mistake``."""

    def activation_stats(x, weights, activation, dout):
        def f(z):
            return torch.tanh(z) if activation == "tanh" else torch.relu(z) if activation == "relu" else z

        zs, hs = [], []
        h = x
        for w in weights:
            z = h @ (w if mistake == "untransposed" else w.T)
            zs.append(z)
            hs.append(h if mistake == "input first" else None)
            h = f(z)
            if mistake != "input first":
                hs[-1] = h
        seen = zs if mistake == "pre-activation" else hs
        act_std = torch.stack([t.std() for t in seen])
        grads = []
        grad_h = torch.ones_like(dout) if mistake == "ones" else dout
        for w, z in zip(reversed(weights), reversed(zs)):
            if mistake == "no derivative" or activation == "linear":
                slope = torch.ones_like(z)
            elif activation == "tanh":
                slope = 1 - torch.tanh(torch.tanh(z)) ** 2 if mistake == "derivative at h" else 1 - torch.tanh(z) ** 2
            else:
                slope = (z > 0).double()
            delta = grad_h * slope
            grads.append((grad_h if mistake == "gradient of h" else delta).std())
            grad_h = delta @ (w.T if mistake == "backward transposed" else w)
        grad_std = torch.stack(grads if mistake == "reversed" else grads[::-1])
        return act_std, grad_std

    return activation_stats


MISTAKES = [
    # (id, test cell, {function: wrong answer}, what its message must say)
    ("fans-swapped", "test_fans", {"fans": lambda s: right_fans(s)[::-1]}, r"Likely cause: fan_in and fan_out swapped"),
    ("fans-no-receptive-field", "test_fans", {"fans": lambda s: (s[1], s[0])},
     r"\(32, 16, 3, 3\).*\(16, 32\), expected \(144, 288\)\nLikely cause: the receptive field ignored"),
    ("fans-receptive-field-in-fan-in-only", "test_fans", {"fans": lambda s: (right_fans(s)[0], s[0])},
     r"Likely cause: the receptive field counted in fan_in only"),
    ("fans-numpy-ints", "test_fans", {"fans": lambda s: tuple(np.int64(v) for v in right_fans(s))},
     r"should return two Python ints"),
    ("fans-first-kernel-dim", "test_fans", {"fans": lambda s: (s[1] * (s[2:] or [1])[0], s[0] * (s[2:] or [1])[0])},
     r"\(32, 16, 3, 3\).*Likely cause: only one kernel dim counted"),
    ("xu-std-as-bound", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("std as bound")},
     r"0\.5[78]\d* times the right one\nLikely cause: the standard deviation used as the bound"),
    ("xu-normal", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("normal")},
     r"right std but look normal \(kurtosis [23]\..*Likely cause: normal instead of uniform"),
    ("xu-gain-forgotten", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("gain forgotten")},
     r"gain=1\.667.*0\.6\d* times the right one\nLikely cause: gain forgotten"),
    ("xu-not-centred", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("not centred")},
     r"mean is .*Likely cause: U\(0, b\) instead of U\(-b, b\)"),
    ("xu-no-2", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("no 2")},
     r"Likely cause: the 2 is missing"),
    ("xu-fan-in-only", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("fan_in only")},
     r"Likely cause: fan_in only \(Var\(W\) = 1/fan_in is LeCun's"),
    ("xu-receptive-field", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("receptive field ignored")},
     r"\(32, 64, 3, 3\).*3 times the right one\nLikely cause: the receptive field ignored"),
    ("xu-global-generator", "test_xavier_uniform", {"xavier_uniform": xavier_uniform_with("global generator")},
     r"generators seeded alike returned different tensors.*not from torch's global generator"),
    ("xn-bound-as-std", "test_xavier_normal", {"xavier_normal": xavier_normal_with("bound as std")},
     r"1\.7\d times the right one\nLikely cause: the uniform's bound used as the standard deviation"),
    ("xn-uniform", "test_xavier_normal", {"xavier_normal": xavier_normal_with("uniform")},
     r"look uniform \(kurtosis 1\.8.*Likely cause: uniform instead of normal"),
    ("xn-variance-as-std", "test_xavier_normal", {"xavier_normal": xavier_normal_with("variance as std")},
     r"Likely cause: the variance used as the standard deviation"),
    ("xn-gain-forgotten", "test_xavier_normal", {"xavier_normal": xavier_normal_with("gain forgotten")},
     r"Likely cause: gain forgotten"),
    ("xn-receptive-field", "test_xavier_normal", {"xavier_normal": xavier_normal_with("receptive field ignored")},
     r"Likely cause: the receptive field ignored"),
    ("he-swapped", "test_he_normal", {"he_normal": he_normal_with("swapped")},
     r"1\.4\d times the right one\nLikely cause: fan_in and fan_out swapped \(or mode ignored\): mode='fan_in' divides "
     r"by fan_in = 256, you divided by fan_out = 128"),
    ("he-mode-ignored", "test_he_options", {"he_normal": he_normal_with("mode ignored")},
     r"mode='fan_out'.*Likely cause: fan_in and fan_out swapped \(or mode ignored\)"),
    ("he-relu-gain-forgotten", "test_he_normal", {"he_normal": he_normal_with("gain forgotten")},
     r"0\.7[01]\d* times the right one\nLikely cause: ReLU gain forgotten"),
    ("he-bound-as-std", "test_he_normal", {"he_normal": he_normal_with("bound as std")},
     r"1\.7\d times the right one\nLikely cause: the uniform's bound used as the standard deviation"),
    ("he-variance-as-std", "test_he_normal", {"he_normal": he_normal_with("variance as std")},
     r"Likely cause: the variance used as the standard deviation"),
    ("he-uniform", "test_he_normal", {"he_normal": he_normal_with("uniform")},
     r"Likely cause: uniform instead of normal"),
    ("he-receptive-field", "test_he_normal", {"he_normal": he_normal_with("receptive field ignored")},
     r"\(32, 64, 3, 3\).*Likely cause: the receptive field ignored"),
    ("he-slope-ignored", "test_he_options", {"he_normal": he_normal_with("slope ignored")},
     r"negative_slope=0\.5.*Likely cause: negative_slope ignored"),
    ("he-slope-not-squared", "test_he_options", {"he_normal": he_normal_with("slope not squared")},
     r"Likely cause: the slope not squared"),
    ("orth-gain-forgotten", "test_orthogonal", {"orthogonal": orthogonal_with("gain forgotten")},
     r"\(64, 256\).*Likely cause: gain forgotten"),
    ("orth-gaussian", "test_orthogonal", {"orthogonal": orthogonal_with("gaussian")},
     r"W W\^T = gain\^2 I.*Likely cause: this looks like a random \(Gaussian or uniform\) matrix"),
    ("orth-rows-normalised", "test_orthogonal", {"orthogonal": orthogonal_with("rows normalised")},
     r"Likely cause: the rows have norm gain but are not orthogonal"),
    ("orth-identity", "test_orthogonal", {"orthogonal": orthogonal_with("identity")},
     r"calls with generators seeded differently returned the same tensor"),
    ("orth-wide-qr", "test_orthogonal", {"orthogonal": orthogonal_with("wide not handled")},
     r"\(64, 256\).*raised RuntimeError.*\nLikely cause: torch\.linalg\.qr of a wide matrix"),
    ("orth-reshaped", "test_orthogonal", {"orthogonal": orthogonal_with("reshaped not transposed")},
     r"Likely cause: Q reshaped instead of transposed"),
    ("orth-not-transposed-back", "test_orthogonal", {"orthogonal": orthogonal_with("not transposed back")},
     r"returned shape \(256, 64\), expected \(64, 256\)\nLikely cause: the matrix is transposed"),
    ("orth-conv-flattened", "test_orthogonal_conv", {"orthogonal": orthogonal_with("conv flattened wrong")},
     r"Likely cause: the conv weight flattened the wrong way: as \(2048, 9\)"),
    ("lsuv-all-at-once", "test_lsuv", {"lsuv": lsuv_with("all at once")},
     r"layer 2's output has variance .*\nLikely cause: every layer scaled by the variance measured before any layer"),
    ("lsuv-after-activation", "test_lsuv_conv", {"lsuv": lsuv_with("after activation")},
     r"Likely cause: the variance measured after the activation \(relu\(z\)\)"),
    ("lsuv-variance-not-std", "test_lsuv", {"lsuv": lsuv_with("variance not std")},
     r"dividing W by the variance instead of its square root"),
    ("lsuv-no-orthogonal", "test_lsuv", {"lsuv": lsuv_with("no orthogonal init")},
     r"layer 1's weight, viewed as \(128, 64\), is not a multiple of an orthogonal matrix"),
    ("lsuv-bias-kept", "test_lsuv", {"lsuv": lsuv_with("bias kept")}, r"layer 1's bias is not zero"),
    ("lsuv-new-layers", "test_lsuv", {"lsuv": lsuv_with("new layers")}, r"the layers are unchanged: lsuv must change"),
    ("lsuv-last-skipped", "test_lsuv", {"lsuv": lsuv_with("last layer skipped")},
     r"layer 4's output.*Likely cause: the last layer was not rescaled"),
    ("stats-pre-activation", "test_stats_forward", {"activation_stats": activation_stats_with("pre-activation")},
     r"Likely cause: the std of the pre-activations z_l"),
    ("stats-untransposed", "test_stats_forward", {"activation_stats": activation_stats_with("untransposed")},
     r"Likely cause: the weights applied untransposed"),
    ("stats-input-first", "test_stats_forward", {"activation_stats": activation_stats_with("input first")},
     r"from layer 1 on.*Likely cause: off by one layer"),
    ("stats-no-derivative", "test_stats_backward", {"activation_stats": activation_stats_with("no derivative")},
     r"grad_std .*Likely cause: the activation's derivative forgotten"),
    ("stats-derivative-at-h", "test_stats_backward", {"activation_stats": activation_stats_with("derivative at h")},
     r"Likely cause: tanh's derivative taken at h instead of z"),
    ("stats-backward-transposed", "test_stats_backward",
     {"activation_stats": activation_stats_with("backward transposed")},
     r"Likely cause: the weight transposed on the way back"),
    ("stats-gradient-of-h", "test_stats_backward", {"activation_stats": activation_stats_with("gradient of h")},
     r"Likely cause: the std of dLoss/dh_l"),
    ("stats-reversed", "test_stats_backward", {"activation_stats": activation_stats_with("reversed")},
     r"Likely cause: the list is in reverse order"),
    ("stats-ones", "test_stats_backward", {"activation_stats": activation_stats_with("ones")},
     r"Likely cause: the backward pass started from ones instead of dout"),
]


@pytest.mark.parametrize(("grade_id", "replaced", "named"), [pytest.param(*m[1:], id=m[0]) for m in MISTAKES])
def test_a_mistake_fails_its_test_and_is_named(grade_id, replaced, named):
    message = failure(grade_id, **replaced)
    assert message is not None, "the mistake passed"
    assert re.search(named, message, re.S), message


@pytest.mark.parametrize(("grade_id", "replaced"), [
    pytest.param("test_he_hidden", {"he_normal": he_normal_with("swapped")}, id="he-swapped"),
    pytest.param("test_he_hidden", {"he_normal": he_normal_with("slope ignored")}, id="he-slope-ignored"),
    pytest.param("test_xavier_normal_hidden", {"xavier_normal": xavier_normal_with("bound as std")}, id="xn-bound"),
    pytest.param("test_xavier_uniform_hidden", {"xavier_uniform": xavier_uniform_with("gain forgotten")}, id="xu-gain"),
    pytest.param("test_orthogonal_hidden", {"orthogonal": orthogonal_with("wide not handled")}, id="orth-wide"),
    pytest.param("test_orthogonal_hidden", {"orthogonal": orthogonal_with("gain forgotten")}, id="orth-gain"),
    pytest.param("test_lsuv_hidden", {"lsuv": lsuv_with("all at once")}, id="lsuv-all-at-once"),
    pytest.param("test_stats_hidden", {"activation_stats": activation_stats_with("derivative at h")}, id="stats-tanh"),
    pytest.param("test_fans_hidden", {"fans": lambda s: (s[1], s[0])}, id="fans-rf"),
])
def test_the_hidden_cases_catch_the_mistakes_on_every_seed(grade_id, replaced):
    """Each hidden test draws cases that can see the named mistakes (a slope, a mode, a gain, a wide matrix, a
    tanh stack... in every draw), whatever the submission's seed."""
    for seed in range(8):
        assert failure(grade_id, seeds=(seed,), **replaced) is not None, seed


# --- the test cases themselves ---------------------------------------------------------------------------------


def test_hidden_cases_change_with_the_seed_and_visible_ones_do_not():
    for test in SPEC.tests:
        labels = [[c.label for c in test.cases(seed)] for seed in (1, 2)]
        assert (labels[0] != labels[1]) == test.hidden, test.grade_id


def test_the_hidden_initialiser_cases_cover_every_kind():
    shapes = [c.args[0] for c in _hidden_cases("test_xavier_normal_hidden", range(5))]
    assert any(len(s) == 2 for s in shapes) and any(len(s) == 4 for s in shapes)
    he = [dict(c.kwargs) for c in _hidden_cases("test_he_hidden", range(5))]
    assert {o["mode"] for o in he} == {"fan_in", "fan_out"} and any(o["negative_slope"] > 0 for o in he)
    orthogonal = [c.args[0] for c in _hidden_cases("test_orthogonal_hidden", range(5))]
    kinds = {"square" if s[0] == math.prod(s[1:]) else "tall" if s[0] > math.prod(s[1:]) else "wide"
             for s in orthogonal}
    assert kinds == {"square", "tall", "wide"} and any(len(s) == 4 for s in orthogonal)


# --- the notebook and the specification agree ----------------------------------------------------------------


def test_points_and_answer_cells():
    assert sum(m["points"] for m, _ in cells_of_kind(NOTEBOOK, "test")) == 18
    written = list(cells_of_kind(NOTEBOOK, "written"))
    assert [(m["grade_id"], m["points"]) for m, _ in written] == [("written_interpretation", 4)]
    assert "=== BEGIN MARK SCHEME ===" in written[0][1].source
    answers = [m["grade_id"] for m, _ in cells_of_kind(NOTEBOOK, "answer")]
    assert answers == list(FUNCTIONS) == [name for name, _ in SOLUTION_CELLS]
    # Each function is called directly or through the preamble's helper that calls it; each has a hidden test.
    called = {t.function for t in SPEC.tests}
    assert called == {"fans", "draw_xavier_uniform", "draw_xavier_normal", "draw_he_normal", "draw_orthogonal",
                      "run_lsuv", "activation_stats"}
    assert {t.function for t in SPEC.tests if t.hidden} == called
    for name, source in SOLUTION_CELLS:
        assert f"def {name}(" in source


def test_setup_cell_loads_this_labs_specification():
    setup = next(c for c in NOTEBOOK.cells if c.metadata["nbgrader"]["grade_id"] == "setup")
    assert 'LAB = get_spec("lab04_initialization")' in setup.source and "seed_everything(0)" in setup.source
    assert "exec(LAB.preamble)" in setup.source
    assert setup.metadata["nbgrader"]["locked"] and not setup.metadata["nbgrader"]["grade"]


def test_the_experiment_cells_are_locked_and_not_answers():
    """The experiment runs in the notebook only: it is no answer cell, so the grader never loads it."""
    for grade_id in ("experiment", "experiment_table"):
        cell = next(c for c in NOTEBOOK.cells if c.metadata["nbgrader"]["grade_id"] == grade_id)
        assert cell.metadata["nbgrader"]["locked"] and not cell.metadata["nbgrader"]["solution"]


# --- shortcuts: refused in the notebook, flagged by the grader ---------------------------------------------------


def test_the_solution_raises_no_flag():
    for name, source in SOLUTION_CELLS:
        assert scan_answer(name, source, SPEC.forbidden) == [], name
        assert copied_from(name, source, SPEC.originals) == [], name


@pytest.mark.parametrize(("source", "reason"), [
    ("w = torch.nn.init.xavier_uniform_(torch.empty(shape), gain)", "uses nn.init"),
    ("from torch.nn import init", "uses nn.init"),
    ("from torch.nn.init import kaiming_normal_", "uses kaiming_normal_"),
    ("gain = nn.init.calculate_gain('relu')", "uses calculate_gain"),
    ("fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)", "the library's fans"),
    ("torch.nn.utils.parametrizations.orthogonal(layer)", "uses parametrizations"),
    ("from scipy.stats import ortho_group", "uses scipy"),
    ("from course_lib.init import orthogonal_", "uses course_lib"),
], ids=lambda v: v if len(v) < 40 else None)
def test_the_scan_flags_a_shortcut(source, reason):
    flags = scan_answer("orthogonal", source, SPEC.forbidden)
    assert any(reason in f.reason for f in flags), flags


@pytest.mark.parametrize("source", [
    "w = torch.randn(shape, generator=generator) * std",
    "w = torch.empty(shape).uniform_(-b, b, generator=generator)",
    "q, r = torch.linalg.qr(a)",
    "u, s, vh = torch.linalg.svd(a, full_matrices=False)",
    "fan = {'fan_in': fan_in, 'fan_out': fan_out}[mode]",
    "layer.weight.copy_(orthogonal(tuple(layer.weight.shape), generator=generator))",
])
def test_the_scan_lets_the_building_blocks_through(source):
    assert scan_answer("orthogonal", source, SPEC.forbidden) == []


def test_a_copy_of_course_libs_orthogonal_is_flagged():
    import inspect

    from course_lib.init import orthogonal_

    source = inspect.getsource(orthogonal_).replace("@torch.no_grad()\n", "")
    flags = copied_from("orthogonal", source, SPEC.originals)
    assert flags and "course_lib.init.orthogonal_" in flags[0].reason


def _library_xavier(shape, gain=1.0, generator=None):
    return nn.init.xavier_uniform_(torch.empty(shape), gain=gain, generator=generator)


def _course_lib_he(shape, mode="fan_in", negative_slope=0.0, generator=None):
    from course_lib.init import kaiming_normal_

    return kaiming_normal_(torch.empty(shape), negative_slope, mode, "leaky_relu", generator=generator)


@pytest.mark.parametrize(("grade_id", "replaced", "named"), [
    pytest.param("test_xavier_uniform", {"xavier_uniform": _library_xavier}, r"torch\.nn\.init\.xavier_uniform_",
                 id="torch.nn.init"),
    pytest.param("test_he_normal", {"he_normal": _course_lib_he}, r"course_lib\.init\.kaiming_normal_",
                 id="course_lib"),
])
def test_the_notebook_refuses_a_shortcut_and_names_it(grade_id, replaced, named):
    names = namespace(**replaced)
    with pytest.raises(AssertionError, match=rf"raised ForbiddenCallError: your code called {named}.*Lab 4 asks you"):
        SPEC.run(grade_id, names)
    # Allowed again afterwards, and nn.Linear's own initialisation is never refused (the LSUV helper builds layers).
    assert _library_xavier((4, 3)).shape == (4, 3)
    SPEC.run("test_lsuv", SOLUTION)


def test_the_helpers_leave_the_notebooks_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    SOLUTION["draw_xavier_normal"]((64, 32), 5)
    SOLUTION["run_lsuv"]("linear", [8, 8], "tanh", torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), 3)
    assert torch.equal(torch.rand(3), expected)


# --- the real sandbox --------------------------------------------------------------------------------------------

COURSE_LIB_CELL = '''
from course_lib.init import kaiming_normal_


def he_normal(shape, mode="fan_in", negative_slope=0.0, generator=None):
    return kaiming_normal_(torch.empty(shape), negative_slope, mode, "leaky_relu", generator=generator)
'''

LIBRARY_CELL = '''
def xavier_uniform(shape, gain=1.0, generator=None):
    return torch.nn.init.xavier_uniform_(torch.empty(shape), gain=gain, generator=generator)
'''

# xavier_normal with the uniform's bound as its std, then tampering with its own process so that any check made
# there would agree with it, and printing a verdict: the verdict is computed in the grader, so it stays wrong.
TAMPERING_CELL = '''
import math


def xavier_normal(shape, gain=1.0, generator=None):
    fan_in, fan_out = fans(shape)
    print("test_xavier_normal: passed (3 cases)")
    print("xavier_normal, hidden cases: passed (4 cases)")
    return torch.randn(shape, generator=generator) * gain * math.sqrt(6.0 / (fan_in + fan_out))


torch.Tensor.std = lambda self, *args, **kwargs: torch.tensor(1.0)
torch.Tensor.var = lambda self, *args, **kwargs: torch.tensor(1.0)
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
'''

# orthogonal that reads the course's files (absent in the sandbox) and falls back on a random matrix.
READING_CELL = '''
import math


def orthogonal(shape, gain=1.0, generator=None):
    for path in ("/work/main/course_lib/init.py", "course_lib/init.py", "/etc/passwd"):
        try:
            with open(path) as source:
                raise RuntimeError(f"read {path}: {source.read(40)!r}")
        except OSError:
            pass
    return torch.randn(shape, generator=generator) * gain / math.sqrt(math.prod(shape[1:]))
'''

HANGING_CELL = '''
import time


def lsuv(layers, x, activation, generator=None, tol=0.05, max_iters=10):
    while True:
        time.sleep(1)
'''


def _grade(limits=None, **replaced):
    from course_lib.grading.grader import grade_answers

    cells = [(name, replaced.get(name, source)) for name, source in SOLUTION_CELLS]
    return grade_answers(cells, SPEC, seed=11, limits=limits)


def _lost(result) -> list[str]:
    return sorted(k for k, v in result.verdicts.items() if not v.passed)


@pytest.mark.slow
def test_the_solution_gets_every_point_in_the_sandbox_without_a_flag():
    require_sandbox()
    result = _grade()
    failed = {k: v.message for k, v in result.verdicts.items() if not v.passed}
    assert not failed and not result.flags and not result.load_errors, (failed, result.flags, result.load_errors)
    assert result.seconds < 40, f"grading the solution took {result.seconds:.1f} s"
    print(f"\nlab 4 solution graded in the sandbox in {result.seconds:.1f} s")


@pytest.mark.slow
def test_sandbox_the_library_is_flagged_and_a_course_lib_import_loses_its_tests():
    require_sandbox()
    result = _grade(he_normal=COURSE_LIB_CELL, xavier_uniform=LIBRARY_CELL)
    assert _lost(result) == ["test_he_hidden", "test_he_normal", "test_he_options"], _lost(result)
    assert "ModuleNotFoundError" in result.load_errors["he_normal"]
    message = result.verdicts["test_he_normal"].message
    assert "he_normal is not defined: its answer cell did not run, or did not load" in message, message
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("xavier_uniform") and "uses nn.init" in f for f in flags), flags
    assert any(f.startswith("he_normal") and "uses course_lib" in f for f in flags), flags


@pytest.mark.slow
def test_sandbox_tampering_reading_files_and_hanging_change_no_verdict():
    from dataclasses import replace

    from course_lib.grading.sandbox import Limits

    require_sandbox()
    limits = replace(SPEC.limits_for(Limits()), call_timeout_s=5, wall_s=90)
    result = _grade(limits=limits, xavier_normal=TAMPERING_CELL, orthogonal=READING_CELL, lsuv=HANGING_CELL)
    assert not result.load_errors, result.load_errors
    lost = _lost(result)
    # The wrong xavier_normal loses its tests whatever it printed or patched; the patched Tensor.std costs the
    # answer's own activation_stats its tests (it returns 1 for every layer); the reader finds no file and its
    # random (not orthogonal) matrix loses the orthogonal tests; LSUV times out. Nothing else is lost: fans,
    # xavier_uniform and he_normal run in the same tampered process and are judged right in the grader.
    assert lost == sorted(["test_xavier_normal", "test_xavier_normal_hidden", "test_orthogonal", "test_orthogonal_conv",
                           "test_orthogonal_hidden", "test_lsuv", "test_lsuv_conv", "test_lsuv_hidden",
                           "test_stats_forward", "test_stats_backward", "test_stats_hidden"]), lost
    normal = result.verdicts["test_xavier_normal"].message
    assert "Likely cause: the uniform's bound used as the standard deviation" in normal, normal
    orthogonal = result.verdicts["test_orthogonal"].message
    assert "read " not in orthogonal and "looks like a random" in orthogonal, orthogonal
    assert "timed out after 5 s" in result.verdicts["test_lsuv"].message
