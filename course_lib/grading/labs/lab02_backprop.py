"""Lab 2, backpropagation through convolution and pooling: its graded tests as specifications.

Each test names the notebook's test cell it scores (``grade_id``), the student
function it calls, the cases it sends and how it judges the answer, always
against PyTorch's autograd run by the grader itself on float64 inputs
(:mod:`course_lib.grading.backprop`). Hidden tests draw shapes and settings
from the submission's seed; visible tests use fixed inputs, the same in the
student's notebook and at grading time. Max pooling's tie tests use
integer-valued inputs, so that windows really hold several equal maxima.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..backprop import (
    BACKPROP_OPS,
    NO_SHORTCUTS,
    REFERENCE_FUNCTIONS,
    avg_pool2d_gradient,
    conv2d_gradients,
    explain_avg_pool2d_backward,
    explain_conv2d_db,
    explain_conv2d_dw,
    explain_conv2d_dx,
    explain_max_pool2d_backward,
    explain_max_pool2d_indices,
    explain_max_pool2d_values,
    max_pool2d_gradient,
)
from ..checks import raised, tensor_message
from ..forbid import forbid_calls
from ..spec import Case, LabSpec, Test, fixed_cases

__all__ = ["SPEC"]

RULES = (
    "Lab 2 asks you to compute the gradients yourself, from the chain rule, with loops, slicing and tensor "
    "maths. Not allowed in an answer: autograd (.backward(), torch.autograd, requires_grad, torch.func), "
    "torch.nn.grad, torch.nn.functional.conv*/conv_transpose*/*pool*/fold/unfold and their nn modules, "
    "torch.ops / torch._C, and course_lib (its backward passes are the reference answers). Allowed: F.pad, "
    "indexing and slicing, Tensor.unfold, einsum, @, index_add_, scatter_add_, sum, loops."
)

_AUTOGRAD = "autograd computes the gradients for you"
_POOLING = "a library pooling"
# Static scan (course_lib.grading.scan): a name or attribute an answer may not mention, and why.
FORBIDDEN = {
    "backward": f"{_AUTOGRAD} (Tensor.backward)", "autograd": f"{_AUTOGRAD} (torch.autograd)",
    "requires_grad": f"{_AUTOGRAD} (a tensor that records its graph)",
    "requires_grad_": f"{_AUTOGRAD} (a tensor that records its graph)", "grad_fn": f"{_AUTOGRAD} (the recorded graph)",
    "torch.func": f"{_AUTOGRAD} (torch.func)", "functorch": f"{_AUTOGRAD} (functorch)",
    "vjp": f"{_AUTOGRAD} (a vector-Jacobian product)", "jvp": f"{_AUTOGRAD} (a Jacobian-vector product)",
    "jacobian": f"{_AUTOGRAD} (a Jacobian)", "jacrev": f"{_AUTOGRAD} (a Jacobian)",
    "jacfwd": f"{_AUTOGRAD} (a Jacobian)", "hessian": _AUTOGRAD,
    "nn.grad": "torch.nn.grad computes a convolution's input and weight gradients",
    "conv2d_input": "torch.nn.grad computes a convolution's input gradient",
    "conv2d_weight": "torch.nn.grad computes a convolution's weight gradient",
    "conv2d": "a library convolution", "conv_transpose2d": "a library transposed convolution (dx in one call)",
    "convolution": "a library convolution", "*conv*": "a library convolution (Conv2d, ConvTranspose2d, conv1d, ...)",
    "max_pool2d": _POOLING, "avg_pool2d": _POOLING, "max_unpool2d": _POOLING,
    "*pool*": f"{_POOLING} (MaxPool2d, max_pool2d_with_indices, adaptive_*_pool2d, fractional_max_pool2d, ...)",
    "Unfold": "im2col from the library", "Fold": "col2im from the library",
    "F.fold": "col2im from the library", "functional.fold": "col2im from the library",
    "F.unfold": "im2col from the library (Tensor.unfold is allowed)",
    "functional.unfold": "im2col from the library (Tensor.unfold is allowed)",
    "scipy": "SciPy's convolution and correlation", "convolve": "a library convolution",
    "correlate": "a library correlation", "fft": "a convolution by FFT",
    "course_lib": "course_lib's own backward passes (the reference answers; not importable when graded)",
}

PREAMBLE = "import torch\nimport torch.nn.functional as F\n"





# --- conv2d_backward --------------------------------------------------------------------------------

GRADIENTS = ("dx", "dw", "db")
_WHAT = {"dx": "dx (the gradient with respect to x)", "dw": "dw (the gradient with respect to weight)",
         "db": "db (the gradient with respect to the bias)"}


def _conv_case(n, c_in, c_out, h, w, kernel, s=1, p=0, d=1, seed=0) -> Case:
    kh, kw = kernel
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_out, c_in, kh, kw, generator=gen, dtype=torch.float64)
    h_out = (h + 2 * p - d * (kh - 1) - 1) // s + 1
    w_out = (w + 2 * p - d * (kw - 1) - 1) // s + 1
    dout = torch.randn(n, c_out, h_out, w_out, generator=gen, dtype=torch.float64)
    label = (f"dout of shape {tuple(dout.shape)}, x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, "
             f"stride={s}, padding={p}, dilation={d}")
    return Case((dout, x, weight), {"stride": s, "padding": p, "dilation": d}, label)


def _structure(value, x, weight) -> str | None:
    """What is wrong with the form of conv2d_backward's answer (not its values), or None."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        what = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else \
            f"{type(value).__name__}"
        return f"should return a tuple (dx, dw, db), got {what}"
    first, second = value[0], value[1]
    if (tuple(x.shape) != tuple(weight.shape) and isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)
            and tuple(first.shape) == tuple(weight.shape) and tuple(second.shape) == tuple(x.shape)):
        return (f"returned its gradients in the wrong order: the first has weight's shape {tuple(weight.shape)}, "
                f"the second x's shape {tuple(x.shape)}; return (dx, dw, db)")
    return None


