"""Lab 2 (backpropagation through convolution and pooling): its tests judge right answers right and name the
usual mistakes.

The instructor's answers, taken from the solution notebook, must pass every visible and hidden test; each
deliberately wrong answer below (written as a student might write it) must fail, with the "Likely cause" that
names its mistake. The notebook's graded cells must be the specification's tests; shortcuts must be refused in
the notebook and flagged by the grader's scan; and in the real sandbox, an answer that tampers with its own
process must still be judged wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_lib.grading.backprop import (
    conv2d_gradients,
    explain_avg_pool2d_backward,
    explain_conv2d_dx,
    explain_max_pool2d_backward,
)
from course_lib.grading.labs import get_spec
from course_lib.grading.scan import copied_from, scan_answer
from course_lib.layers import functional as CF
from nbgrader_course import cells_of_kind, handed_in_answers
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "lab02_backprop" / "lab02_backprop.ipynb"
SPEC = get_spec("lab02_backprop")
NOTEBOOK = nbformat.read(SOURCE, as_version=4)

# The instructor's answer cells as a student hands them in: (grade_id, source) without the solution markers.
SOLUTION_CELLS = handed_in_answers(NOTEBOOK)
FUNCTIONS = ("conv2d_backward", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_backward")


def solution_namespace() -> dict:
    """The answer cells run as the grader loads them: after ``import torch`` and ``import torch.nn.functional as F``."""
    namespace = {"torch": torch, "F": F}
    for _, source in SOLUTION_CELLS:
        exec(compile(source, "<answer cell>", "exec"), namespace)
    return namespace


SOLUTION = solution_namespace()


def failure(grade_id: str, function, seeds=(0,)) -> str | None:
    """The judge's message for the first case of test ``grade_id`` that ``function`` gets wrong, or None.

    Calls the judge directly (no guard): the wrong answers below may use library calls to build a mistake."""
    test = SPEC.test(grade_id)
    for seed in seeds:
        for case in test.cases(seed):
            try:
                value, error = function(*case.args, **dict(case.kwargs)), None
            except Exception as exc:  # noqa: BLE001 - the judge decides
                value, error = None, f"{type(exc).__name__}: {exc}"
            message = test.judge(case, value, error)
            if message is not None:
                return message
    return None


# --- the reference answer passes everything -----------------------------------------------------------


@pytest.mark.parametrize("grade_id", [t.grade_id for t in SPEC.tests])
def test_solution_passes_every_test_for_several_seeds(grade_id):
    test = SPEC.test(grade_id)
    seeds = (0, 1, 2, 3) if test.hidden else (0,)
    assert failure(grade_id, SOLUTION[test.function], seeds) is None


def test_solution_passes_the_visible_tests_in_the_notebook_with_the_guard_on(capsys):
    for test in SPEC.tests:
        SPEC.run(test.grade_id, SOLUTION)
    printed = capsys.readouterr().out
    assert printed.count(": passed (") == sum(not t.hidden for t in SPEC.tests)


def test_the_labs_formula_for_dx_is_right():
    """The lab's text: dx is the full correlation of the zero-dilated dout with the rotated kernel, cropped,
    with zeros for the rows no window reads. Written with F.conv2d, it passes every conv test."""
    for test in SPEC.tests:
        if test.function == "conv2d_backward":
            assert failure(test.grade_id, conv_backward_by_correlation, seeds=(0, 1, 2)) is None, test.grade_id


# --- wrong answers, each named ---------------------------------------------------------------------


def conv_backward(dout, x, weight, stride=1, padding=0, dilation=1, *, mistake=None):
    """The tap-by-tap answer of the lab, with one deliberate ``mistake`` (None: right)."""
    n, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    h_out, w_out = dout.shape[2:]
    s = 1 if mistake == "stride ignored" else stride
    d = 1 if mistake == "dilation ignored" else dilation
    kernel = weight.flip(-1, -2) if mistake == "dx kernel rotated" else weight
    x_pad = F.pad(x, (padding,) * 4)
    dx_pad = torch.zeros_like(x_pad)
    dw = torch.zeros_like(weight)
    for u in range(kh):
        for v in range(kw):
            rows = slice(u * d, u * d + s * (h_out - 1) + 1, s)
            cols = slice(v * d, v * d + s * (w_out - 1) + 1, s)
            tap = (kh - 1 - u, kw - 1 - v) if mistake == "dw rotated" else (u, v)
            dw[:, :, tap[0], tap[1]] = torch.einsum("nohw,nchw->oc", dout, x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] += torch.einsum("nohw,oc->nchw", dout, kernel[:, :, u, v])
    dx = dx_pad[:, :, padding:padding + h, padding:padding + w]
    if mistake == "not cropped":
        dx = dx_pad
    elif mistake == "not cropped, border zeroed":
        dx = torch.zeros_like(dx_pad)
        dx[:, :, padding:padding + h, padding:padding + w] = dx_pad[:, :, padding:padding + h, padding:padding + w]
    elif mistake == "cropped top left":
        dx = dx_pad[:, :, :h, :w]
    if mistake == "dw batch mean":
        dw = dw / n
    elif mistake == "dw axes swapped":
        dw = dw.transpose(0, 1)
    db = {
        "db over H, W": lambda: dout.sum(dim=(2, 3)), "db over N": lambda: dout.sum(dim=0),
        "db over C, H, W": lambda: dout.sum(dim=(1, 2, 3)), "db over everything": lambda: dout.sum(),
        "db mean": lambda: dout.mean(dim=(0, 2, 3)), "db batch mean": lambda: dout.sum(dim=(0, 2, 3)) / n,
    }.get(mistake, lambda: dout.sum(dim=(0, 2, 3)))()
    return (dw, dx, db) if mistake == "order" else (dx, dw, db)


def conv_backward_by_correlation(dout, x, weight, stride=1, padding=0, dilation=1, *, dilate=True, fill=True):
    """dx as the lab's formula says: dout dilated by the stride (``dilate``), padded for a full correlation,
    correlated with the rotated kernel, zero rows appended for the pixels no window reads (``fill``), padding
    cropped; dw and db right (from autograd)."""
    kh, kw = weight.shape[2:]
    n, c_out, h_out, w_out = dout.shape
    s = stride if dilate else 1
    spread = dout.new_zeros(n, c_out, (h_out - 1) * s + 1, (w_out - 1) * s + 1)
    spread[:, :, ::s, ::s] = dout
    full = F.pad(spread, (dilation * (kw - 1),) * 2 + (dilation * (kh - 1),) * 2)
    dx_pad = F.conv2d(full, weight.flip(-1, -2).transpose(0, 1), dilation=dilation)
    hp, wp = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    if fill:
        dx_pad = F.pad(dx_pad, (0, max(0, wp - dx_pad.shape[3]), 0, max(0, hp - dx_pad.shape[2])))
    dx = dx_pad[:, :, padding:dx_pad.shape[2] - padding, padding:dx_pad.shape[3] - padding]
    _, dw, db = conv2d_gradients(dout, x, weight, stride, padding, dilation)
    return dx, dw, db


def max_forward(x, kernel_size, stride=None, *, mistake=None):
    """max_pool2d_forward as the lab asks, with one deliberate ``mistake``."""
    k = kernel_size
    s = k if stride is None else stride
    if mistake == "stride None as 1" and stride is None:
        s = 1
    if mistake == "stride as kernel":
        s = k
    n, c, h, w = x.shape
    windows = x.unfold(2, k, s).unfold(3, k, s)
    h_out, w_out = windows.shape[2:4]
    flat = windows.reshape(n, c, h_out, w_out, k * k)
    out = flat.amax(-1)
    ties = (flat == out[..., None]).to(torch.uint8)
    where = k * k - 1 - ties.flip(-1).argmax(-1) if mistake == "last tie" else ties.argmax(-1)
    row = torch.arange(h_out).view(-1, 1) * s + where // k
    col = torch.arange(w_out).view(1, -1) * s + where % k
    index = {
        "window index": lambda: where,
        "whole tensor": lambda: torch.arange(n * c).view(n, c, 1, 1) * h * w + row * w + col,
        "column-major": lambda: col * h + row,
        "int32": lambda: (row * w + col).int(),
        "float": lambda: (row * w + col).double(),
    }.get(mistake, lambda: row * w + col)()
    return out, index


def max_backward(dout, x, kernel_size, stride=None, *, mistake=None):
    """max_pool2d_backward by a loop over the windows, with one deliberate ``mistake``."""
    k = kernel_size
    s = k if stride is None else stride
    n, c = x.shape[:2]
    flat = x.unfold(2, k, s).unfold(3, k, s).reshape(*dout.shape, k * k)
    ties = flat == flat.amax(-1, keepdim=True)
    first = F.one_hot(ties.to(torch.uint8).argmax(-1), k * k)
    gradient = {
        "every tie": lambda: ties * dout[..., None],
        "split": lambda: ties * (dout / ties.sum(-1))[..., None],
        "last tie": lambda: F.one_hot(k * k - 1 - ties.flip(-1).to(torch.uint8).argmax(-1), k * k) * dout[..., None],
        "whole window": lambda: dout[..., None].expand(flat.shape),
    }.get(mistake, lambda: first * dout[..., None])()
    dx = torch.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            block = dx[:, :, i * s:i * s + k, j * s:j * s + k]
            if mistake == "overwritten":
                block[first[:, :, i, j].view(n, c, k, k).bool()] = dout[:, :, i, j].reshape(-1)
            else:
                block += gradient[:, :, i, j].view(n, c, k, k)
    return dx


def avg_backward(dout, x_shape, kernel_size, stride=None, *, mistake=None):
    """avg_pool2d_backward by a loop over the windows (or over the taps), with one deliberate ``mistake``."""
    k = kernel_size
    s = k if stride is None else stride
    divisor = {"not divided": 1, "divided by k": k}.get(mistake, k * k)
    step = 1 if mistake == "stride ignored" else s
    dx = dout.new_zeros(x_shape)
    h_out, w_out = dout.shape[2:]
    if mistake == "overwritten by taps":
        for u in range(k):
            for v in range(k):
                dx[:, :, u:u + s * (h_out - 1) + 1:s, v:v + s * (w_out - 1) + 1:s] = dout / divisor
        return dx
    for i in range(h_out):
        for j in range(w_out):
            share = dout[:, :, i, j, None, None] / divisor
            if mistake == "overwritten":
                dx[:, :, i * step:i * step + k, j * step:j * step + k] = share
            else:
                dx[:, :, i * step:i * step + k, j * step:j * step + k] += share
    return dx


def _with(function, **mistake):
    return lambda *args, **kwargs: function(*args, **kwargs, **mistake)


MISTAKES = [
    # (id, test cell, wrong answer, what its message must say)
    ("db-over-HW", "test_conv_db", _with(conv_backward, mistake="db over H, W"), r"db summed over H and W only"),
    ("db-over-N", "test_conv_db", _with(conv_backward, mistake="db over N"), r"db summed over N only"),
    ("db-over-CHW", "test_conv_db", _with(conv_backward, mistake="db over C, H, W"), r"db summed over the channels"),
    ("db-over-all", "test_conv_db", _with(conv_backward, mistake="db over everything"), r"db summed over every axis"),
    ("db-mean", "test_conv_db", _with(conv_backward, mistake="db mean"), r"db is a mean, not a sum"),
    ("db-batch-mean", "test_conv_db", _with(conv_backward, mistake="db batch mean"), r"db is averaged over the batch"),
    ("dw-rotated", "test_conv_dw", _with(conv_backward, mistake="dw rotated"),
     r"dw is rotated by 180 degrees: you correlated dout with x \(input and gradient swapped\)"),
    ("dw-batch-mean", "test_conv_dw", _with(conv_backward, mistake="dw batch mean"),
     r"dw is averaged over the batch \(2 times too small\)"),
    ("dw-axes", "test_conv_dw", _with(conv_backward, mistake="dw axes swapped"), r"dw has its first two axes swapped"),
    ("dx-kernel-rotated", "test_conv_dx", _with(conv_backward, mistake="dx kernel rotated"),
     r"kernel rotated the wrong way"),
    ("not-cropped", "test_conv_padding", _with(conv_backward, mistake="not cropped"),
     r"padding not cropped: your dx has the padded input's shape \(2, 3, 9, 10\)"),
    ("not-cropped-zero-border", "test_conv_padding", _with(conv_backward, mistake="not cropped, border zeroed"),
     r"padding not cropped"),
    ("cropped-one-side", "test_conv_padding", _with(conv_backward, mistake="cropped top left"),
     r"padding cropped on one side only: you kept the top-left 7 x 8"),
    ("order", "test_conv_padding", _with(conv_backward, mistake="order"), r"wrong order.*return \(dx, dw, db\)"),
    ("stride-ignored", "test_conv_stride", _with(conv_backward, mistake="stride ignored"),
     r"^dx and dw are wrong \(db is right\)\.\n(?s:.*)Likely cause: stride ignored: dout was not spread out by "
     r"the stride(?s:.*)Likely cause: stride ignored in dw"),
    ("stride-ignored-by-correlation", "test_conv_stride", _with(conv_backward_by_correlation, dilate=False),
     r"^dx is wrong \(dw and db are right\)\.\n(?s:.*)Likely cause: stride ignored: dout was not spread out"),
    ("last-rows-missing", "test_conv_stride", _with(conv_backward_by_correlation, fill=False),
     r"Likely cause: the last rows or columns are missing: your dx lacks the last 1 column\(s\) of x\. "
     r"With stride 2"),
    ("dilation-ignored", "test_conv_dilation", _with(conv_backward, mistake="dilation ignored"),
     r"Likely cause: dilation ignored: (?s:.*)Likely cause: dilation ignored in dw"),
    ("last-tie-index", "test_maxpool_forward_ties", _with(max_forward, mistake="last tie"),
     r"the indices tensor \(where each maximum is\) has the right shape but wrong values(?s:.*)"
     r"Likely cause: on a tie you return the LAST maximum"),
    ("window-index", "test_maxpool_forward", _with(max_forward, mistake="window index"),
     r"Likely cause: your indices are positions inside each window \(0 to 3\)"),
    ("whole-tensor-index", "test_maxpool_forward", _with(max_forward, mistake="whole tensor"),
     r"Likely cause: your indices count over the whole tensor"),
    ("column-major-index", "test_maxpool_forward", _with(max_forward, mistake="column-major"),
     r"Likely cause: your indices are column-major"),
    ("int32-index", "test_maxpool_forward", _with(max_forward, mistake="int32"),
     r"indices have dtype torch\.int32; they must be integers of dtype torch\.int64"),
    ("float-index", "test_maxpool_forward", _with(max_forward, mistake="float"), r"indices have dtype torch\.float64"),
    ("stride-None-as-1", "test_maxpool_forward", _with(max_forward, mistake="stride None as 1"),
     r"out \(the pooled values\) has shape \(2, 3, 5, 5\), expected \(2, 3, 3, 3\)\.\nLikely cause: stride=None "
     r"read as stride 1"),
    ("stride-as-kernel", "test_maxpool_forward", _with(max_forward, mistake="stride as kernel"),
     r"Likely cause: stride ignored: your output is max pooling with stride = kernel_size = 3 instead of 2"),
    ("every-tie-gets-gradient", "test_maxpool_backward_ties", _with(max_backward, mistake="every tie"),
     r"Likely cause: gradient sent to every tied maximum"),
    ("ties-split", "test_maxpool_backward_ties", _with(max_backward, mistake="split"),
     r"Likely cause: gradient split among the tied maxima"),
    ("last-tie-gradient", "test_maxpool_backward_ties", _with(max_backward, mistake="last tie"),
     r"Likely cause: on a tie the gradient goes to the LAST maximum"),
    ("max-overwritten", "test_maxpool_backward_overlap", _with(max_backward, mistake="overwritten"),
     r"Likely cause: overlapping windows overwritten instead of accumulated"),
    ("max-whole-window", "test_maxpool_backward", _with(max_backward, mistake="whole window"),
     r"Likely cause: gradient spread over the whole window"),
    ("avg-not-divided", "test_avgpool_backward", _with(avg_backward, mistake="not divided"),
     r"Likely cause: not divided by the window: your dx is k\*k = 4 times too large"),
    ("avg-divided-by-k", "test_avgpool_backward", _with(avg_backward, mistake="divided by k"),
     r"Likely cause: divided by k = 2 instead of k\*k = 4"),
    ("avg-overwritten", "test_avgpool_backward_overlap", _with(avg_backward, mistake="overwritten"),
     r"Likely cause: overlapping windows overwritten instead of accumulated"),
    ("avg-overwritten-by-taps", "test_avgpool_backward_overlap", _with(avg_backward, mistake="overwritten by taps"),
     r"Likely cause: overlapping windows overwritten instead of accumulated"),
    ("avg-stride-ignored", "test_avgpool_backward", _with(avg_backward, mistake="stride ignored"),
     r"Likely cause: stride ignored: window \(i, j\) covers the pixels from \(i\*2, j\*2\) on"),
]


@pytest.mark.parametrize(("grade_id", "wrong", "message"), [pytest.param(*m[1:], id=m[0]) for m in MISTAKES])
def test_a_known_mistake_is_judged_wrong_and_named(grade_id, wrong, message):
    found = failure(grade_id, wrong)
    assert found is not None, f"{grade_id} passed a wrong answer"
    assert re.search(message, found), found


@pytest.mark.parametrize(("grade_id", "wrong"), [pytest.param(m[1], m[2], id=m[0]) for m in MISTAKES])
def test_the_hidden_test_catches_the_mistake_too(grade_id, wrong):
    hidden = next(t for t in SPEC.tests if t.hidden and t.function == SPEC.test(grade_id).function)
    assert failure(hidden.grade_id, wrong, seeds=range(4)) is not None


def test_a_mistake_of_one_gradient_leaves_the_others_passing():
    """The first three tests judge one gradient each: a wrong db costs only test_conv_db."""
    wrong = _with(conv_backward, mistake="db mean")
    assert failure("test_conv_db", wrong) is not None
    assert failure("test_conv_dw", wrong) is None and failure("test_conv_dx", wrong) is None
    # and a gradient not written yet (None) does not stop the others from being judged
    only_db = lambda *args, **kwargs: (None, None, conv_backward(*args, **kwargs)[2])  # noqa: E731
    assert failure("test_conv_db", only_db) is None
    expected = "dx (the gradient with respect to x) should be a torch.Tensor, got NoneType"
    assert expected in failure("test_conv_dx", only_db)


def test_a_wrong_tuple_is_described():
    assert "should return a tuple (dx, dw, db), got Tensor" in failure("test_conv_dx", lambda dout, x, w, **kw: x)
    assert "should return a tuple (out, indices), got Tensor" in failure("test_maxpool_forward", lambda x, k, **kw: x)


def test_an_unknown_mistake_is_not_given_a_cause():
    """Off by a constant: wrong, and no guess at a cause."""
    wrong = lambda *args, **kwargs: tuple(g + 0.5 for g in conv_backward(*args, **kwargs))  # noqa: E731
    for grade_id in ("test_conv_db", "test_conv_dw", "test_conv_dx", "test_conv_stride"):
        found = failure(grade_id, wrong)
        assert found is not None and "Likely cause" not in found, found
    for grade_id, function in (("test_maxpool_backward_overlap", SOLUTION["max_pool2d_backward"]),
                               ("test_avgpool_backward_overlap", SOLUTION["avg_pool2d_backward"])):
        found = failure(grade_id, lambda *args, f=function, **kwargs: 1.5 * f(*args, **kwargs))
        assert found is not None and "Likely cause" not in found, found


def test_explainers_do_not_name_a_right_answer():
    """Guards the explainers: on the visible cases that test a kind of mistake, no wrong output of that kind
    coincides with the right answer (elsewhere some may: without ties, every tie-breaking rule is right)."""
    for case in SPEC.test("test_conv_stride").cases(0) + SPEC.test("test_conv_padding").cases(0):
        dout, x, weight = case.args
        right = conv2d_gradients(dout, x, weight, **case.kwargs)[0]
        assert explain_conv2d_dx(right, dout, x, weight, **case.kwargs) is None
    for case in SPEC.test("test_maxpool_backward_ties").cases(0):
        dout, x, k = case.args
        right = SOLUTION["max_pool2d_backward"](dout, x, k, **case.kwargs)
        assert explain_max_pool2d_backward(right, dout, x, k, **case.kwargs) is None
    for case in SPEC.test("test_avgpool_backward_overlap").cases(0):
        dout, shape, k = case.args
        right = SOLUTION["avg_pool2d_backward"](dout, shape, k, **case.kwargs)
        assert explain_avg_pool2d_backward(right, dout, shape, k, **case.kwargs) is None


# --- the test cases themselves ---------------------------------------------------------------------


def test_hidden_cases_change_with_the_seed_and_visible_ones_do_not():
    for test in SPEC.tests:
        labels = [[c.label for c in test.cases(seed)] for seed in (1, 2)]
        assert (labels[0] != labels[1]) == test.hidden, test.grade_id


def _has_ties(x, k, stride):
    windows = x.unfold(2, k, stride or k).unfold(3, k, stride or k).flatten(-2)
    return bool(((windows == windows.amax(-1, keepdim=True)).sum(-1) > 1).any())


def test_the_tie_tests_hold_ties_and_the_hidden_tests_draw_every_kind_of_window():
    for grade_id in ("test_maxpool_forward_ties", "test_maxpool_backward_ties"):
        for case in SPEC.test(grade_id).cases(0):
            x, k = case.args[-2:]
            assert x.dtype == torch.float64 and _has_ties(x, k, case.kwargs.get("stride")), case.label
    for grade_id in ("test_maxpool_forward", "test_maxpool_backward", "test_maxpool_backward_overlap"):
        for case in SPEC.test(grade_id).cases(0):
            x, k = case.args[-2:]
            assert not _has_ties(x, k, case.kwargs.get("stride")), f"{grade_id} should hold no tie: {case.label}"
    drawn = [c for seed in range(3) for c in SPEC.test("test_maxpool_backward_hidden").cases(seed)]
    strides = [(c.args[2], c.kwargs.get("stride")) for c in drawn]
    assert any(_has_ties(c.args[1], c.args[2], c.kwargs.get("stride")) for c in drawn)
    assert any(s is None for _, s in strides) and any(s is not None and s < k for k, s in strides)
    assert any(s is not None and s > k for k, s in strides)


def test_every_case_sends_float64():
    for test in SPEC.tests:
        for case in test.cases(0):
            tensors = [a for a in case.args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            assert tensors and all(t.dtype == torch.float64 for t in tensors), (test.grade_id, case.label)


# --- the notebook and the specification agree ------------------------------------------------------


def test_points_and_answer_cells():
    assert sum(m["points"] for m, _ in cells_of_kind(NOTEBOOK, "test")) == 20
    written = list(cells_of_kind(NOTEBOOK, "written"))
    assert [(m["grade_id"], m["points"]) for m, _ in written] == [("written_backward_cost", 3)]
    assert "=== BEGIN MARK SCHEME ===" in written[0][1].source
    answers = [m["grade_id"] for m, _ in cells_of_kind(NOTEBOOK, "answer")]
    assert answers == list(FUNCTIONS) == [name for name, _ in SOLUTION_CELLS]
    assert {t.function for t in SPEC.tests} == set(FUNCTIONS)
    assert {t.function for t in SPEC.tests if t.hidden} == set(FUNCTIONS), "every function needs a hidden test"
    for name, source in SOLUTION_CELLS:
        assert f"def {name}(" in source


def test_setup_cell_loads_this_labs_specification():
    setup = next(c for c in NOTEBOOK.cells if c.metadata["nbgrader"]["grade_id"] == "setup")
    assert 'LAB = get_spec("lab02_backprop")' in setup.source and "seed_everything(0)" in setup.source
    assert setup.metadata["nbgrader"]["locked"] and not setup.metadata["nbgrader"]["grade"]


# --- shortcuts: refused in the notebook, flagged by the grader ----------------------------------------


def test_the_solution_raises_no_flag():
    for name, source in SOLUTION_CELLS:
        assert scan_answer(name, source, SPEC.forbidden) == [], name
        assert copied_from(name, source, SPEC.originals) == [], name


@pytest.mark.parametrize(("source", "reason"), [
    ("dx, = torch.autograd.grad(y, x, dout)", "uses autograd"),
    ("y.backward(dout)", "uses backward"),
    ("x = x.detach().requires_grad_()", "uses requires_grad_"),
    ("x.requires_grad = True", "uses requires_grad"),
    ("from torch.func import vjp", "uses torch.func"),
    ("g = torch.nn.grad.conv2d_input(x.shape, w, dout)", "uses nn.grad"),
    ("dx = F.conv_transpose2d(dout, w, stride=2)", "uses conv_transpose2d"),
    ("out = F.max_pool2d(x, 2)", "uses max_pool2d"),
    ("out = torch.nn.MaxPool2d(2)(x)", "uses MaxPool2d: a library pooling"),
    ("out, i = torch.max_pool2d_with_indices(x, 2)", "uses max_pool2d_with_indices: a library pooling"),
    ("from torch.nn.functional import avg_pool2d", "uses avg_pool2d"),
    ("dx = F.fold(cols, (6, 6), 3)", "uses F.fold"),
    ("from course_lib.layers.functional import conv2d_backward", "uses course_lib"),
], ids=lambda v: v if len(v) < 40 else None)
def test_the_scan_flags_a_shortcut(source, reason):
    flags = scan_answer("conv2d_backward", source, SPEC.forbidden)
    assert any(reason in f.reason for f in flags), flags


@pytest.mark.parametrize("source", [
    "windows = x.unfold(2, 3, 1).unfold(3, 3, 1)",
    "x_pad = F.pad(x, (1, 1, 1, 1))",
    "dx.view(2, 3, -1).scatter_add_(2, index, dout.view(2, 3, -1))",
    "dx.index_add_(0, index, dout)",
    "dw = torch.einsum('nohw,nchw->oc', dout, x)",
    "grad = dout.sum(dim=(0, 2, 3))\npool = 2\ngradient = grad * pool",
    "_, indices = max_pool2d_forward(x, kernel_size, stride)",
])
def test_the_scan_lets_the_building_blocks_through(source):
    assert scan_answer("max_pool2d_backward", source, SPEC.forbidden) == []


def _autograd_conv_backward(dout, x, weight, stride=1, padding=0, dilation=1):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)
    kh, kw = weight.shape[2:]
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    windows = F.pad(x, (padding,) * 4).unfold(2, span_h, stride).unfold(3, span_w, stride)
    y = torch.einsum("nchwuv,ocuv->nohw", windows[..., ::dilation, ::dilation], weight) + bias.view(1, -1, 1, 1)
    return torch.autograd.grad(y, (x, weight, bias), dout)


def _backward_call(dout, x, weight, stride=1, padding=0, dilation=1):
    x = x.clone().requires_grad_()
    (F.pad(x, (padding,) * 4) * 1.0).sum().backward()
    return x.grad, weight, dout.sum((0, 2, 3))


SHORTCUTS = [
    ("torch.autograd.grad", "test_conv_dx", "conv2d_backward", _autograd_conv_backward, r"torch\.autograd\.grad"),
    ("Tensor.backward", "test_conv_dx", "conv2d_backward", _backward_call, r"torch\.autograd\.backward"),
    ("F.conv_transpose2d", "test_conv_dx", "conv2d_backward",
     lambda dout, x, w, **kw: (F.conv_transpose2d(dout, w), w, None), r"aten::convolution\b"),
    ("torch.nn.grad", "test_conv_dx", "conv2d_backward",
     lambda dout, x, w, **kw: (torch.nn.grad.conv2d_input(x.shape, w, dout), w, None), r"aten::convolution_backward"),
    ("F.max_pool2d", "test_maxpool_forward", "max_pool2d_forward",
     lambda x, k, stride=None: F.max_pool2d(x, k, stride, return_indices=True), r"aten::max_pool2d_with_indices"),
    ("F.avg_pool2d", "test_avgpool_backward", "avg_pool2d_backward",
     lambda dout, shape, k, stride=None: F.avg_pool2d(torch.zeros(shape), k, stride), r"aten::avg_pool2d"),
    ("F.fold", "test_avgpool_backward", "avg_pool2d_backward",
     lambda dout, shape, k, stride=None: F.fold(dout.flatten(2), shape[2:], 1), r"aten::col2im"),
    ("course_lib", "test_maxpool_backward", "max_pool2d_backward", CF.max_pool2d_backward,
     r"course_lib\.layers\.functional\.pooling\.max_pool2d_backward"),
]


@pytest.mark.parametrize(("grade_id", "function", "shortcut", "named"),
                         [pytest.param(*s[1:], id=s[0]) for s in SHORTCUTS])
def test_the_notebook_refuses_a_shortcut_and_names_it(grade_id, function, shortcut, named):
    with pytest.raises(AssertionError, match=rf"raised ForbiddenCallError: your code called .*{named}.*Lab 2 asks you"):
        SPEC.run(grade_id, {function: shortcut})
    # Everything is allowed again afterwards: the judges themselves use autograd.
    x = torch.ones(2, requires_grad=True)
    assert torch.autograd.grad((x * x).sum(), x)[0].tolist() == [2.0, 2.0]
    assert CF.max_pool2d(torch.ones(1, 1, 2, 2), 2).item() == 1.0


# --- the real sandbox ----------------------------------------------------------------------------------

AUTOGRAD_CELL = '''
def conv2d_backward(dout, x, weight, stride=1, padding=0, dilation=1):
    """A forward pass from scratch, differentiated by autograd: right values, a shortcut the lab forbids."""
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)
    kh, kw = weight.shape[2:]
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    windows = F.pad(x, (padding,) * 4).unfold(2, span_h, stride).unfold(3, span_w, stride)
    y = torch.einsum("nchwuv,ocuv->nohw", windows[..., ::dilation, ::dilation], weight) + bias.view(1, -1, 1, 1)
    return torch.autograd.grad(y, (x, weight, bias), dout)
'''

IMPORT_CELL = '''
from course_lib.layers.functional import avg_pool2d_backward as _reference


def avg_pool2d_backward(dout, x_shape, kernel_size, stride=None):
    return _reference(dout, torch.zeros(x_shape, dtype=dout.dtype), kernel_size, stride)
'''

# max_pool2d_backward that sends the gradient to every tied maximum, then tampers with its own process so that
# any check made there would agree with it: the verdict is computed in the grader, so it stays wrong.
TAMPERING_CELL = '''
def max_pool2d_backward(dout, x, kernel_size, stride=None):
    k = kernel_size
    s = k if stride is None else stride
    n, c = x.shape[:2]
    flat = x.unfold(2, k, s).unfold(3, k, s).reshape(*dout.shape, k * k)
    ties = flat == flat.amax(-1, keepdim=True)
    dx = torch.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += (ties[:, :, i, j] * dout[:, :, i, j, None]).view(n, c, k, k)
    return dx


_mine = max_pool2d_backward
torch.testing.assert_close = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.autograd.grad = lambda outputs, inputs, grad_outputs=None, **kwargs: (_mine(grad_outputs, inputs, 2),)
F.max_pool2d = lambda x, k, stride=None, *args, **kwargs: x.unfold(2, k, stride or k).unfold(
    3, k, stride or k).amax((-1, -2))
'''


def _pasted_conv2d_backward() -> str:
    """course_lib's conv2d_backward pasted into the answer cell, as a student would (its decorator dropped)."""
    import inspect

    source = inspect.getsource(inspect.unwrap(CF.conv2d_backward))
    return "".join(line for line in source.splitlines(True) if not line.startswith("@"))


