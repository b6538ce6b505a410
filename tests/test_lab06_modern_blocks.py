"""Lab 6 (modern blocks): its tests judge right blocks right and name the usual mistakes.

The instructor's answers, taken from the solution notebook, must pass every visible test and the hidden cases of
many submission seeds. Each deliberately wrong block below (written as a student might write it: a shortcut without
its projection, BN after the addition, SE without the sigmoid, a depthwise convolution without groups...) must fail,
with the "Likely cause" that names its mistake. The grader's float64 references must agree with course_lib's blocks
and PyTorch's layers given the same weights, and their parameter counts with the published ones. course_lib's
blocks pasted in must fail (other interface) and be refused or flagged. In the real sandbox (slow), the solution gets
every point without a flag, while tampering, reading files, a fake printed verdict and a hang earn nothing.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.grading.blocks import (
    FILL_SOURCE,
    basic_forward,
    basic_parameters,
    batchnorm_buffers,
    bottleneck_forward,
    bottleneck_parameters,
    grader_value,
    grader_weights,
    inception_forward,
    inception_parameters,
    residual_needs_projection,
    se_forward,
    se_parameters,
    separable_forward,
    separable_parameters,
)
from course_lib.grading.labs import get_spec
from course_lib.grading.labs.lab06_modern_blocks import BLOCKS, PREAMBLE
from course_lib.grading.scan import copied_from, scan_answer
from course_lib.layers.attention import SqueezeExcitation as LibrarySE
from course_lib.layers.conv import DepthwiseSeparableConv2d
from course_lib.models.inception import InceptionModule
from course_lib.models.resnet import BasicBlock as LibraryBasic
from course_lib.models.resnet import Bottleneck as LibraryBottleneck
from nbgrader_course import cells_of_kind, handed_in_answers, kernel_after
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "lab06_modern_blocks" / "lab06_modern_blocks.ipynb"
SPEC = get_spec("lab06_modern_blocks")
NOTEBOOK = nbformat.read(SOURCE, as_version=4)
SOLUTION_CELLS = handed_in_answers(NOTEBOOK)
CLASSES = {kind: block.name for kind, block in BLOCKS.items()}


def namespace(**replaced) -> dict:
    """The preamble and the solution's answer cells as the grader loads them, with ``replaced`` definitions."""
    return kernel_after(PREAMBLE, SOLUTION_CELLS, **replaced)


def failure(grade_id: str, **replaced) -> str:
    """The message of a visible test that must fail with the ``replaced`` classes."""
    with pytest.raises(AssertionError) as failed:
        SPEC.run(grade_id, namespace(**replaced))
    return str(failed.value)


def fill(module: nn.Module, seed: int, rename=lambda name: name) -> None:
    """Set a module's parameters and buffers as the grader does, by the lab's name of each (``rename``)."""
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point():
                lab_name = rename(name)
                # Rounded to float32 as in a student's module, whatever the dtype of this one.
                tensor.copy_(grader_value(lab_name, tuple(tensor.shape), seed).float().to(tensor.dtype))


# --- the solution ------------------------------------------------------------------------------------------------


def test_the_solution_passes_every_visible_test_and_hidden_cases_of_many_seeds():
    names = namespace()
    for test in SPEC.tests:
        if not test.hidden:
            SPEC.run(test.grade_id, names)
            continue
        for seed in range(12):
            for case in test.cases(seed):
                value = names[test.function](*case.args)
                assert test.judge(case, value, None) is None, (test.grade_id, seed, case.label)


def test_notebook_and_specification_agree_on_points_and_cells():
    points = {meta["grade_id"]: meta["points"] for meta, _ in cells_of_kind(NOTEBOOK, "test")}
    assert list(points) == [t.grade_id for t in SPEC.tests]
    by_part = {kind: sum(p for g, p in points.items() if g.split("_")[1] == kind) for kind in CLASSES}
    assert by_part == {"inception": 4, "basic": 4, "bottleneck": 4, "separable": 3, "se": 3}
    (written,) = [meta for meta, _ in cells_of_kind(NOTEBOOK, "written")]
    assert written["points"] == 3
    # Every helper the tests call has a hidden test.
    assert {t.function for t in SPEC.tests} == {t.function for t in SPEC.tests if t.hidden}


