"""Lab 3 (normalization and dropout): its tests judge right answers right and name the usual mistakes.

The instructor's answers, taken from the solution notebook, must pass every visible and hidden test; each
deliberately wrong answer below (written as a student might write it) must fail, with the "Likely cause" that
names its mistake. Dropout is judged by statistics: a right answer must pass for any seed, and so must answers
that draw their random numbers differently. The notebook's graded cells must be the specification's tests;
shortcuts must be refused in the notebook and flagged by the grader's scan; and in the real sandbox, an answer
that tampers with its own process, reads files, prints a fake verdict or hangs must get no credit for it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_lib.grading.labs import get_spec
from course_lib.grading.labs.lab03_normalization import HELPERS, PREAMBLE
from course_lib.grading.normalization import (
    dropout_problem,
    explain_batchnorm_dx,
    explain_batchnorm_out,
    explain_groupnorm,
    explain_layernorm,
    explain_running_var,
)
from course_lib.grading.scan import copied_from, scan_answer
from course_lib.layers import functional as CF
from nbgrader_course import cells_of_kind, handed_in_answers, kernel_after
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "lab03_normalization" / "lab03_normalization.ipynb"
SPEC = get_spec("lab03_normalization")
NOTEBOOK = nbformat.read(SOURCE, as_version=4)

# The instructor's answer cells as a student hands them in: (grade_id, source) without the solution markers.
SOLUTION_CELLS = handed_in_answers(NOTEBOOK)
FUNCTIONS = ("batchnorm_forward", "batchnorm_backward", "layernorm_forward", "groupnorm_forward", "dropout_forward",
             "dropout_backward")


def namespace(**replaced) -> dict:
    """The preamble and the solution's answer cells as the grader loads them, with ``replaced`` definitions."""
    return kernel_after(PREAMBLE, SOLUTION_CELLS, **replaced)


SOLUTION = namespace()


def failure(grade_id: str, names: dict, seeds=(0,)) -> str | None:
    """The label and judge's message of the first case of test ``grade_id`` that the functions in ``names`` get
    wrong, or None. Calls the judge directly (no guard): the wrong answers below may use library calls to build
    a mistake."""
    test = SPEC.test(grade_id)
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


# --- the reference answer passes everything -----------------------------------------------------------


@pytest.mark.parametrize("grade_id", [t.grade_id for t in SPEC.tests])
def test_solution_passes_every_test_for_several_seeds(grade_id):
    seeds = range(8) if SPEC.test(grade_id).hidden else (0,)
    assert failure(grade_id, SOLUTION, seeds) is None


def test_solution_passes_the_visible_tests_in_the_notebook_with_the_guard_on(capsys):
    for test in SPEC.tests:
        SPEC.run(test.grade_id, SOLUTION)
    printed = capsys.readouterr().out
    assert printed.count(": passed (") == sum(not t.hidden for t in SPEC.tests)


# --- right answers written otherwise ------------------------------------------------------------------


def bn_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, *, mistake=None):
    """batchnorm_forward with one deliberate ``mistake`` (None: right, written differently from the solution)."""
    right_axes = (0,) if x.dim() == 2 else (0, 2, 3)
    axes = {"N only": (0,), "instance": (2, 3), "layer": tuple(range(1, x.dim())),
            "whole": tuple(range(x.dim()))}.get(mistake, right_axes)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    view = (lambda t: t) if mistake == "no view" else (lambda t: t.reshape(shape))
    count = x.numel() // x.shape[1]
    # The running statistics, from the batch's statistics over the right axes.
    batch_mean = x.mean(dim=right_axes)
    batch_var = ((x - view(batch_mean) if mistake != "no view" else x - x.mean(dim=right_axes, keepdim=True)) ** 2
                 ).mean(dim=right_axes)
    if training:
        correction = {"biased running": 1.0, "N/(N-1)": x.shape[0] / max(x.shape[0] - 1, 1)}.get(
            mistake, count / (count - 1))
    else:  # eval must work on one example: no batch statistics to correct
        correction = 1.0
    stored = batch_var * correction
    if mistake == "std stored":
        stored = stored.sqrt()
    m = 1 - momentum if mistake == "momentum backwards" else momentum
    new_mean, new_var = (1 - m) * running_mean + m * batch_mean, (1 - m) * running_var + m * stored
    if mistake == "in place running":
        running_mean.mul_(1 - momentum).add_(momentum * batch_mean)
        running_var.mul_(1 - momentum).add_(momentum * stored)
        new_mean, new_var = running_mean, running_var
    if training or mistake == "eval uses batch":
        mean = x.mean(dim=axes, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
        if mistake == "unbiased normalization":
            var = var * count / (count - 1)
        if mistake == "training uses running":
            mean, var = view(running_mean), view(running_var)
    else:
        mean, var = view(running_mean), view(running_var)
    if not training and mistake != "eval updates running":
        new_mean, new_var = running_mean, running_var
    if mistake == "not updated":
        new_mean, new_var = running_mean, running_var
    if mistake == "in place x":
        x -= mean
        centred = x
    else:
        centred = x - mean
    denominator = {"eps outside": var.sqrt() + eps, "eps ignored": var.sqrt()}.get(mistake, (var + eps).sqrt())
    x_hat = centred / denominator
    if mistake == "gamma beta swapped":
        gamma, beta = beta, gamma
    out = view(gamma) * x_hat + view(beta)
    if mistake == "three outputs":
        return out, new_mean, new_var
    return out, new_mean, new_var, (x_hat, gamma, denominator, right_axes, shape)


def bn_backward(dout, cache, *, mistake=None):
    """batchnorm_backward for bn_forward's cache, by the three paths written out, with one deliberate ``mistake``."""
    x_hat, gamma, std, axes, shape = cache
    n = dout.shape[0] if mistake == "N not n" else dout.numel() // dout.shape[1]
    g = dout if mistake == "gamma forgotten" else dout * gamma.reshape(shape)
    # dL/dvar and dL/dmean, then the three paths (direct, mean, variance), as derived on paper.
    dvar = (g * x_hat).sum(dim=axes, keepdim=True) * (-0.5) / std ** 2
    dmean = -g.sum(dim=axes, keepdim=True) / std
    direct = g / std
    through_mean = dmean / n
    through_var = dvar * 2 * x_hat * std / n
    dx = {"direct only": direct, "no variance path": direct + through_mean,
          "no mean path": direct + through_var}.get(mistake, direct + through_mean + through_var)
    dgamma = (dout * x_hat).sum(dim=axes)
    if mistake == "dgamma over N only":
        dgamma = (dout * x_hat).sum(dim=0)
    dbeta = dout.mean(dim=axes) if mistake == "dbeta mean" else dout.sum(dim=axes)
    if mistake == "swapped":
        dgamma, dbeta = dbeta, dgamma
    return dx, dgamma, dbeta


def bn_backward_dgamma_with_x(dout, cache):
    """dgamma summed with x instead of x_hat (x recovered from the cache of bn_forward_keeping_x)."""
    x, (x_hat, gamma, std, axes, shape) = cache
    dx, _, dbeta = bn_backward(dout, (x_hat, gamma, std, axes, shape))
    return dx, (dout * x).sum(dim=axes), dbeta


def bn_forward_keeping_x(x, *args, **kwargs):
    out, mean, var, cache = bn_forward(x, *args, **kwargs)
    return out, mean, var, (x, cache)


def layernorm(x, gamma, beta, eps=1e-5, *, mistake=None):
    instance = (2, 3) if x.dim() == 4 else (1,)  # over the positions of each map (for (N, D): right)
    axes = {"batch axis": (0,), "instance": instance, "last axis": (-1,)}.get(mistake, tuple(range(1, x.dim())))
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, unbiased=mistake == "unbiased", keepdim=True)
    denominator = var.sqrt() + eps if mistake == "eps outside" else (var + eps).sqrt()
    return gamma * (x - mean) / denominator + beta


