"""Lab 8 (upsampling and segmentation): its tests judge right answers right and name the usual mistakes.

The instructor's answers, taken from the solution notebook, must pass every visible test and the hidden cases of
many submission seeds. Each planted mistake below (the solution's cell with one line changed, as a student might
write it: output padding ignored, a kernel not flipped, indices from the wrong layer, a skip cropped from the
corner...) must fail with the "Likely cause" that names it. The grader's float64 references must agree with
course_lib's functions and PyTorch's. The IoU judge passes at the threshold, fails below it and for a model that
predicts the background everywhere, and the hidden data are renamed consistently. In the real sandbox (slow), the
solution gets every point without a flag, while tampering, reading files, a hang, a course_lib import and a train()
that does not train earn nothing they should not.
"""

from __future__ import annotations

import inspect
import re
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_lib.analysis.segmentation import mean_iou
from course_lib.grading.labs import get_spec
from course_lib.grading.labs.lab08_segmentation import (
    HIDDEN_TEST,
    HIDDEN_TRAIN,
    PREAMBLE,
    THRESHOLDS,
    Heldout,
    class_permutation,
    segmentation_data,
    training_seed,
)
from course_lib.grading.scan import copied_from, scan_answer
from course_lib.grading.upsampling import (
    crop_reference,
    pool_reference,
    segnet_parameters,
    segnet_reference,
    transposed_reference,
    unpool_reference,
)
from course_lib.layers.functional.pooling import max_pool2d as library_max_pool2d
from course_lib.layers.functional.pooling import max_unpool2d as library_max_unpool2d
from course_lib.layers.functional.transposed import conv_transpose2d as library_conv_transpose2d
from nbgrader_course import cells_of_kind, handed_in_answers, kernel_after
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "lab08_segmentation" / "lab08_segmentation.ipynb"
SPEC = get_spec("lab08_segmentation")
NOTEBOOK = nbformat.read(SOURCE, as_version=4)
SOLUTION_CELLS = handed_in_answers(NOTEBOOK)
SOLUTION = dict(SOLUTION_CELLS)
FAST_TESTS = [t for t in SPEC.tests if t.function != "train_and_segment"]


def planted(cell: str, right: str, wrong: str) -> list[tuple[str, str]]:
    """The solution's answer cells with the line(s) ``right`` of ``cell`` (there exactly once) replaced by ``wrong``."""
    assert SOLUTION[cell].count(right) == 1, f"the solution of {cell} no longer contains {right!r} exactly once"
    return [(name, source.replace(right, wrong) if name == cell else source) for name, source in SOLUTION_CELLS]


def namespace(cells=None, **replaced) -> dict:
    return kernel_after(PREAMBLE, cells if cells is not None else SOLUTION_CELLS, **replaced)


def failure(grade_id: str, cells=None, **replaced) -> str:
    """The message of a visible test that must fail."""
    with pytest.raises(AssertionError) as failed:
        SPEC.run(grade_id, namespace(cells, **replaced))
    return str(failed.value)


def hidden_failure(grade_id: str, cells, seeds=range(4)) -> str:
    """The first message with a "Likely cause" of a hidden test that must fail for one of ``seeds`` (else the first
    message: a wrong answer may crash on some cases)."""
    names = namespace(cells)
    test = SPEC.test(grade_id)
    first = None
    for seed in seeds:
        for case in test.cases(seed):
            value, error = None, None
            try:
                value = names[test.function](*case.args, **dict(case.kwargs))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            message = test.judge(case, value, error)
            if message and "Likely cause" in message:
                return message
            first = first or message
    if first:
        return first
    raise AssertionError(f"{grade_id} passed every hidden case of seeds {list(seeds)}")


# --- the solution and the notebook ----------------------------------------------------------------------------------


def test_the_solution_passes_every_visible_test_and_hidden_cases_of_many_seeds():
    names = namespace()
    for test in FAST_TESTS:
        if not test.hidden:
            SPEC.run(test.grade_id, names)
            continue
        for seed in range(25):
            for case in test.cases(seed):
                value = names[test.function](*case.args, **dict(case.kwargs))
                assert test.judge(case, value, None) is None, (test.grade_id, seed, case.label)