def test_the_preamble_fills_as_the_grader_draws():
    names = namespace()
    for name, shape in (("conv1.weight", (3, 2, 3, 3)), ("bn1.running_var", (3,)), ("fc1.bias", (5,))):
        assert torch.equal(names["grader_value"](name, shape, 9), grader_value(name, shape, 9))
    assert FILL_SOURCE in PREAMBLE
    block = names["BasicBlock"](4, 6, 2)
    fill(block, 5)
    expected = grader_weights({**basic_parameters(4, 6, 2), **batchnorm_buffers(basic_parameters(4, 6, 2))}, 5)
    for name, tensor in [*block.named_parameters(), *block.named_buffers()]:
        if tensor.is_floating_point():
            assert torch.equal(tensor.double(), expected[name]), name
    # Values differ between names, seeds and roles; BN's variances are positive.
    assert not torch.equal(grader_value("bn1.weight", (6,), 5), grader_value("bn2.weight", (6,), 5))
    assert not torch.equal(grader_value("bn1.weight", (6,), 5), grader_value("bn1.weight", (6,), 6))
    assert (grader_value("bn1.running_var", (50,), 1) > 0.5).all()


# --- the references agree with course_lib and PyTorch -----------------------------------------------------------


@pytest.mark.parametrize(("in_channels", "out_channels", "stride"), [(8, 8, 1), (6, 10, 1), (8, 8, 2), (5, 12, 2)])
@pytest.mark.parametrize("train", [False, True])
def test_basic_reference_is_course_libs_basic_block(in_channels, out_channels, stride, train):
    block = LibraryBasic(in_channels, out_channels, stride, shortcut="B").double()
    fill(block, 3)
    x = torch.randn(4, in_channels, 9, 7, dtype=torch.float64)
    w = grader_weights({**basic_parameters(in_channels, out_channels, stride),
                        **batchnorm_buffers(basic_parameters(in_channels, out_channels, stride))}, 3)
    block.train(train)
    with torch.no_grad():
        torch.testing.assert_close(basic_forward(x, w, stride, train), block(x), rtol=1e-6, atol=1e-6)
    assert sum(p.numel() for p in block.parameters()) == sum(
        torch.Size(s).numel() for s in basic_parameters(in_channels, out_channels, stride).values())


@pytest.mark.parametrize(("in_channels", "mid", "stride"), [(16, 4, 1), (8, 4, 1), (16, 4, 2), (6, 3, 2)])
@pytest.mark.parametrize("train", [False, True])
def test_bottleneck_reference_is_course_libs_bottleneck_v1_5(in_channels, mid, stride, train):
    block = LibraryBottleneck(in_channels, mid, stride, shortcut="B").double()  # out = 4 mid, stride on the 3x3
    fill(block, 4)
    shapes = bottleneck_parameters(in_channels, mid, 4 * mid, stride)
    w = grader_weights({**shapes, **batchnorm_buffers(shapes)}, 4)
    x = torch.randn(3, in_channels, 8, 9, dtype=torch.float64)
    block.train(train)
    with torch.no_grad():
        torch.testing.assert_close(bottleneck_forward(x, w, stride, train), block(x), rtol=1e-6, atol=1e-6)


