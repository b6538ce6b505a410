"""course_lib.grading: shortcuts refused, right answers accepted, known mistakes named.

The lab tests stand or fall with these helpers: a correct answer written the way
a student writes it must pass, a shortcut must be refused, and each deliberately
wrong answer must get the message that names its mistake.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.grading import (
    ForbiddenCallError,
    check_conv2d,
    check_output_size,
    check_tensor,
    explain_output_size,
    forbid_calls,
)
from course_lib.layers import functional as CF

# --- answers as a student writes them -----------------------------------------------------------


def student_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """A correct lab answer: pad, gather the windows with Tensor.unfold, one einsum over each group."""
    n, c_in = x.shape[:2]
    c_out, c_per_group, kh, kw = weight.shape
    x = F.pad(x, (padding, padding, padding, padding))
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    # (N, C, H_out, W_out, kH, kW): every receptive field, every dilation-th pixel of it.
    windows = x.unfold(2, span_h, stride).unfold(3, span_w, stride)[..., ::dilation, ::dilation]
    h_out, w_out = windows.shape[2:4]
    windows = windows.reshape(n, groups, c_per_group, h_out, w_out, kh, kw)
    w = weight.reshape(groups, c_out // groups, c_per_group, kh, kw)
    out = torch.einsum("ngchwuv,gocuv->ngohw", windows, w).reshape(n, c_out, h_out, w_out)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _student_with(mistake):
    """A wrong student: the correct answer called with the arguments ``mistake`` garbles."""

    def wrong_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        args = dict(x=x, weight=weight, bias=bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return student_conv2d(**{**args, **mistake(args)})

    return wrong_conv2d


def _conv_inputs(c_in=4, c_out=6, groups=1, bias=True, size=(9, 8)):
    """Seeded x, weight, bias for the checks."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, c_in, *size, generator=generator)
    weight = torch.randn(c_out, c_in // groups, 3, 3, generator=generator)
    return x, weight, (torch.randn(c_out, generator=generator) if bias else None)


# --- forbid_calls -------------------------------------------------------------------------------


@pytest.fixture
def restore_refused_function():
    """forbid_calls swaps the code of refused functions; a failing test must not leave one swapped."""
    original = _local_answer.__code__
    yield
    _local_answer.__code__ = original


X, W = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)

SHORTCUTS = [
    pytest.param(lambda: F.conv2d(X, W), "aten::convolution", id="F.conv2d"),
    pytest.param(lambda: torch.conv2d(X, W), "aten::convolution", id="torch.conv2d"),
    pytest.param(lambda: nn.Conv2d(2, 3, 3)(X), "aten::convolution", id="nn.Conv2d"),
    pytest.param(lambda: F.conv1d(X[:, :, 0], W[:, :, 0]), "aten::convolution", id="F.conv1d"),
    pytest.param(
        lambda: torch.ops.aten.convolution(X, W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
        "aten::convolution",
        id="torch.ops.aten.convolution",
    ),
    pytest.param(lambda: F.unfold(X, 3), r"torch\.nn\.functional\.unfold .*aten::im2col", id="F.unfold"),
]


@pytest.mark.parametrize(("shortcut", "named"), SHORTCUTS)
def test_forbid_calls_refuses_pytorch_convolutions(shortcut, named):
    with pytest.raises(ForbiddenCallError, match=f"your code called .*{named}.*Do it yourself"):
        with forbid_calls(why="Do it yourself."):
            shortcut()
    shortcut()  # allowed again once the block is left


def _local_answer(x):
    """A Python function a test may forbid (stands for a reference solution)."""
    return x + 1


@pytest.mark.parametrize(
    ("function", "args", "named"),
    [
        pytest.param(CF.conv2d, (X, W), r"course_lib\.layers\.functional\.conv\.conv2d", id="course_lib-conv2d"),
        pytest.param(_local_answer, (X,), r"test_grading\._local_answer", id="local-function"),
    ],
)
def test_forbid_calls_refuses_a_function_under_another_name(restore_refused_function, function, args, named):
    sneaky = function  # as in `from course_lib.layers.functional import conv2d as sneaky`
    with pytest.raises(ForbiddenCallError, match=f"your code called {named}"):
        with forbid_calls(functions=[function]):
            sneaky(*args)


def test_forbid_calls_refuses_every_call_not_only_the_first(restore_refused_function):
    """A student answer may catch the error (``try: ... except Exception: ...``) and call again:
    that second call must be refused as well ("Any call raises", says the docstring)."""
    refused = []
    with forbid_calls(functions=[_local_answer]):
        for _ in range(2):
            try:
                _local_answer(X)
                refused.append(False)
            except ForbiddenCallError:
                refused.append(True)
    assert refused == [True, True]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: None, id="normal-exit"),
        pytest.param(lambda: _local_answer(X), id="after-ForbiddenCallError"),
        pytest.param(lambda: {}["missing"], id="after-KeyError"),
    ],
)
def test_forbid_calls_restores_the_refused_functions(restore_refused_function, body):
    original = _local_answer.__code__
    try:
        with forbid_calls(functions=[_local_answer]):
            assert _local_answer.__code__ is not original, "the refusal is not in place"
            body()
    except (ForbiddenCallError, KeyError):
        pass
    assert _local_answer.__code__ is original
    torch.testing.assert_close(_local_answer(X), _local_answer(X))  # callable again, as before