def groupnorm(x, gamma, beta, num_groups, eps=1e-5, *, mistake=None):
    n, c, h, w = x.shape
    if mistake == "strided":
        groups = x.reshape(n, c // num_groups, num_groups, h, w).transpose(1, 2)
    elif mistake == "size as groups":
        groups = x.reshape(n, c // num_groups, num_groups, h, w)
    elif mistake == "one group":
        groups = x.reshape(n, 1, c, h, w)
    else:
        groups = x.reshape(n, num_groups, c // num_groups, h, w)
    axes = (2,) if mistake == "per position" else (2, 3, 4)
    mean = groups.mean(dim=axes, keepdim=True)
    var = groups.var(dim=axes, unbiased=mistake == "unbiased", keepdim=True)
    x_hat = (groups - mean) / (var + eps).sqrt()
    if mistake == "strided":
        x_hat = x_hat.transpose(1, 2)
    x_hat = x_hat.reshape(n, c, h, w)
    if mistake == "gamma not viewed":
        return gamma.view(1, c) * x_hat + beta.view(1, c)
    return gamma.view(1, c, 1, 1) * x_hat + beta.view(1, c, 1, 1)


def dropout(x, p, training=True, generator=None, *, mistake=None):
    """dropout_forward with one deliberate ``mistake``; right answers draw with torch.bernoulli, no generator."""
    if not training:
        if mistake == "eval scaled":
            return x * (1 - p), None
        if mistake == "dropped in eval":
            training = True
        else:
            return x, None
    if mistake == "seeded inside":
        generator = torch.Generator().manual_seed(0)
    shape = {"shared over batch": (1, *x.shape[1:]), "whole examples": (x.shape[0],) + (1,) * (x.dim() - 1),
             "whole channels": (*x.shape[:2], *(1,) * (x.dim() - 2))}.get(mistake, x.shape)
    keep_probability = p if mistake in ("p is keep", "p is keep, scale right") else 1 - p
    if mistake == "first entries":
        keep = torch.ones(x.numel(), dtype=x.dtype)
        keep[:round(p * x.numel()) + 7] = 0  # the first entries in memory order (not whole rows)
        keep = keep.view(x.shape)
    elif mistake == "own generator" or generator is None:
        keep = torch.bernoulli(torch.full(shape, keep_probability, dtype=x.dtype))
    else:
        keep = (torch.rand(shape, generator=generator, dtype=x.dtype) < keep_probability).to(x.dtype)
    scale = {"not rescaled": 1.0, "times keep": 1 - p, "p is keep": 1 / p if p else 0.0}.get(mistake, None)
    if scale is None and mistake == "1 / (1 - p)":
        scale = 1 / (1 - p)  # ZeroDivisionError at p = 1
    elif scale is None:
        scale = 1 / (1 - p) if p < 1 else 0.0
    if mistake == "nan at 1":
        mask = keep / (1 - p) if p < 1 else keep / torch.tensor(0.0, dtype=x.dtype)
    else:
        mask = keep * scale
    if mistake == "in place":
        return x.mul_(mask), mask
    return x * mask, mask


def dropout_grad(dout, cache, *, mistake=None):
    """dropout_backward for dropout's cache (its scaled mask, or None), with one deliberate ``mistake``."""
    mask = cache
    if mask is None:
        return dout
    if mistake == "not rescaled":
        return dout * (mask != 0)
    if mistake == "mask ignored":
        return dout
    if mistake == "new mask":  # the same share dropped, other entries: a mask drawn again
        return dout * mask.flatten()[torch.randperm(mask.numel())].view(mask.shape)
    return dout * mask


def _with(function, **mistake):
    return lambda *args, **kwargs: function(*args, **kwargs, **mistake)


@pytest.mark.parametrize(("grade_id", "names"), [
    pytest.param("test_bn_forward_hidden", dict(batchnorm_forward=bn_forward), id="batchnorm-by-hand"),
    pytest.param("test_bn_backward_hidden", dict(batchnorm_forward=bn_forward, batchnorm_backward=bn_backward),
                 id="backward-by-three-paths"),
    pytest.param("test_layernorm_hidden", dict(layernorm_forward=layernorm), id="layernorm"),
    pytest.param("test_groupnorm_hidden", dict(groupnorm_forward=groupnorm), id="groupnorm"),
    pytest.param("test_dropout_train", dict(dropout_forward=dropout), id="dropout-rand-below-keep-probability"),
    pytest.param("test_dropout_hidden", dict(dropout_forward=_with(dropout, mistake="own generator"),
                                             dropout_backward=dropout_grad), id="dropout-ignores-the-generator"),
])
def test_other_right_answers_pass_too(grade_id, names):
    """Answers written otherwise (the backward pass by its three paths, dropout drawn with torch.bernoulli from
    the default generator, ignoring the one it is given) pass on several seeds."""
    seeds = range(5) if SPEC.test(grade_id).hidden else (0,)
    assert failure(grade_id, namespace(**names), seeds) is None


# --- wrong answers, each named ---------------------------------------------------------------------

BN = "batchnorm_forward"
MISTAKES = [
    # (id, test cell, replaced functions, what its message must say)
    ("bn-N-only", "test_bn_train_channels", {BN: _with(bn_forward, mistake="N only")},
     r"Likely cause: statistics over N only, one pair per channel AND position"),
    ("bn-instance", "test_bn_train_channels", {BN: _with(bn_forward, mistake="instance")},
     r"Likely cause: statistics per example over H and W \(that is instance norm\)"),
    ("bn-layer-2d", "test_bn_train_features", {BN: _with(bn_forward, mistake="layer")},
     r"Likely cause: statistics per example over its D features \(that is layer norm\)"),
    ("bn-layer-4d", "test_bn_train_channels", {BN: _with(bn_forward, mistake="layer")},
     r"Likely cause: statistics per example over C, H and W \(that is layer norm\)"),
    ("bn-whole-tensor", "test_bn_train_channels", {BN: _with(bn_forward, mistake="whole")},
     r"Likely cause: one mean and variance for the whole tensor"),
    ("bn-unbiased-normalization", "test_bn_train_features", {BN: _with(bn_forward, mistake="unbiased normalization")},
     r"Likely cause: normalized with the unbiased variance \(divided by n - 1\)"),
    ("bn-no-view", "test_bn_train_channels", {BN: _with(bn_forward, mistake="no view")},
     r"raised RuntimeError: .*\nLikely cause: a per-channel tensor of shape \(C,\)"),
    ("bn-eps-outside", "test_bn_train_features", {BN: _with(bn_forward, mistake="eps outside")},
     r"Likely cause: eps added outside the square root"),
    ("bn-eps-ignored", "test_bn_train_channels", {BN: _with(bn_forward, mistake="eps ignored")},
     r"Likely cause: eps ignored"),
    ("bn-gamma-beta-swapped", "test_bn_train_features", {BN: _with(bn_forward, mistake="gamma beta swapped")},
     r"Likely cause: gamma and beta swapped"),
    ("bn-training-uses-running", "test_bn_train_features", {BN: _with(bn_forward, mistake="training uses running")},
     r"Likely cause: normalized with the running statistics in training"),
    ("bn-in-place-x", "test_bn_train_features", {BN: _with(bn_forward, mistake="in place x")},
     r"batchnorm_forward changed its argument\(s\) x in place"),
    ("bn-three-outputs", "test_bn_train_features", {BN: _with(bn_forward, mistake="three outputs")},
     r"batchnorm_forward should return \(out, running_mean, running_var, cache\), got a tuple of 3"),
    ("running-biased", "test_bn_running_stats", {BN: _with(bn_forward, mistake="biased running")},
     r": running_var is wrong \(running_mean is right\)\.\n(?s:.*)Likely cause: biased variance in the running "
     r"estimate"),
    ("running-momentum-backwards", "test_bn_running_stats", {BN: _with(bn_forward, mistake="momentum backwards")},
     r": running_mean and running_var are wrong\.\n(?s:.*)Likely cause: momentum applied backwards: new = momentum "
     r"\* old \+ \(1 - momentum\) \* batch(?s:.*)Likely cause: momentum applied backwards"),
    ("running-N-over-N-1", "test_bn_running_stats", {BN: _with(bn_forward, mistake="N/(N-1)")},
     r"\(4, 3, 5, 6\).*\n(?s:.*)Likely cause: unbiased correction with N / \(N - 1\) = 4/3: n counts every value of "
     r"a channel, N\*H\*W = 120"),
    ("running-not-updated", "test_bn_running_stats", {BN: _with(bn_forward, mistake="not updated")},
     r"Likely cause: the running mean is not updated(?s:.*)Likely cause: the running variance is not updated"),
    ("running-std-stored", "test_bn_running_stats", {BN: _with(bn_forward, mistake="std stored")},
     r"Likely cause: the standard deviation is stored instead of the variance"),
    ("running-in-place", "test_bn_running_stats", {BN: _with(bn_forward, mistake="in place running")},
     r"changed its argument\(s\) running_mean, running_var in place"),
    ("eval-uses-batch-statistics", "test_bn_eval", {BN: _with(bn_forward, mistake="eval uses batch")},
     r"eval mode, .*: out has the right shape but wrong values(?s:.*)Likely cause: eval mode used the batch's "
     r"statistics: in eval batch norm normalizes with the RUNNING mean and variance"),
    ("eval-updates-running", "test_bn_eval", {BN: _with(bn_forward, mistake="eval updates running")},
     r"Likely cause: eval mode updated the running statistics: in eval they are only read"),
    ("backward-direct-only", "test_bn_backward_dx",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="direct only")},
     r": dx is wrong \(dgamma and dbeta are right\)\.\n(?s:.*)Likely cause: only the direct path"),
    ("backward-no-variance-path", "test_bn_backward_dx",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="no variance path")},
     r"Likely cause: the path through the variance is missing"),
    ("backward-no-mean-path", "test_bn_backward_dx",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="no mean path")},
     r"Likely cause: the path through the mean is missing"),
    ("backward-gamma-forgotten", "test_bn_backward_dx",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="gamma forgotten")},
     r"Likely cause: gamma forgotten in dx"),
    ("backward-N-not-n", "test_bn_backward_dx",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="N not n")},
     r"\(4, 3, 5, 6\)(?s:.*)Likely cause: the means in dx divide by N = 4 instead of n = N\*H\*W = 120"),
    ("backward-dgamma-with-x", "test_bn_backward_dgamma_dbeta",
     {BN: bn_forward_keeping_x, "batchnorm_backward": bn_backward_dgamma_with_x},
     r": dgamma is wrong \(dbeta is right\)\.\n(?s:.*)Likely cause: dgamma summed dout \* x: gamma multiplies the "
     r"NORMALIZED input"),
    ("backward-dbeta-mean", "test_bn_backward_dgamma_dbeta",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="dbeta mean")},
     r"Likely cause: dbeta is a mean, not a sum"),
    ("backward-dgamma-over-N-only", "test_bn_backward_dgamma_dbeta",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="dgamma over N only")},
     r"has shape \(3, 5, 6\), expected \(3,\)\.\nLikely cause: dgamma summed over N only"),
    ("backward-swapped", "test_bn_backward_dgamma_dbeta",
     {BN: bn_forward, "batchnorm_backward": _with(bn_backward, mistake="swapped")},
     r"Likely cause: dgamma holds dbeta"),
    ("backward-forward-wrong", "test_bn_backward_dx",
     {BN: _with(bn_forward, mistake="unbiased normalization"), "batchnorm_backward": bn_backward},
     r"batchnorm_forward's output in training mode is wrong(?s:.*)make test_bn_train_features"),
    ("layernorm-batch-axis", "test_layernorm", {"layernorm_forward": _with(layernorm, mistake="batch axis")},
     r"Likely cause: statistics over the batch axis, one pair per feature \(that is batch norm\)"),
    ("layernorm-instance", "test_layernorm", {"layernorm_forward": _with(layernorm, mistake="instance")},
     r"\(3, 4, 5, 6\)(?s:.*)Likely cause: statistics over H and W only(?s:.*)instance norm"),
    ("layernorm-last-axis", "test_layernorm", {"layernorm_forward": _with(layernorm, mistake="last axis")},
     r"\(3, 4, 5, 6\)(?s:.*)Likely cause: statistics over the last axis \(W\) only"),
    ("layernorm-unbiased", "test_layernorm", {"layernorm_forward": _with(layernorm, mistake="unbiased")},
     r"Likely cause: normalized with the unbiased variance"),
    ("layernorm-eps-outside", "test_layernorm", {"layernorm_forward": _with(layernorm, mistake="eps outside")},
     r"eps=0\.1(?s:.*)Likely cause: eps added outside the square root"),
    ("groupnorm-strided", "test_groupnorm", {"groupnorm_forward": _with(groupnorm, mistake="strided")},
     r"Likely cause: groups made of every 2th channel \(channel c in group c mod 2\): a group is 3 CONSECUTIVE"),
    ("groupnorm-size-as-groups", "test_groupnorm", {"groupnorm_forward": _with(groupnorm, mistake="size as groups")},
     r"Likely cause: num_groups taken as the size of a group: you made 3 groups of 2 channels"),
    ("groupnorm-per-position", "test_groupnorm", {"groupnorm_forward": _with(groupnorm, mistake="per position")},
     r"Likely cause: statistics over the channels of a group only, one pair per position"),
    ("groupnorm-one-group", "test_groupnorm", {"groupnorm_forward": _with(groupnorm, mistake="one group")},
     r"Likely cause: one group for all the channels \(that is layer norm"),
    ("groupnorm-unbiased", "test_groupnorm", {"groupnorm_forward": _with(groupnorm, mistake="unbiased")},
     r"Likely cause: normalized with the unbiased variance"),
    ("groupnorm-gamma-not-viewed", "test_groupnorm",
     {"groupnorm_forward": _with(groupnorm, mistake="gamma not viewed")},
     r"raised RuntimeError(?s:.*)Likely cause: a per-channel tensor of shape \(C,\)"),
    ("dropout-not-rescaled", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="not rescaled")},
     r"the kept entries should be x / \(1 - p\) = x \* 2; yours are x times 1\.\nLikely cause: dropout not "
     r"rescaled"),
    ("dropout-times-keep", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="times keep")},
     r"Likely cause: kept entries multiplied by 1 - p instead of divided by it"),
    ("dropout-p-is-keep", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="p is keep")},
     r"p=0\.2(?s:.*)Likely cause: p used as the keep probability: you keep each entry with probability p and divide "
     r"by p"),
    ("dropout-p-is-keep-scale-right", "test_dropout_train",
     {"dropout_forward": _with(dropout, mistake="p is keep, scale right")},
     r"p=0\.2(?s:.*): \d\d\.\d% of the entries are dropped; with p = 0\.2 expect 20\.0%\.\nLikely cause: p used as the "
     r"keep probability"),
    ("dropout-shared-over-batch", "test_dropout_train",
     {"dropout_forward": _with(dropout, mistake="shared over batch")},
     r"Likely cause: one mask shared by the 100 examples"),
    ("dropout-whole-examples", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="whole examples")},
     r"Likely cause: one random draw per example"),
    ("dropout-whole-channels", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="whole channels")},
     r"\(50, 4, 8, 10\)(?s:.*)Likely cause: whole channels dropped \(spatial dropout"),
    ("dropout-first-entries", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="first entries")},
     r"the dropped entries are not spread at random: the four quarters of the tensor \(in memory order\) have "
     r"100\.0%, 100\.0%, 0\.\d%, 0\.0%"),
    ("dropout-seeded-inside", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="seeded inside")},
     r"every call dropped the same entries, though each was made with another seed"),
    ("dropout-in-place", "test_dropout_train", {"dropout_forward": _with(dropout, mistake="in place")},
     r"dropout_forward changed its argument\(s\) x in place"),
    ("dropout-eval-scaled", "test_dropout_eval_and_edges", {"dropout_forward": _with(dropout, mistake="eval scaled")},
     r"in eval mode out should equal x\.\nLikely cause: eval mode multiplied by 1 - p: that is the original "
     r"\(non-inverted\) dropout's test-time rule"),
    ("dropout-dropped-in-eval", "test_dropout_eval_and_edges",
     {"dropout_forward": _with(dropout, mistake="dropped in eval")},
     r"Likely cause: entries dropped in eval mode"),
    ("dropout-nan-at-1", "test_dropout_eval_and_edges", {"dropout_forward": _with(dropout, mistake="nan at 1")},
     r"p=1, training mode: with p = 1 out holds nan values\.\nLikely cause: x \* mask / \(1 - p\) divides by "
     r"1 - p = 0"),
    ("dropout-zero-division-at-1", "test_dropout_eval_and_edges",
     {"dropout_forward": _with(dropout, mistake="1 / (1 - p)")},
     r"p=1, training mode: raised ZeroDivisionError: float division by zero\nLikely cause: 1 / \(1 - p\) with p = 1"),
    ("dropout-backward-not-rescaled", "test_dropout_backward",
     {"dropout_forward": dropout, "dropout_backward": _with(dropout_grad, mistake="not rescaled")},
     r"Likely cause: dx not rescaled"),
    ("dropout-backward-mask-ignored", "test_dropout_backward",
     {"dropout_forward": dropout, "dropout_backward": _with(dropout_grad, mistake="mask ignored")},
     r"Likely cause: the mask is ignored"),
    ("dropout-backward-new-mask", "test_dropout_backward",
     {"dropout_forward": dropout, "dropout_backward": _with(dropout_grad, mistake="new mask")},
     r"Likely cause: dx drops other entries than the forward pass did: dropout_backward drew a new mask"),
    ("dropout-backward-forward-wrong", "test_dropout_backward",
     {"dropout_forward": _with(dropout, mistake="not rescaled"), "dropout_backward": dropout_grad},
     r"dropout_forward is wrong here \(the kept entries should be(?s:.*)make test_dropout_train"),
]