def test_notebook_and_specification_agree_on_points_and_parts():
    points = {meta["grade_id"]: meta["points"] for meta, _ in cells_of_kind(NOTEBOOK, "test")}
    assert list(points) == [t.grade_id for t in SPEC.tests]
    (written,) = [meta for meta, _ in cells_of_kind(NOTEBOOK, "written")]
    # The points of each "## Part N" heading: its test cells (and its written answer).
    parts, part = {}, None
    for cell in NOTEBOOK.cells:
        heading = re.match(r"## Part (\d) - .* \((\d+) points", cell.source) if cell.cell_type == "markdown" else None
        if heading:
            part = int(heading.group(1))
            parts[part] = [int(heading.group(2)), 0]
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            parts[part][1] += meta["points"]
    assert {p: announced for p, (announced, _) in parts.items()} == {1: 7, 2: 6, 3: 9, 4: 3}
    assert all(announced == counted for announced, counted in parts.values()), parts
    assert written["points"] == 3 and sum(points.values()) + written["points"] == 25
    # Every helper the tests call has a hidden test.
    assert {t.function for t in SPEC.tests} == {t.function for t in SPEC.tests if t.hidden}


# --- the references agree with course_lib and PyTorch --------------------------------------------------------------


@pytest.mark.parametrize(("stride", "padding", "output_padding", "kernel"),
                         [(1, 0, 0, 3), (2, 1, 1, 3), (3, 2, 2, 4), (2, 0, 1, (2, 3))])
def test_the_transposed_reference_is_course_libs_and_pytorchs(stride, padding, output_padding, kernel):
    generator = torch.Generator().manual_seed(stride * 10 + padding)
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 2, *kernel, generator=generator, dtype=torch.float64)
    bias = torch.randn(2, generator=generator, dtype=torch.float64)
    ours = transposed_reference(x, weight, bias, stride, padding, output_padding)
    torch.testing.assert_close(ours, library_conv_transpose2d(x, weight, bias, stride, padding, output_padding))
    # The adjoint of a convolution: <conv2d(y), x> = <y, conv_transpose2d(x)> (without bias).
    y = torch.randn_like(ours)
    lhs = (F.conv2d(y, weight, stride=stride, padding=padding) * x).sum()
    torch.testing.assert_close(lhs, (y * transposed_reference(x, weight, None, stride, padding, output_padding)).sum())


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 2, 7, 5), (3, 1, 2, 3)])
def test_pooling_and_unpooling_references_are_course_libs_and_pytorchs(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64)
    values, indices = pool_reference(x)
    library_values, library_indices = library_max_pool2d(x, 2, return_indices=True)
    assert torch.equal(values, library_values) and torch.equal(indices, library_indices)
    unpooled = unpool_reference(values, indices, shape[-2:])
    torch.testing.assert_close(unpooled, F.max_unpool2d(values, indices, 2, output_size=shape[-2:]))
    torch.testing.assert_close(unpooled, library_max_unpool2d(values, indices, 2, output_size=shape[-2:]))


def test_the_segnet_reference_is_the_same_network_built_from_pytorch_layers():
    torch.manual_seed(3)
    weights = {name: torch.randn(shape, dtype=torch.float64) for name, shape in segnet_parameters(2, 3, 4).items()}
    x = torch.randn(2, 2, 9, 6, dtype=torch.float64)

    def conv(name, h):
        return F.conv2d(h, weights[f"{name}.weight"], weights[f"{name}.bias"], padding=1)

    h1 = F.relu(conv("enc1", x))
    p1, i1 = F.max_pool2d(h1, 2, return_indices=True)
    h2 = F.relu(conv("enc2", p1))
    p2, i2 = F.max_pool2d(h2, 2, return_indices=True)
    d2 = F.relu(conv("dec2", F.max_unpool2d(p2, i2, 2, output_size=h2.shape[-2:])))
    expected = conv("dec1", F.max_unpool2d(d2, i1, 2, output_size=h1.shape[-2:]))
    torch.testing.assert_close(segnet_reference(x, weights), expected)
    assert expected.shape == (2, 4, 9, 6)


