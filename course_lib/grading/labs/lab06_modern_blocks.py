"""Lab 6, modern blocks: its graded tests as specifications (see course_lib.grading.spec).

The student writes five ``nn.Module`` classes with a prescribed interface (constructor arguments and submodule
names, so that the grader can reach every weight by name):

* ``InceptionBlock(in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_proj)``: ``branch1``, ``branch3_reduce``,
  ``branch3``, ``branch5_reduce``, ``branch5``, ``branch_pool`` (convolutions with bias, each followed by ReLU);
* ``BasicBlock(in_channels, out_channels, stride)``: ``conv1, bn1, conv2, bn2`` and ``shortcut``, None where the
  shape does not change, else ``nn.Sequential(1x1 conv with the stride, BN)``;
* ``BottleneckBlock(in_channels, mid_channels, out_channels, stride)``: ``conv1..3, bn1..3, shortcut``, the stride
  on the 3x3 convolution (torchvision's ResNet v1.5);
* ``DepthwiseSeparableConv(in_channels, out_channels, kernel_size, stride)``: ``depthwise, bn1, pointwise, bn2``,
  each convolution followed by BN and ReLU (MobileNet v1);
* ``SqueezeExcitation(channels, reduction)``: ``fc1, fc2`` (``nn.Linear``).

A module cannot cross the wire, so each test calls a helper of the preamble (:data:`PREAMBLE`, trusted code run
before the answer cells) that builds the student's module, fills every parameter and buffer with
:func:`~course_lib.grading.blocks.grader_value` of its name and a seed the grader chooses, and returns the names and
shapes of the parameters and buffers, what ``shortcut`` holds, and the outputs for an input ``x`` in evaluation and
in training mode (batch norm!). The judges compare the names, shapes and parameter count with the lab's, name what
the difference reveals (:mod:`course_lib.grading.blocks`), and compare the outputs with the right forward pass,
computed here from weights the grader draws itself from the same names and seed; a wrong output is compared with
known wrong forward passes (BN after the addition, SE without the sigmoid...). Hidden tests draw other channel
counts, strides, input sizes and weight seeds from the submission's seed.

course_lib's own blocks (:class:`~course_lib.models.resnet.BasicBlock`, ``Bottleneck``, ``make_shortcut``,
:class:`~course_lib.models.inception.InceptionModule`, :class:`~course_lib.layers.conv.DepthwiseSeparableConv2d`,
:class:`~course_lib.layers.attention.SqueezeExcitation`) have other interfaces: pasted in, they fail the tests
(an ``nn.Identity`` shortcut, BN in the inception branches, a stride argument missing, 1x1 convolutions in SE), and
the grader's similarity scan lists them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...layers.attention import SqueezeExcitation as _LibrarySE
from ...layers.conv import DepthwiseSeparableConv2d
from ...models.inception import InceptionModule
from ...models.resnet import BasicBlock as _LibraryBasic
from ...models.resnet import Bottleneck, make_shortcut
from ..blocks import (
    FILL_SOURCE,
    basic_forward,
    basic_parameters,
    batchnorm_buffers,
    bottleneck_forward,
    bottleneck_parameters,
    explain_basic_output,
    explain_bottleneck_output,
    explain_inception_output,
    explain_inception_structure,
    explain_residual_structure,
    explain_se_output,
    explain_se_structure,
    explain_separable_output,
    explain_separable_structure,
    grader_weights,
    inception_forward,
    inception_parameters,
    residual_needs_projection,
    se_forward,
    se_parameters,
    separable_forward,
    separable_parameters,
    strided,
)
from ..checks import raised, tensor_message
from ..forbid import forbid_calls
from ..spec import Case, LabSpec, Test, fixed_cases

__all__ = ["SPEC", "PREAMBLE", "BLOCKS", "ORIGINALS"]

RULES = (
    "Lab 6 asks you to build an inception module, two residual blocks, a depthwise separable convolution and a "
    "squeeze-and-excitation block yourself, from nn layers (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.MaxPool2d, "
    "nn.Sequential) and torch / F functions. Not allowed in an answer: course_lib (not available when your lab is "
    "graded; its BasicBlock, Bottleneck, InceptionModule, DepthwiseSeparableConv2d and SqueezeExcitation are this "
    "lab's reference answers, and an answer copied from them is shown to your instructor), torchvision's models "
    "(their BasicBlock, Bottleneck, Inception and SqueezeExcitation), reading files."
)

NO_SHORTCUTS = (
    "Lab 6 asks you to write the blocks yourself; course_lib is not available when your lab is graded, so an answer "
    "that calls it fails there."
)

_MODELS = "torchvision's models hold ready-made residual, inception and SE blocks: write your own"
_FILES = "reads a file: the blocks are built from their arguments"
FORBIDDEN = {
    "course_lib": "course_lib is not available when your lab is graded; its blocks are the reference answers",
    "torchvision": _MODELS, "timm": _MODELS,
    "load_state_dict": "loads weights: the grader sets every weight itself", "torch.load": _FILES,
    "open": _FILES, "pathlib": _FILES, "np.load": _FILES, "numpy.load": _FILES, "pickle": _FILES,
}

# course_lib's blocks: the similarity scan compares answers with them (classes and the shortcut factory).
ORIGINALS = (InceptionModule, _LibraryBasic, Bottleneck, make_shortcut, DepthwiseSeparableConv2d, _LibrarySE)
# Their methods that a call into course_lib would run (refused while the visible tests run in the notebook; their
# constructors call super(), a closure that forbid_calls cannot swap, and build nothing without forward).
REFERENCE_FUNCTIONS = (InceptionModule.forward, _LibraryBasic.forward, Bottleneck.forward, make_shortcut,
                       DepthwiseSeparableConv2d.forward, _LibrarySE.forward)

PREAMBLE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


''' + FILL_SOURCE + '''

def _describe(block, args, x, seed):
    """block(*args) with every parameter and buffer set by grader_value(name, shape, seed): the names and shapes of
    its parameters and buffers, what its shortcut attribute holds, and its outputs for x in eval and train mode."""
    model = block(*args)
    parameters = {name: tuple(p.shape) for name, p in model.named_parameters()}
    buffers = {name: tuple(b.shape) for name, b in model.named_buffers() if b.is_floating_point()}
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(grader_value(name, tuple(tensor.shape), seed).to(tensor.dtype))
    if not hasattr(model, "shortcut"):
        shortcut = "absent"
    elif model.shortcut is None:
        shortcut = None
    else:
        shortcut = type(model.shortcut).__name__
    described = {"parameters": parameters, "buffers": buffers, "shortcut": shortcut}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        try:
            with torch.no_grad():
                output = model(x.clone())
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"forward returned a {type(output).__name__}, not a tensor")
            described[mode], described[mode + "_error"] = output.detach().clone(), None
        except Exception as error:
            described[mode], described[mode + "_error"] = None, f"{type(error).__name__}: {error}"
    return described


def describe_inception(args, x, seed):
    """InceptionBlock(*args), filled by the grader, and its outputs for x."""
    return _describe(InceptionBlock, args, x, seed)


def describe_basic(args, x, seed):
    """BasicBlock(*args), filled by the grader, and its outputs for x (eval and train mode)."""
    return _describe(BasicBlock, args, x, seed)


def describe_bottleneck(args, x, seed):
    """BottleneckBlock(*args), filled by the grader, and its outputs for x (eval and train mode)."""
    return _describe(BottleneckBlock, args, x, seed)


def describe_separable(args, x, seed):
    """DepthwiseSeparableConv(*args), filled by the grader, and its outputs for x (eval and train mode)."""
    return _describe(DepthwiseSeparableConv, args, x, seed)


def describe_se(args, x, seed):
    """SqueezeExcitation(*args), filled by the grader, and its output for x."""
    return _describe(SqueezeExcitation, args, x, seed)
'''


# --- what each block must be ------------------------------------------------------------------------------------


class Block:
    """One of the lab's classes: its name, the names of its constructor arguments, and the trusted side."""

    def __init__(self, name, arg_names, parameters, output_shape, forward, explain_structure, explain_output,
                 residual=False, uses_bn=True):
        self.name, self.arg_names = name, arg_names
        self.parameters, self.output_shape, self.forward = parameters, output_shape, forward
        self.explain_structure, self.explain_output = explain_structure, explain_output
        self.residual, self.uses_bn = residual, uses_bn

    def call(self, args) -> str:
        return f"{self.name}({', '.join(f'{n}={a}' for n, a in zip(self.arg_names, args))})"