@pytest.mark.parametrize(("grade_id", "names", "message"), [pytest.param(*m[1:], id=m[0]) for m in MISTAKES])
def test_mistake_is_named(grade_id, names, message):
    found = failure(grade_id, namespace(**names))
    assert found is not None, "the mistake passed"
    assert re.search(message, found), found


def test_the_issues_named_mistakes_are_all_planted():
    """The issue's list: statistics over the wrong axes, biased variance in the running estimate (or unbiased in
    the normalization), eval using batch statistics, momentum applied backwards, dropout not rescaled."""
    ids = {m[0] for m in MISTAKES}
    assert {"bn-N-only", "running-biased", "bn-unbiased-normalization", "eval-uses-batch-statistics",
            "running-momentum-backwards", "dropout-not-rescaled"} <= ids
    assert len(MISTAKES) >= 30


@pytest.mark.parametrize(("grade_id", "names"), [
    pytest.param("test_bn_forward_hidden", {BN: _with(bn_forward, mistake="biased running")}, id="running-biased"),
    pytest.param("test_bn_forward_hidden", {BN: _with(bn_forward, mistake="eps outside")}, id="eps-outside"),
    pytest.param("test_bn_backward_hidden", {BN: bn_forward, "batchnorm_backward": _with(bn_backward,
                                                                                          mistake="no mean path")},
                 id="no-mean-path"),
    pytest.param("test_layernorm_hidden", {"layernorm_forward": _with(layernorm, mistake="unbiased")},
                 id="ln-unbiased"),
    pytest.param("test_groupnorm_hidden", {"groupnorm_forward": _with(groupnorm, mistake="per position")},
                 id="gn-per-position"),
    pytest.param("test_dropout_hidden", {"dropout_forward": _with(dropout, mistake="not rescaled"),
                                         "dropout_backward": dropout_grad}, id="dropout-not-rescaled"),
])
def test_hidden_tests_catch_mistakes_on_every_seed(grade_id, names):
    wrong = namespace(**names)
    for seed in range(5):
        assert failure(grade_id, wrong, (seed,)) is not None, seed