def test_the_crop_reference_takes_the_centre_rounding_down():
    skip = torch.arange(7 * 6).reshape(1, 1, 7, 6)
    assert torch.equal(crop_reference(skip, (4, 2)), skip[..., 1:5, 2:4])
    assert torch.equal(crop_reference(skip, (7, 6)), skip)


# --- named mistakes: Part 1 ---------------------------------------------------------------------------------------

TRANSPOSED_MISTAKES = [
    pytest.param("pad_w + output_padding, pad_h, pad_h + output_padding", "pad_w, pad_h, pad_h",
                 "test_transposed_padding",
                 "output padding ignored", id="output-padding-ignored"),
    pytest.param("(pad_w, pad_w + output_padding, pad_h, pad_h + output_padding)",
                 "(pad_w + output_padding, pad_w, pad_h + output_padding, pad_h)", "test_transposed_padding",
                 "output padding added at the top and left", id="output-padding-at-the-start"),
    pytest.param("kernel = weight.flip(-2, -1).transpose(0, 1)", "kernel = weight.transpose(0, 1)",
                 "test_transposed_basic", "kernel not flipped", id="kernel-not-flipped"),
    pytest.param("pad_h, pad_w = k_h - 1 - padding, k_w - 1 - padding", "pad_h, pad_w = k_h - 1, k_w - 1",
                 "test_transposed_padding", "padding ignored", id="padding-ignored"),
    pytest.param("pad_h, pad_w = k_h - 1 - padding, k_w - 1 - padding",
                 "pad_h, pad_w = k_h - 1 + padding, k_w - 1 + padding",
                 "test_transposed_padding", "padding applied the convolution's way", id="padding-the-convolution-way"),
    pytest.param("kernel = weight.flip(-2, -1).transpose(0, 1)", "kernel = weight.flip(-2, -1)",
                 "test_transposed_basic", "the weight's channel axes read the wrong way round", id="weight-layout"),
    pytest.param("return F.conv2d(stuffed, kernel, bias)", "return F.conv2d(stuffed, kernel)",
                 "test_transposed_basic", "bias not added", id="bias-forgotten"),
    pytest.param("stuffed[:, :, ::stride, ::stride] = x", "stuffed[:, :, ::stride, ::stride] = x\n    stuffed = x",
                 "test_transposed_basic", "stride ignored", id="stride-ignored"),
]


@pytest.mark.parametrize(("right", "wrong", "grade_id", "cause"), TRANSPOSED_MISTAKES)
def test_transposed_mistakes_are_named(right, wrong, grade_id, cause):
    cells = planted("conv_transpose2d", right, wrong)
    assert f"Likely cause: {cause}" in failure(grade_id, cells)
    assert f"Likely cause: {cause}" in hidden_failure("test_transposed_hidden", cells, seeds=range(12))


def test_stride_and_padding_swapped_is_named():
    from course_lib.grading.labs.lab08_segmentation import TRANSPOSED_PADDING

    case = TRANSPOSED_PADDING[2]  # stride 2, padding 1, no output padding: swapped, it still runs
    x, weight, bias = case.args
    assert dict(case.kwargs) == {"stride": 2, "padding": 1, "output_padding": 0}
    swapped = F.conv_transpose2d(x, weight, bias, stride=1, padding=2)
    message = SPEC.test("test_transposed_padding").judge(case, swapped, None)
    assert "Likely cause: stride and padding swapped" in message, message


def test_a_transposed_convolution_without_gradient_is_named():
    cells = planted("conv_transpose2d", "return F.conv2d(stuffed, kernel, bias)",
                    "return torch.tensor(F.conv2d(stuffed, kernel, bias).tolist())")
    SPEC.run("test_transposed_basic", namespace(cells))  # the values are right
    message = failure("test_transposed_gradient", cells)
    assert "autograd reaches no gradient" in message and "Likely cause: the computation leaves torch" in message