ALLOWED = [
    pytest.param(lambda: X.unfold(2, 3, 1).unfold(3, 3, 1), id="Tensor.unfold"),
    pytest.param(lambda: torch.einsum("nchw,ochw->no", X[:, :, :3, :3], W), id="einsum"),
    pytest.param(lambda: F.pad(X, (1, 1, 2, 2)), id="F.pad"),
    pytest.param(lambda: X[0, 0] @ X[0, 1], id="matmul"),
    pytest.param(lambda: _local_answer(X), id="a-function-not-listed"),
]


@pytest.mark.parametrize("allowed", ALLOWED)
def test_forbid_calls_lets_the_building_blocks_through(restore_refused_function, allowed):
    """The tools the lab asks students to use give the same result inside the block as outside it."""
    with forbid_calls(functions=[CF.conv2d]):
        inside = allowed()
    torch.testing.assert_close(inside, allowed(), atol=0, rtol=0)


# --- check_conv2d -------------------------------------------------------------------------------

CORRECT_CASES = [
    pytest.param(dict(), {}, id="defaults"),
    pytest.param(dict(stride=2, padding=1), {}, id="stride2-padding1"),
    pytest.param(dict(padding=2, dilation=2), {}, id="padding2-dilation2"),
    pytest.param(dict(stride=3, padding=1, dilation=2), {}, id="stride3-padding1-dilation2"),
    pytest.param(dict(groups=2, padding=1), dict(groups=2), id="groups2"),
    pytest.param(dict(groups=4, padding=1), dict(c_in=4, c_out=8, groups=4), id="depthwise"),
    pytest.param(dict(stride=2), dict(bias=False), id="no-bias"),
]


@pytest.mark.parametrize(("conv_args", "input_args"), CORRECT_CASES)
def test_check_conv2d_passes_a_correct_answer(conv_args, input_args):
    check_conv2d(student_conv2d, *_conv_inputs(**input_args), **conv_args)