def _inception_output(args, x_shape):
    _, c1, _, c3, _, c5, pp = args
    return (x_shape[0], c1 + c3 + c5 + pp, *x_shape[2:])


def _residual_output(out_channels, stride, x_shape):
    return (x_shape[0], out_channels, strided(x_shape[2], stride), strided(x_shape[3], stride))


BLOCKS = {
    "inception": Block(
        "InceptionBlock", ("in_channels", "c1", "c3_reduce", "c3", "c5_reduce", "c5", "pool_proj"),
        lambda args: inception_parameters(*args), _inception_output,
        lambda args, x, w, train: inception_forward(x, w),
        explain_inception_structure,
        lambda args, actual, x, w, train: explain_inception_output(actual, x, w), uses_bn=False),
    "basic": Block(
        "BasicBlock", ("in_channels", "out_channels", "stride"), lambda args: basic_parameters(*args),
        lambda args, s: _residual_output(args[1], args[2], s),
        lambda args, x, w, train: basic_forward(x, w, args[2], train),
        lambda args, shapes: explain_residual_structure("basic", args, shapes),
        lambda args, actual, x, w, train: explain_basic_output(actual, x, w, args[2], train), residual=True),
    "bottleneck": Block(
        "BottleneckBlock", ("in_channels", "mid_channels", "out_channels", "stride"),
        lambda args: bottleneck_parameters(*args),
        lambda args, s: _residual_output(args[2], args[3], s),
        lambda args, x, w, train: bottleneck_forward(x, w, args[3], train),
        lambda args, shapes: explain_residual_structure("bottleneck", args, shapes),
        lambda args, actual, x, w, train: explain_bottleneck_output(actual, x, w, args[3], train), residual=True),
    "separable": Block(
        "DepthwiseSeparableConv", ("in_channels", "out_channels", "kernel_size", "stride"),
        lambda args: separable_parameters(*args),
        lambda args, s: _residual_output(args[1], args[3], s),
        lambda args, x, w, train: separable_forward(x, w, args[3], train),
        explain_separable_structure,
        lambda args, actual, x, w, train: explain_separable_output(actual, x, w, args[3], train)),
    "se": Block(
        "SqueezeExcitation", ("channels", "reduction"), lambda args: se_parameters(*args),
        lambda args, s: tuple(s),
        lambda args, x, w, train: se_forward(x, w),
        explain_se_structure,
        lambda args, actual, x, w, train: explain_se_output(actual, x, w), uses_bn=False),
}


