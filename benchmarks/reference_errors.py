"""Measure how far course_lib's from-scratch layers are from PyTorch, in float64.

    python benchmarks/reference_errors.py [--device cpu|cuda] [--seed 0]

For every public function of ``course_lib.layers.functional`` (and the
initialisers of ``course_lib.init``) this runs the grid of cases of its unit
tests, imported from ``tests/test_functional_*.py`` and ``tests/test_init.py``
- shapes including batch 1 and non-square ones, strides, paddings including
``"same"``, dilations, groups, ``ceil_mode`` ... - through the function and
through its PyTorch reference on the same float64 tensors, and prints a
Markdown table of the largest absolute differences:

* **values**: every output, over every case. Where both return indices
  (``max_pool2d(..., return_indices=True)``, ``adaptive_max_pool2d``) or
  running statistics (``batch_norm``, ``instance_norm`` in training), those
  are outputs too, so a wrong index shows up as an error of at least 1.
  NaNs must sit at the same places (else the error is ``inf``).
* **gradients**: one seeded random upstream gradient per output, then
  autograd's gradient with respect to *every* tensor input that is a float
  (input, weight, bias, ...) through both sides. For the explicit backward
  passes (``conv2d_backward``, ``max_pool2d_backward``, ``avg_pool2d_backward``,
  ``batch_norm_backward``) the *values* are the gradients they compute,
  compared with autograd through the PyTorch op, and the *gradients* are
  second derivatives: autograd through the hand-written backward against
  PyTorch's double backward (``create_graph=True``).

Functions without a PyTorch twin are compared with the references their unit
tests use: ``global_avg_pool2d`` with
``F.adaptive_avg_pool2d(x, 1)``, ``stochastic_pool2d`` in eval mode with an
``F.unfold`` formula, ``maxout`` with a strided-selection maximum,
``local_contrast_norm`` with a shift-and-add transcription of its formula,
``drop_connect`` in eval mode (and p = 0) with ``F.linear``. The random ops
are run after the same ``torch.manual_seed`` as ``F.dropout`` /
``torchvision.ops.drop_block2d(eps=0)`` / ``torchvision.ops.stochastic_depth(mode="row")``,
which draw the same masks; ``F.dropout`` draws them so only on the CPU, and
those cases are skipped (and counted as skipped) on a GPU. The initialisers
are compared with ``torch.nn.init`` on identically seeded generators (values
only: they have no gradient).

Options: ``--device cuda`` measures on the CPU and then, if PyTorch sees a
GPU, prints the same table measured there (still float64). ``--seed`` seeds
the random tensors, the upstream gradients and the dropout masks. Progress
goes to stderr, the tables to stdout. The tensors are tiny, so one CPU
thread is used.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import nn
from torch.nn.utils import parametrizations
from tqdm import tqdm

from course_lib import init as CI
from course_lib.layers import functional as CF

# The grids are the unit tests' own: a case added to a test is measured here too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_functional_activations as activation_tests  # noqa: E402
import test_functional_backward as backward_tests  # noqa: E402
import test_functional_conv as conv_tests  # noqa: E402
import test_functional_normalization as normalization_tests  # noqa: E402
import test_functional_pooling as pooling_tests  # noqa: E402
import test_functional_regularization as regularization_tests  # noqa: E402
import test_functional_transposed as transposed_tests  # noqa: E402
import test_init as init_tests  # noqa: E402

DTYPE = torch.float64


# --- one case, one registry entry, one measuring function -----------------------------------------


@dataclass
class Case:
    """``ours(*tensors)`` against ``reference(*tensors)``.

    ``tensors`` live on the CPU until measured; ``None`` entries pass through (an absent bias). Those
    that require grad get gradients. ``seed``: ``torch.manual_seed(seed)`` before each call (random
    ops). ``cpu_only``: the reference agrees only on the CPU (``F.dropout``'s CUDA masks differ).
    """

    ours: Callable
    reference: Callable
    tensors: Sequence[torch.Tensor | None]
    seed: int | None = None
    cpu_only: bool = False


def twin(ours: Callable, reference: Callable, tensors, **kwargs) -> Case:
    """The common case: both functions take the same tensors and the same keyword arguments."""
    return Case(functools.partial(ours, **kwargs), functools.partial(reference, **kwargs), tensors)


@dataclass
class Entry:
    """A table row: the function, its reference in words, and a generator of cases from a Draw."""

    name: str
    reference: str
    cases: Callable[[Draw], Iterable[Case]]
    section: str = "layers"


REGISTRY: list[Entry] = []


def register(name: str, reference: str, section: str = "layers"):
    """Decorator: add a case generator to the registry under ``name``."""

    def add(cases):
        REGISTRY.append(Entry(name, reference, cases, section))
        return cases

    return add


@dataclass
class Draw:
    """Seeded float64 tensors on the CPU, leaves that require grad unless ``grad=False``."""

    seed: int
    generator: torch.Generator = field(init=False)

    def __post_init__(self):
        self.generator = torch.Generator().manual_seed(self.seed)

    def randn(self, *shape, grad=True, scale=1.0, shift=0.0) -> torch.Tensor:
        x = torch.randn(shape, generator=self.generator, dtype=DTYPE) * scale + shift
        return x.requires_grad_(grad)

    def positive(self, *shape, grad=True) -> torch.Tensor:
        """In [0.1, 1.1): safe for any power and any divisor."""
        return (torch.rand(shape, generator=self.generator, dtype=DTYPE) + 0.1).requires_grad_(grad)

    def ties(self, *shape, grad=True) -> torch.Tensor:
        """Integers 0..2: many equal maxima, to see whether the same one wins."""
        return torch.randint(0, 3, shape, generator=self.generator).to(DTYPE).requires_grad_(grad)

    def away_from(self, *shape, kinks=(0.0, 6.0), margin=0.05) -> torch.Tensor:
        """About [-9, 9], no value within ``margin`` of a kink, where one-sided derivatives may differ."""
        x = self.randn(*shape, grad=False, scale=3.0)
        for kink in kinks:
            x[(x - kink).abs() < margin] += 2 * margin
        return x.requires_grad_()

    def kind(self, kind: str, *shape, grad=True) -> torch.Tensor:
        return {"randn": self.randn, "ties": self.ties, "positive": self.positive}[kind](*shape, grad=grad)

    def randint(self, high: int, *shape) -> torch.Tensor:
        return torch.randint(high, shape, generator=self.generator)


def _as_tensors(out) -> tuple[torch.Tensor, ...]:
    """A function's result as a tuple of tensors (Python numbers and tuples of them included)."""
    items = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o if isinstance(o, torch.Tensor) else torch.tensor(float(o), dtype=DTYPE) for o in items)


