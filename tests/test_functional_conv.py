"""course_lib.layers.functional's convolutions equal PyTorch's, values and gradients.

Every from-scratch function is compared with its ``torch.nn.functional``
counterpart on the same random tensors: the outputs, and the gradients that
autograd gives for the input, the weight and the bias from the same upstream
gradient. Float64 shows the arithmetic is right (tolerances near rounding
error); float32 shows the dtype the course trains in works too.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers import functional as CF
from torch_reference import assert_same_values_and_grads, random_tensor, random_tensors

CONV_TENSORS = ("input", "weight", "bias")  # how a failure names the gradients

# atol, rtol per dtype: float64 leaves room for summation order only; float32 for its 24-bit mantissa
# over sums of up to a few hundred products.
TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-9}, torch.float32: {"atol": 1e-4, "rtol": 1e-4}}


def _fmt(value) -> str:
    """A stride/padding/dilation for a test id: 2 -> '2', (1, 2) -> '1x2', 'same' -> 'same'."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _pair(value) -> tuple:
    return value if isinstance(value, tuple) else (value, value)


@dataclass(frozen=True)
class Case:
    """One convolution: input shape (N, C_in, *spatial), kernel size, C_out and the hyper-parameters."""

    x: tuple[int, ...]
    kernel: tuple[int, ...]
    c_out: int
    stride: int | tuple = 1
    padding: int | str | tuple = 0
    dilation: int | tuple = 1
    groups: int = 1
    bias: bool = True

    @property
    def w(self) -> tuple[int, ...]:
        return (self.c_out, self.x[1] // self.groups, *self.kernel)

    @property
    def kwargs(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    def fits(self) -> bool:
        """Whether PyTorch accepts the case: 'same' needs stride 1, the dilated kernel must fit the padded input."""
        if self.padding == "same":
            return all(s == 1 for s in _pair(self.stride))
        pad = (0, 0) if self.padding == "valid" else _pair(self.padding)
        spatial = zip(self.x[2:], self.kernel, _pair(self.dilation)[-len(self.kernel) :], pad[-len(self.kernel) :])
        return all(d * (k - 1) + 1 <= n + 2 * p for n, k, d, p in spatial)

    def __str__(self) -> str:
        return (
            f"x{'x'.join(map(str, self.x))}-k{'x'.join(map(str, self.kernel))}-o{self.c_out}"
            f"-s{_fmt(self.stride)}-p{_fmt(self.padding)}-d{_fmt(self.dilation)}-g{self.groups}"
            + ("" if self.bias else "-nobias")
        )


def _grid(shapes, strides, paddings, dilations, groups=(1,)) -> list[Case]:
    """Every combination of the hyper-parameters on every (input shape, kernel, C_out) shape that PyTorch accepts."""
    cases = (
        replace(shape, stride=s, padding=p, dilation=d, groups=g)
        for shape, s, p, d, g in itertools.product(shapes, strides, paddings, dilations, groups)
    )
    return [case for case in cases if case.fits()]


def _case_tensors(case: Case, dtype=torch.float64, device="cpu") -> list[torch.Tensor]:
    """x, weight (and bias) for ``case``, seeded, as leaves that require grad."""
    shapes = [case.x, case.w] + ([(case.c_out,)] if case.bias else [])
    return random_tensors(*shapes, dtype=dtype, device=device, requires_grad=True)


def assert_matches_torch(ours, reference, case: Case, dtype=torch.float64, device="cpu") -> None:
    """Run ``case`` through the from-scratch function and PyTorch's and compare them."""
    tensors = _case_tensors(case, dtype, device)

    def call(fn):
        # bias is positional third in both; None when the case has none.
        return lambda x, w, b=None: fn(x, w, b, **case.kwargs)

    assert_same_values_and_grads(call(ours), call(reference), tensors, TOLERANCES[dtype], names=CONV_TENSORS)


# PyTorch warns that padding='same' with an even kernel and odd dilation copies the input; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _group_cases(shapes, hyper) -> list[Case]:
    """groups 1, 2, 4, depthwise (groups = C_in, C_out = C_in) and depthwise with 2 outputs per channel,
    for every (stride, padding, dilation) in ``hyper``."""
    cases = []
    for shape, (stride, padding, dilation) in itertools.product(shapes, hyper):
        base = replace(shape, stride=stride, padding=padding, dilation=dilation)
        c_in = shape.x[1]
        cases += [replace(base, groups=g) for g in (1, 2, 4)]
        cases += [replace(base, groups=c_in, c_out=c_in), replace(base, groups=c_in, c_out=2 * c_in)]
    return [case for case in cases if case.fits()]


# --- the grids (also measured by benchmarks/reference_errors.py) --------------------------------

SHAPES_2D = [
    Case(x=(1, 3, 8, 8), kernel=(3, 3), c_out=4),  # square, batch 1
    Case(x=(2, 2, 7, 10), kernel=(2, 4), c_out=3),  # non-square input and kernel, even kernel sides
    Case(x=(3, 1, 11, 6), kernel=(5, 1), c_out=2, bias=False),  # tall kernel, one input channel, no bias
]
CONV2D_CASES = _grid(SHAPES_2D, [1, 2, 3, (1, 2), (3, 1)], [0, 1, 2, (2, 0), "same", "valid"], [1, 2, 3, (2, 1)])
GROUP_SHAPES = [
    Case(x=(2, 4, 7, 6), kernel=(3, 2), c_out=8),
    Case(x=(1, 8, 5, 9), kernel=(1, 3), c_out=8),
]
GROUP_CASES = _group_cases(GROUP_SHAPES, [(1, 0, 1), (2, 1, 1), (1, "same", 2), ((2, 1), (1, 2), (1, 2))])
# conv2d_naive runs Python loops: small inputs.
NAIVE_SHAPES = [
    Case(x=(1, 2, 5, 6), kernel=(3, 2), c_out=2),
    Case(x=(2, 4, 6, 5), kernel=(2, 3), c_out=4, bias=False),
]
NAIVE_CASES = _grid(NAIVE_SHAPES, [1, 2, (1, 3)], [0, 1, (2, 1), "same", "valid"], [1, 2, (1, 2)], groups=(1, 2))
SHAPES_1D = [
    Case(x=(1, 2, 9), kernel=(3,), c_out=4),
    Case(x=(3, 4, 14), kernel=(4,), c_out=2, bias=False),
]
CONV1D_CASES = _grid(SHAPES_1D, [1, 2, 3], [0, 1, 2, "same", "valid"], [1, 2, 3], groups=(1, 2))
# im2col: (input shape, kernel, stride, dilation), each input with every stride and dilation.
IM2COL_CASES = [
    (shape, kernel, stride, dilation)
    for (shape, kernel), stride, dilation in itertools.product(
        [((1, 1, 7, 7), (3, 3)), ((2, 3, 9, 8), (2, 3))], [(1, 1), (2, 2), (1, 3)], [(1, 1), (2, 2), (3, 1)]
    )
]
# resolve_padding: kernels odd, even and 1x1, with dilations, as F.conv2d(padding=...) takes them.
RESOLVE_PADDING_CASES = [
    (kernel, dilation, padding)
    for kernel, dilation, padding in itertools.product(
        [(4, 3), (2, 5), (3, 3), (1, 1)], [(1, 1), (3, 2), (2, 1)], ["same", "valid", 2, (1, 3)]
    )
    if Case(x=(1, 1, 7, 8), kernel=kernel, c_out=1, padding=padding, dilation=dilation).fits()
]


# --- conv2d (im2col) ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV2D_CASES, ids=str)
def test_conv2d_matches_torch(case):
    assert_matches_torch(CF.conv2d, F.conv2d, case)


@pytest.mark.parametrize("case", GROUP_CASES, ids=str)
def test_conv2d_groups_match_torch(case):
    assert_matches_torch(CF.conv2d, F.conv2d, case)


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(lambda x: x.contiguous(memory_format=torch.channels_last), id="channels_last"),
        pytest.param(lambda x: x.transpose(2, 3).contiguous().transpose(2, 3), id="transposed-view"),
        pytest.param(lambda x: torch.cat([x, x], dim=3)[..., : x.shape[3]], id="narrowed-width"),
    ],
)
@pytest.mark.parametrize("kernel", [(1, 1), (3, 2)], ids=["k1x1", "k3x2"])
def test_conv2d_accepts_non_contiguous_input(layout, kernel):
    """Strided views (a 1x1 kernel makes im2col a view too) must give the same result as a contiguous input."""
    case = Case(x=(2, 4, 6, 7), kernel=kernel, c_out=4, groups=2)
    x, w, b = _case_tensors(case)
    strided = layout(x.detach()).requires_grad_()
    assert not strided.is_contiguous()
    conv = functools.partial(CF.conv2d, **case.kwargs)
    assert_same_values_and_grads(conv, functools.partial(F.conv2d, **case.kwargs), [strided, w, b], TOLERANCES[torch.float64],
                                 names=CONV_TENSORS)


