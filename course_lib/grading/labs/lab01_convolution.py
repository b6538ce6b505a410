"""Lab 1, convolution from scratch: its graded tests as specifications (see course_lib.grading.spec).

Each test names the notebook's test cell it scores (``grade_id``), the student
function it calls, the cases it sends and how it judges the answer, always
against PyTorch computed by the grader itself. Hidden tests draw shapes and
settings from the submission's seed; visible tests use fixed inputs, the same
in the student's notebook and at grading time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...analysis.shapes import output_size as reference_output_size
from ...layers import functional as reference
from ..checks import raised, tensor_message
from ..conv import NO_SHORTCUTS, REFERENCE_FUNCTIONS, explain_conv2d, explain_output_size
from ..forbid import forbid_calls
from ..spec import Case, LabSpec, Test, fixed_cases

__all__ = ["SPEC"]

RULES = (
    "Lab 1 asks you to compute the convolution yourself, with loops or with im2col and a matrix product. "
    "Not allowed in an answer: torch.nn.functional.conv*/unfold/fold, nn.Conv*/nn.Unfold/nn.Fold, torch.conv*, "
    "torch.ops / torch._C, FFT or SciPy/NumPy convolution and correlation, course_lib's own convolutions. "
    "Allowed: F.pad, indexing and slicing, Tensor.unfold, einsum, @, sum, and anything else from plain tensor maths."
)

# Static scan (course_lib.grading.scan): a name or attribute an answer may not mention, and why.
FORBIDDEN = {
    "conv1d": "a library convolution", "conv2d": "a library convolution", "conv3d": "a library convolution",
    "conv_transpose1d": "a library convolution", "conv_transpose2d": "a library convolution",
    "Conv1d": "a library convolution", "Conv2d": "a library convolution", "Conv3d": "a library convolution",
    "convolution": "a library convolution", "_convolution": "a library convolution",
    "*conv*": "a library convolution (LazyConv2d, mkldnn_convolution, conv_tbc, ...)",
    "Unfold": "im2col from the library", "Fold": "col2im from the library", "fold": "col2im from the library",
    "F.unfold": "im2col from the library (Tensor.unfold is allowed)",
    "functional.unfold": "im2col from the library (Tensor.unfold is allowed)",
    "fft": "a convolution by FFT", "scipy": "SciPy's convolution and correlation",
    "convolve": "a library convolution", "correlate": "a library correlation",
    "course_lib.layers": "course_lib's own convolutions", "course_lib.filters": "course_lib's own convolutions",
    "course_lib.analysis": "course_lib's reference output_size",
}

PREAMBLE = "import torch\nimport torch.nn.functional as F\n"




# --- output_size --------------------------------------------------------------------------------

VISIBLE_SIZES = [(32, 5, 1, 0, 1), (227, 11, 4, 0, 1), (32, 3, 1, 1, 1), (7, 3, 2, 1, 1), (10, 3, 1, 0, 2)]


def _size_case(w, f, s=1, p=0, d=1) -> Case:
    return Case((w, f), {"stride": s, "padding": p, "dilation": d},
                f"output_size({w}, {f}, stride={s}, padding={p}, dilation={d})")


def _hidden_sizes(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < 40:
        w, f, s, p, d = int(rng.integers(1, 230)), int(rng.integers(1, 8)), int(rng.integers(1, 5)), int(rng.integers(0, 4)), int(rng.integers(1, 4))
        if d * (f - 1) + 1 <= w + 2 * p:
            cases.append(_size_case(w, f, s, p, d))
    # A kernel that does not fit must be refused.
    w = int(rng.integers(2, 10))
    cases.append(Case((w, w + 1), {}, f"output_size({w}, {w + 1}) (a kernel wider than the input)"))
    return cases


def _judge_size(case: Case, value, error) -> str | None:
    w, f = case.args
    s, p, d = case.kwargs.get("stride", 1), case.kwargs.get("padding", 0), case.kwargs.get("dilation", 1)
    if d * (f - 1) + 1 > w + 2 * p:
        if error is not None and error.startswith("ValueError"):
            return None
        return f"should raise a ValueError (the kernel does not fit), {'raised ' + error if error else f'returned {value!r}'}"
    if error is not None:
        return raised(error)
    expected = reference_output_size(w, f, s, p, d)
    if value == expected and isinstance(value, int) and not isinstance(value, bool):
        return None
    diagnosis = explain_output_size(value, w, f, s, p, d)
    return f"returned {value!r}, expected {expected}." + (f"\nLikely cause: {diagnosis}" if diagnosis else "")


# --- conv2d_loops and conv2d_im2col -------------------------------------------------------------


def _conv_case(n, c_in, c_out, h, w, k, s=1, p=0, d=1, g=1, bias=True, seed=0) -> Case:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // g, k, k, generator=gen, dtype=torch.float64)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64) if bias else None
    label = (f"x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, bias={'given' if bias else 'None'}, "
             f"stride={s}, padding={p}, dilation={d}, groups={g}")
    return Case((x, weight, b), {"stride": s, "padding": p, "dilation": d, "groups": g}, label)


def _judge_conv(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    x, weight, bias = case.args
    kw = dict(case.kwargs)
    expected = F.conv2d(x, weight, bias, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    return tensor_message(value, expected, "the output",
                           explain=lambda out: explain_conv2d(out, x, weight, bias, **kw))


def _hidden_convs(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        g = int(rng.choice([1, 1, 2, 3, 4]))
        c_in, c_out = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
        k, s, p, d = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
        h, w = int(rng.integers(4, 14)), int(rng.integers(4, 14))
        if d * (k - 1) + 1 > min(h, w) + 2 * p:
            continue
        cases.append(_conv_case(int(rng.integers(1, 4)), c_in, c_out, h, w, k, s, p, d, g,
                                bias=bool(rng.integers(0, 2)), seed=int(rng.integers(2**31))))
    return cases


BASIC = [_conv_case(2, 3, 4, 7, 8, 3, bias=False, seed=1), _conv_case(2, 3, 4, 7, 8, 3, seed=1)]
PADDING = [_conv_case(2, 3, 4, 7, 8, 3, p=1, seed=2), _conv_case(2, 3, 4, 7, 8, 3, p=2, seed=2)]
STRIDE = [_conv_case(2, 3, 4, 7, 8, 3, s=2, seed=3), _conv_case(2, 3, 4, 7, 8, 3, s=3, p=1, seed=3)]
DILATION = [_conv_case(2, 3, 4, 7, 8, 3, d=2, seed=4), _conv_case(2, 3, 4, 7, 8, 3, d=2, p=2, seed=4)]
GROUPS = [_conv_case(2, 4, 6, 6, 6, 3, g=2, bias=False, seed=5), _conv_case(2, 4, 4, 6, 6, 3, p=1, g=4, bias=False, seed=5)]
IM2COL_CONV = [_conv_case(2, 3, 4, 7, 8, 3, seed=6), _conv_case(2, 3, 4, 7, 8, 3, s=2, p=1, seed=6),
               _conv_case(2, 3, 4, 7, 8, 3, d=2, p=2, seed=6)]


# --- im2col --------------------------------------------------------------------------------------


def _im2col_case(shape, k, s=1, d=1, seed=0) -> Case:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Case((x, k), {"stride": s, "dilation": d}, f"im2col(x of shape {tuple(shape)}, {k}, stride={s}, dilation={d})")


def _judge_im2col(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    x, k = case.args
    expected = F.unfold(x, k, dilation=case.kwargs["dilation"], stride=case.kwargs["stride"])
    return tensor_message(value, expected, "the columns")


def _hidden_im2col(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < 4:
        k, s, d = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(4, 12)), int(rng.integers(4, 12)))
        if d * (k - 1) + 1 <= min(shape[2:]):
            cases.append(_im2col_case(shape, k, s, d, seed=int(rng.integers(2**31))))
    return cases


IM2COL = [_im2col_case((2, 3, 6, 7), 3, seed=7), _im2col_case((2, 3, 6, 7), 2, s=2, d=2, seed=7)]



SPEC = LabSpec(
    name="lab01_convolution",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=(reference.conv2d, reference.conv2d_naive, reference.im2col, reference_output_size),
    guard=lambda: forbid_calls(functions=REFERENCE_FUNCTIONS, why=NO_SHORTCUTS),
    tests=[
        Test("test_output_size", "output_size", "output_size", fixed_cases([_size_case(*c) for c in VISIBLE_SIZES]), _judge_size),
        Test("test_output_size_hidden", "output_size", "output_size, hidden cases", _hidden_sizes, _judge_size, hidden=True),
        Test("test_loops_basic", "conv2d_loops", "conv2d_loops, basic", fixed_cases(BASIC), _judge_conv),
        Test("test_loops_padding", "conv2d_loops", "conv2d_loops, padding", fixed_cases(PADDING), _judge_conv),
        Test("test_loops_stride", "conv2d_loops", "conv2d_loops, stride", fixed_cases(STRIDE), _judge_conv),
        Test("test_loops_dilation", "conv2d_loops", "conv2d_loops, dilation", fixed_cases(DILATION), _judge_conv),
        Test("test_loops_groups", "conv2d_loops", "conv2d_loops, groups", fixed_cases(GROUPS), _judge_conv),
        Test("test_loops_hidden", "conv2d_loops", "conv2d_loops, hidden cases", _hidden_convs, _judge_conv, hidden=True),
        Test("test_im2col", "im2col", "im2col", fixed_cases(IM2COL), _judge_im2col),
        Test("test_im2col_hidden", "im2col", "im2col, hidden cases", _hidden_im2col, _judge_im2col, hidden=True),
        Test("test_im2col_conv", "conv2d_im2col", "conv2d_im2col", fixed_cases(IM2COL_CONV), _judge_conv),
        Test("test_im2col_conv_groups", "conv2d_im2col", "conv2d_im2col, groups", fixed_cases(GROUPS), _judge_conv),
        Test("test_im2col_conv_hidden", "conv2d_im2col", "conv2d_im2col, hidden cases", _hidden_convs, _judge_conv, hidden=True),
    ],
)
