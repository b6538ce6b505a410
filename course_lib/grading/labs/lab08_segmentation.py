"""Lab 8, upsampling and segmentation: its graded tests as specifications (see course_lib.grading.spec).

The student writes, with torch, nn and F:

* ``conv_transpose2d(x, weight, bias, stride, padding, output_padding)``: a transposed convolution, PyTorch's
  definition and weight layout (C_in, C_out, kH, kW), differentiable (autograd must reach x, weight and bias);
* ``max_pool_with_indices(x)``: 2x2 max pooling of stride 2 that also returns where each maximum came from (flat
  positions in each (H, W) plane, as PyTorch numbers them), and ``max_unpool(x, indices, output_size)``;
* ``SegNetToy(in_channels, mid_channels, classes)``: two convolution + pooling levels, then two unpooling +
  convolution levels, each unpooling with the indices of its own pooling;
* ``center_crop(skip, size)``: the centre of a U-Net's skip connection (valid convolutions shrink the maps);
* ``UNet()`` and ``train(model, images, masks)``, trained on ``shapes``.

The deterministic parts are judged against :mod:`course_lib.grading.upsampling`'s float64 references, and a wrong
value is compared with the known wrong computations (output padding ignored, kernel not flipped, indices ignored,
crop from the corner...). Three helpers of the preamble (:data:`PREAMBLE`) turn what cannot cross the wire into data:

* ``transposed_gradients``: the student's output and the gradients autograd gives x, weight and bias through it;
* ``describe_segnet``: a SegNetToy filled by :func:`~course_lib.grading.blocks.grader_value` (as in lab 6), its
  output, and its *wiring*: while it runs, the student's ``max_pool_with_indices`` and ``max_unpool`` are wrapped,
  so the grader learns which pooling's indices each unpooling received (a wrong wiring usually crashes on the
  shapes, and is named all the same);
* ``train_and_segment``: a fresh ``UNet()`` trained by the student's ``train`` in the sandbox, then its predicted
  masks for images the student never sees. The judge computes the mean IoU itself (the true masks stay in
  :class:`Heldout`).

The hidden segmentation tests train on 800 ``shapes`` images and test on 300 others, both drawn from seeds derived
from the submission's seed (course_lib, which draws them, is hidden in the sandbox), with the three shape classes
renamed by a secret derangement (:func:`class_permutation`): a hand-written colour-and-geometry segmenter, or one
that knows the classes' usual numbers, scores about 0.25; a network that learns from the masks it gets does not
notice. Both hidden tests judge one training run (``reuse=True``, as in lab 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ...layers.functional.pooling import max_pool2d as _library_max_pool2d
from ...layers.functional.pooling import max_unpool2d as _library_max_unpool2d
from ...layers.functional.transposed import conv_transpose2d as _library_conv_transpose2d
from ...models.segmentation import UNet as _LibraryUNet
from ...models.segmentation import unet as _library_unet
from ...train import evaluate, fit, train_step
from ..blocks import FILL_SOURCE, grader_weights
from ..checks import raised, tensor_message
from ..forbid import forbid_calls
from ..spec import Case, LabSpec, Test, derived_seed, fixed_cases, label_derangement
from ..upsampling import (
    crop_reference,
    explain_crop,
    explain_pool_indices,
    explain_segnet,
    explain_transposed,
    explain_unpool,
    explain_wiring,
    pool_reference,
    segnet_parameters,
    segnet_reference,
    transposed_reference,
    transposed_size,
    unpool_reference,
)

__all__ = ["SPEC", "PREAMBLE", "Heldout", "class_permutation", "training_seed", "segmentation_data", "TIME_BUDGET_S",
           "IMAGE_SIZE", "CLASSES"]

LAB = "lab08_segmentation"
IMAGE_SIZE = 32
CLASSES = 4  # background, circle, square, triangle
TIME_BUDGET_S = 60  # what the lab promises train(), on one core; the sandbox stops a call at 90 s
LIMITS = {"call_timeout_s": 90.0, "wall_s": 240.0}
HIDDEN_TRAIN, HIDDEN_TEST = 800, 300
VISIBLE_TRAIN, VISIBLE_TEST = 400, 200
THRESHOLDS = {"test_unet_learns": 0.5, "test_iou_hidden_70": 0.7, "test_iou_hidden_80": 0.8}

RULES = (
    "Lab 8 asks you to write a transposed convolution, max pooling with indices, max unpooling, a small SegNet, the "
    "centre crop of a skip connection and a U-Net with its training loop yourself, with torch, nn and F. Not "
    "allowed in an answer: course_lib (not available when your lab is graded; its conv_transpose2d, max_unpool2d and "
    "UNet are this lab's answers, and an answer copied from them is shown to your instructor), PyTorch's transposed "
    "convolutions (F.conv_transpose2d, nn.ConvTranspose2d), its max pooling and unpooling (F.max_pool2d, "
    "nn.MaxPool2d, F.max_unpool2d, nn.MaxUnpool2d, F.adaptive_max_pool2d), F.fold, torch.autograd (a transposed "
    "convolution is the gradient of a convolution), torchvision, reading files. Allowed: F.conv2d, F.pad, "
    "F.interpolate, every nn layer but those, optimizers and losses, and everything you write (your UNet upsamples "
    "with your conv_transpose2d and pools with your max_pool_with_indices)."
)

NO_SHORTCUTS = (
    "Lab 8 asks you to write it yourself; course_lib is not available when your lab is graded, so an answer that "
    "calls it fails there."
)

_TRANSPOSED = "PyTorch's transposed convolution: write conv_transpose2d yourself"
_POOL = "PyTorch's max pooling: use your max_pool_with_indices"
_UNPOOL = "PyTorch's max unpooling: write max_unpool yourself"
_FILES = "reads a file: the networks learn from the images and masks they receive"
FORBIDDEN = {
    "course_lib": "course_lib is not available when your lab is graded; its conv_transpose2d, max_unpool2d and UNet "
                  "are the reference answers",
    "*conv_transpose*": _TRANSPOSED, "*convtranspose*": _TRANSPOSED, "conv2d_input": _TRANSPOSED,
    "F.fold": "col2im, half of a transposed convolution", "nn.Fold": "col2im, half of a transposed convolution",
    "functional.fold": "col2im, half of a transposed convolution",
    "autograd": "computes a transposed convolution as the gradient of a convolution (loss.backward() is fine)",
    "vjp": "computes a transposed convolution as the gradient of a convolution",
    "*max_pool*": _POOL, "*maxpool*": _POOL, "*unpool*": _UNPOOL,
    "torchvision": "ready-made segmentation models and pretrained weights", "timm": "ready-made models",
    "load_state_dict": "loads weights instead of training them", "torch.load": _FILES, "hub": "downloads models",
    "open": _FILES, "pathlib": _FILES, "np.load": _FILES, "numpy.load": _FILES, "pickle": _FILES,
}

# course_lib's answers: refused while the visible tests run in the notebook, compared with the answers when graded.
REFERENCE_FUNCTIONS = (_library_conv_transpose2d, _library_max_unpool2d, _library_max_pool2d, _LibraryUNet.forward,
                       _library_unet, fit, train_step, evaluate)
ORIGINALS = (_library_conv_transpose2d, _library_max_unpool2d, _LibraryUNet, fit)

PREAMBLE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


''' + FILL_SOURCE + '''

def transposed_gradients(x, weight, bias, stride, padding, output_padding, grad_output):
    """Your conv_transpose2d's output, and the gradients autograd gives x, weight and bias when the output's
    gradient is grad_output (None where autograd reaches no gradient)."""
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out = conv_transpose2d(*leaves, stride=stride, padding=padding, output_padding=output_padding)
    if not isinstance(out, torch.Tensor) or not out.requires_grad or out.shape != grad_output.shape:
        return {"output": out.detach() if isinstance(out, torch.Tensor) else out, "x": None, "weight": None,
                "bias": None}
    grads = torch.autograd.grad(out, leaves, grad_output, allow_unused=True)
    return {"output": out.detach(), **{name: None if g is None else g.detach()
                                       for name, g in zip(("x", "weight", "bias"), grads)}}


def describe_segnet(args, x, seed):
    """SegNetToy(*args) with every parameter set by grader_value(name, shape, seed): the shapes of its parameters,
    its output for x (or the error it raised) and which pooling's indices each max_unpool call received."""
    namespace = globals()
    pool, unpool = namespace["max_pool_with_indices"], namespace["max_unpool"]
    pooled, unpooled = [], []

    def recorded_pool(*a, **k):
        result = pool(*a, **k)
        if isinstance(result, tuple) and len(result) == 2:
            pooled.append(result[1])
        return result

    def recorded_unpool(h, indices, *a, **k):
        unpooled.append(indices)
        return unpool(h, indices, *a, **k)

    namespace["max_pool_with_indices"], namespace["max_unpool"] = recorded_pool, recorded_unpool
    try:
        model = SegNetToy(*args)
        parameters = {name: tuple(p.shape) for name, p in model.named_parameters()}
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(grader_value(name, tuple(p.shape), seed).to(p.dtype))
        model.eval()
        try:
            with torch.no_grad():
                output, error = model(x.clone()), None
            if not isinstance(output, torch.Tensor):
                output, error = None, f"TypeError: forward returned a {type(output).__name__}, not a tensor"
        except Exception as failure:
            output, error = None, f"{type(failure).__name__}: {failure}"
    finally:
        namespace["max_pool_with_indices"], namespace["max_unpool"] = pool, unpool

    def source(indices):
        for number, candidate in enumerate(pooled):
            if indices is candidate or (isinstance(indices, torch.Tensor) and isinstance(candidate, torch.Tensor)
                                        and indices.shape == candidate.shape and torch.equal(indices, candidate)):
                return number
        return None

    wiring = [source(indices) for indices in unpooled]
    return {"parameters": parameters, "output": None if output is None else output.detach().clone(), "error": error,
            "wiring": wiring, "poolings": len(pooled)}