# --- conv2d_naive: Python loops, so small inputs ------------------------------------------------


@pytest.mark.parametrize("case", NAIVE_CASES, ids=str)
def test_conv2d_naive_matches_torch(case):
    assert_matches_torch(CF.conv2d_naive, F.conv2d, case)


def test_conv2d_naive_depthwise_matches_torch():
    """groups = C_in, two outputs per input channel."""
    assert_matches_torch(CF.conv2d_naive, F.conv2d, Case(x=(2, 4, 5, 5), kernel=(3, 3), c_out=8, padding=1, groups=4))


# --- float32: the dtype the course trains in ----------------------------------------------------

FLOAT32_CASES = [
    Case(x=(2, 3, 9, 7), kernel=(3, 3), c_out=5, padding=1),
    Case(x=(1, 4, 8, 10), kernel=(2, 3), c_out=4, stride=(2, 1), padding=0, dilation=2, groups=2),
    Case(x=(2, 4, 6, 6), kernel=(3, 3), c_out=4, padding="same", groups=4),
]


@pytest.mark.parametrize("fn", [CF.conv2d, CF.conv2d_naive], ids=["conv2d", "conv2d_naive"])
@pytest.mark.parametrize("case", FLOAT32_CASES, ids=str)
def test_conv2d_float32_matches_torch(fn, case):
    assert_matches_torch(fn, F.conv2d, case, dtype=torch.float32)