def _count(shapes) -> int:
    return sum(math.prod(s) for s in shapes.values())


def _names(names) -> str:
    names = sorted(names)
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _structure_problem(block: Block, case: Case, value) -> str | None:
    """What is wrong with the parameters, buffers and shortcut of the student's module, or None."""
    args, x, _ = case.args
    if not isinstance(value, dict) or not isinstance(value.get("parameters"), dict) \
            or not isinstance(value.get("buffers"), dict):
        return f"the grader's helper got a {type(value).__name__}, not the description of your {block.name}"
    shapes = {str(k): tuple(v) for k, v in value["parameters"].items() if isinstance(v, (tuple, list))}
    expected = block.parameters(args)
    total, right = _count(shapes), _count(expected)
    missing = set(expected) - set(shapes)
    extra = set(shapes) - set(expected)
    wrong = {n for n in set(expected) & set(shapes) if shapes[n] != expected[n]}
    slips = block.explain_structure(args, shapes)
    if missing or extra or wrong:
        head = f"{block.call(args)} has {total:,} parameters" + (f", expected {right:,}." if total != right else
                                                                 f", as many as expected, but not the lab's.")
        details = []
        if missing:
            details.append(f"missing: {_names(missing)}")
        if extra:
            details.append(f"not in the lab's block: {_names(extra)}")
        if wrong:
            details.append("wrong shapes: " + "; ".join(f"{n} {shapes[n]}, expected {expected[n]}" for n in sorted(wrong)))
        names = " ".join(details)
        hint = ("\nLikely cause: " + "; ".join(slips)) if slips else \
            "\n(The lab prescribes each submodule's name; check the names and the shapes in the part's table.)"
        return f"{head} {names}.{hint}"
    buffers = {str(k) for k in value["buffers"]}
    needed = set(batchnorm_buffers(expected)) if block.uses_bn else set()
    if needed - buffers:
        return (f"{block.call(args)} has no running statistics for {_names(needed - buffers)}: use nn.BatchNorm2d with "
                "its defaults (track_running_stats=True), so that evaluation mode uses the running mean and variance")
    if block.residual:
        in_channels, out_channels, stride = args[0], args[-2], args[-1]
        shortcut = value.get("shortcut")
        if not residual_needs_projection(in_channels, out_channels, stride):
            if shortcut == "absent":
                return (f"{block.call(args)} has no attribute shortcut: set self.shortcut = None when the shape does "
                        "not change (forward then adds x itself)")
            if shortcut is not None:
                return (f"{block.call(args)}.shortcut holds a {shortcut} module, expected None.\nLikely cause: stride is 1 "
                        "and the channels do not change, so the shortcut is the identity: the lab asks for "
                        "self.shortcut = None there (not nn.Identity()), and forward adds x itself")
    return None