def max_abs_error(ours: torch.Tensor, expected: torch.Tensor) -> float:
    """max |ours - expected|; inf for another shape or NaNs elsewhere; equal infinities count as 0."""
    if ours.shape != expected.shape:
        return math.inf
    a, b = ours.detach().to(DTYPE), expected.detach().to(DTYPE)
    if not torch.equal(a.isnan(), b.isnan()):
        return math.inf
    diff = torch.where(a == b, 0.0, (a - b).abs())[~a.isnan()]
    return diff.max().item() if diff.numel() else 0.0


def _gradients(outputs, leaves, upstream) -> list[torch.Tensor]:
    """d(sum of <output, upstream>)/d(leaf) for each leaf; zeros where a leaf is not used."""
    pairs = [(o, u) for o, u in zip(outputs, upstream) if u is not None and o.requires_grad]
    grads = [None] * len(leaves)
    if pairs:
        grads = torch.autograd.grad([o for o, _ in pairs], leaves, [u for _, u in pairs], allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)]


def measure(case: Case, device: torch.device, seed: int) -> tuple[float, float | None]:
    """(max error of the values, max error of the gradients or None if no input takes one)."""
    tensors = [None if t is None else t.detach().to(device).requires_grad_(t.requires_grad) for t in case.tensors]
    leaves = [t for t in tensors if t is not None and t.requires_grad]

    def run(fn):
        if case.seed is not None:
            torch.manual_seed(case.seed)
        return _as_tensors(fn(*tensors))

    ours, expected = run(case.ours), run(case.reference)
    if len(ours) != len(expected):
        return math.inf, math.inf
    values = max(max_abs_error(o, e) for o, e in zip(ours, expected))
    if not leaves:
        return values, None
    generator = torch.Generator().manual_seed(seed + 1)
    differentiable = [e.is_floating_point() and (e.requires_grad or o.requires_grad) for o, e in zip(ours, expected)]
    upstream = [
        torch.randn(e.shape, generator=generator, dtype=DTYPE).to(device) if d else None
        for e, d in zip(expected, differentiable)
    ]
    grads = zip(_gradients(ours, leaves, upstream), _gradients(expected, leaves, upstream))
    return values, max(max_abs_error(g, e) for g, e in grads)


# --- convolution ------------------------------------------------------------------------------------


def conv_case(draw: Draw, ours: Callable, reference: Callable, case) -> Case:
    """A ``Case`` of the convolution tests (input shape ``x``, weight shape ``w``, ``c_out``, ``bias``,
    ``kwargs``), its tensors drawn."""
    tensors = [draw.randn(*case.x), draw.randn(*case.w), draw.randn(case.c_out) if case.bias else None]
    return twin(ours, reference, tensors, **case.kwargs)


@register("conv2d", "`F.conv2d`")
def conv2d_cases(draw):
    for case in conv_tests.CONV2D_CASES + conv_tests.GROUP_CASES:
        yield conv_case(draw, CF.conv2d, F.conv2d, case)


@register("conv2d_naive", "`F.conv2d`")
def conv2d_naive_cases(draw):
    for case in conv_tests.NAIVE_CASES:
        yield conv_case(draw, CF.conv2d_naive, F.conv2d, case)


