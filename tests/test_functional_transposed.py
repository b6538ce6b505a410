"""course_lib's conv_transpose2d equals PyTorch's, values and gradients, and is the adjoint of conv2d."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F

from course_lib.layers import functional as CF
from torch_reference import assert_same_values_and_grads, random_tensor, random_tensors

TOLERANCES = {torch.float64: {"atol": 1e-10, "rtol": 1e-9}, torch.float32: {"atol": 1e-4, "rtol": 1e-4}}


def _pair(value) -> tuple:
    return value if isinstance(value, tuple) else (value, value)


def _fmt(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class Case:
    """One transposed convolution: input shape, kernel, C_out and the hyper-parameters."""

    x: tuple[int, int, int, int]
    kernel: tuple[int, int]
    c_out: int
    stride: int | tuple = 1
    padding: int | tuple = 0
    output_padding: int | tuple = 0
    dilation: int | tuple = 1
    groups: int = 1
    bias: bool = True

    @property
    def w(self) -> tuple[int, ...]:
        return (self.x[1], self.c_out // self.groups, *self.kernel)

    @property
    def kwargs(self) -> dict:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "groups": self.groups,
            "dilation": self.dilation,
        }

    def out_size(self) -> tuple[int, int]:
        """The docstring's formula (H - 1) S - 2P + D (k - 1) + output_padding + 1."""
        axes = zip(self.x[2:], self.kernel, *map(_pair, (self.stride, self.padding, self.dilation, self.output_padding)))
        return tuple((h - 1) * s - 2 * p + d * (k - 1) + op + 1 for h, k, s, p, d, op in axes)

    def fits(self) -> bool:
        """Whether PyTorch accepts it: output_padding < stride or dilation, and a non-empty output."""
        axes = zip(*map(_pair, (self.output_padding, self.stride, self.dilation)))
        return all(op < max(s, d) for op, s, d in axes) and min(self.out_size()) >= 1

    def __str__(self) -> str:
        return (
            f"x{_fmt(self.x)}-k{_fmt(self.kernel)}-o{self.c_out}-s{_fmt(self.stride)}-p{_fmt(self.padding)}"
            f"-op{_fmt(self.output_padding)}-d{_fmt(self.dilation)}-g{self.groups}" + ("" if self.bias else "-nobias")
        )


def _case_tensors(case: Case, dtype=torch.float64, device="cpu") -> list[torch.Tensor]:
    """x, weight (and bias) for ``case``, seeded, as leaves that require grad."""
    shapes = [case.x, case.w] + ([(case.c_out,)] if case.bias else [])
    return random_tensors(*shapes, dtype=dtype, device=device, requires_grad=True)


def assert_matches_torch(case: Case, dtype=torch.float64, device="cpu") -> None:
    """Values, shape (against the docstring's formula too) and gradients for x, weight and bias."""
    tensors = _case_tensors(case, dtype, device)

    def call(fn):
        # bias is positional third in both; None when the case has none.
        return lambda x, w, b=None: fn(x, w, b, **case.kwargs)

    assert call(CF.conv_transpose2d)(*tensors).shape == (case.x[0], case.c_out, *case.out_size())
    assert_same_values_and_grads(call(CF.conv_transpose2d), call(F.conv_transpose2d), tensors, TOLERANCES[dtype],
                                 names=("input", "weight", "bias"))


def _fitting(cases) -> list[Case]:
    return [case for case in cases if case.fits()]