MISTAKES = [
    # (id, conv arguments, what the student garbles, what the message must say)
    ("padding-plus-one", dict(padding=1), lambda a: {"padding": a["padding"] + 1}, "padding off by one: .*padding=2 instead of 1"),
    ("padding-minus-one", dict(padding=2), lambda a: {"padding": a["padding"] - 1}, "padding off by one: .*padding=1 instead of 2"),
    ("padding-ignored", dict(padding=2), lambda a: {"padding": 0}, "padding ignored"),
    ("kernel-flipped", dict(padding=1), lambda a: {"weight": a["weight"].flip(-1, -2)}, "kernel flipped"),
    ("stride-ignored", dict(stride=2, padding=1), lambda a: {"stride": 1}, "stride ignored: .*stride 1 instead of 2"),
    ("dilation-ignored", dict(padding=1, dilation=2), lambda a: {"dilation": 1}, "dilation ignored: .*dilation 1 instead of 2"),
    ("bias-missing", dict(stride=2), lambda a: {"bias": None}, "bias missing"),
    ("bias-twice", dict(), lambda a: {"bias": 2 * a["bias"]}, "bias added twice"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("conv_args", "mistake", "message"), [pytest.param(c, m, msg, id=i) for i, c, m, msg in MISTAKES]
)
def test_check_conv2d_names_the_mistake(conv_args, mistake, message):
    with pytest.raises(AssertionError, match=r"(?s)the output of conv2d\(x of shape .*Likely cause: " + message):
        check_conv2d(_student_with(mistake), *_conv_inputs(), **conv_args)


@pytest.mark.parametrize("stride", [1, 2])
def test_check_conv2d_names_padding_one_too_wide_with_the_right_output_size(stride):
    """The input padded with padding+1, the windows counted for padding: the output is a shifted crop."""

    def padded_too_wide(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        right = student_conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        wider = student_conv2d(x, weight, bias, stride=stride, padding=padding + 1, dilation=dilation, groups=groups)
        return wider[..., :right.shape[-2], :right.shape[-1]]

    with pytest.raises(AssertionError, match=r"(?s)right shape but wrong values.*Likely cause: padding off by one: "
                                             r"you padded the input with 2 pixels instead of 1"):
        check_conv2d(padded_too_wide, *_conv_inputs(), stride=stride, padding=1)


def test_check_conv2d_reports_an_unknown_mistake_without_guessing():
    noisy = _student_with(lambda a: {"bias": a["bias"] + 0.5})
    with pytest.raises(AssertionError, match="right shape but wrong values") as error:
        check_conv2d(noisy, *_conv_inputs(), padding=1)
    assert "Likely cause" not in str(error.value)


def test_check_conv2d_reports_a_wrong_shape():
    with pytest.raises(AssertionError, match=r"has shape \(2, 4, 9, 8\), expected \(2, 6, 7, 6\)"):
        check_conv2d(lambda x, *args, **kwargs: x, *_conv_inputs())


@pytest.mark.parametrize(
    ("cheat", "named"),
    [
        pytest.param(lambda x, w, b=None, **kw: F.conv2d(x, w, b, **kw), "aten::convolution", id="F.conv2d"),
        pytest.param(lambda x, w, b=None, **kw: CF.conv2d(x, w, b, **kw), r"course_lib\.layers\.functional", id="course_lib-conv2d"),
        pytest.param(lambda x, w, b=None, **kw: CF.conv2d_naive(x, w, b, **kw), "conv2d_naive", id="course_lib-conv2d_naive"),
    ],
)  # fmt: skip
def test_check_conv2d_refuses_shortcuts(restore_refused_function, cheat, named):
    with pytest.raises(ForbiddenCallError, match=f"your code called .*{named}.*Lab 1 asks you"):
        check_conv2d(cheat, *_conv_inputs(), padding=1)


# --- check_output_size / explain_output_size ----------------------------------------------------


def student_output_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """A correct answer, written from the formula in the lab."""
    return (in_size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


SLIPS = {
    # the mistake's name in the message -> a student who makes it
    "dilation ignored": lambda w, k, stride, padding, dilation: (w + 2 * padding - k) // stride + 1,
    "padding counted once": lambda w, k, stride, padding, dilation: (w + padding - dilation * (k - 1) - 1) // stride + 1,
    "the +1 is missing": lambda w, k, stride, padding, dilation: (w + 2 * padding - dilation * (k - 1) - 1) // stride,
    "should be an int": lambda w, k, stride, padding, dilation: (w + 2 * padding - dilation * (k - 1) - 1) / stride + 1,
}
# (in_size, kernel, stride, padding, dilation) on which every integer slip gives its own wrong answer.
SLIP_ARGS = [(28, 3, 1, 3, 2), (28, 3, 2, 4, 2)]


@pytest.mark.parametrize("args", SLIP_ARGS, ids=lambda a: "w{}-k{}-s{}-p{}-d{}".format(*a))
def test_slip_arguments_tell_the_slips_apart(args):
    """Guards the test data: if two slips gave the same number, no diagnosis could tell them apart."""
    kw = dict(zip(("stride", "padding", "dilation"), args[2:]))
    answers = [student_output_size(*args[:2], **kw)] + [slip(*args[:2], **kw) for slip in list(SLIPS.values())[:3]]
    assert len(set(answers)) == len(answers), answers


@pytest.mark.parametrize("args", SLIP_ARGS, ids=lambda a: "w{}-k{}-s{}-p{}-d{}".format(*a))
@pytest.mark.parametrize("slip", SLIPS)
def test_check_output_size_names_the_slip(slip, args):
    in_size, kernel, stride, padding, dilation = args
    with pytest.raises(AssertionError, match=f"(?s)returned .*Likely cause: .*{re.escape(slip)}"):
        check_output_size(SLIPS[slip], in_size, kernel, stride, padding, dilation)
    wrong = SLIPS[slip](in_size, kernel, stride=stride, padding=padding, dilation=dilation)
    assert slip in (explain_output_size(wrong, *args) or "")


@pytest.mark.parametrize(
    "args", [(28, 3), (28, 5, 2, 2), (7, 3, 3, 0, 2), (32, 4, 2, 1, 1), (1, 1)], ids=lambda a: "-".join(map(str, a))
)
def test_check_output_size_passes_a_correct_answer(args):
    check_output_size(student_output_size, *args)


def test_check_output_size_wants_an_int_even_when_the_value_is_right():
    as_float = lambda *args, **kwargs: float(student_output_size(*args, **kwargs))  # noqa: E731
    with pytest.raises(AssertionError, match="should be an int"):
        check_output_size(as_float, 28, 3, 1, 1, 1)


def test_explain_output_size_gives_none_for_an_unrecognised_answer():
    args = (28, 3, 2, 4, 2)
    unrecognised = max(student_output_size(*args), *(slip(*args) for slip in list(SLIPS.values())[:3])) + 5
    assert explain_output_size(unrecognised, *args) is None


# --- check_tensor -------------------------------------------------------------------------------


@pytest.fixture
def expected():
    return torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_check_tensor_accepts_values_within_tolerance(expected):
    explain_calls = []
    check_tensor(expected + 5e-7, expected, explain=explain_calls.append)
    assert explain_calls == [], "explain must be asked only when the check fails"


def test_check_tensor_accepts_float32_rounding_of_a_large_sum():
    """A convolution computed in float32 (75 products per output, then returned as float64) is right."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 3, 9, 9, generator=g, dtype=torch.float64), torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    expected = torch.nn.functional.conv2d(x, w)
    # as a student's loops do: one product after another added to a float32 sum
    xf, wf = x.float(), w.float()
    in_float32 = torch.zeros(2, 4, 5, 5)
    for c in range(3):
        for i in range(5):
            for j in range(5):
                in_float32 += xf[:, None, c, i:i + 5, j:j + 5] * wf[None, :, c, i, j, None, None]
    in_float32 = in_float32.double()
    assert (in_float32 - expected).abs().max() > 1e-6, "float32 rounding should show above 1e-6"
    check_tensor(in_float32, expected)


@pytest.mark.parametrize("error", [1e-3, 1e-2, 1.0])
def test_check_tensor_rejects_an_error_above_float32_rounding(expected, error):
    wrong = expected.clone()
    wrong[1, 2] += error * max(1.0, expected.abs().max().item())
    with pytest.raises(AssertionError, match=r"Mismatched elements: 1 / 6"):
        check_tensor(wrong, expected)


def test_check_tensor_rejects_a_complex_tensor(expected):
    with pytest.raises(AssertionError, match="wrong values|complex"):
        check_tensor(expected.to(torch.complex128), expected)


def test_check_tensor_rejects_a_value_that_is_not_a_tensor(expected):
    with pytest.raises(AssertionError, match="the answer should be a torch.Tensor, got list"):
        check_tensor(expected.tolist(), expected, what="the answer")


def test_check_tensor_rejects_a_wrong_shape(expected):
    with pytest.raises(AssertionError, match=r"your output has shape \(3, 2\), expected \(2, 3\)"):
        check_tensor(expected.T.contiguous(), expected)


def test_check_tensor_says_which_values_are_wrong_and_asks_explain(expected):
    """torch.testing.assert_close's report under the course's tolerance (scaled by the largest value), then the cause."""
    actual = expected.clone()
    actual[1, 2] += 1.0
    allowed = re.escape(repr(1e-5 * max(1.0, expected.abs().max().item())))
    with pytest.raises(AssertionError, match=(
        r"^your output has the right shape but wrong values:\nMismatched elements: 1 / 6 \(16\.7%\)\n"
        rf"Greatest absolute difference: 1\.0\d* at index \(1, 2\) \(up to {allowed} allowed\)\n"
        r"Greatest relative difference: .* at index \(1, 2\) \(up to 1e-05 allowed\)\nLikely cause: off by one$"
    )):  # fmt: skip
        check_tensor(actual, expected, explain=lambda out: "off by one")