@register("conv1d", "`F.conv1d`")
def conv1d_cases(draw):
    for case in conv_tests.CONV1D_CASES:
        yield conv_case(draw, CF.conv1d, F.conv1d, case)


@register("im2col", "`F.unfold`")
def im2col_cases(draw):
    for shape, kernel, stride, dilation in conv_tests.IM2COL_CASES:
        yield Case(
            functools.partial(CF.im2col, kernel_size=kernel, stride=stride, dilation=dilation),
            functools.partial(F.unfold, kernel_size=kernel, stride=stride, dilation=dilation),
            [draw.randn(*shape)],
        )


def _conv_after_resolved_padding(x, w, *, padding, dilation):
    kernel = tuple(w.shape[2:])
    return F.conv2d(F.pad(x, CF.resolve_padding(padding, kernel, (1, 1), dilation)), w, dilation=dilation)


@register("resolve_padding", "`F.conv2d(x, w, padding=…)` vs `F.conv2d(F.pad(x, resolve_padding(…)), w)`")
def resolve_padding_cases(draw):
    for kernel, dilation, padding in conv_tests.RESOLVE_PADDING_CASES:
        tensors = [draw.randn(1, 2, 7, 8), draw.randn(3, 2, *kernel)]
        yield twin(_conv_after_resolved_padding, F.conv2d, tensors, padding=padding, dilation=dilation)


@register("conv_transpose2d", "`F.conv_transpose2d`")
def conv_transpose2d_cases(draw):
    for case in transposed_tests.TRANSPOSED_CASES + transposed_tests.GROUP_CASES:
        yield conv_case(draw, CF.conv_transpose2d, F.conv_transpose2d, case)


# --- explicit backward passes of the convolution ------------------------------------------------------


def _autograd_conv2d(grad_output, input, weight, **kwargs):
    """Autograd's (dX, dW, db) through F.conv2d, kept differentiable for second derivatives."""
    bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device, requires_grad=True)
    y = F.conv2d(input, weight, bias, **kwargs)
    return torch.autograd.grad(y, (input, weight, bias), grad_output, create_graph=True)


@register("conv2d_backward", "autograd through `F.conv2d`")
def conv2d_backward_cases(draw):
    for shape, kernel, c_out, groups, stride, padding, dilation in (
        backward_tests.BACKWARD_CASES + backward_tests.GROUP_BACKWARD_CASES
    ):
        x, w = draw.randn(*shape), draw.randn(c_out, shape[1] // groups, *kernel)
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        dy = draw.randn(*F.conv2d(x.detach(), w.detach(), **kwargs).shape)
        yield twin(CF.conv2d_backward, _autograd_conv2d, [dy, x, w], **kwargs)


@register("col2im", "`F.fold`")
def col2im_cases(draw):
    for (n, c, h, w), kernel, stride, dilation in backward_tests.COL2IM_CASES:
        length = CF.im2col(torch.zeros(n, c, h, w), kernel, stride, dilation).shape[2]
        cols = draw.randn(n, c * kernel[0] * kernel[1], length)
        yield Case(
            functools.partial(CF.col2im, input_size=(h, w), kernel_size=kernel, stride=stride, dilation=dilation),
            functools.partial(F.fold, output_size=(h, w), kernel_size=kernel, stride=stride, dilation=dilation),
            [cols],
        )


# --- pooling --------------------------------------------------------------------------------------


def pool_cases(draw: Draw, ours: Callable, reference: Callable, cases, **extra) -> Iterator[Case]:
    """The pooling tests' (shape, kind, kwargs) cases, an input of that kind drawn for each."""
    for shape, kind, kwargs in cases:
        yield twin(ours, reference, [draw.kind(kind, *shape)], **kwargs, **extra)


@register("max_pool2d", "`F.max_pool2d` (values and indices)")
def max_pool2d_cases(draw):
    cases = pooling_tests.MAX_CASES + pooling_tests.MAX_EDGE_CASES
    return pool_cases(draw, CF.max_pool2d, F.max_pool2d, cases, return_indices=True)


@register("avg_pool2d", "`F.avg_pool2d`")
def avg_pool2d_cases(draw):
    return pool_cases(draw, CF.avg_pool2d, F.avg_pool2d, pooling_tests.AVG_CASES + pooling_tests.AVG_EDGE_CASES)


@register("lp_pool2d", "`F.lp_pool2d`")
def lp_pool2d_cases(draw):
    return pool_cases(draw, CF.lp_pool2d, F.lp_pool2d, pooling_tests.LP_CASES + pooling_tests.LP_SIGNED_CASES)


@register("adaptive_avg_pool2d", "`F.adaptive_avg_pool2d`")
def adaptive_avg_pool2d_cases(draw):
    return pool_cases(draw, CF.adaptive_avg_pool2d, F.adaptive_avg_pool2d, pooling_tests.ADAPTIVE_CASES)


@register("adaptive_max_pool2d", "`F.adaptive_max_pool2d` (values and indices)")
def adaptive_max_pool2d_cases(draw):
    cases = pooling_tests.ADAPTIVE_CASES
    return pool_cases(draw, CF.adaptive_max_pool2d, F.adaptive_max_pool2d, cases, return_indices=True)


@register("max_unpool2d", "`F.max_unpool2d`")
def max_unpool2d_cases(draw):
    """F.max_pool2d's values and indices of an input of the default size or (``larger``) the largest size that
    pools to the same size, passed as output_size: the tests' pairs (drawn by the tests' seeded inputs)."""
    settings = itertools.product(pooling_tests.UNPOOL_BATCHES, pooling_tests.UNPOOL_SETTINGS, [False, True])
    for batch, (kernel, stride, padding), larger in settings:
        values, indices, shape = pooling_tests.unpool_pair(batch, kernel, stride, padding, larger=larger)
        kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, output_size=shape if larger else None)
        yield twin(CF.max_unpool2d, F.max_unpool2d, [values, indices], **kwargs)