def _judge_conv(parts=GRADIENTS):
    """A judge of conv2d_backward that checks the gradients named in ``parts`` (the others may be anything,
    e.g. None while they are not written yet) and says which of them are wrong."""

    def judge(case: Case, value, error) -> str | None:
        if error is not None:
            return raised(error)
        dout, x, weight = case.args
        kw = dict(case.kwargs)
        problem = _structure(value, x, weight)
        if problem is not None:
            return problem
        expected = dict(zip(GRADIENTS, conv2d_gradients(dout, x, weight, **kw)))
        explain = {
            "dx": lambda out: explain_conv2d_dx(out, dout, x, weight, **kw),
            "dw": lambda out: explain_conv2d_dw(out, dout, x, weight, **kw),
            "db": lambda out: explain_conv2d_db(out, dout),
        }
        answer = dict(zip(GRADIENTS, value))
        messages = {name: tensor_message(answer[name], expected[name], _WHAT[name], explain[name]) for name in parts}
        wrong = [name for name in parts if messages[name] is not None]
        if not wrong:
            return None
        if len(parts) == 1:
            return messages[wrong[0]]
        right = [name for name in parts if name not in wrong]
        headline = f"{' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong" + \
            (f" ({' and '.join(right)} {'is' if len(right) == 1 else 'are'} right)" if right else "")
        return headline + ".\n" + "\n".join(messages[name] for name in wrong)

    return judge


def _hidden_convs(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        s, p, d = int(rng.integers(1, 4)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
        h, w = int(rng.integers(4, 13)), int(rng.integers(4, 13))
        if d * (kh - 1) + 1 > h + 2 * p or d * (kw - 1) + 1 > w + 2 * p:
            continue
        cases.append(_conv_case(int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 5)), h, w,
                                (kh, kw), s, p, d, seed=int(rng.integers(2**31))))
    return cases


CONV_BASIC = [_conv_case(2, 3, 4, 7, 8, (3, 3), seed=1), _conv_case(3, 2, 5, 6, 7, (2, 3), seed=2)]
CONV_PADDING = [_conv_case(2, 3, 4, 7, 8, (3, 3), p=1, seed=3), _conv_case(2, 2, 3, 6, 6, (3, 3), p=2, seed=4)]
CONV_STRIDE = [_conv_case(2, 3, 4, 7, 8, (3, 3), s=2, seed=5), _conv_case(2, 3, 4, 9, 8, (3, 3), s=3, p=1, seed=6)]
CONV_DILATION = [_conv_case(2, 3, 4, 8, 9, (3, 3), d=2, seed=7),
                 _conv_case(2, 3, 4, 8, 9, (3, 3), s=2, p=2, d=2, seed=8)]


# --- max_pool2d_forward -----------------------------------------------------------------------------


def _pool_label(x, k, stride) -> str:
    stride_text = "stride omitted (None)" if stride is None else f"stride={stride}"
    return f"x of shape {tuple(x.shape)}, kernel_size={k}, {stride_text}"


def _pool_kwargs(stride) -> dict:
    return {} if stride is None else {"stride": stride}