# --- named mistakes: Part 2 ---------------------------------------------------------------------------------------

POOL_MISTAKES = [
    pytest.param("return values, rows * width + cols", "return values, where", "indices counted inside each 2x2 window",
                 id="window-index"),
    pytest.param("return values, rows * width + cols",
                 "planes = torch.arange(n * c).view(n, c, 1, 1) * height * width\n"
                 "    return values, rows * width + cols + planes",
                 "indices counted over the whole tensor", id="whole-tensor-index"),
    pytest.param("return values, rows * width + cols", "return values, cols * height + rows", "row and column swapped",
                 id="row-column-swapped"),
    pytest.param("values, where = windows.max(dim=-1)",
                 "values, where = windows.max(dim=-1)\n    where = windows.min(dim=-1).indices",
                 "indices of the minimum", id="argmin"),
]


@pytest.mark.parametrize(("right", "wrong", "cause"), POOL_MISTAKES)
def test_pooling_index_mistakes_are_named(right, wrong, cause):
    cells = planted("max_pool_with_indices", right, wrong)
    assert f"Likely cause: {cause}" in failure("test_pool_indices", cells)
    assert f"Likely cause: {cause}" in hidden_failure("test_pool_hidden", cells)


def test_unpooling_without_indices_is_named():
    def nearest(x, indices, output_size):
        up = x.repeat_interleave(2, -2).repeat_interleave(2, -1)
        return F.pad(up, (0, output_size[1] - up.shape[-1], 0, output_size[0] - up.shape[-2]))

    def nails(x, indices, output_size):
        out = x.new_zeros(*x.shape[:2], *output_size)
        out[..., :2 * x.shape[-2]:2, :2 * x.shape[-1]:2] = x
        return out

    assert "Likely cause: indices ignored: each value copied to the four pixels" in failure("test_unpool",
                                                                                            max_unpool=nearest)
    assert "Likely cause: indices ignored: each value put at the top-left pixel" in failure("test_unpool",
                                                                                            max_unpool=nails)


def test_unpooling_that_ignores_output_size_is_named():
    cells = planted("max_unpool", "height, width = output_size",
                    "height, width = 2 * x.shape[-2], 2 * x.shape[-1]\n"
                    "    indices = indices.clamp(max=height * width - 1)")
    assert "Likely cause: output_size ignored" in failure("test_unpool", cells)


def test_unpooling_indices_from_the_wrong_layer_are_named_even_when_the_shapes_crash():
    cells = planted("segnet_toy", "u2 = max_unpool(p2, indices2, h2.shape[-2:])",
                    "u2 = max_unpool(p2, indices1, h2.shape[-2:])")
    message = failure("test_segnet", cells)
    assert "Likely cause: unpooling indices from the wrong layer: the first max_unpool received the first pooling's" \
        in message, message
    # Both unpoolings given the last indices (a variable overwritten in a loop, say).
    cells = planted("segnet_toy", "u1 = max_unpool(d2, indices1, h1.shape[-2:])",
                    "u1 = max_unpool(d2, indices2, h1.shape[-2:])")
    message = failure("test_segnet", cells)
    assert "the second max_unpool received the second pooling's (level 2) indices" in message, message
    assert "unpooling indices from the wrong layer" in hidden_failure("test_segnet_hidden", cells)


@pytest.mark.parametrize(("right", "wrong", "cause"), [
    pytest.param("u2 = max_unpool(p2, indices2, h2.shape[-2:])",
                 "u2 = F.interpolate(p2, size=tuple(h2.shape[-2:]))",
                 "the decoder upsamples without the indices", id="nearest-decoder"),
    pytest.param("d2 = F.relu(self.dec2(u2))", "d2 = self.dec2(u2)", "no ReLU after dec2", id="no-relu"),
])
def test_segnet_forward_mistakes_are_named(right, wrong, cause):
    cells = planted("segnet_toy", right, wrong)
    if "interpolate" in wrong:  # the size's nearest resize matches a nearest upsampling only where sizes are even
        cells = planted("segnet_toy", right, "u2 = p2.repeat_interleave(2, -2).repeat_interleave(2, -1)")
        cells = [(n, s.replace("u1 = max_unpool(d2, indices1, h1.shape[-2:])",
                               "u1 = F.pad(d2.repeat_interleave(2, -2).repeat_interleave(2, -1), "
                               "(0, h1.shape[-1] % 2, 0, h1.shape[-2] % 2))")) for n, s in cells]
    assert f"Likely cause: {cause}" in failure("test_segnet", cells)