def _global_avg_by_adaptive(x, keepdim=False):
    out = F.adaptive_avg_pool2d(x, 1)  # PyTorch's own kernel, not a mean
    return out if keepdim else out.flatten(1)


@register("global_avg_pool2d", "`F.adaptive_avg_pool2d(x, 1)`")
def global_avg_pool2d_cases(draw):
    for shape, keepdim in itertools.product(pooling_tests.GLOBAL_SHAPES, [False, True]):
        yield twin(CF.global_avg_pool2d, _global_avg_by_adaptive, [draw.randn(*shape)], keepdim=keepdim)


def _stochastic_expectation(x, kernel_size, stride, training):
    return pooling_tests.stochastic_expectation(x, kernel_size, stride or kernel_size)


@register("stochastic_pool2d", "eval mode: Σa²/Σa per window by `F.unfold`")
def stochastic_pool2d_cases(draw):
    def relu_with_zero_windows():
        x = draw.randn(1, 2, 8, 8, grad=False).relu()
        x[:, :, :4, :4] = 0
        return x.requires_grad_()

    inputs = [lambda: draw.positive(2, 3, 9, 8), relu_with_zero_windows]
    for make, (kernel, stride) in itertools.product(inputs, pooling_tests.STOCHASTIC_SETTINGS):
        kwargs = dict(kernel_size=kernel, stride=stride, training=False)
        yield twin(CF.stochastic_pool2d, _stochastic_expectation, [make()], **kwargs)


def _autograd_pool(pool, grad_output, input, **kwargs):
    """Autograd's input gradient through ``pool``, kept differentiable for second derivatives."""
    return torch.autograd.grad(pool(input, **kwargs), input, grad_output, create_graph=True)[0]


def pool_backward_cases(draw, ours, pool, cases):
    for shape, kind, kwargs in cases:
        x = draw.kind(kind, *shape)
        dy = draw.randn(*pool(x.detach(), **kwargs).shape)
        yield twin(ours, functools.partial(_autograd_pool, pool), [dy, x], **kwargs)


@register("max_pool2d_backward", "autograd through `F.max_pool2d`")
def max_pool2d_backward_cases(draw):
    return pool_backward_cases(draw, CF.max_pool2d_backward, F.max_pool2d, pooling_tests.MAX_BACKWARD_CASES)


@register("avg_pool2d_backward", "autograd through `F.avg_pool2d`")
def avg_pool2d_backward_cases(draw):
    return pool_backward_cases(draw, CF.avg_pool2d_backward, F.avg_pool2d, pooling_tests.AVG_BACKWARD_CASES)


# --- normalization --------------------------------------------------------------------------------


def _affine(draw, channels, affine=True):
    return [draw.randn(channels), draw.randn(channels)] if affine else [None, None]


def _running_stats(draw, channels):
    """A plausible running mean and a positive running variance (no grad)."""
    return [draw.randn(channels, grad=False), draw.randn(channels, grad=False).abs() + 0.5]


def _with_running_stats(norm, x, w, b, running_mean, running_var, **kwargs):
    """``norm`` on copies of the running statistics, which it updates in place: they are outputs too."""
    running_mean, running_var = running_mean.clone(), running_var.clone()
    return norm(x, running_mean, running_var, w, b, **kwargs), running_mean, running_var


@register("batch_norm", "`F.batch_norm` (output and running statistics)")
def batch_norm_cases(draw):
    modes = [dict(training=True, momentum=m, eps=eps) for m, eps in normalization_tests.BN_TRAINING]
    modes.append(dict(training=False, eps=normalization_tests.BN_EVAL_EPS))
    for shape, affine, kwargs in itertools.product(normalization_tests.BN_SHAPES, [True, False], modes):
        tensors = [draw.randn(*shape), *_affine(draw, shape[1], affine), *_running_stats(draw, shape[1])]
        yield Case(
            functools.partial(_with_running_stats, CF.batch_norm, **kwargs),
            functools.partial(_with_running_stats, F.batch_norm, **kwargs),
            tensors,
        )
    for shape in normalization_tests.BN_SHAPES:  # training without running statistics
        tensors = [draw.randn(*shape), None, None, *_affine(draw, shape[1])]
        yield twin(CF.batch_norm, F.batch_norm, tensors, training=True)