# --- conv1d -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV1D_CASES, ids=str)
def test_conv1d_matches_torch(case):
    assert_matches_torch(CF.conv1d, F.conv1d, case)


@pytest.mark.parametrize("case", [Case(x=(2, 4, 17), kernel=(5,), c_out=8, stride=2, padding=2, groups=4)], ids=str)
def test_conv1d_float32_matches_torch(case):
    assert_matches_torch(CF.conv1d, F.conv1d, case, dtype=torch.float32)


# --- im2col -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kernel", "stride", "dilation"), IM2COL_CASES, ids=_fmt)
def test_im2col_matches_unfold(shape, kernel, stride, dilation):
    """Same column layout (c, u, v) x (row-major positions) as F.unfold, and the same gradient."""
    x = random_tensor(*shape, requires_grad=True)
    assert_same_values_and_grads(
        lambda t: CF.im2col(t, kernel, stride, dilation),
        lambda t: F.unfold(t, kernel, dilation=dilation, stride=stride),
        [x],
        TOLERANCES[torch.float64],
    )


# --- resolve_padding ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "dilation", "padding"), RESOLVE_PADDING_CASES, ids=_fmt)
def test_resolve_padding_is_the_padding_of_torch(kernel, dilation, padding):
    """F.pad with the resolved amounts, then a valid convolution, is F.conv2d with that padding: for 'same'
    with an even dilated kernel the extra pixel goes right and bottom, as in PyTorch."""
    x, w = random_tensors((1, 2, 7, 8), (3, 2, *kernel))
    pads = CF.resolve_padding(padding, kernel, (1, 1), dilation)
    torch.testing.assert_close(
        F.conv2d(F.pad(x, pads), w, dilation=dilation),
        F.conv2d(x, w, padding=padding, dilation=dilation),
        **TOLERANCES[torch.float64],
    )