def _grade(**replaced):
    from course_lib.grading.grader import grade_answers

    cells = [(name, replaced.get(name, source)) for name, source in SOLUTION_CELLS]
    return grade_answers(cells, SPEC, seed=7)


@pytest.mark.slow
def test_the_solution_gets_every_point_in_the_sandbox_without_a_flag():
    require_sandbox()
    result = _grade()
    failed = {k: v.message for k, v in result.verdicts.items() if not v.passed}
    assert not failed and not result.flags and not result.load_errors, (failed, result.flags, result.load_errors)
    assert result.seconds < 40, f"grading the solution took {result.seconds:.1f} s"
    print(f"\nlab 2 solution graded in the sandbox in {result.seconds:.1f} s")


@pytest.mark.slow
def test_sandbox_autograd_is_flagged_and_a_course_lib_import_loses_its_tests():
    require_sandbox()
    result = _grade(conv2d_backward=AUTOGRAD_CELL, avg_pool2d_backward=IMPORT_CELL)
    lost = sorted(k for k, v in result.verdicts.items() if not v.passed)
    assert lost == ["test_avgpool_backward", "test_avgpool_backward_hidden", "test_avgpool_backward_overlap"], lost
    assert "ModuleNotFoundError" in result.load_errors["avg_pool2d_backward"]
    assert "did not load" in result.verdicts["test_avgpool_backward"].message
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("conv2d_backward") and "uses autograd" in f for f in flags), flags
    assert any(f.startswith("conv2d_backward") and "uses requires_grad_" in f for f in flags), flags
    assert any(f.startswith("avg_pool2d_backward") and "uses course_lib" in f for f in flags), flags


@pytest.mark.slow
def test_sandbox_a_pasted_copy_is_flagged_and_tampering_does_not_change_a_verdict():
    require_sandbox()
    result = _grade(conv2d_backward=_pasted_conv2d_backward(), max_pool2d_backward=TAMPERING_CELL)
    assert not result.load_errors, result.load_errors
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("conv2d_backward") and "like course_lib.layers.functional.backward.conv2d_backward" in f
               and "copied from course_lib" in f for f in flags), flags
    verdicts = result.verdicts
    ties = verdicts["test_maxpool_backward_ties"]
    assert not ties.passed and "Likely cause: gradient sent to every tied maximum" in ties.message, ties.message
    # Without ties the wrong answer is right, and the other functions keep their points.
    passed = {k for k, v in verdicts.items() if v.passed}
    assert {"test_maxpool_backward", "test_maxpool_backward_overlap"} <= passed
    assert {t.grade_id for t in SPEC.tests if t.function in ("max_pool2d_forward", "avg_pool2d_backward")} <= passed