@register("instance_norm", "`F.instance_norm` (output and running statistics)")
def instance_norm_cases(draw):
    shapes = normalization_tests.IN_SHAPES
    for shape, affine, use_input_stats in itertools.product(shapes, [True, False], [True, False]):
        tensors = [draw.randn(*shape), *_affine(draw, shape[1], affine), *_running_stats(draw, shape[1])]
        kwargs = dict(use_input_stats=use_input_stats, **normalization_tests.IN_OPTIONS)
        yield Case(
            functools.partial(_with_running_stats, CF.instance_norm, **kwargs),
            functools.partial(_with_running_stats, F.instance_norm, **kwargs),
            tensors,
        )
    for shape in shapes:  # no running statistics
        yield twin(CF.instance_norm, F.instance_norm, [draw.randn(*shape), None, None, *_affine(draw, shape[1])])


def _second_argument(fn, argument, **kwargs):
    """``fn(x, argument, *tensors, **kwargs)`` as a function of the tensors: for layer and group norm,
    whose second argument (normalized_shape, num_groups) is not a tensor."""
    return lambda x, *tensors: fn(x, argument, *tensors, **kwargs)


@register("layer_norm", "`F.layer_norm`")
def layer_norm_cases(draw):
    settings = itertools.product(normalization_tests.LN_CASES, [True, False], normalization_tests.LN_EPS)
    for (shape, normalized), affine, eps in settings:
        norm = (normalized,) if isinstance(normalized, int) else tuple(normalized)  # F.layer_norm takes no bare int
        tensors = [draw.randn(*shape), *([draw.randn(*norm), draw.randn(*norm)] if affine else [None, None])]
        ours = _second_argument(CF.layer_norm, normalized, eps=eps)
        yield Case(ours, _second_argument(F.layer_norm, norm, eps=eps), tensors)


@register("group_norm", "`F.group_norm`")
def group_norm_cases(draw):
    for (shape, groups), affine in itertools.product(normalization_tests.GN_CASES, [True, False]):
        tensors = [draw.randn(*shape), *_affine(draw, shape[1], affine)]
        eps = normalization_tests.GN_EPS
        ours, reference = (_second_argument(fn, groups, eps=eps) for fn in (CF.group_norm, F.group_norm))
        yield Case(ours, reference, tensors)


@register("local_response_norm", "`F.local_response_norm`")
def local_response_norm_cases(draw):
    settings = itertools.product(
        normalization_tests.LRN_SHAPES, normalization_tests.LRN_SIZES, normalization_tests.LRN_PARAMS
    )
    for shape, size, (alpha, beta, k) in settings:
        kwargs = dict(size=size, alpha=alpha, beta=beta, k=k)
        yield twin(CF.local_response_norm, F.local_response_norm, [draw.randn(*shape)], **kwargs)


def _lcn_direct(x, kernel_size=9, sigma=None, eps=1e-4):
    """Jarrett et al.'s formula written out: weighted sums over the window by shifting the zero-padded
    channel sum one offset at a time (no convolution); sigma = sqrt(local weighted sum of v^2);
    y = v / max(sigma, mean of sigma over the image, eps). (The tests' loop-by-loop transcription is
    too slow for second derivatives.)"""
    sigma = kernel_size / 4.5 if sigma is None else sigma
    n, c, h, w = x.shape
    r = kernel_size // 2
    offsets = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    weight = g / g.sum() / c  # sums to 1 over (channel, p, q)

    def weighted_sum(t):
        padded = F.pad(t.sum(1, keepdim=True), (r, r, r, r))
        offsets = itertools.product(range(kernel_size), repeat=2)
        return sum(weight[p, q] * padded[:, :, p : p + h, q : q + w] for p, q in offsets)

    v = x - weighted_sum(x)
    local_std = weighted_sum(v * v).sqrt()
    return v / torch.maximum(local_std, local_std.mean((2, 3), keepdim=True)).clamp_min(eps)


@register("local_contrast_norm", "the formula by shifted sums (no convolution)")
def local_contrast_norm_cases(draw):
    for shape, kernel_size, sigma in normalization_tests.LCN_CASES:
        x = draw.randn(*shape, scale=2.0, shift=1.0)
        yield twin(CF.local_contrast_norm, _lcn_direct, [x], kernel_size=kernel_size, sigma=sigma)


def _autograd_batch_norm(grad_output, input, weight, eps):
    """Autograd's (dX, dgamma, dbeta) through training-mode F.batch_norm (gamma = 1 if weight is None)."""
    c = input.shape[1]
    gamma = torch.ones(c, dtype=input.dtype, device=input.device, requires_grad=True) if weight is None else weight
    beta = torch.zeros(c, dtype=input.dtype, device=input.device, requires_grad=True)
    y = F.batch_norm(input, None, None, gamma, beta, training=True, eps=eps)
    return torch.autograd.grad(y, (input, gamma, beta), grad_output, create_graph=True)