def test_a_segnet_with_other_layer_names_is_told_the_lab_names():
    cells = planted("segnet_toy", "self.dec1 = nn.Conv2d(mid_channels, classes, 3, padding=1)",
                    "self.head = nn.Conv2d(mid_channels, classes, 3, padding=1)")
    message = failure("test_segnet", cells)
    assert "missing: dec1.bias, dec1.weight" in message
    assert "not in the lab's SegNetToy: head.bias, head.weight" in message


# --- named mistakes: Part 3 ---------------------------------------------------------------------------------------

CROP_MISTAKES = [
    pytest.param("top, left = (height - h) // 2, (width - w) // 2", "top, left = 0, 0",
                 "skip connection cropped from the top-left corner",
                 id="corner"),
    pytest.param("top, left = (height - h) // 2, (width - w) // 2", "top, left = height - h, width - w",
                 "skip connection cropped from the bottom-right corner", id="bottom-right"),
    pytest.param("top, left = (height - h) // 2, (width - w) // 2",
                 "top, left = (height - h + 1) // 2, (width - w + 1) // 2", "skip connection cropped off by one on an odd difference",
                 id="odd-rounded-up"),
    pytest.param("h, w = size", "w, h = size", "height and width swapped", id="swapped"),
]


@pytest.mark.parametrize(("right", "wrong", "cause"), CROP_MISTAKES)
def test_crop_mistakes_are_named(right, wrong, cause):
    cells = planted("center_crop", right, wrong)
    assert f"Likely cause: {cause}" in failure("test_center_crop", cells)
    assert cause in hidden_failure("test_center_crop_hidden", cells)


def test_a_crop_larger_than_the_skip_must_raise():
    cells = planted("center_crop", "if h > height or w > width:", "if False:")
    assert "must raise ValueError" in failure("test_center_crop", cells)


# --- the segmentation judge ------------------------------------------------------------------------------------------


def judge(grade_id, predictions, case, error=None):
    return SPEC.test(grade_id).judge(case, predictions, error)


def degraded(masks: torch.Tensor, target: float) -> torch.Tensor:
    """``masks`` with whole images' shapes erased (set to background) until the mean IoU falls just below target."""
    predictions = masks.clone()
    for image in range(len(masks)):
        if mean_iou(predictions, masks, 4) < target:
            break
        predictions[image] = 0
    return predictions


@pytest.mark.parametrize("grade_id", ["test_iou_hidden_70", "test_iou_hidden_80"])
def test_the_iou_threshold_passes_at_it_and_fails_below_it(grade_id):
    (case,) = SPEC.test(grade_id).cases(5)
    threshold = THRESHOLDS[grade_id]
    assert judge(grade_id, case.answers.clone(), case) is None
    below = degraded(case.answers, threshold)
    score = mean_iou(below, case.answers, 4)
    assert threshold - 0.05 < score < threshold
    message = judge(grade_id, below, case)
    assert message.startswith(f"mean IoU {score:.3f} over {HIDDEN_TEST} images") and "learns, but not enough" in message
    # One image fewer erased: at or above the threshold.
    erased = (below == 0).all(dim=(1, 2)) & (case.answers != 0).any(dim=(1, 2))
    last = int(erased.nonzero().max())
    above = below.clone()
    above[last] = case.answers[last]
    if mean_iou(above, case.answers, 4) >= threshold:
        assert judge(grade_id, above, case) is None