def _values(shape, kind, seed):
    """float64 inputs: ``"randn"`` (no ties), ``"int"`` (integers 0..2: ties in most windows), ``"relu"`` (integers
    after a ReLU: many windows all 0, as after a ReLU in a network) or ``"constant"`` (every window one big tie)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "randn":
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    if kind == "int":
        return torch.randint(0, 3, shape, generator=gen).double()
    if kind == "relu":
        return torch.randint(-4, 3, shape, generator=gen).clamp(min=0).double()
    return torch.full(shape, 7.0, dtype=torch.float64)


def _pool_case(shape, k, stride=None, kind="randn", seed=0, with_dout=False) -> Case:
    x = _values(shape, kind, seed)
    label = _pool_label(x, k, stride) + (", integer values (ties)" if kind in ("int", "relu") else "") + \
        (", a constant input (every window a tie)" if kind == "constant" else "")
    if not with_dout:
        return Case((x, k), _pool_kwargs(stride), label)
    s = k if stride is None else stride
    out = ((shape[2] - k) // s + 1, (shape[3] - k) // s + 1)
    dout = torch.randn(*shape[:2], *out, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return Case((dout, x, k), _pool_kwargs(stride), f"dout of shape {tuple(dout.shape)}, " + label)


def _judge_max_forward(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    x, k = case.args
    stride = case.kwargs.get("stride")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return f"should return a tuple (out, indices), got {type(value).__name__}" + \
            (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
    out, indices = value
    expected, expected_indices = F.max_pool2d(x, k, k if stride is None else stride, return_indices=True)
    message = tensor_message(out, expected, "out (the pooled values)",
                              explain=lambda actual: explain_max_pool2d_values(actual, x, k, stride))
    if message is not None:
        return message
    if isinstance(indices, torch.Tensor) and indices.dtype != torch.int64:
        return (f"indices have dtype {indices.dtype}; they must be integers of dtype torch.int64 (torch.long), "
                "as F.max_pool2d returns them")
    return tensor_message(indices, expected_indices, "the indices tensor (where each maximum is)",
                           explain=lambda actual: explain_max_pool2d_indices(actual, x, k, stride))


def _random_pool(rng, kinds=("randn", "int", "relu")) -> tuple:
    """(shape, k, stride, kind, seed) of a random pooling case; stride None, below, at or above the kernel size."""
    while True:
        k = int(rng.integers(1, 5))
        stride = [None, int(rng.integers(1, k + 2))][int(rng.integers(0, 2))]
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(3, 12)), int(rng.integers(3, 12)))
        if k <= min(shape[2:]) and (k > 1 or stride not in (None, 1) or rng.integers(0, 4) == 0):
            return shape, k, stride, str(rng.choice(kinds)), int(rng.integers(2**31))


def _hidden_max_forward(seed: int, count: int = 6) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [_pool_case(*_random_pool(rng)) for _ in range(count)]


MAX_FORWARD = [_pool_case((2, 3, 6, 6), 2, seed=11), _pool_case((2, 3, 7, 9), 3, stride=2, seed=12),
               _pool_case((1, 2, 8, 7), 2, stride=3, seed=13)]
MAX_FORWARD_TIES = [_pool_case((2, 3, 6, 8), 2, kind="int", seed=14),
                    _pool_case((2, 2, 7, 7), 3, stride=2, kind="relu", seed=15),
                    _pool_case((1, 2, 4, 5), 2, stride=1, kind="constant")]


# --- max_pool2d_backward ----------------------------------------------------------------------------


def _judge_max_backward(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    dout, x, k = case.args
    stride = case.kwargs.get("stride")
    return tensor_message(value, max_pool2d_gradient(dout, x, k, stride), "dx",
                           explain=lambda actual: explain_max_pool2d_backward(actual, dout, x, k, stride))


def _hidden_max_backward(seed: int, count: int = 6) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [_pool_case(*_random_pool(rng), with_dout=True) for _ in range(count)]


MAX_BACKWARD = [_pool_case((2, 3, 6, 6), 2, seed=21, with_dout=True),
                _pool_case((1, 2, 8, 7), 2, stride=3, seed=22, with_dout=True)]
MAX_BACKWARD_TIES = [_pool_case((2, 3, 6, 8), 2, kind="int", seed=23, with_dout=True),
                     _pool_case((2, 2, 9, 9), 3, kind="relu", seed=24, with_dout=True)]
MAX_BACKWARD_OVERLAP = [_pool_case((2, 3, 7, 9), 3, stride=2, seed=25, with_dout=True),
                        _pool_case((1, 2, 6, 6), 3, stride=1, seed=26, with_dout=True)]


# --- avg_pool2d_backward ----------------------------------------------------------------------------


def _avg_case(shape, k, stride=None, seed=0) -> Case:
    s = k if stride is None else stride
    out = ((shape[2] - k) // s + 1, (shape[3] - k) // s + 1)
    dout = torch.randn(*shape[:2], *out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    label = f"dout of shape {tuple(dout.shape)}, x_shape={tuple(shape)}, kernel_size={k}, " + \
        ("stride omitted (None)" if stride is None else f"stride={stride}")
    return Case((dout, tuple(shape), k), _pool_kwargs(stride), label)


def _judge_avg_backward(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    dout, x_shape, k = case.args
    stride = case.kwargs.get("stride")
    return tensor_message(value, avg_pool2d_gradient(dout, x_shape, k, stride), "dx",
                           explain=lambda actual: explain_avg_pool2d_backward(actual, dout, x_shape, k, stride))


def _hidden_avg(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        shape, k, stride, _, case_seed = _random_pool(rng)
        cases.append(_avg_case(shape, k, stride, case_seed))
    return cases


AVG_BACKWARD = [_avg_case((2, 3, 6, 6), 2, seed=31), _avg_case((2, 3, 7, 9), 3, seed=32),
                _avg_case((1, 2, 8, 7), 2, stride=3, seed=33)]
AVG_BACKWARD_OVERLAP = [_avg_case((2, 3, 6, 7), 3, stride=1, seed=34), _avg_case((2, 2, 9, 8), 4, stride=2, seed=35)]


SPEC = LabSpec(
    name="lab02_backprop",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=REFERENCE_FUNCTIONS[:5],
    guard=lambda: forbid_calls(ops=BACKPROP_OPS, why=NO_SHORTCUTS,
                               functions=(*REFERENCE_FUNCTIONS, torch.autograd.backward, torch.autograd.grad)),
    tests=[
        Test("test_conv_db", "conv2d_backward", "conv2d_backward, db", fixed_cases(CONV_BASIC), _judge_conv(("db",))),
        Test("test_conv_dw", "conv2d_backward", "conv2d_backward, dw", fixed_cases(CONV_BASIC), _judge_conv(("dw",))),
        Test("test_conv_dx", "conv2d_backward", "conv2d_backward, dx", fixed_cases(CONV_BASIC), _judge_conv(("dx",))),
        Test("test_conv_padding", "conv2d_backward", "conv2d_backward, padding", fixed_cases(CONV_PADDING), _judge_conv()),
        Test("test_conv_stride", "conv2d_backward", "conv2d_backward, stride", fixed_cases(CONV_STRIDE), _judge_conv()),
        Test("test_conv_dilation", "conv2d_backward", "conv2d_backward, dilation", fixed_cases(CONV_DILATION),
             _judge_conv()),
        Test("test_conv_hidden", "conv2d_backward", "conv2d_backward, hidden cases", _hidden_convs, _judge_conv(),
             hidden=True),
        Test("test_maxpool_forward", "max_pool2d_forward", "max_pool2d_forward", fixed_cases(MAX_FORWARD),
             _judge_max_forward),
        Test("test_maxpool_forward_ties", "max_pool2d_forward", "max_pool2d_forward, ties", fixed_cases(MAX_FORWARD_TIES),
             _judge_max_forward),
        Test("test_maxpool_forward_hidden", "max_pool2d_forward", "max_pool2d_forward, hidden cases",
             _hidden_max_forward, _judge_max_forward, hidden=True),
        Test("test_maxpool_backward", "max_pool2d_backward", "max_pool2d_backward", fixed_cases(MAX_BACKWARD),
             _judge_max_backward),
        Test("test_maxpool_backward_ties", "max_pool2d_backward", "max_pool2d_backward, ties",
             fixed_cases(MAX_BACKWARD_TIES), _judge_max_backward),
        Test("test_maxpool_backward_overlap", "max_pool2d_backward", "max_pool2d_backward, overlapping windows",
             fixed_cases(MAX_BACKWARD_OVERLAP), _judge_max_backward),
        Test("test_maxpool_backward_hidden", "max_pool2d_backward", "max_pool2d_backward, hidden cases",
             _hidden_max_backward, _judge_max_backward, hidden=True),
        Test("test_avgpool_backward", "avg_pool2d_backward", "avg_pool2d_backward", fixed_cases(AVG_BACKWARD),
             _judge_avg_backward),
        Test("test_avgpool_backward_overlap", "avg_pool2d_backward", "avg_pool2d_backward, overlapping windows",
             fixed_cases(AVG_BACKWARD_OVERLAP), _judge_avg_backward),
        Test("test_avgpool_backward_hidden", "avg_pool2d_backward", "avg_pool2d_backward, hidden cases", _hidden_avg,
             _judge_avg_backward, hidden=True),
    ],
)