def _output_problem(block: Block, case: Case, value, mode: str) -> str | None:
    """What is wrong with the shape of the output in ``mode`` (or the error it raised), or None."""
    args, x, _ = case.args
    error = value.get(f"{mode}_error")
    if error:
        slips = block.explain_structure(args, {str(k): tuple(v) for k, v in value["parameters"].items()})
        if not slips and "Sizes of tensors must match" in error and block.name == "InceptionBlock":
            slips = ["the branches' grids differ, so torch.cat cannot stack them: every convolution pads by "
                     "kernel_size // 2 (padding=1 for 3x3, 2 for 5x5) and the max-pool by 1 (3x3, stride 1, padding 1)"]
        elif not slips and "must match the size of tensor" in error and block.residual:
            slips = ["F(x) and the shortcut do not have the same shape at the addition: the 3x3 convolutions pad by 1, "
                     "the stride goes on one convolution of F (and on the projection), nowhere else"]
        hint = ("\nLikely cause: " + "; ".join(slips)) if slips else ""
        return f"its forward pass ({mode} mode) raised {error}{hint}"
    output = value.get(mode)
    expected = block.output_shape(args, tuple(x.shape))
    if not isinstance(output, torch.Tensor):
        return f"its forward pass ({mode} mode) returned a {type(output).__name__}, not a tensor"
    if tuple(output.shape) != expected:
        hint = ""
        if block.name == "SqueezeExcitation" and len(output.shape) in (2, 4) and tuple(output.shape[:2]) == expected[:2]:
            hint = "\nLikely cause: forward returns the gate s; it returns x rescaled by it, x * s[:, :, None, None]"
        elif block.name == "SqueezeExcitation":
            hint = "\nLikely cause: forward must return x rescaled channel by channel: x * s[:, :, None, None]"
        elif tuple(output.shape[:2]) == expected[:2]:
            hint = ("\nLikely cause: the grid size changed: every convolution pads by kernel_size // 2 (1 for 3x3, 2 for "
                    "5x5), the pool of the inception module too (3x3, stride 1, padding 1), and only the stride "
                    "shrinks it")
        return (f"for x of shape {tuple(x.shape)} its output has shape {tuple(output.shape)}, expected {expected}"
                + hint)
    return None