def test_published_parameter_counts():
    def count(shapes):
        return sum(torch.Size(s).numel() for s in shapes.values())

    # torchvision's resnet50 layer1[0] (64 -> 64 -> 256, projection) and layer1[1]; resnet18's layer2[0].
    assert count(bottleneck_parameters(64, 64, 256, 1)) == 75_008
    assert count(bottleneck_parameters(256, 64, 256, 1)) == 70_400
    assert count(basic_parameters(64, 128, 2)) == 230_144
    # GoogLeNet 3a without BN (the paper's), and course_lib's InceptionModule of the same widths.
    assert count(inception_parameters(192, 64, 96, 128, 16, 32, 32)) == 163_696 == sum(
        p.numel() for p in InceptionModule(192, 64, 96, 128, 16, 32, 32, batch_norm=False).parameters())
    # MobileNet's 32 -> 64 block (3x3 depthwise + BN, 1x1 + BN), SE-ResNet-50's first SE (256 channels, r = 16).
    assert count(separable_parameters(32, 64, 3, 1)) == 2_528 == sum(p.numel() for p in DepthwiseSeparableConv2d(
        32, 64, 3, norm_layer=nn.BatchNorm2d, activation=nn.ReLU).parameters())
    assert count(se_parameters(256, 16)) == 8_464 == sum(p.numel() for p in LibrarySE(256, 16).parameters())


def test_inception_reference_is_course_libs_module_without_bn():
    args = (8, 4, 3, 6, 2, 3, 5)
    module = InceptionModule(*args, batch_norm=False).double()
    lab_names = [n for n in inception_parameters(*args) if n.endswith(".weight")]
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]  # in the order of the paper's table
    w = grader_weights(inception_parameters(*args), 6)
    with torch.no_grad():
        for conv, name in zip(convs, lab_names, strict=True):
            conv.weight.copy_(w[name])
            conv.bias.copy_(w[name.replace("weight", "bias")])
        x = torch.randn(2, 8, 6, 7, dtype=torch.float64)
        torch.testing.assert_close(inception_forward(x, w), module(x))


@pytest.mark.parametrize("train", [False, True])
def test_separable_and_se_references_are_course_libs(train):
    module = DepthwiseSeparableConv2d(6, 10, 5, 2, norm_layer=nn.BatchNorm2d, activation=nn.ReLU).double()
    rename = {"depthwise.0": "depthwise", "depthwise.1": "bn1", "pointwise.0": "pointwise", "pointwise.1": "bn2"}
    fill(module, 7, lambda n: rename[n.rsplit(".", 1)[0]] + "." + n.rsplit(".", 1)[1])
    shapes = separable_parameters(6, 10, 5, 2)
    w = grader_weights({**shapes, **batchnorm_buffers(shapes)}, 7)
    x = torch.randn(4, 6, 9, 8, dtype=torch.float64)
    module.train(train)
    with torch.no_grad():
        torch.testing.assert_close(separable_forward(x, w, 2, train), module(x))
    se = LibrarySE(12, 3).double()
    w = grader_weights(se_parameters(12, 3), 8)
    with torch.no_grad():
        for name in ("fc1", "fc2"):
            getattr(se, name).weight.copy_(w[f"{name}.weight"][:, :, None, None])
            getattr(se, name).bias.copy_(w[f"{name}.bias"])
        x = torch.randn(3, 12, 4, 5, dtype=torch.float64)
        torch.testing.assert_close(se_forward(x, w), se(x))


# --- blocks as students write them, with one mistake each --------------------------------------------------------