def test_a_model_that_predicts_the_background_everywhere_fails_and_is_told_why():
    for grade_id in ("test_unet_learns", "test_iou_hidden_70", "test_iou_hidden_80"):
        (case,) = SPEC.test(grade_id).cases(3)
        message = judge(grade_id, torch.zeros_like(case.answers), case)
        assert "Likely cause: the model predicts the background everywhere" in message, message


def test_true_class_numbers_score_low_after_the_renaming():
    """A segmenter that draws the shapes perfectly but calls them by their usual numbers."""
    (case,) = SPEC.test("test_iou_hidden_80").cases(8)
    perm = class_permutation(8)
    true_masks = torch.argsort(perm)[case.answers]  # undo the renaming
    score = mean_iou(true_masks, case.answers, 4)
    assert score < 0.35
    assert "relabels" not in judge("test_iou_hidden_70", true_masks, case)
    assert "renames the shape classes" in judge("test_iou_hidden_70", true_masks, case)


@pytest.mark.parametrize(("value", "error", "words"), [
    (torch.zeros(HIDDEN_TEST, 4, 32, 32), None, "shape (300, 4, 32, 32)"),
    (torch.zeros(HIDDEN_TEST, 32, 32), None, "torch.float32, expected integer classes"),
    (torch.full((HIDDEN_TEST, 32, 32), 7), None, "from 7 to 7, expected 0 to 3"),
    (None, "ValueError: UNet's output for images", "raised ValueError: UNet's output"),
])
def test_predictions_that_are_not_masks_are_explained(value, error, words):
    (case,) = SPEC.test("test_iou_hidden_70").cases(1)
    assert words in judge("test_iou_hidden_70", value, case, error)


def test_an_untrained_unet_fails_the_quick_check():
    """A train() that does nothing: the visible test runs (no training: fast) and fails with the hints."""
    message = failure("test_unet_learns", train=lambda model, images, masks: None)
    assert "below the 0.50 this test asks for" in message and "Likely cause:" in message


def test_the_hidden_data_are_drawn_for_the_seed_and_renamed_consistently():
    perms = {seed: class_permutation(seed) for seed in range(40)}
    for perm in perms.values():
        assert perm[0] == 0 and sorted(perm.tolist()) == [0, 1, 2, 3]
        assert not (perm[1:] == torch.arange(1, 4)).any(), "a shape class kept its number"
    assert len({tuple(p.tolist()) for p in perms.values()}) == 2  # the two derangements of three classes
    seed = 21
    (case,) = SPEC.test("test_iou_hidden_70").cases(seed)
    (again,) = SPEC.test("test_iou_hidden_80").cases(seed)
    assert isinstance(case, Heldout) and all(torch.equal(a, b) for a, b in zip(case.args[:3], again.args[:3]))
    x, m, x_test, sent_seed = case.args
    assert x.shape == (HIDDEN_TRAIN, 3, 32, 32) and x_test.shape == (HIDDEN_TEST, 3, 32, 32)
    assert sent_seed == training_seed(seed) and dict(case.kwargs) == {"reuse": True}
    assert not any(isinstance(a, torch.Tensor) and a.shape == case.answers.shape for a in case.args)
    # The same shape class has the same new number in the training masks and in the judged ones.
    (other,) = SPEC.test("test_iou_hidden_70").cases(seed + 1)
    assert not torch.equal(other.args[0], x), "another submission trains on other images"
    visible = SPEC.test("test_unet_learns").cases(0)[0]
    assert torch.equal(visible.args[0], segmentation_data(101, 102, 400, 200)[0])


# --- the preamble's helpers --------------------------------------------------------------------------------------


def test_the_two_hidden_tests_share_one_training_run():
    calls = []
    names = namespace(train=lambda model, images, masks: calls.append(len(images)))
    run = names["train_and_segment"]
    x = torch.rand(6, 3, 32, 32)
    m = torch.zeros(6, 32, 32, dtype=torch.int64)
    first = run(x, m, x[:2], 5, reuse=True)
    second = run(x, m, x[:2], 5, reuse=True)
    assert calls == [6] and torch.equal(first, second) and first.dtype == torch.int64 and first.shape == (2, 32, 32)
    run(x, m, x[:2], 5)
    assert calls == [6, 6], "a call without reuse (the visible test) trains again"