_RUNS = {}


def train_and_segment(x_train, m_train, x_test, seed, reuse=False):
    """Seed torch, random and numpy with seed, train a fresh UNet() with your train() on (x_train, m_train), and
    return its predicted masks for x_test: (N, H, W) int64, the class of largest logit at each pixel. With
    reuse=True, a second call with the same seed and shapes answers from the first run's predictions."""
    key = (seed, tuple(x_train.shape), tuple(x_test.shape))
    if reuse and key in _RUNS:
        return _RUNS[key].clone()
    import random

    import numpy

    random.seed(seed)
    numpy.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    model = UNet()
    train(model, x_train.clone(), m_train.clone())
    model.eval()
    device = next(model.parameters()).device
    predictions = []
    with torch.no_grad():
        for first in range(0, len(x_test), 100):
            logits = model(x_test[first:first + 100].to(device))
            expected = (len(x_test[first:first + 100]), 4, *x_test.shape[-2:])
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(f"UNet's output for images of shape {tuple(x_test[first:first + 100].shape)} has "
                                 f"shape {got}, expected {expected}: 4 logits per pixel, the image's size")
            predictions.append(logits.argmax(dim=1).cpu())
    predictions = torch.cat(predictions)
    if reuse:
        _RUNS[key] = predictions
    return predictions.clone()