@register("batch_norm_backward", "autograd through `F.batch_norm(training=True)`")
def batch_norm_backward_cases(draw):
    settings = itertools.product(
        normalization_tests.BN_BACKWARD_SHAPES, [True, False], normalization_tests.BN_BACKWARD_EPS
    )
    for shape, with_weight, eps in settings:
        grad_output, x, weight = draw.randn(*shape), draw.randn(*shape), draw.randn(shape[1]) if with_weight else None
        yield twin(CF.batch_norm_backward, _autograd_batch_norm, [grad_output, x, weight], eps=eps)


def _torch_weight_norm(dim):
    """PyTorch's weight-norm parametrization as a function of (v, g), g in course_lib's shape (one length
    per slice along ``dim``) viewed as PyTorch stores it."""

    def reference(v, g):
        module = parametrizations.weight_norm(normalization_tests._holder(v), dim=dim)
        return module.parametrizations.weight[0](g.reshape(module.parametrizations.weight.original0.shape), v)

    return reference


@register("weight_norm", "`parametrizations.weight_norm`'s forward")
def weight_norm_cases(draw):
    for shape, dim in normalization_tests.WN_CASES:
        g = draw.positive(*(() if dim is None else (shape[dim],)))
        yield Case(functools.partial(CF.weight_norm, dim=dim), _torch_weight_norm(dim), [draw.randn(*shape), g])


def _spectral_norm_ours(weight, u, v, **kwargs):
    """CF.spectral_norm on copies of u and v, which it updates in place: they are outputs too."""
    u, v = u.clone(), v.clone()
    return CF.spectral_norm(weight, u, v, **kwargs), u, v


def _spectral_norm_torch(weight, u, v, n_power_iterations, dim):
    """PyTorch's spectral-norm parametrization in training mode, its u and v set to ours first."""
    module = parametrizations.spectral_norm(
        normalization_tests._holder(weight), n_power_iterations=n_power_iterations, dim=dim
    )
    sn = module.parametrizations.weight[0]
    with torch.no_grad():
        sn._u.copy_(u)
        sn._v.copy_(v)
    return sn(weight), sn._u, sn._v