def test_a_unet_with_the_wrong_output_says_so():
    import torch.nn as nn

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)

    message = failure("test_unet_learns", UNet=UNet, train=lambda model, images, masks: None)
    assert "has shape (100, 3, 32, 32), expected (100, 4, 32, 32)" in message


def test_course_lib_is_refused_while_the_visible_tests_run():
    def borrowed(x, weight, bias=None, stride=1, padding=0, output_padding=0):
        return library_conv_transpose2d(x, weight, bias, stride, padding, output_padding)

    assert "ForbiddenCallError: your code called course_lib.layers.functional.transposed.conv_transpose2d" in \
        failure("test_transposed_basic", conv_transpose2d=borrowed)
    assert library_conv_transpose2d(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1)).item() == 1.0
    from course_lib.models.segmentation import unet

    message = failure("test_unet_learns", UNet=lambda: unet(4, 3), train=lambda model, images, masks: None)
    assert "ForbiddenCallError: your code called course_lib.models.segmentation.unet" in message


# --- the static scan ------------------------------------------------------------------------------------------------


def test_the_solution_raises_no_flag():
    for name, source in SOLUTION_CELLS:
        assert scan_answer(name, source, SPEC.forbidden, SPEC.preamble_names()) == [], name
        assert copied_from(name, source, SPEC.originals) == [], name


@pytest.mark.parametrize(("source", "reason"), [
    ("y = F.conv_transpose2d(x, w)", "PyTorch's transposed convolution"),
    ("up = nn.ConvTranspose2d(8, 4, 2, 2)", "PyTorch's transposed convolution"),
    ("from torch.nn.functional import conv_transpose2d as ct", "PyTorch's transposed convolution"),
    ("(g,) = torch.autograd.grad(F.conv2d(y, w), y, x)", "gradient of a convolution"),
    ("y = F.fold(cols, (8, 8), 3)", "col2im"),
    ("v, i = F.max_pool2d(x, 2, return_indices=True)", "PyTorch's max pooling"),
    ("pool = nn.MaxPool2d(2)", "PyTorch's max pooling"),
    ("y = F.max_unpool2d(x, i, 2)", "PyTorch's max unpooling"),
    ("from course_lib.models.segmentation import UNet", "course_lib"),
    ("import torchvision", "ready-made segmentation models"),
    ("model.load_state_dict(torch.load('unet.pt'))", "loads weights"),
    ("_RUNS = {}", "redefines _RUNS"),
])
def test_the_scan_flags_shortcuts(source, reason):
    flags = scan_answer("answer", source, SPEC.forbidden, SPEC.preamble_names())
    assert any(reason in flag.reason for flag in flags), [str(f) for f in flags]


def test_a_copy_of_course_libs_transposed_convolution_is_flagged():
    source = inspect.getsource(inspect.unwrap(library_conv_transpose2d))
    flags = copied_from("conv_transpose2d", source, SPEC.originals)
    assert flags and "conv_transpose2d" in flags[0].reason


def test_the_lab_asks_the_sandbox_for_time_to_train():
    from course_lib.grading.sandbox import Limits

    granted = SPEC.limits_for(Limits())
    assert (granted.call_timeout_s, granted.wall_s) == (90.0, 240.0)