def _judge_structure(kind: str):
    block = BLOCKS[kind]

    def judge(case: Case, value, error) -> str | None:
        if error is not None:
            return raised(error)
        problem = _structure_problem(block, case, value)
        if problem:
            return problem
        for mode in ("eval", "train"):
            problem = _output_problem(block, case, value, mode)
            if problem:
                return problem
        return None

    return judge


def _judge_forward(kind: str, structure_too: bool = False):
    block = BLOCKS[kind]

    def judge(case: Case, value, error) -> str | None:
        if error is not None:
            return raised(error)
        args, x, seed = case.args
        problem = _structure_problem(block, case, value) or _output_problem(block, case, value, "eval") \
            or _output_problem(block, case, value, "train")
        if problem:
            if structure_too:
                return problem
            return f"{block.name}'s parameters or output shape are not the lab's yet: make its structure test pass first"
        expected = block.parameters(args)
        weights = grader_weights({**expected, **(batchnorm_buffers(expected) if block.uses_bn else {})}, seed)
        modes = ("eval", "train") if block.uses_bn else ("eval",)
        for mode in modes:
            train = mode == "train"
            right = block.forward(args, x, weights, train)
            what = f"its output in {mode} mode" + (" (BN with the batch's statistics)" if train and block.uses_bn else
                                                   " (BN with the running statistics)" if block.uses_bn else "")
            message = tensor_message(value[mode], right, what,
                                     lambda actual: block.explain_output(args, actual, x, weights, train))
            if message:
                return message
        return None

    return judge


# --- the cases ----------------------------------------------------------------------------------------------------


def _x(shape, seed) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _case(kind: str, args, x_shape, seed) -> Case:
    block = BLOCKS[kind]
    x = _x(x_shape, seed + 17)
    return Case((tuple(int(a) for a in args), x, int(seed)), {},
                f"{block.call(args)} with the grader's weights (seed {seed}), x of shape {tuple(x_shape)}")


INCEPTION = [
    _case("inception", (192, 64, 96, 128, 16, 32, 32), (2, 192, 7, 7), 1),  # GoogLeNet's 3a, on a 7x7 map
    _case("inception", (8, 4, 3, 6, 2, 3, 5), (3, 8, 9, 6), 2),
    _case("inception", (5, 2, 4, 3, 3, 4, 1), (2, 5, 5, 8), 3),
]
BASIC = [
    _case("basic", (8, 8, 1), (4, 8, 7, 7), 11),  # identity shortcut
    _case("basic", (6, 10, 1), (4, 6, 6, 6), 12),  # the channels change
    _case("basic", (8, 8, 2), (4, 8, 9, 9), 13),  # the stride changes the grid
    _case("basic", (5, 12, 2), (3, 5, 8, 7), 14),  # both
]
BOTTLENECK = [
    _case("bottleneck", (16, 4, 16, 1), (4, 16, 6, 6), 21),
    _case("bottleneck", (8, 3, 12, 1), (4, 8, 5, 7), 22),
    _case("bottleneck", (16, 4, 16, 2), (4, 16, 8, 8), 23),
    _case("bottleneck", (6, 5, 20, 2), (3, 6, 9, 7), 24),
]
SEPARABLE = [
    _case("separable", (6, 10, 3, 1), (4, 6, 7, 7), 31),
    _case("separable", (8, 8, 3, 2), (4, 8, 9, 8), 32),
    _case("separable", (5, 12, 5, 2), (3, 5, 10, 9), 33),
]
SE = [
    _case("se", (16, 4), (3, 16, 5, 5), 41),
    _case("se", (12, 3), (2, 12, 4, 7), 42),
    _case("se", (6, 6), (4, 6, 3, 3), 43),
]