@register("spectral_norm", "`parametrizations.spectral_norm`'s forward, same u and v (output and updated u, v)")
def spectral_norm_cases(draw):
    settings = itertools.product(normalization_tests.SN_CASES, normalization_tests.SN_ITERATIONS)
    for (shape, dim), iterations in settings:
        rows = shape[dim]
        u = F.normalize(draw.randn(rows, grad=False), dim=0)
        v = F.normalize(draw.randn(math.prod(shape) // rows, grad=False), dim=0)
        kwargs = dict(n_power_iterations=iterations, dim=dim)
        yield twin(_spectral_norm_ours, _spectral_norm_torch, [draw.randn(*shape), u, v], **kwargs)


# --- regularization -------------------------------------------------------------------------------


@register("dropout", "`F.dropout`, same seed (training: CPU only)")
def dropout_cases(draw):
    for shape, p in itertools.product(regularization_tests.SHAPES, regularization_tests.DROPOUT_PS):
        case = twin(CF.dropout, F.dropout, [draw.randn(*shape)], p=p)
        case.seed, case.cpu_only = draw.seed + 100, p > 0
        yield case
    for shape in regularization_tests.SHAPES:
        yield twin(CF.dropout, F.dropout, [draw.randn(*shape)], p=0.5, training=False)


def _classic_by_inverted(x, p, training):
    """Hinton et al.'s dropout from F.dropout: the same mask times 1 - p in training; x (1 - p) in eval."""
    return F.dropout(x, p) * (1 - p) if training else x * (1 - p)


@register("dropout_classic", "eval: `x·(1−p)`; training: `F.dropout(x, p)·(1−p)`, same seed (CPU only)")
def dropout_classic_cases(draw):
    settings = itertools.product(regularization_tests.SHAPES, regularization_tests.DROPOUT_PS, [False, True])
    for shape, p, training in settings:
        case = twin(CF.dropout_classic, _classic_by_inverted, [draw.randn(*shape)], p=p, training=training)
        case.seed, case.cpu_only = draw.seed + 100, training
        yield case


def _linear(x, w, b, **_):
    return F.linear(x, w, b)


@register("drop_connect", "`F.linear` (eval, and p = 0)")
def drop_connect_cases(draw):
    settings = itertools.product(regularization_tests.LINEAR_CASES, [True, False], [(0.5, False), (0.0, True)])
    for (x_shape, out_features), bias, (p, training) in settings:
        weight = draw.randn(out_features, x_shape[-1])
        tensors = [draw.randn(*x_shape), weight, draw.randn(out_features) if bias else None]
        yield twin(CF.drop_connect, _linear, tensors, p=p, training=training)


def _torchvision_drop_block(x, p, block_size):
    return torchvision.ops.drop_block2d(x, p, block_size, eps=0.0)


@register("drop_block2d", '`torchvision.ops.drop_block2d(eps=0)`, same seed')
def drop_block2d_cases(draw):
    settings = itertools.product(regularization_tests.DROP_BLOCK_CASES, regularization_tests.DROP_BLOCK_PS)
    for (shape, block_size), p in settings:
        case = twin(CF.drop_block2d, _torchvision_drop_block, [draw.randn(*shape)], p=p, block_size=block_size)
        case.seed = draw.seed + 100
        yield case


@register("drop_path", '`torchvision.ops.stochastic_depth(mode="row")`, same seed')
def drop_path_cases(draw):
    for shape, p in itertools.product(regularization_tests.DROP_PATH_SHAPES, regularization_tests.DROP_PATH_PS):
        yield Case(
            functools.partial(CF.drop_path, p=p),
            functools.partial(torchvision.ops.stochastic_depth, p=p, mode="row"),
            [draw.randn(*shape)],
            seed=draw.seed + 100,
        )


def _cross_entropy(logits, target, smoothing, reduction):
    return F.cross_entropy(logits, target, label_smoothing=smoothing, reduction=reduction)


@register("label_smoothing_cross_entropy", "`F.cross_entropy(label_smoothing=…)`")
def label_smoothing_cases(draw):
    settings = itertools.product(
        regularization_tests.LS_SHAPES, regularization_tests.SMOOTHINGS, regularization_tests.REDUCTIONS
    )
    for (logit_shape, target_shape), smoothing, reduction in settings:
        tensors = [draw.randn(*logit_shape, scale=3.0), draw.randint(logit_shape[1], *target_shape)]
        yield twin(CF.label_smoothing_cross_entropy, _cross_entropy, tensors, smoothing=smoothing, reduction=reduction)


# --- activations ----------------------------------------------------------------------------------


def elementwise_cases(draw, ours):
    """``ours`` with each of its settings in the tests' ELEMENTWISE list, on every shape of theirs."""
    settings = [(reference, kwargs) for fn, reference, kwargs in activation_tests.ELEMENTWISE if fn is ours]
    for shape, (reference, kwargs) in itertools.product(activation_tests.SHAPES, settings):
        yield twin(ours, reference, [draw.away_from(*shape)], **kwargs)


@register("relu6", "`F.relu6`")
def relu6_cases(draw):
    return elementwise_cases(draw, CF.relu6)


@register("leaky_relu", "`F.leaky_relu`")
def leaky_relu_cases(draw):
    return elementwise_cases(draw, CF.leaky_relu)


@register("elu", "`F.elu`")
def elu_cases(draw):
    yield from elementwise_cases(draw, CF.elu)
    x = torch.tensor(activation_tests.ELU_LARGE_INPUTS, dtype=DTYPE, requires_grad=True)
    yield twin(CF.elu, F.elu, [x])


@register("prelu", "`F.prelu`")
def prelu_cases(draw):
    for shape, weight_shape in activation_tests.PRELU_CASES:
        yield twin(CF.prelu, F.prelu, [draw.away_from(*shape), draw.positive(*weight_shape)])


@register("maxout", "maximum of strided channel selections")
def maxout_cases(draw):
    for shape, num_pieces, dim in activation_tests.MAXOUT_CASES:
        reference = activation_tests.maxout_by_strided_selection
        yield twin(CF.maxout, reference, [draw.away_from(*shape)], num_pieces=num_pieces, dim=dim)


# --- course_lib.init: the same draws as torch.nn.init -------------------------------------------------


def _filled(fill, template, seed, **kwargs):
    """``fill`` applied to a fresh tensor like ``template``, with a generator on its device seeded ``seed``."""
    return fill(torch.empty_like(template), generator=torch.Generator(template.device).manual_seed(seed), **kwargs)


def init_cases(draw, ours):
    """``ours`` against its torch.nn.init twin with each of its settings in tests/test_init.py, on every shape."""
    settings = [param.values[1:] for param in init_tests._init_pairs() if param.values[0] is ours]
    for shape, (theirs, kwargs) in itertools.product(init_tests.SHAPES, settings):
        template = torch.empty(shape, dtype=DTYPE)
        seed = draw.seed + 7
        ours_call, theirs_call = (functools.partial(_filled, fill, seed=seed, **kwargs) for fill in (ours, theirs))
        yield Case(ours_call, theirs_call, [template])


# The initialisers that draw random numbers, one entry each.
for _fill in [CI.normal_, CI.xavier_uniform_, CI.xavier_normal_, CI.kaiming_uniform_, CI.kaiming_normal_,
              CI.orthogonal_]:
    register(_fill.__name__, f"`nn.init.{_fill.__name__}`, same generator", "init")(
        functools.partial(init_cases, ours=_fill)
    )


@register("zeros_", "`nn.init.zeros_`", "init")
def zeros_cases(draw):
    for shape in init_tests.SHAPES:
        template = torch.empty(shape, dtype=DTYPE)
        yield Case(lambda t: CI.zeros_(torch.ones_like(t)), lambda t: nn.init.zeros_(torch.ones_like(t)), [template])


@register("calculate_gain", "`nn.init.calculate_gain`", "init")
def calculate_gain_cases(draw):
    for nonlinearity, param in init_tests.GAINS:
        yield Case(
            functools.partial(CI.calculate_gain, nonlinearity, param),
            functools.partial(nn.init.calculate_gain, nonlinearity, param),
            [],
        )


@register("fan_in_and_fan_out", "`nn.init._calculate_fan_in_and_fan_out`", "init")
def fan_cases(draw):
    for shape in init_tests.SHAPES:
        yield Case(CI.fan_in_and_fan_out, nn.init._calculate_fan_in_and_fan_out, [torch.empty(shape, dtype=DTYPE)])


# Functions of course_lib.init not measured: lsuv_, init_model and torchvision_init_ (compositions with no
# single torch.nn.init twin; tests/test_init.py checks them) and the constant INIT_SCHEMES.
SECTIONS = {
    "layers": ("course_lib.layers.functional", set(CF.__all__)),
    "init": ("course_lib.init", set(CI.__all__) - {"lsuv_", "init_model", "torchvision_init_", "INIT_SCHEMES"}),
}


# --- running and printing -------------------------------------------------------------------------


def check_registry_covers_every_function() -> None:
    """A function added to a module's __all__ without an entry here must not go unmeasured silently."""
    for section, (module, names) in SECTIONS.items():
        registered = {e.name for e in REGISTRY if e.section == section}
        if registered != names:
            raise SystemExit(
                f"{module}: no entry for {sorted(names - registered)}; entries for unknown {sorted(registered - names)}"
            )


@dataclass
class Row:
    entry: Entry
    cases: int = 0
    skipped: int = 0
    values: float | None = None  # None: no case measured
    gradients: float | None = None  # None: no tensor input takes a gradient


def run(device: torch.device, seed: int) -> list[Row]:
    """Every case of every entry on ``device``, with a progress bar; one row per entry."""
    cases = [(entry, case) for entry in REGISTRY for case in entry.cases(Draw(seed))]
    rows = {entry.name: Row(entry) for entry in REGISTRY}
    with tqdm(cases, desc=f"{device.type}", unit="case", file=sys.stderr) as bar:
        for entry, case in bar:
            bar.set_postfix_str(entry.name, refresh=False)
            row = rows[entry.name]
            if case.cpu_only and device.type != "cpu":
                row.skipped += 1
                continue
            values, gradients = measure(case, device, seed)
            row.cases += 1
            row.values = max(row.values or 0.0, values)
            if gradients is not None:
                row.gradients = max(row.gradients or 0.0, gradients)
    return list(rows.values())


def fmt(error: float | None) -> str:
    """1.2e-15 style; exactly 0 as 0; None (nothing to differentiate) as a dash."""
    if error is None:
        return "—"
    return "0" if error == 0 else f"{error:.1e}"


def table(rows: list[Row], section: str) -> str:
    lines = [
        "| function | PyTorch reference | cases | max abs error (values) | max abs error (gradients) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        if row.entry.section != section:
            continue
        cases = f"{row.cases}" + (f" (+{row.skipped} skipped)" if row.skipped else "")
        lines.append(
            f"| `{row.entry.name}` | {row.entry.reference} | {cases} | {fmt(row.values)} | {fmt(row.gradients)} |"
        )
    return "\n".join(lines)


def report(rows: list[Row], device: torch.device, seconds: float) -> None:
    total = sum(r.cases for r in rows)
    print(f"\n## {device.type}, float64: {total} cases in {seconds:.1f} s\n")
    for section, (module, _) in SECTIONS.items():
        print(f"### {module}\n")
        print(table(rows, section))
        print()
    print(
        "For `*_backward`, values are the gradients they compute; gradients are second derivatives "
        "(autograd through them vs PyTorch's double backward). Skipped: cases whose reference agrees "
        "only on the CPU. — : no tensor input takes a gradient."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="cuda: the CPU table, then the same on the GPU"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the tensors, upstream gradients and masks")
    args = parser.parse_args()
    check_registry_covers_every_function()
    torch.set_num_threads(1)
    # PyTorch warns that padding='same' with an even kernel copies the input: expected on this grid.
    warnings.filterwarnings("ignore", message="Using padding='same'")
    devices = [torch.device("cpu")]
    if args.device == "cuda":
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        else:
            print("CUDA was requested but PyTorch sees no GPU: measuring on the CPU only.", file=sys.stderr)
    print(f"# course_lib against PyTorch: largest absolute errors (torch {torch.__version__}, seed {args.seed})")
    for device in devices:
        start = time.perf_counter()
        rows = run(device, args.seed)
        report(rows, device, time.perf_counter() - start)


if __name__ == "__main__":
    main()