# --- the U-Net reaches the thresholds (slow) ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 12])
def test_the_solution_reaches_the_hidden_thresholds_on_other_seeds_and_an_untrained_unet_does_not(seed):
    # Seed 12: the solution's train with 12 epochs left two shapes confused there (mean IoU 0.67, both hidden tests
    # failed; about one seed in twenty did so). With 16 epochs, 60 of 60 seeds pass:
    # python benchmarks/hidden_training_reliability.py --lab lab08_segmentation
    torch.set_num_threads(1)
    names = namespace()
    (case,) = SPEC.test("test_iou_hidden_80").cases(seed)
    start = time.perf_counter()
    predictions = names["train_and_segment"](*case.args)
    seconds = time.perf_counter() - start
    score = mean_iou(predictions, case.answers, 4)
    print(f"\nlab08 solution, seed {seed}: mean IoU {score:.3f}, trained and predicted in {seconds:.1f} s")
    for grade_id in ("test_iou_hidden_70", "test_iou_hidden_80"):
        assert judge(grade_id, predictions, case) is None, judge(grade_id, predictions, case)
    untrained = namespace(train=lambda model, images, masks: None)["train_and_segment"](*case.args)
    assert judge("test_iou_hidden_70", untrained, case) is not None


# --- the real sandbox (slow) ----------------------------------------------------------------------------------------


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
    print(f"\nlab08 solution graded in the sandbox in {result.seconds:.1f} s")


# A transposed convolution without the flip, which prints a passing verdict of its own and tampers with its process
# so that any check made there would agree with it: the verdict is computed in the grader, from the values.
TAMPERING_TRANSPOSED = SOLUTION["conv_transpose2d"].replace(
    "kernel = weight.flip(-2, -1).transpose(0, 1)", "kernel = weight.transpose(0, 1)") + '''
print("conv_transpose2d, stride without padding: passed (4 cases).")
torch.testing.assert_close = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
'''

# A right max_unpool that first looks for files of the host (there are none in the sandbox).
READING_UNPOOL = '''
def max_unpool(x, indices, output_size):
    import os
    found = [p for p in ("/etc/passwd", "/work", "/root", "/home") if os.path.exists(p)]
    if found:
        raise RuntimeError("LEAKED " + ", ".join(found))
    n, c = x.shape[:2]
    out = x.new_zeros(n, c, output_size[0] * output_size[1])
    return out.scatter(2, indices.reshape(n, c, -1), x.reshape(n, c, -1)).reshape(n, c, *output_size)
'''

HANGING_CROP = '''
def center_crop(skip, size):
    while True:
        pass
'''

IMPORTED_POOL = '''
from course_lib.layers.functional.pooling import max_pool2d


def max_pool_with_indices(x):
    return max_pool2d(x, 2, return_indices=True)
'''

LAZY_TRAIN = '''
def train(model, images, masks):
    pass
'''


@pytest.mark.slow
def test_sandbox_tampering_reading_hanging_importing_and_not_training_earn_nothing_they_should_not():
    from course_lib.grading.sandbox import Limits

    limits = replace(SPEC.limits_for(Limits()), call_timeout_s=5.0, wall_s=120.0)
    result = _grade(limits=limits, conv_transpose2d=TAMPERING_TRANSPOSED, max_unpool=READING_UNPOOL,
                    center_crop=HANGING_CROP, max_pool_with_indices=IMPORTED_POOL, train=LAZY_TRAIN)
    verdicts = result.verdicts
    for grade_id in ("test_transposed_basic", "test_transposed_padding", "test_transposed_hidden"):
        assert not verdicts[grade_id].passed
        assert "Likely cause: kernel not flipped" in verdicts[grade_id].message, verdicts[grade_id].message
    for grade_id in ("test_unpool", "test_unpool_hidden"):
        assert verdicts[grade_id].passed, verdicts[grade_id].message
    for grade_id in ("test_center_crop", "test_center_crop_hidden"):
        message = verdicts[grade_id].message
        assert not verdicts[grade_id].passed and ("timed out" in message or "not run" in message), message
    assert "ModuleNotFoundError" in result.load_errors["max_pool_with_indices"]
    for grade_id in ("test_pool_indices", "test_segnet", "test_segnet_hidden"):
        assert not verdicts[grade_id].passed
    # The U-Net was never trained (and pools with a function that did not load): no IoU test passes.
    for grade_id in ("test_unet_learns", "test_iou_hidden_70", "test_iou_hidden_80"):
        assert not verdicts[grade_id].passed
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("max_pool_with_indices") and "uses course_lib" in f for f in flags), flags
    assert not any("LEAKED" in v.message for v in verdicts.values())