'''


def _randn(shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- Part 1: the transposed convolution ------------------------------------------------------------------------------


def _transposed_case(x_shape, c_out, kernel, stride, padding, output_padding, seed, bias=True) -> Case:
    c_in = x_shape[1]
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    x = _randn(x_shape, seed)
    weight = _randn((c_in, c_out, *kernel), seed + 1)
    b = _randn((c_out,), seed + 2) if bias else None
    label = (f"x {tuple(x_shape)}, weight {tuple(weight.shape)}, {'bias' if bias else 'no bias'}, stride={stride}, "
             f"padding={padding}, output_padding={output_padding}")
    return Case((x, weight, b), {"stride": stride, "padding": padding, "output_padding": output_padding}, label)


TRANSPOSED_BASIC = [
    _transposed_case((1, 1, 2, 2), 1, 2, 1, 0, 0, 1, bias=False),
    _transposed_case((2, 3, 3, 4), 3, 3, 1, 0, 0, 2),  # as many channels out as in: a weight read (C_out, C_in) fits
    _transposed_case((2, 2, 3, 3), 3, 2, 2, 0, 0, 3),  # the U-Net's 2x2, stride 2 upsampling
    _transposed_case((1, 2, 4, 3), 2, 3, 2, 0, 0, 4, bias=False),  # overlapping kernels add up
]
TRANSPOSED_PADDING = [
    _transposed_case((2, 2, 4, 4), 3, 3, 2, 1, 1, 11),  # undoes a 3x3 convolution of stride 2 and padding 1 on 8x8
    _transposed_case((1, 3, 3, 5), 3, 3, 1, 1, 0, 12),
    _transposed_case((2, 2, 3, 3), 2, 4, 2, 1, 0, 13),  # kernel 4, stride 2, padding 1: exactly doubles
    _transposed_case((1, 1, 3, 2), 2, (3, 2), 3, 1, 2, 14),
]


def _transposed_problem(case: Case, value) -> str | None:
    x, weight, bias = case.args
    kwargs = dict(case.kwargs)
    right = transposed_reference(x, weight, bias, **kwargs)
    return tensor_message(value, right, "the output",
                          lambda actual: explain_transposed(actual, x, weight, bias, **kwargs))


def _judge_transposed(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    return _transposed_problem(case, value)


def _gradient_case(x_shape, c_out, kernel, stride, padding, output_padding, seed) -> Case:
    case = _transposed_case(x_shape, c_out, kernel, stride, padding, output_padding, seed)
    x, weight, bias = case.args
    size = [transposed_size(x_shape[2 + a], weight.shape[2 + a], stride, padding, output_padding) for a in (0, 1)]
    grad_output = _randn((x_shape[0], c_out, *size), seed + 3)
    return Case((x, weight, bias, stride, padding, output_padding, grad_output), {},
                case.label + ", the gradients of x, weight and bias by autograd")


GRADIENT = [_gradient_case((2, 2, 3, 3), 3, 3, 2, 1, 1, 21), _gradient_case((1, 3, 2, 4), 2, 2, 2, 0, 0, 22)]


def _judge_gradient(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    x, weight, bias, stride, padding, output_padding, grad_output = case.args
    if not isinstance(value, dict):
        return f"the grader's helper got a {type(value).__name__}, not your output and gradients"
    problem = _transposed_problem(Case((x, weight, bias), {"stride": stride, "padding": padding,
                                                           "output_padding": output_padding}), value.get("output"))
    if problem:
        return problem + "\n(make test_transposed_basic and test_transposed_padding pass first)"
    leaves = [t.double().clone().requires_grad_() for t in (x, weight, bias)]
    out = transposed_reference(*leaves, stride, padding, output_padding)
    right = dict(zip(("x", "weight", "bias"), torch.autograd.grad(out, leaves, grad_output.double())))
    for name in ("x", "weight", "bias"):
        grad = value.get(name)
        if grad is None:
            return (f"autograd reaches no gradient of {name} through your conv_transpose2d.\nLikely cause: the "
                    "computation leaves torch (a .item(), .numpy() or .tolist(), a new tensor built from values), or "
                    f"{name} is detached; build the output from {name} with torch operations only (indexing, "
                    "assignment into a tensor of zeros, F.pad, F.conv2d and sums all keep the gradient)")
        message = tensor_message(grad, right[name], f"the gradient of {name}")
        if message:
            return message
    return None


def _hidden_transposed(seed: int) -> list[Case]:
    """Six transposed convolutions drawn from the seed: sizes, channels, kernels, strides, padding, output padding."""
    rng = np.random.default_rng([seed, 8001])
    cases = []
    for number in range(6):
        stride = int(rng.integers(1, 4))
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5))) if number % 2 else int(rng.integers(2, 5))
        k_min = min(kernel) if isinstance(kernel, tuple) else kernel
        padding = int(rng.integers(0, k_min))
        output_padding = int(rng.integers(0, stride))
        c_in = int(rng.integers(1, 5))
        c_out = c_in if number == 0 else int(rng.integers(1, 5))  # one case with as many channels out as in
        shape = (int(rng.integers(1, 4)), c_in, int(rng.integers(2, 7)), int(rng.integers(2, 7)))
        k_h, k_w = kernel if isinstance(kernel, tuple) else (kernel, kernel)
        while min(transposed_size(shape[2], k_h, stride, padding, output_padding),
                  transposed_size(shape[3], k_w, stride, padding, output_padding)) < 2:
            shape = (shape[0], c_in, shape[2] + 1, shape[3] + 1)  # an output of at least 2x2
        cases.append(_transposed_case(shape, c_out, kernel, stride, padding, output_padding,
                                      int(rng.integers(2**31)), bias=bool(number != 1)))
    return cases


def _hidden_gradients(seed: int) -> list[Case]:
    """Two gradient checks drawn from the seed (a stride of 2 or 3, padding and output padding)."""
    rng = np.random.default_rng([seed, 8005])
    cases = []
    for _ in range(2):
        stride = int(rng.integers(2, 4))
        kernel = int(rng.integers(2, 5))
        padding = int(rng.integers(0, kernel // 2 + 1))  # (H - 1) S - 2P + k >= S + 0 > 1 with H >= 2
        cases.append(_gradient_case((int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(2, 6)),
                                     int(rng.integers(2, 6))), int(rng.integers(1, 4)), kernel, stride, padding,
                                    int(rng.integers(0, stride)), int(rng.integers(2**31))))
    return cases


# --- Part 2: max pooling with indices, max unpooling, SegNetToy --------------------------------------------------


def _pool_case(shape, seed) -> Case:
    return Case((_randn(shape, seed),), {}, f"x of shape {tuple(shape)}")


POOL = [_pool_case((1, 1, 4, 4), 31), _pool_case((2, 3, 6, 8), 32), _pool_case((2, 2, 7, 5), 33)]


def _judge_pool(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    (x,) = case.args
    values, indices = pool_reference(x)
    if not isinstance(value, tuple) or len(value) != 2:
        return f"max_pool_with_indices returned a {type(value).__name__}, expected a tuple (values, indices)"
    message = tensor_message(value[0], values, "the pooled values")
    if message:
        return message
    got = value[1]
    if not isinstance(got, torch.Tensor) or got.dtype != torch.int64:
        what = got.dtype if isinstance(got, torch.Tensor) else type(got).__name__
        return f"the indices are {what}, expected an int64 tensor (torch.long)"
    if got.shape != indices.shape or not torch.equal(got, indices):
        wrong = int((got != indices).sum()) if got.shape == indices.shape else None
        head = (f"the indices have shape {tuple(got.shape)}, expected {tuple(indices.shape)}" if wrong is None else
                f"{wrong} of {indices.numel()} indices are wrong")
        cause = explain_pool_indices(got, x)
        return head + (f"\nLikely cause: {cause}" if cause else "")
    return None


def _hidden_pool(seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 8006])
    return [_pool_case((int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(2, 12)),
                        int(rng.integers(2, 12))), int(rng.integers(2**31))) for _ in range(4)]


def _unpool_case(shape, seed) -> Case:
    """Pooled values and their indices from a map of ``shape``, to unpool back to its size."""
    x = _randn(shape, seed)
    values, indices = pool_reference(x)
    values = _randn(tuple(values.shape), seed + 1)  # new values: unpooling puts back whatever it is given
    return Case((values, indices, tuple(shape[-2:])), {},
                f"x of shape {tuple(values.shape)}, indices of a 2x2 pooling of a {shape[-2]}x{shape[-1]} map, "
                f"output_size={tuple(shape[-2:])}")


UNPOOL = [_unpool_case((1, 1, 4, 4), 41), _unpool_case((2, 3, 6, 8), 42), _unpool_case((2, 2, 7, 5), 43)]


def _judge_unpool(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    x, indices, size = case.args
    return tensor_message(value, unpool_reference(x, indices, size), "the unpooled map",
                          lambda actual: explain_unpool(actual, x, indices, size))


def _hidden_unpool(seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 8002])
    return [_unpool_case((int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(2, 12)),
                          int(rng.integers(2, 12))), int(rng.integers(2**31))) for _ in range(4)]


def _segnet_case(args, x_shape, seed) -> Case:
    x = _randn(x_shape, seed + 5)
    return Case((tuple(args), x, int(seed)), {},
                f"SegNetToy(in_channels={args[0]}, mid_channels={args[1]}, classes={args[2]}) with the grader's "
                f"weights (seed {seed}), x of shape {tuple(x_shape)}")


SEGNET = [_segnet_case((3, 4, 4), (2, 3, 8, 8), 51), _segnet_case((2, 3, 3), (1, 2, 10, 7), 52)]


def _judge_segnet(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    args, x, seed = case.args
    if not isinstance(value, dict) or not isinstance(value.get("parameters"), dict):
        return f"the grader's helper got a {type(value).__name__}, not the description of your SegNetToy"
    expected = segnet_parameters(*args)
    shapes = {str(k): tuple(v) for k, v in value["parameters"].items()}
    if shapes != expected:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        wrong = [f"{n} {shapes[n]}, expected {expected[n]}" for n in sorted(set(expected) & set(shapes))
                 if shapes[n] != expected[n]]
        details = "; ".join(part for part in (f"missing: {', '.join(missing)}" if missing else "",
                                              f"not in the lab's SegNetToy: {', '.join(extra)}" if extra else "",
                                              f"wrong shapes: {'; '.join(wrong)}" if wrong else "") if part)
        return (f"SegNetToy{tuple(args)}'s parameters are not the lab's: {details}.\n(The lab prescribes four 3x3 "
                "convolutions with padding 1 and bias, named enc1, enc2, dec2, dec1; see the part's table.)")
    output, forward_error = value.get("output"), value.get("error")
    wiring = explain_wiring(value.get("wiring"), completed=not forward_error)
    weights = grader_weights(expected, seed)
    right = segnet_reference(x, weights)
    if forward_error:
        return f"its forward pass raised {forward_error}" + (f"\nLikely cause: {wiring}" if wiring else "")
    message = tensor_message(output, right, "its output (logits)",
                             lambda actual: explain_segnet(actual, x, weights) or wiring)
    if message and value.get("poolings") != 2:
        message += ("\n(SegNetToy must pool with your max_pool_with_indices, twice, and unpool with your max_unpool: "
                    f"the grader saw {value.get('poolings')} calls of max_pool_with_indices)")
    return message


def _hidden_segnet(seed: int) -> list[Case]:
    """Three SegNetToys drawn from the seed: channels, classes, input sizes (odd ones too) and weight seeds."""
    rng = np.random.default_rng([seed, 8003])
    cases = []
    for _ in range(3):
        args = (int(rng.integers(1, 5)), int(rng.integers(2, 7)), int(rng.integers(2, 6)))
        shape = (int(rng.integers(1, 4)), args[0], int(rng.integers(4, 13)), int(rng.integers(4, 13)))
        cases.append(_segnet_case(args, shape, int(rng.integers(2**31))))
    return cases


# --- Part 3: the centre crop and the U-Net ---------------------------------------------------------------------------


def _crop_case(shape, size, seed) -> Case:
    skip = _randn(shape, seed)
    return Case((skip, tuple(size)), {}, f"skip of shape {tuple(shape)}, size={tuple(size)}")


CROP = [
    _crop_case((1, 2, 8, 8), (4, 4), 61),  # an even difference: 2 rows on each side
    _crop_case((2, 3, 9, 9), (6, 6), 62),  # an odd difference: 1 row at the top, 2 at the bottom
    _crop_case((1, 2, 11, 8), (6, 3), 63),  # a non-square crop
    _crop_case((1, 1, 5, 5), (5, 5), 64),  # nothing to crop
]
CROP_TOO_LARGE = Case((_randn((1, 2, 4, 4), 65), (6, 4)), {}, "skip of shape (1, 2, 4, 4), size=(6, 4): larger "
                                                                "than the skip connection (must raise ValueError)")


def _judge_crop(case: Case, value, error) -> str | None:
    skip, size = case.args
    if size[0] > skip.shape[-2] or size[1] > skip.shape[-1]:
        if error is not None and error.startswith("ValueError"):
            return None
        return ("a size larger than the skip connection must raise ValueError (naming size and skip's shape), "
                + (f"not {error}" if error else "not return a tensor"))
    if error is not None:
        return raised(error)
    return tensor_message(value, crop_reference(skip, size), "the crop",
                          lambda actual: explain_crop(actual, skip, size))


def _hidden_crop(seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, 8004])
    cases = []
    for number in range(5):
        big_h, big_w = int(rng.integers(4, 17)), int(rng.integers(4, 17))
        size = (int(rng.integers(1, big_h + 1)), int(rng.integers(1, big_w + 1)))
        if number == 0:  # an odd difference on both sides, always among the cases
            size = (big_h - 1 - 2 * int(rng.integers(0, (big_h - 2) // 2 + 1)),
                    big_w - 1 - 2 * int(rng.integers(0, (big_w - 2) // 2 + 1)))
        cases.append(_crop_case((int(rng.integers(1, 3)), int(rng.integers(1, 4)), big_h, big_w), size,
                                int(rng.integers(2**31))))
    return cases


@dataclass(frozen=True)
class Heldout(Case):
    """A call of train_and_segment with the masks its predictions are judged against. Only ``args`` and
    ``kwargs`` are sent to the sandbox; ``answers`` stay in the grader."""

    answers: torch.Tensor | None = None


def _derived(seed: int, purpose: str) -> int:
    return derived_seed(LAB, seed, purpose)


def class_permutation(seed: int) -> torch.Tensor:
    """The secret renaming of a submission's classes: class c is called ``perm[c]``; the background keeps 0, and no
    shape keeps its class (a derangement of circle, square, triangle)."""
    return torch.cat([torch.zeros(1, dtype=torch.int64), 1 + label_derangement(LAB, seed, classes=3)])


def training_seed(seed: int) -> int:
    """The seed the sandbox trains with: derived from ``seed``, unrelated to the data and the renaming."""
    return _derived(seed, "training") % 2**31


@lru_cache(maxsize=4)
def segmentation_data(train_seed: int, test_seed: int, n_train: int, n_test: int):
    """``shapes`` images of 32x32 on noise, and their masks: (x_train, m_train, x_test, m_test)."""
    from ...data.shapes import make_shapes

    train = make_shapes(n_train, IMAGE_SIZE, background="noise", seed=train_seed)
    test = make_shapes(n_test, IMAGE_SIZE, background="noise", seed=test_seed)
    return train.images, train.masks, test.images, test.masks


VISIBLE_SEEDS = (101, 102)


def _visible_training(seed: int) -> list[Heldout]:
    x, m, x_test, m_test = segmentation_data(*VISIBLE_SEEDS, VISIBLE_TRAIN, VISIBLE_TEST)
    return [Heldout((x, m, x_test, 0), {},
                    f"a fresh UNet trained by train() on {VISIBLE_TRAIN} shapes images (train() has "
                    f"{TIME_BUDGET_S} s), then segmenting {VISIBLE_TEST} others", m_test)]


def _hidden_training(seed: int) -> list[Heldout]:
    # Data seeds from a range no notebook uses (the notebook's are small numbers), unknown without the key.
    train_seed = 10**6 + _derived(seed, "train images") % 10**9
    test_seed = 10**6 + _derived(seed, "test images") % 10**9
    x, m, x_test, m_test = segmentation_data(train_seed, test_seed, HIDDEN_TRAIN, HIDDEN_TEST)
    perm = class_permutation(seed)
    return [Heldout((x, perm[m], x_test, training_seed(seed)), {"reuse": True},
                    f"a fresh UNet trained by train() on {HIDDEN_TRAIN} shapes images, classes renamed (train() has "
                    f"{TIME_BUDGET_S} s), then segmenting {HIDDEN_TEST} held-out images", perm[m_test])]


NOT_LEARNING = (
    "the model is not learning. Check that train() calls optimizer.zero_grad(), loss.backward() and "
    "optimizer.step() for every mini-batch, that the loss gets (logits (N, 4, H, W), masks (N, H, W)) in that order, "
    "that the optimizer holds the parameters of the model train() received, and the learning rate"
)
BACKGROUND_ONLY = (
    "the model predicts the background everywhere: most pixels are background, so that is where a loss that has not "
    "learnt yet settles. Train longer or with a larger learning rate (Adam around 1e-2 to 3e-3 works), and check "
    "that the upsampling path reaches the output (a U-Net whose decoder gets no gradient cannot draw shapes)"
)
RENAMED = (
    "; and learn from the masks train() receives: the grader renames the shape classes, so a segmenter that knows "
    "which number is a circle scores about 0.25"
)
NOT_ENOUGH = (
    "the model learns, but not enough: more epochs within the time budget, a larger learning rate with a schedule "
    "(one cycle: warm up, then decay), batch norm after each convolution, and skip connections that reach the "
    "decoder all help; measure each change on your validation images"
)


def _judge_iou(threshold: float, hidden: bool):
    def judge(case: Heldout, value, error) -> str | None:
        from ...analysis.segmentation import iou_per_class, mean_iou

        if error is not None:
            return raised(error)
        expected = case.answers
        if not isinstance(value, torch.Tensor):
            return (f"the predicted masks are a {type(value).__name__}, expected a tensor of shape "
                    f"{tuple(expected.shape)}")
        if tuple(value.shape) != tuple(expected.shape):
            return (f"the predicted masks have shape {tuple(value.shape)}, expected {tuple(expected.shape)}: UNet must "
                    "return logits of shape (N, 4, H, W), the images' size")
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            return f"the predicted masks are {value.dtype}, expected integer classes"
        if value.numel() and (value.min() < 0 or value.max() >= CLASSES):
            return f"predicted classes range from {int(value.min())} to {int(value.max())}, expected 0 to 3"
        score = mean_iou(value.long(), expected, CLASSES)
        if score >= threshold:
            return None
        per_class = iou_per_class(value.long(), expected, CLASSES)
        classes = ", ".join(f"{name} {iou:.2f}" for name, iou in zip(("background", "class 1", "class 2", "class 3"),
                                                                     per_class.tolist()))
        if bool((value == 0).all()):
            cause = BACKGROUND_ONLY
        elif score < 0.35:
            cause = NOT_LEARNING + (RENAMED if hidden else "")
        else:
            cause = NOT_ENOUGH
        return (f"mean IoU {score:.3f} over {len(expected)} images (IoU per class: {classes}), below the "
                f"{threshold:.2f} this test asks for.\nLikely cause: {cause}")

    return judge


SPEC = LabSpec(
    name=LAB,
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=ORIGINALS,
    guard=lambda: forbid_calls(ops={}, functions=REFERENCE_FUNCTIONS, why=NO_SHORTCUTS),
    limits=LIMITS,
    tests=[
        Test("test_transposed_basic", "conv_transpose2d", "conv_transpose2d, stride without padding",
             fixed_cases(TRANSPOSED_BASIC), _judge_transposed),
        Test("test_transposed_padding", "conv_transpose2d", "conv_transpose2d, padding and output padding",
             fixed_cases(TRANSPOSED_PADDING), _judge_transposed),
        Test("test_transposed_gradient", "transposed_gradients", "conv_transpose2d, its gradients",
             fixed_cases(GRADIENT), _judge_gradient),
        Test("test_transposed_gradient_hidden", "transposed_gradients", "conv_transpose2d, gradients, hidden cases",
             _hidden_gradients, _judge_gradient, hidden=True),
        Test("test_transposed_hidden", "conv_transpose2d", "conv_transpose2d, hidden cases", _hidden_transposed,
             _judge_transposed, hidden=True),
        Test("test_pool_indices", "max_pool_with_indices", "max_pool_with_indices", fixed_cases(POOL), _judge_pool),
        Test("test_pool_hidden", "max_pool_with_indices", "max_pool_with_indices, hidden cases", _hidden_pool,
             _judge_pool, hidden=True),
        Test("test_unpool", "max_unpool", "max_unpool", fixed_cases(UNPOOL), _judge_unpool),
        Test("test_unpool_hidden", "max_unpool", "max_unpool, hidden cases", _hidden_unpool, _judge_unpool,
             hidden=True),
        Test("test_segnet", "describe_segnet", "SegNetToy", fixed_cases(SEGNET), _judge_segnet),
        Test("test_segnet_hidden", "describe_segnet", "SegNetToy, hidden cases", _hidden_segnet, _judge_segnet,
             hidden=True),
        Test("test_center_crop", "center_crop", "center_crop", fixed_cases([*CROP, CROP_TOO_LARGE]), _judge_crop),
        Test("test_center_crop_hidden", "center_crop", "center_crop, hidden cases", _hidden_crop, _judge_crop,
             hidden=True),
        Test("test_unet_learns", "train_and_segment", "UNet and train, a quick check", _visible_training,
             _judge_iou(THRESHOLDS["test_unet_learns"], hidden=False)),
        Test("test_iou_hidden_70", "train_and_segment", "UNet and train, mean IoU 0.70 on held-out images",
             _hidden_training, _judge_iou(THRESHOLDS["test_iou_hidden_70"], hidden=True), hidden=True),
        Test("test_iou_hidden_80", "train_and_segment", "UNet and train, mean IoU 0.80 on held-out images",
             _hidden_training, _judge_iou(THRESHOLDS["test_iou_hidden_80"], hidden=True), hidden=True),
    ],
)