@pytest.mark.parametrize(("padding", "expected"), [(2, (2, 2, 2, 2)), ((1, 3), (3, 3, 1, 1)), ("valid", (0, 0, 0, 0))])
def test_resolve_padding_orders_left_right_top_bottom(padding, expected):
    """F.pad's order for the last two axes: width first. ``expected`` is that order written out."""
    assert CF.resolve_padding(padding, (3, 3), (1, 1), (1, 1)) == expected


# --- bad arguments: a ValueError that names the argument ----------------------------------------


def _zeros(*shape):
    return torch.zeros(shape)


BAD_CONV2D_ARGS = [
    # (id, arguments, regex the message must match: it starts with the argument's name)
    ("input-2d", dict(input=_zeros(8, 8), weight=_zeros(2, 3, 3, 3)), r"^input must have shape \(N, C_in, H, W\) or \(C_in, H, W\)"),
    ("input-numpy", dict(input=_zeros(1, 3, 8, 8).numpy(), weight=_zeros(2, 3, 3, 3)), r"^input must be a torch\.Tensor"),
    ("weight-2d", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(3, 3)), r"^weight must have shape"),
    ("channel-mismatch", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(2, 2, 3, 3)), r"^weight\.shape\[1\] must be"),
    ("groups-vs-c_out", dict(input=_zeros(1, 4, 8, 8), weight=_zeros(3, 2, 3, 3), groups=2), r"^groups=2 must divide"),
    ("groups-vs-c_in", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(4, 1, 3, 3), groups=2), r"^groups=2 must divide"),
    ("groups-0", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(3, 3, 3, 3), groups=0), r"^groups must be an int >= 1"),
    ("groups-bool", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(3, 3, 3, 3), groups=True), r"^groups must be"),
    ("bias-too-long", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3), bias=_zeros(3)), r"^bias must have shape \(C_out,\) = \(2,\)"),
    ("bias-2d", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3), bias=_zeros(2, 1)), r"^bias must have shape"),
    ("bias-list", dict(input=_zeros(1, 3, 8, 8), weight=_zeros(2, 3, 3, 3), bias=[0.0, 0.0]), r"^bias must have shape"),
    ("kernel-too-big", dict(input=_zeros(1, 1, 4, 4), weight=_zeros(1, 1, 5, 5)), r"^weight does not fit input along H"),
    ("kernel-too-wide", dict(input=_zeros(1, 1, 8, 3), weight=_zeros(1, 1, 3, 5), padding=0), r"^weight does not fit input along W"),
    ("dilated-kernel-too-big", dict(input=_zeros(1, 1, 4, 4), weight=_zeros(1, 1, 3, 3), padding=1, dilation=3), r"^weight does not fit"),
    ("stride-0", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), stride=0), r"^stride must be an int or a pair of ints >= 1"),
    ("stride-pair-with-0", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), stride=(1, 0)), r"^stride must be"),
    ("stride-float", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), stride=1.5), r"^stride must be"),
    ("stride-bool", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), stride=True), r"^stride must be"),
    ("padding-negative", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), padding=-1), r"^padding must be an int or a pair of ints >= 0"),
    ("padding-float", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), padding=1.5), r"^padding must be"),
    ("padding-pair-negative", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), padding=(0, -1)), r"^padding must be"),
    ("padding-triple", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), padding=(1, 1, 1)), r"^padding must be"),
    ("padding-same-stride-2", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), padding="same", stride=2), r"^padding='same' needs stride 1"),
    ("padding-unknown-string", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), padding="full"), r"^padding must be an int, a pair of ints, 'same' or 'valid', got 'full'"),
    ("dilation-0", dict(input=_zeros(1, 1, 8, 8), weight=_zeros(1, 1, 3, 3), dilation=0), r"^dilation must be"),
]  # fmt: skip