def test_explainers_do_not_name_a_right_answer():
    """Guards the explainers: on the visible cases, the right output matches no known mistake (else a wrong
    answer could be named after a mistake it does not make)."""
    for grade_id in ("test_bn_train_features", "test_bn_train_channels", "test_bn_eval", "test_bn_running_stats"):
        for case in SPEC.test(grade_id).cases(0):
            x, gamma, beta, mean, var, training, momentum, eps = case.args
            out, new_mean, new_var, _ = SOLUTION["batchnorm_forward"](*case.args)
            assert explain_batchnorm_out(out, *case.args) is None, case.label
            if training:
                assert explain_running_var(new_var, x, var, momentum) is None, case.label
    for case in SPEC.test("test_bn_backward_dx").cases(0):
        x, gamma, beta, dout, eps = case.args
        dx = SOLUTION["run_batchnorm_backward"](*case.args)["dx"]
        assert explain_batchnorm_dx(dx, x, gamma, dout, eps) is None
    for case in SPEC.test("test_layernorm").cases(0):
        assert explain_layernorm(SOLUTION["layernorm_forward"](*case.args), *case.args) is None
    for case in SPEC.test("test_groupnorm").cases(0):
        assert explain_groupnorm(SOLUTION["groupnorm_forward"](*case.args), *case.args) is None