# The grids (also measured by benchmarks/reference_errors.py).
SHAPES = [
    Case(x=(1, 3, 4, 4), kernel=(3, 3), c_out=2),  # square, batch 1
    Case(x=(2, 2, 3, 5), kernel=(2, 4), c_out=3),  # non-square input and kernel
    Case(x=(3, 1, 5, 2), kernel=(1, 3), c_out=2, bias=False),  # one input channel, no bias
]
STRIDES = [1, 2, (3, 2)]
PADDINGS = [0, 1, (2, 0)]
OUTPUT_PADDINGS = [0, (1, 0)]  # kept only where smaller than the stride or the dilation
DILATIONS = [1, (2, 1)]
TRANSPOSED_CASES = _fitting(
    replace(shape, stride=s, padding=p, output_padding=op, dilation=d)
    for shape, s, p, op, d in itertools.product(SHAPES, STRIDES, PADDINGS, OUTPUT_PADDINGS, DILATIONS)
)
GROUP_SHAPES = [Case(x=(2, 4, 5, 4), kernel=(3, 2), c_out=6), Case(x=(1, 4, 3, 3), kernel=(2, 3), c_out=8)]
GROUP_HYPER = [(1, 0, 0, 1), (2, 1, 1, 1), (2, 0, (1, 0), (1, 2)), (1, 2, 1, 2)]  # stride, padding, output_padding, dilation
# groups 1, 2 and 4 (= C_in, depthwise) with the C_out of each shape, and depthwise with one output per channel.
GROUP_CASES = _fitting(
    replace(shape, stride=s, padding=p, output_padding=op, dilation=d, groups=g, c_out=c_out)
    for shape, (s, p, op, d) in itertools.product(GROUP_SHAPES, GROUP_HYPER)
    for g, c_out in [(1, shape.c_out), (2, shape.c_out), (4, shape.c_out), (4, 4)]
    if c_out % g == 0
)


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=str)
def test_conv_transpose2d_matches_torch(case):
    assert_matches_torch(case)


@pytest.mark.parametrize("case", GROUP_CASES, ids=str)
def test_conv_transpose2d_groups_match_torch(case):
    assert_matches_torch(case)


@pytest.mark.parametrize(
    "case",
    [
        Case(x=(2, 3, 5, 4), kernel=(3, 3), c_out=4, stride=2, padding=1, output_padding=1),
        Case(x=(1, 4, 4, 6), kernel=(4, 2), c_out=2, stride=(2, 3), padding=(1, 0), dilation=2, groups=2),
    ],
    ids=str,
)
def test_conv_transpose2d_float32_matches_torch(case):
    assert_matches_torch(case, dtype=torch.float32)


def test_stride_2_padding_1_scatters_and_crops():
    """The course's 1D example: x = [1, 2, 3], kernel [1, 10, 100], stride 2, padding 1.

    Scattering x_i * kernel at positions 2i gives [1, 10, 102, 20, 203, 30, 300]
    (overlaps add); padding 1 removes one pixel at each end.
    """
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 1, 1, 3)
    kernel = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64).view(1, 1, 1, 3)
    out = CF.conv_transpose2d(x, kernel, stride=(1, 2), padding=(0, 1))
    assert out.flatten().tolist() == [10.0, 102.0, 20.0, 203.0, 30.0]


@pytest.mark.parametrize(("kernel", "expected_interior"), [(3, {1.0, 2.0, 4.0}), (4, {4.0})], ids=["k3-uneven", "k4-even"])
def test_checkerboard_when_kernel_not_divisible_by_stride(kernel, expected_interior):
    """The docstring's remark: stride 2 with an all-ones input and kernel counts the kernel copies covering each pixel.

    k = 3 covers pixels alternately 1 and 2 times per axis (a checkerboard of 1, 2, 4);
    k = 4 covers every interior pixel 2 x 2 times.
    """
    ones = torch.ones(1, 1, 6, 6, dtype=torch.float64)
    out = CF.conv_transpose2d(ones, torch.ones(1, 1, kernel, kernel, dtype=torch.float64), stride=2)
    interior = out[0, 0, kernel : -kernel, kernel : -kernel]
    assert set(interior.flatten().tolist()) == expected_interior


# --- adjoint of conv2d --------------------------------------------------------------------------

ADJOINT_CASES = [
    # (x shape, kernel, C_out, stride, padding, dilation, groups): a conv2d; its transpose must bring
    # its output back to x's shape with output_padding = the rows the stride leaves unused.
    ((2, 3, 7, 8), (3, 3), 4, 1, 0, 1, 1),
    ((1, 2, 9, 6), (3, 2), 3, 2, 1, 1, 1),
    ((2, 4, 8, 8), (3, 3), 2, 3, 0, 1, 2),
    ((1, 4, 10, 7), (2, 3), 4, (2, 3), (1, 2), (2, 1), 4),
    ((2, 2, 11, 9), (3, 3), 2, 2, 2, 2, 1),
]