def _hidden(kind: str, count: int):
    """Hidden cases of ``kind``: channel counts, strides, input sizes and weight seeds drawn from the seed."""

    def cases(seed: int) -> list[Case]:
        rng = np.random.default_rng([seed, sum(map(ord, kind))])
        out = []
        for number in range(count):
            n, h, w = int(rng.integers(2, 5)), int(rng.integers(4, 11)), int(rng.integers(4, 11))
            weight_seed = int(rng.integers(2**31))
            if kind == "inception":
                args = (int(rng.integers(3, 13)), *[int(v) for v in rng.integers(1, 9, size=6)])
            elif kind == "basic":
                c_in = int(rng.integers(2, 11))
                c_out = c_in if number == 0 else int(rng.integers(2, 17))
                args = (c_in, c_out, 1 if number == 0 else int(rng.choice([1, 2])))
                if number == 1:  # a shape change always among the cases
                    args = (c_in, c_in + int(rng.integers(1, 8)), 2)
            elif kind == "bottleneck":
                c_in = int(rng.integers(4, 17))
                c_out = c_in if number == 0 else int(rng.integers(4, 25))
                args = (c_in, int(rng.integers(2, 7)), c_out, 1 if number == 0 else int(rng.choice([1, 2])))
                if number == 1:
                    args = (c_in, int(rng.integers(2, 7)), c_in + int(rng.integers(1, 9)), 2)
            elif kind == "separable":
                args = (int(rng.integers(2, 11)), int(rng.integers(2, 17)), int(rng.choice([3, 5])),
                        int(rng.choice([1, 2])))
            else:
                reduction = int(rng.choice([2, 3, 4, 8]))
                args = (reduction * int(rng.integers(1, 5)), reduction)
            channels = args[0]
            out.append(_case(kind, args, (n, channels, h, w), weight_seed))
        return out

    return cases


def _block_tests(kind: str, cases, n_hidden: int, structure: str, forward: str) -> list[Test]:
    """A block's three tests, in the notebook's order: its structure, its forward pass, its hidden cases."""
    describe, cls = f"describe_{kind}", BLOCKS[kind].name
    return [
        Test(f"test_{kind}_structure", describe, f"{cls}, {structure}", fixed_cases(cases), _judge_structure(kind)),
        Test(f"test_{kind}_forward", describe, f"{cls}, {forward}", fixed_cases(cases), _judge_forward(kind)),
        Test(f"test_{kind}_hidden", describe, f"{cls}, hidden cases", _hidden(kind, n_hidden),
             _judge_forward(kind, structure_too=True), hidden=True),
    ]


SPEC = LabSpec(
    name="lab06_modern_blocks",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=ORIGINALS,
    guard=lambda: forbid_calls(ops={}, functions=REFERENCE_FUNCTIONS, why=NO_SHORTCUTS),
    tests=[
        test
        for kind, cases, n_hidden, structure, forward in [
            ("inception", INCEPTION, 3, "parameters and output shape", "forward pass"),
            ("basic", BASIC, 4, "parameters, shortcut and output shape",
             "forward pass in eval and train mode"),
            ("bottleneck", BOTTLENECK, 4, "parameters, shortcut and output shape",
             "forward pass in eval and train mode"),
            ("separable", SEPARABLE, 3, "parameters and output shape", "forward pass"),
            ("se", SE, 3, "parameters and output shape", "forward pass"),
        ]
        for test in _block_tests(kind, cases, n_hidden, structure, forward)
    ],
)