def test_dropout_statistics_do_not_fail_a_right_answer_by_chance():
    """A right dropout over many random masks, p from 0.05 to 0.95: no false alarm (each check is a 6-sigma one)."""
    gen = torch.Generator().manual_seed(0)
    x = 0.5 + torch.rand(64, 500, generator=gen, dtype=torch.float64)
    for trial in range(200):
        p = 0.05 + 0.9 * trial / 199
        out = SOLUTION["dropout_forward"](x, p, True, torch.Generator().manual_seed(trial))[0]
        assert dropout_problem(out, x, p, True) is None, (trial, p)


# --- the test cases themselves ---------------------------------------------------------------------


def test_hidden_cases_change_with_the_seed_and_visible_ones_do_not():
    for test in SPEC.tests:
        labels = [[c.label for c in test.cases(seed)] for seed in (1, 2)]
        assert (labels[0] != labels[1]) == test.hidden, test.grade_id


def test_hidden_cases_cover_both_layouts_both_modes_and_the_edges():
    drawn = [c for seed in range(4) for c in SPEC.test("test_bn_forward_hidden").cases(seed)]
    assert {c.args[0].dim() for c in drawn} == {2, 4} and {c.args[5] for c in drawn} == {True, False}
    assert min(c.args[0].numel() // c.args[0].shape[1] for c in drawn) > 1, "batch norm needs 2 values per channel"
    groups = [(c.args[0].shape[1], c.args[3])
              for seed in range(6) for c in SPEC.test("test_groupnorm_hidden").cases(seed)]
    assert any(g == 1 for _, g in groups) and any(g == c for c, g in groups) and any(1 < g < c for c, g in groups)
    dropouts = [c for seed in range(12) for c in SPEC.test("test_dropout_hidden").cases(seed)]
    assert {c.args[1] for c in dropouts} >= {0.0, 1.0} and {c.args[2] for c in dropouts} == {True, False}
    assert min(c.args[0].numel() for c in dropouts) >= 2000


def test_every_case_sends_float64_and_dropout_inputs_hold_no_zero():
    for test in SPEC.tests:
        for case in test.cases(0):
            tensors = [a for a in case.args if isinstance(a, torch.Tensor)]
            assert tensors and all(t.dtype == torch.float64 for t in tensors), (test.grade_id, case.label)
            if "dropout" in test.grade_id:
                assert all(bool((t != 0).all()) for t in tensors), case.label


# --- the notebook and the specification agree ------------------------------------------------------


def test_points_and_answer_cells():
    points = {m["grade_id"]: m["points"] for m, _ in cells_of_kind(NOTEBOOK, "test")}
    assert sum(points.values()) == 21
    by_part = {"batchnorm_forward": 7, "batchnorm_backward": 5, "norms": 4, "dropout": 5}
    assert sum(p for g, p in points.items() if g.startswith("test_bn_") and "backward" not in g) == by_part[
        "batchnorm_forward"]
    assert sum(p for g, p in points.items() if g.startswith("test_bn_backward")) == by_part["batchnorm_backward"]
    assert sum(p for g, p in points.items() if "norm" in g and not g.startswith("test_bn")) == by_part["norms"]
    assert sum(p for g, p in points.items() if "dropout" in g) == by_part["dropout"]
    written = list(cells_of_kind(NOTEBOOK, "written"))
    assert [(m["grade_id"], m["points"]) for m, _ in written] == [("written_train_eval", 3)]
    assert "=== BEGIN MARK SCHEME ===" in written[0][1].source
    assert [m["grade_id"] for m, _ in cells_of_kind(NOTEBOOK, "answer")] == list(FUNCTIONS) == [name for name, _ in SOLUTION_CELLS]
    for name, source in SOLUTION_CELLS:
        assert f"def {name}(" in source
    called = {t.function for t in SPEC.tests}
    assert called == {"run_batchnorm", "run_batchnorm_backward", "layernorm_forward", "groupnorm_forward",
                      "run_dropout", "run_dropout_backward"}
    hidden = {t.function for t in SPEC.tests if t.hidden}
    assert hidden >= called - {"run_dropout"}, "every function needs a hidden test"


def test_setup_cell_loads_this_labs_specification_and_its_helpers():
    setup = next(c for c in NOTEBOOK.cells if c.metadata["nbgrader"]["grade_id"] == "setup")
    assert 'LAB = get_spec("lab03_normalization")' in setup.source and "seed_everything(0)" in setup.source
    assert "exec(LAB.preamble)" in setup.source
    assert setup.metadata["nbgrader"]["locked"] and not setup.metadata["nbgrader"]["grade"]


# --- shortcuts: refused in the notebook, flagged by the grader ----------------------------------------


def test_the_solution_raises_no_flag():
    for name, source in SOLUTION_CELLS:
        assert scan_answer(name, source, SPEC.forbidden) == [], name
        assert copied_from(name, source, SPEC.originals) == [], name


@pytest.mark.parametrize(("source", "reason"), [
    ("out = F.batch_norm(x, running_mean, running_var, gamma, beta, training)", "uses batch_norm"),
    ("bn = torch.nn.BatchNorm2d(3)", "uses BatchNorm2d: the library's own normalization"),
    ("out = torch.batch_norm(x, gamma, beta, m, v, True, 0.1, 1e-5, False)", "uses batch_norm"),
    ("out = F.layer_norm(x, x.shape[1:], gamma, beta)", "uses layer_norm"),
    ("from torch.nn.functional import group_norm", "uses group_norm"),
    ("out = nn.GroupNorm(2, 6)(x)", "uses GroupNorm"),
    ("out = F.instance_norm(x)", "uses instance_norm"),
    ("out = F.dropout(x, p, training)", "uses dropout: the library's dropout"),
    ("out = torch.nn.Dropout(p)(x)", "uses Dropout: the library's dropout"),
    ("out = torch.dropout(x, p, True)", "uses dropout"),
    ("dx, = torch.autograd.grad(out, x, dout)", "uses autograd"),
    ("out.backward(dout)", "uses backward"),
    ("x = x.detach().requires_grad_()", "uses requires_grad_"),
    ("from course_lib.layers.functional import batch_norm_backward", "uses course_lib"),
    ("run_dropout = lambda x, p, training, seeds: {}", "uses run_dropout: the grader's helper"),
    ("_changed = lambda originals, copies: []", "uses _changed: the grader's helper"),
], ids=lambda v: v if len(v) < 40 else None)
def test_the_scan_flags_a_shortcut(source, reason):
    flags = scan_answer("batchnorm_forward", source, SPEC.forbidden)
    assert any(reason in f.reason for f in flags), flags


@pytest.mark.parametrize("source", [
    "var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)",
    "mean, var = torch.var_mean(x, dim=0, correction=0)",
    "std = torch.sqrt(var + eps)\ninv = torch.rsqrt(var + eps)",
    "keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p",
    "mask = torch.bernoulli(torch.full_like(x, 1 - p), generator=generator)",
    "groups = x.reshape(n, num_groups, -1)",
    "out, cache = dropout_forward(x, p, training, generator)\ndx = dropout_backward(dout, cache)",
    "out, new_mean, new_var, cache = batchnorm_forward(x, gamma, beta, m, v, True)",
])
def test_the_scan_lets_the_building_blocks_through(source):
    assert scan_answer("dropout_forward", source, SPEC.forbidden) == []


def _shortcut_bn(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    mean, var = running_mean.clone(), running_var.clone()
    return F.batch_norm(x, mean, var, gamma, beta, training, momentum, eps), mean, var, None


def _autograd_backward(dout, cache):
    x, gamma, beta = (t.clone().requires_grad_() for t in cache)
    out = layernorm(x.transpose(0, 1), gamma[:, None], beta[:, None]).transpose(0, 1)
    out.backward(dout)
    return x.grad, gamma.grad, beta.grad


def _forward_keeping_inputs(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    out, mean, var, _ = bn_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    return out, mean, var, (x, gamma, beta)


SHORTCUTS = [
    ("F.batch_norm", "test_bn_train_features", {BN: _shortcut_bn}, r"aten::native_batch_norm"),
    ("nn.BatchNorm2d", "test_bn_train_channels",
     {BN: lambda x, *args: (torch.nn.BatchNorm2d(x.shape[1]).double()(x), *args[2:4], None)},
     r"aten::native_batch_norm"),
    ("autograd", "test_bn_backward_dx", {BN: _forward_keeping_inputs, "batchnorm_backward": _autograd_backward},
     r"torch\.autograd\.backward"),
    ("F.layer_norm", "test_layernorm",
     {"layernorm_forward": lambda x, g, b, eps=1e-5: F.layer_norm(x, x.shape[1:], g, b, eps)},
     r"aten::native_layer_norm"),
    ("F.group_norm", "test_groupnorm",
     {"groupnorm_forward": lambda x, g, b, groups, eps=1e-5: F.group_norm(x, groups, g, b, eps)},
     r"aten::native_group_norm"),
    ("F.dropout", "test_dropout_train",
     {"dropout_forward": lambda x, p, training=True, generator=None: (F.dropout(x, p, training), None)},
     r"torch\.nn\.functional\.dropout"),
    ("nn.Dropout", "test_dropout_train",
     {"dropout_forward": lambda x, p, training=True, generator=None: (torch.nn.Dropout(p)(x), None)},
     r"torch\.nn\.functional\.dropout"),
    ("course_lib", "test_groupnorm",
     {"groupnorm_forward": lambda x, g, b, groups, eps=1e-5: CF.group_norm(x, groups, g, b, eps)},
     r"course_lib\.layers\.functional\.normalization\.group_norm"),
]


@pytest.mark.parametrize(("grade_id", "names", "named"), [pytest.param(*s[1:], id=s[0]) for s in SHORTCUTS])
def test_the_notebook_refuses_a_shortcut_and_names_it(grade_id, names, named):
    with pytest.raises(AssertionError, match=rf"raised ForbiddenCallError: your code called .*{named}.*Lab 3 asks you"):
        SPEC.run(grade_id, namespace(**names))
    # Everything is allowed again afterwards: the judges themselves use F.batch_norm and autograd.
    x = torch.ones(2, requires_grad=True)
    assert torch.autograd.grad((x * x).sum(), x)[0].tolist() == [2.0, 2.0]
    assert F.dropout(torch.ones(3), 0.0).tolist() == [1.0, 1.0, 1.0]
    assert CF.group_norm(torch.ones(1, 2, 2, 2), 1).abs().max().item() == 0.0


def test_the_preamble_defines_the_helpers_the_scan_protects():
    defined = set(re.findall(r"^def (\w+)\(", PREAMBLE, re.M))
    assert defined == set(HELPERS)
    assert {t.function for t in SPEC.tests} - {"layernorm_forward", "groupnorm_forward"} <= defined


# --- the real sandbox ----------------------------------------------------------------------------------

LIBRARY_CELL = '''
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The library's batch norm: right values, a shortcut the lab forbids."""
    mean, var = running_mean.clone(), running_var.clone()
    out = F.batch_norm(x, mean, var, gamma, beta, training, momentum, eps)
    return out, mean, var, (x, gamma, beta, eps)
'''

IMPORT_CELL = '''
from course_lib.layers.functional import layer_norm as _reference


def layernorm_forward(x, gamma, beta, eps=1e-5):
    return _reference(x, x.shape[1:], gamma, beta, eps)
'''

# Dropout without the rescaling, then tampering with its own process: the judge's helpers replaced so that
# they report the right answer's statistics, torch's comparisons patched, a fake verdict printed. The verdict is
# computed in the grader from the values, so it stays wrong; and naming the helpers is flagged.
TAMPERING_CELL = '''
def dropout_forward(x, p, training=True, generator=None):
    if not training or p == 0:
        return x, None
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep, keep


torch.testing.assert_close = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
print("dropout_forward, training: passed (3 cases).")
print("test_dropout_train: 2 / 2 points")
'''

# Reads the grader's files for the hidden cases' recipe; in the sandbox they do not exist, so the answer fails.
READING_CELL = f'''
_PLACES = ["{REPO}/course_lib/grading/labs/lab03_normalization.py", "../course_lib/grading/labs/lab03_normalization.py",
           "/opt/site-packages/0/course_lib/grading/labs/lab03_normalization.py", "{SOURCE}"]


def _recipe():
    for path in _PLACES:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            pass
    raise FileNotFoundError("no grader file in reach")


def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    _recipe()
    n, c, h, w = x.shape
    groups = x.reshape(n, num_groups, c // num_groups, h, w)
    mean = groups.mean(dim=(2, 3, 4), keepdim=True)
    var = groups.var(dim=(2, 3, 4), unbiased=False, keepdim=True)
    x_hat = ((groups - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    return gamma.view(1, c, 1, 1) * x_hat + beta.view(1, c, 1, 1)
'''

HANGING_CELL = '''
def dropout_backward(dout, cache):
    while True:
        pass
'''


def _pasted_group_norm() -> str:
    """course_lib's group_norm pasted into the answer cell with the lab's name and argument order, as a student
    would; its argument checks are course_lib's own, so it fails when called (and the copy is flagged)."""
    source = inspect.getsource(inspect.unwrap(CF.group_norm))
    old = "def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5) -> torch.Tensor:"
    assert old in source, "course_lib's group_norm changed its signature: update _pasted_group_norm"
    return source.replace(old, "def groupnorm_forward(input, weight, bias, num_groups, eps=1e-5):")


def _grade(**replaced):
    from course_lib.grading.grader import grade_answers

    cells = [(name, replaced.get(name, source)) for name, source in SOLUTION_CELLS]
    return grade_answers(cells, SPEC, seed=7)


def _lost(result) -> list[str]:
    return sorted(k for k, v in result.verdicts.items() if not v.passed)


@pytest.mark.slow
def test_the_solution_gets_every_point_in_the_sandbox_without_a_flag():
    require_sandbox()
    result = _grade()
    failed = {k: v.message for k, v in result.verdicts.items() if not v.passed}
    assert not failed and not result.flags and not result.load_errors, (failed, result.flags, result.load_errors)
    assert result.seconds < 40, f"grading the solution took {result.seconds:.1f} s"
    print(f"\nlab 3 solution graded in the sandbox in {result.seconds:.1f} s")


@pytest.mark.slow
def test_sandbox_a_library_call_is_flagged_an_import_loses_its_tests_and_a_copy_is_flagged():
    require_sandbox()
    result = _grade(batchnorm_forward=LIBRARY_CELL, layernorm_forward=IMPORT_CELL,
                    groupnorm_forward=_pasted_group_norm())
    # The library's forward is right (its points stand, the flag goes to the instructor), but its cache is not
    # what the solution's batchnorm_backward reads: the backward tests are lost.
    assert _lost(result) == ["test_bn_backward_dgamma_dbeta", "test_bn_backward_dx", "test_bn_backward_hidden",
                             "test_groupnorm", "test_groupnorm_hidden", "test_layernorm", "test_layernorm_hidden"], \
        _lost(result)
    assert "NameError" in result.verdicts["test_groupnorm"].message  # course_lib's checks are not there
    assert "ModuleNotFoundError" in result.load_errors["layernorm_forward"]
    assert "did not load" in result.verdicts["test_layernorm"].message
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("batchnorm_forward") and "uses batch_norm" in f for f in flags), flags
    assert any(f.startswith("layernorm_forward") and "uses course_lib" in f for f in flags), flags
    assert any(f.startswith("groupnorm_forward") and "like course_lib.layers.functional.normalization.group_norm"
               in f for f in flags), flags


@pytest.mark.slow
def test_sandbox_tampering_reading_files_and_hanging_earn_nothing():
    require_sandbox()
    result = _grade(dropout_forward=TAMPERING_CELL, groupnorm_forward=READING_CELL, dropout_backward=HANGING_CELL)
    verdicts = result.verdicts
    assert _lost(result) == ["test_dropout_backward", "test_dropout_hidden", "test_dropout_train",
                             "test_groupnorm", "test_groupnorm_hidden"], _lost(result)
    assert "Likely cause: dropout not rescaled" in verdicts["test_dropout_train"].message
    assert "FileNotFoundError: no grader file in reach" in verdicts["test_groupnorm"].message
    # Eval, p = 0 and p = 1 need no rescaling: the tampering answer is right there, and keeps that point.
    assert verdicts["test_dropout_eval_and_edges"].passed
    assert "timed out after 20 s" in verdicts["test_dropout_backward"].message
    # The hang costs the calls that hang, not the other functions' tests.
    assert {t.grade_id for t in SPEC.tests if "bn" in t.grade_id or "layernorm" in t.grade_id} <= set(result.passed())
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("groupnorm_forward") and "uses open: reads a file" in f for f in flags), flags