def residual(kind="basic", projection="auto", add="after_bn", stride_on=None, bias=False, projection_bn=True,
             identity_module=False, final_relu=True, padding=1):
    """A BasicBlock (or BottleneckBlock) class with the keywords' mistakes."""
    bottleneck = kind == "bottleneck"

    class Block(nn.Module):
        def __init__(self, in_channels, *widths):
            super().__init__()
            if bottleneck:
                mid, out_channels, stride = widths
            else:
                (out_channels, stride), mid = widths, None
            where = stride_on or ("conv2" if bottleneck else "conv1")
            s = {name: stride if name == where else 1 for name in ("conv1", "conv2", "conv3")}
            if bottleneck:
                self.conv1 = nn.Conv2d(in_channels, mid, 1, stride=s["conv1"], bias=bias)
                self.bn1 = nn.BatchNorm2d(mid)
                self.conv2 = nn.Conv2d(mid, mid, 3, stride=s["conv2"], padding=padding, bias=bias)
                self.bn2 = nn.BatchNorm2d(mid)
                self.conv3 = nn.Conv2d(mid, out_channels, 1, stride=s["conv3"], bias=bias)
                self.bn3 = nn.BatchNorm2d(out_channels)
                self.last = "bn3"
            else:
                self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=s["conv1"], padding=padding, bias=bias)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=s["conv2"], padding=padding, bias=bias)
                self.bn2 = nn.BatchNorm2d(out_channels)
                self.last = "bn2"
            shape_changes = stride != 1 or in_channels != out_channels
            if (projection == "auto" and shape_changes) or projection == "always":
                layers = [nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)]
                self.shortcut = nn.Sequential(*layers, nn.BatchNorm2d(out_channels)) if projection_bn else nn.Sequential(*layers)
            else:
                self.shortcut = nn.Identity() if identity_module else None

        def forward(self, x):
            if bottleneck:
                out = F.relu(self.bn1(self.conv1(x)))
                out = self.conv3(F.relu(self.bn2(self.conv2(out))))
            else:
                out = self.conv2(F.relu(self.bn1(self.conv1(x))))
            skip = x if self.shortcut is None else self.shortcut(x)
            last = getattr(self, self.last)
            if add == "before_bn":
                return F.relu(last(out + skip))
            if add == "after_relu":
                return F.relu(last(out)) + skip
            out = last(out) + skip
            return F.relu(out) if final_relu else out

    return Block