@pytest.mark.parametrize("fn", [CF.conv2d, CF.conv2d_naive], ids=["conv2d", "conv2d_naive"])
@pytest.mark.parametrize(("kwargs", "match"), [pytest.param(k, m, id=i) for i, k, m in BAD_CONV2D_ARGS])
def test_conv2d_bad_arguments_raise_naming_the_argument(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


BAD_CONV1D_ARGS = [
    ("input-4d", dict(input=_zeros(1, 2, 1, 9), weight=_zeros(2, 2, 3)), r"^input must have shape \(N, C_in, L\)"),
    ("weight-4d", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 1, 3)), r"^weight must have shape \(C_out, C_in / groups, K\)"),
    ("channel-mismatch", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 3, 3)), r"^weight\.shape\[1\] must be"),
    ("groups-not-dividing", dict(input=_zeros(1, 3, 9), weight=_zeros(2, 1, 3), groups=2), r"^groups=2 must divide"),
    ("bias-wrong-shape", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), bias=_zeros(4)), r"^bias must have shape"),
    ("kernel-too-big", dict(input=_zeros(1, 2, 4), weight=_zeros(2, 2, 7), padding=1), r"^weight does not fit"),
    ("stride-pair", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), stride=(2, 2)), r"^stride must be an int >= 1 or a 1-tuple"),
    ("stride-0", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), stride=0), r"^stride must be"),
    ("dilation-pair", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), dilation=(1, 1)), r"^dilation must be an int >= 1 or a 1-tuple"),
    ("padding-pair", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), padding=(1, 1)), r"^padding must be an int >= 0 or a 1-tuple"),
    ("padding-negative", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), padding=-1), r"^padding must be"),
    ("padding-same-stride-2", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), padding="same", stride=2), r"^padding='same' needs stride 1"),
    ("padding-unknown-string", dict(input=_zeros(1, 2, 9), weight=_zeros(2, 2, 3), padding="full"), r"^padding must be"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "match"), [pytest.param(k, m, id=i) for i, k, m in BAD_CONV1D_ARGS])
def test_conv1d_bad_arguments_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CF.conv1d(**kwargs)


def test_a_kernel_that_fits_only_thanks_to_padding_is_accepted():
    """The fit check uses the *padded* input: 5x5 on 4x4 with padding 1 is a valid 2x2 output."""
    assert_matches_torch(CF.conv2d, F.conv2d, Case(x=(1, 1, 4, 4), kernel=(5, 5), c_out=1, padding=1))


# --- on a GPU -----------------------------------------------------------------------------------

CUDA_CASES = [
    pytest.param(CF.conv2d, F.conv2d, Case(x=(2, 4, 9, 7), kernel=(3, 2), c_out=6, stride=(2, 1), padding=1, groups=2), id="conv2d"),
    pytest.param(CF.conv2d, F.conv2d, Case(x=(1, 4, 8, 8), kernel=(3, 3), c_out=4, padding="same", dilation=2, groups=4), id="conv2d-depthwise-same"),
    pytest.param(CF.conv2d_naive, F.conv2d, Case(x=(1, 2, 5, 6), kernel=(3, 2), c_out=2, stride=2, padding=1), id="conv2d_naive"),
    pytest.param(CF.conv1d, F.conv1d, Case(x=(2, 4, 17), kernel=(5,), c_out=8, stride=2, padding=2, groups=2), id="conv1d"),
]  # fmt: skip


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("ours", "reference", "case"), CUDA_CASES)
def test_matches_torch_on_cuda(monkeypatch, ours, reference, case, dtype):
    """The same comparison with every tensor on the GPU (cuDNN as the reference)."""
    # cuDNN may use TF32 for float32 convolutions (10-bit mantissa): ask for full float32 so the
    # float32 tolerance applies to the reference too.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert_matches_torch(ours, reference, case, dtype=dtype, device="cuda")