@pytest.mark.parametrize(("shape", "kernel", "c_out", "stride", "padding", "dilation", "groups"), ADJOINT_CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(shape, kernel, c_out, stride, padding, dilation, groups):
    """<conv2d(x, w), y> = <x, conv_transpose2d(y, w)>: the transpose is the gradient of conv2d for its input."""
    x, w = random_tensors(shape, (c_out, shape[1] // groups, *kernel))
    conv_out = CF.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = random_tensor(*conv_out.shape, seed=1)
    # conv2d floors (H + 2P - D (k - 1) - 1) / S; the remainder is what output_padding must restore.
    unused = tuple(
        (h + 2 * p - d * (k - 1) - 1) % s
        for h, k, s, p, d in zip(shape[2:], kernel, _pair(stride), _pair(padding), _pair(dilation))
    )
    back = CF.conv_transpose2d(
        y, w, stride=stride, padding=padding, output_padding=unused, groups=groups, dilation=dilation
    )
    assert back.shape == x.shape
    lhs, rhs = (conv_out * y).sum(), (x * back).sum()
    torch.testing.assert_close(lhs, rhs, **TOLERANCES[torch.float64])


# --- bad arguments ------------------------------------------------------------------------------


def _zeros(*shape):
    return torch.zeros(shape)


BAD_ARGS = [
    ("input-2d", dict(input=_zeros(4, 4), weight=_zeros(2, 1, 3, 3)), r"^input must have shape \(N, C_in, H, W\) or \(C_in, H, W\)"),
    ("weight-list", dict(input=_zeros(1, 2, 4, 4), weight=[1.0]), r"^weight must be a torch\.Tensor"),
    ("weight-channel-mismatch", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(3, 1, 3, 3)), r"^weight\.shape\[0\] must be input channels C_in = 2"),
    ("groups-not-dividing", dict(input=_zeros(1, 3, 4, 4), weight=_zeros(3, 1, 3, 3), groups=2), r"^groups=2 must divide the input channels \(3\)"),
    ("groups-0", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), groups=0), r"^groups must be an int >= 1"),
    ("bias-wrong-length", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 3, 3, 3), bias=_zeros(2), groups=2), r"^bias must have shape \(C_out,\) = .* = \(6,\), got \(2,\)"),
    ("stride-0", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), stride=0), r"^stride must be an int or a pair of ints >= 1"),
    ("padding-negative", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), padding=-1), r"^padding must be an int or a pair of ints >= 0"),
    ("padding-same", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), padding="same"), r"^padding must be"),
    ("dilation-0", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), dilation=(1, 0)), r"^dilation must be"),
    ("output_padding-negative", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), output_padding=-1), r"^output_padding must be an int or a pair"),
    ("output_padding-equal-stride", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), stride=2, output_padding=2), r"^output_padding must be smaller than either stride or dilation"),
    ("output_padding-stride-1", dict(input=_zeros(1, 2, 4, 4), weight=_zeros(2, 1, 3, 3), output_padding=(0, 1)), r"^output_padding must be smaller"),
    ("padding-too-large", dict(input=_zeros(1, 2, 3, 3), weight=_zeros(2, 1, 3, 3), padding=(0, 3)), r"^padding=\(0, 3\) is too large: the output would have size -1 along W"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "match"), [pytest.param(k, m, id=i) for i, k, m in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CF.conv_transpose2d(**kwargs)


# --- on a GPU -----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_conv_transpose2d_matches_torch_on_cuda(monkeypatch, dtype):
    # cuDNN may use TF32 for float32 (10-bit mantissa): ask for full float32 in the reference too.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    case = Case(
        x=(2, 4, 5, 6), kernel=(3, 2), c_out=6, stride=(2, 1), padding=1, output_padding=(1, 0), dilation=(1, 2), groups=2
    )
    assert_matches_torch(case, dtype=dtype, device="cuda")