def inception(order=(0, 1, 2, 3), pool_proj=True, relu_reduce=True, pool="max", kernel5=5, padding=True,
              reductions=True):
    class InceptionBlock(nn.Module):
        def __init__(self, in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_channels):
            super().__init__()
            self.branch1 = nn.Conv2d(in_channels, c1, 1)
            if reductions:
                self.branch3_reduce = nn.Conv2d(in_channels, c3_reduce, 1)
                self.branch5_reduce = nn.Conv2d(in_channels, c5_reduce, 1)
            self.branch3 = nn.Conv2d(c3_reduce if reductions else in_channels, c3, 3, padding=1 if padding else 0)
            self.branch5 = nn.Conv2d(c5_reduce if reductions else in_channels, c5, kernel5, padding=kernel5 // 2)
            if pool_proj:
                self.branch_pool = nn.Conv2d(in_channels, pool_channels, 1)

        def forward(self, x):
            act = F.relu if relu_reduce else (lambda t: t)
            b1 = F.relu(self.branch1(x))
            b3 = F.relu(self.branch3(act(self.branch3_reduce(x)) if reductions else x))
            b5 = F.relu(self.branch5(act(self.branch5_reduce(x)) if reductions else x))
            pooled = F.max_pool2d(x, 3, 1, 1) if pool == "max" else F.avg_pool2d(x, 3, 1, 1)
            bp = F.relu(self.branch_pool(pooled)) if pool_proj else pooled
            branches = (b1, b3, b5, bp)
            return torch.cat([branches[i] for i in order], dim=1)

    return InceptionBlock


def separable(groups=True, stride_on="depthwise", relu_between=True, pointwise_kernel=1):
    class DepthwiseSeparableConv(nn.Module):
        def __init__(self, in_channels, out_channels, kernel_size=3, stride=1):
            super().__init__()
            self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride if stride_on == "depthwise" else 1,
                                       kernel_size // 2, groups=in_channels if groups else 1, bias=False)
            self.bn1 = nn.BatchNorm2d(in_channels)
            self.pointwise = nn.Conv2d(in_channels, out_channels, pointwise_kernel,
                                       stride if stride_on == "pointwise" else 1, pointwise_kernel // 2, bias=False)
            self.bn2 = nn.BatchNorm2d(out_channels)

        def forward(self, x):
            x = self.bn1(self.depthwise(x))
            x = F.relu(x) if relu_between else x
            return F.relu(self.bn2(self.pointwise(x)))

    return DepthwiseSeparableConv


def squeeze(gate="sigmoid", squeeze_by="mean", conv_fc=False, returns="rescaled", hidden=lambda c, r: c // r):
    class SqueezeExcitation(nn.Module):
        def __init__(self, channels, reduction=16):
            super().__init__()
            h = hidden(channels, reduction)
            self.fc1 = nn.Conv2d(channels, h, 1) if conv_fc else nn.Linear(channels, h)
            self.fc2 = nn.Conv2d(h, channels, 1) if conv_fc else nn.Linear(h, channels)

        def forward(self, x):
            z = x.mean((2, 3)) if squeeze_by == "mean" else x.amax((2, 3))
            if conv_fc:
                s = self.fc2(F.relu(self.fc1(z[:, :, None, None])))[:, :, 0, 0]
            else:
                s = self.fc2(F.relu(self.fc1(z)))
            s = {"sigmoid": torch.sigmoid, "none": lambda t: t, "softmax": lambda t: t.softmax(1)}[gate](s)
            return s if returns == "gate" else x * s[:, :, None, None]

    return SqueezeExcitation


RESIDUAL_MISTAKES = [
    # (kind, keywords, the test that catches it, the cause it must name)
    ("basic", dict(projection="never"), "structure", "the shortcut is missing its projection"),
    ("basic", dict(projection="never"), "structure", "(your count is short by exactly that)"),
    ("basic", dict(projection="always"), "structure", "a projection where the shape does not change"),
    ("basic", dict(identity_module=True), "structure", "the lab asks for self.shortcut = None there (not nn.Identity())"),
    ("basic", dict(projection_bn=False), "structure", "the projection has no BN"),
    ("basic", dict(bias=True), "structure", "have biases: a BN follows every convolution"),
    ("basic", dict(padding=0), "structure", "the 3x3 convolutions pad by 1"),
    ("basic", dict(add="before_bn"), "forward", "BN after the addition"),
    ("basic", dict(add="after_relu"), "forward", "ReLU before the addition"),
    ("basic", dict(final_relu=False), "forward", "no ReLU after the addition"),
    ("basic", dict(stride_on="conv2"), "forward", "the stride is on the second 3x3 convolution"),
    ("bottleneck", dict(projection="never"), "structure", "the shortcut is missing its projection"),
    ("bottleneck", dict(add="before_bn"), "forward", "BN after the addition"),
    ("bottleneck", dict(stride_on="conv1"), "forward", "the 2015 paper's ResNet v1"),
    ("bottleneck", dict(stride_on="conv3"), "forward", "the stride is on the last 1x1 convolution"),
]


@pytest.mark.parametrize(("kind", "keywords", "test", "cause"), RESIDUAL_MISTAKES,
                         ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}-{i}"
                              for i, (k, kw, _, _) in enumerate(RESIDUAL_MISTAKES)])
def test_residual_mistakes_are_named(kind, keywords, test, cause):
    message = failure(f"test_{kind}_{test}", **{CLASSES[kind]: residual(kind, **keywords)})
    assert "Likely cause" in message and cause in message, message


@pytest.mark.parametrize(("keywords", "test", "cause"), [
    (dict(order=(1, 0, 2, 3)), "forward", "concatenated in the order 3x3, 1x1, 5x5, pool"),
    (dict(order=(3, 0, 1, 2)), "forward", "concatenated in the order pool, 1x1, 3x3, 5x5"),
    (dict(relu_reduce=False), "forward", "no ReLU after the 1x1 reductions"),
    (dict(pool="avg"), "forward", "average pooling in the pool branch"),
    (dict(pool_proj=False), "structure", "the pool branch has no 1x1 projection"),
    (dict(kernel5=3), "structure", "branch5 has 3x3 kernels; the lab's is 5x5 (torchvision's GoogLeNet"),
    (dict(reductions=False), "structure", "no 1x1 reduction before the 3x3 convolution"),
    (dict(padding=False), "structure", "the branches' grids differ"),
])
def test_inception_mistakes_are_named(keywords, test, cause):
    message = failure(f"test_inception_{test}", InceptionBlock=inception(**keywords))
    assert "Likely cause" in message and cause in message, message


@pytest.mark.parametrize(("keywords", "test", "cause"), [
    (dict(groups=False), "structure", "the depthwise convolution has no groups"),
    (dict(pointwise_kernel=3), "structure", "the pointwise convolution has 3x3 kernels"),
    (dict(stride_on="pointwise"), "forward", "the stride is on the pointwise (1x1) convolution"),
    (dict(relu_between=False), "forward", "no ReLU between the depthwise and the pointwise convolutions"),
])
def test_separable_mistakes_are_named(keywords, test, cause):
    message = failure(f"test_separable_{test}", DepthwiseSeparableConv=separable(**keywords))
    assert "Likely cause" in message and cause in message, message


def test_a_depthwise_convolution_without_groups_is_counted():
    # DepthwiseSeparableConv(6, 10, 3, 1): the depthwise weight (6, 6, 3, 3) holds 324 weights instead of 54, so the
    # block has 146 - 54 + 324 = 416 parameters.
    message = failure("test_separable_structure", DepthwiseSeparableConv=separable(groups=False))
    assert "(6, 6, 3, 3)" in message and "324 weights" in message and "(54 weights)" in message, message
    assert "has 416 parameters, expected 146" in message, message


@pytest.mark.parametrize(("keywords", "test", "cause"), [
    (dict(gate="none"), "forward", "the excitation has no sigmoid"),
    (dict(gate="softmax"), "forward", "softmax instead of the sigmoid"),
    (dict(squeeze_by="max"), "forward", "the squeeze takes the maximum"),
    (dict(returns="gate"), "structure", "forward returns the gate s"),
    (dict(conv_fc=True), "structure", "fc1 and fc2 are 1x1 convolutions"),
    (dict(hidden=lambda c, r: c * r), "structure", "the reduction divides"),
])
def test_se_mistakes_are_named(keywords, test, cause):
    message = failure(f"test_se_{test}", SqueezeExcitation=squeeze(**keywords))
    assert "Likely cause" in message and cause in message, message


def test_forward_tests_wait_for_the_structure():
    message = failure("test_basic_forward", BasicBlock=residual(projection="never"))
    assert "make its structure test pass first" in message


def test_a_block_not_written_yet_says_so():
    class SqueezeExcitation(nn.Module):
        def __init__(self, channels, reduction=16):
            super().__init__()
            raise NotImplementedError()

    assert "raised NotImplementedError" in failure("test_se_structure", SqueezeExcitation=SqueezeExcitation)


def test_a_wrong_forward_is_caught_in_training_mode_only_when_it_differs_there():
    class BasicBlock(residual()):
        def forward(self, x):  # uses the running statistics even in training mode
            self.bn1.eval(), self.bn2.eval()
            if self.shortcut is not None:
                self.shortcut.eval()
            return super().forward(x)

    message = failure("test_basic_forward", BasicBlock=BasicBlock)
    assert "its output in train mode (BN with the batch's statistics)" in message, message


# --- hidden cases --------------------------------------------------------------------------------------------


def test_hidden_cases_are_drawn_from_the_seed_and_cover_both_shortcuts():
    for kind in ("basic", "bottleneck"):
        test = SPEC.test(f"test_{kind}_hidden")
        for seed in range(20):
            cases = test.cases(seed)
            projects = [residual_needs_projection(c.args[0][0], c.args[0][-2], c.args[0][-1]) for c in cases]
            assert any(projects) and not all(projects), (kind, seed)
            again = test.cases(seed)
            assert [c.args[0] for c in cases] == [c.args[0] for c in again]
            assert all(torch.equal(a.args[1], b.args[1]) for a, b in zip(cases, again))
        labels = {tuple(c.label for c in test.cases(seed)) for seed in range(20)}
        assert len(labels) == 20
    for seed in range(20):
        for case in SPEC.test("test_se_hidden").cases(seed):
            channels, reduction = case.args[0]
            assert channels % reduction == 0 and channels // reduction >= 1


def test_hidden_cases_catch_a_block_that_only_fits_the_visible_ones():
    # Right for the visible cases' channel counts, wrong elsewhere: the reduction fixed at the visible ratio.
    class SqueezeExcitation(squeeze()):
        def forward(self, x):
            if x.shape[1] in (16, 12, 6):
                return super().forward(x)
            return x

    names = namespace(SqueezeExcitation=SqueezeExcitation)
    SPEC.run("test_se_forward", names)
    test = SPEC.test("test_se_hidden")
    failures = 0
    for seed in range(5):
        for case in test.cases(seed):
            failures += test.judge(case, names["describe_se"](*case.args), None) is not None
    assert failures > 0


# --- course_lib and the scan ----------------------------------------------------------------------------------


def test_course_libs_blocks_pasted_in_fail_with_a_reason():
    # course_lib's make_shortcut is refused while the tests run; built without it, its nn.Identity is named.
    message = failure("test_basic_structure", BasicBlock=LibraryBasic)
    assert "ForbiddenCallError: your code called course_lib.models.resnet.make_shortcut" in message, message

    class Pasted(nn.Module):  # course_lib's BasicBlock, its shortcut built as make_shortcut builds it
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__()
            template = namespace()["BasicBlock"](in_channels, out_channels, stride)
            for name, module in template.named_children():
                setattr(self, name, module)
            if template.shortcut is None:
                self.shortcut = nn.Identity()

        forward = LibraryBasic.forward

    message = failure("test_basic_structure", BasicBlock=Pasted)
    assert "shortcut holds a Identity module, expected None" in message and "not nn.Identity()" in message, message
    message = failure("test_se_structure", SqueezeExcitation=LibrarySE)
    assert "fc1 and fc2 are 1x1 convolutions" in message, message
    message = failure("test_inception_structure", InceptionBlock=InceptionModule)
    assert "not in the lab's block" in message, message
    message = failure("test_bottleneck_structure", BottleneckBlock=LibraryBottleneck)
    assert "raised" in message or "parameters" in message, message


def test_course_lib_forward_is_refused_while_the_visible_tests_run():
    class SqueezeExcitation(squeeze()):
        def forward(self, x):
            library = LibrarySE(x.shape[1], 2)
            return library(x)

    message = failure("test_se_structure", SqueezeExcitation=SqueezeExcitation)
    assert "ForbiddenCallError: your code called course_lib.layers.attention.SqueezeExcitation.forward" in message
    assert LibrarySE(4, 2)(torch.ones(1, 4, 2, 2)).shape == (1, 4, 2, 2), "the refusal ends with the test"


def test_the_solution_raises_no_flag():
    for name, source in SOLUTION_CELLS:
        assert scan_answer(name, source, SPEC.forbidden, SPEC.preamble_names()) == [], name
        assert copied_from(name, source, SPEC.originals) == [], name


@pytest.mark.parametrize(("source", "reason"), [
    ("from course_lib.models.resnet import BasicBlock", "course_lib is not available"),
    ("from torchvision.models.resnet import Bottleneck", "torchvision's models"),
    ("block.load_state_dict(torch.load('w.pt'))", "the grader sets every weight itself"),
    ("def grader_value(name, shape, seed):\n    return torch.zeros(shape)", "redefines grader_value"),
])
def test_the_scan_flags_shortcuts(source, reason):
    flags = scan_answer("basic_block", source, SPEC.forbidden, SPEC.preamble_names())
    assert any(reason in flag.reason for flag in flags), [str(f) for f in flags]


def test_a_copy_of_course_libs_block_is_flagged():
    source = inspect.getsource(LibraryBasic).replace("class BasicBlock(", "class MyBlock(").replace("channels", "width")
    flags = copied_from("basic_block", source, SPEC.originals)
    assert flags and "course_lib.models.resnet.BasicBlock" in flags[0].reason


# --- the real sandbox (slow) ---------------------------------------------------------------------------------


def _grade(limits=None, **replaced):
    from course_lib.grading.grader import grade_answers

    require_sandbox()
    cells = [(name, replaced.get(name, source)) for name, source in SOLUTION_CELLS]
    return grade_answers(cells, SPEC, seed=11, limits=limits)


@pytest.mark.slow
def test_the_solution_gets_every_point_in_the_sandbox_without_a_flag():
    result = _grade()
    failed = {k: v.message for k, v in result.verdicts.items() if not v.passed}
    assert not failed and not result.flags and not result.load_errors, (failed, result.flags, result.load_errors)
    print(f"\nlab 6 solution graded in the sandbox in {result.seconds:.1f} s")


# SE without the sigmoid, which prints a passing verdict of its own and tampers with its process so that any check
# made there would agree with it: the verdict is computed in the grader, from the values.
TAMPERING_SE = '''
import builtins


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        print("SqueezeExcitation, forward pass: passed (3 cases).")
        return x * self.fc2(F.relu(self.fc1(x.mean((2, 3)))))[:, :, None, None]


torch.testing.assert_close = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
builtins.__import__("sys").modules.pop("course_lib", None)
'''

# A right DepthwiseSeparableConv that first looks for files of the host (there are none in the sandbox).
READING_SEPARABLE = '''
class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1):
        super().__init__()
        import os
        found = [p for p in ("/etc/passwd", "/work", "/root", "/home") if os.path.exists(p)]
        if found:
            raise RuntimeError("LEAKED " + ", ".join(found))
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return F.relu(self.bn2(self.pointwise(F.relu(self.bn1(self.depthwise(x))))))
'''

HANGING_INCEPTION = '''
class InceptionBlock(nn.Module):
    def __init__(self, in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_proj):
        super().__init__()
        while True:
            pass
'''

IMPORTED_BOTTLENECK = '''
from course_lib.models.resnet import Bottleneck as BottleneckBlock
'''


@pytest.mark.slow
def test_sandbox_tampering_reading_hanging_and_importing_earn_nothing_they_should_not():
    from dataclasses import replace

    from course_lib.grading.sandbox import Limits

    limits = replace(SPEC.limits_for(Limits()), call_timeout_s=5.0, wall_s=120.0)
    result = _grade(limits=limits, squeeze_excitation=TAMPERING_SE, depthwise_separable=READING_SEPARABLE,
                    inception_block=HANGING_INCEPTION, bottleneck_block=IMPORTED_BOTTLENECK)
    verdicts = result.verdicts
    assert verdicts["test_se_structure"].passed
    for grade_id in ("test_se_forward", "test_se_hidden"):
        assert not verdicts[grade_id].passed
        assert "Likely cause: the excitation has no sigmoid" in verdicts[grade_id].message, verdicts[grade_id].message
    for grade_id in ("test_separable_structure", "test_separable_forward", "test_separable_hidden"):
        assert verdicts[grade_id].passed, verdicts[grade_id].message
    for grade_id in ("test_inception_structure", "test_inception_forward", "test_inception_hidden"):
        message = verdicts[grade_id].message
        assert not verdicts[grade_id].passed and ("timed out" in message or "not run" in message), message
    for grade_id in ("test_bottleneck_structure", "test_bottleneck_forward", "test_bottleneck_hidden"):
        assert not verdicts[grade_id].passed
    assert "ModuleNotFoundError" in result.load_errors["bottleneck_block"]
    for grade_id in ("test_basic_structure", "test_basic_forward", "test_basic_hidden"):
        assert verdicts[grade_id].passed, verdicts[grade_id].message
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("bottleneck_block") and "uses course_lib" in f for f in flags), flags
    assert any(f.startswith("squeeze_excitation") and "uses __import__" in f for f in flags), flags
    assert not any("LEAKED" in v.message for v in verdicts.values())
