"""Lab 7 (regularization and augmentation): its tests judge right answers right and name the usual mistakes.

The instructor's answers, taken from the solution notebook, must pass every visible and hidden test; each
deliberately wrong answer below (written as a student might write it) must fail, with the "Likely cause" that names
its mistake. The random parts (DropBlock's seeds, fancy PCA's alphas) are judged statistically: a right answer must
pass on many seeds, and wrong rates must be named. The references agree with course_lib and with PyTorch. The
notebook's graded cells must be the specification's tests; shortcuts must be refused in the notebook and flagged by
the grader's scan; and in the real sandbox (slow), the solution gets every point while shortcuts and hostile answers
get none.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_lib.grading.labs import get_spec
from course_lib.grading.labs.lab07_regularization import (
    PREAMBLE, REGULARIZERS, Heldout, experiment_data, label_permutation,
)
from course_lib.grading.regularization import (
    drop_block_reference,
    explain_drop_block_mask,
    explain_drop_block_output,
    explain_lighting,
    explain_principal_components,
    explain_smooth_labels,
    explain_smoothing_loss,
    lighting_reference,
    principal_components_reference,
    smooth_labels_reference,
    smoothing_loss_reference,
)
from course_lib.grading.scan import copied_from, scan_answer
from course_lib.layers.functional import regularization as CR
from course_lib.train import augment
from nbgrader_course import cells_of_kind, handed_in_answers, kernel_after
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "solutions" / "lab07_regularization" / "lab07_regularization.ipynb"
SPEC = get_spec("lab07_regularization")
NOTEBOOK = nbformat.read(SOURCE, as_version=4)

# The instructor's answer cells as a student hands them in: (grade_id, source) without the solution markers.
SOLUTION_CELLS = handed_in_answers(NOTEBOOK)
FUNCTIONS = ("drop_block", "drop_block_seeds", "smooth_labels", "label_smoothing_loss", "rgb_principal_components",
             "pca_lighting", "random_lighting", "train_with")
EXPERIMENT = {"test_experiment", "test_experiment_hidden"}


def namespace(**replaced) -> dict:
    """The preamble and the solution's answer cells as the grader loads them, with ``replaced`` definitions."""
    return kernel_after(PREAMBLE, SOLUTION_CELLS, **replaced)


SOLUTION = namespace()


def failure(grade_id: str, seeds=(0,), **replaced) -> str | None:
    """The judge's message for the first case of test ``grade_id`` that the answers get wrong, or None (no guard:
    the wrong answers below may use library calls to build a mistake)."""
    test = SPEC.test(grade_id)
    ns = namespace(**replaced) if replaced else SOLUTION
    for seed in seeds:
        for case in test.cases(seed):
            try:
                value, error = ns[test.function](*case.args, **dict(case.kwargs)), None
            except Exception as exc:  # noqa: BLE001 - the judge decides
                value, error = None, f"{type(exc).__name__}: {exc}"
            message = test.judge(case, value, error)
            if message is not None:
                return message
    return None


# --- the reference answer passes everything -----------------------------------------------------------------


@pytest.mark.parametrize("grade_id", [t.grade_id for t in SPEC.tests if t.grade_id not in EXPERIMENT])
def test_solution_passes_every_test_for_several_seeds(grade_id):
    test = SPEC.test(grade_id)
    seeds = (0, 1, 2, 3, 4) if test.hidden else (0,)
    assert failure(grade_id, seeds) is None


def test_solution_passes_the_visible_tests_in_the_notebook_with_the_guard_on(capsys):
    for test in SPEC.tests:
        SPEC.run(test.grade_id, SOLUTION)
    printed = capsys.readouterr().out
    assert printed.count(": passed (") == sum(not t.hidden for t in SPEC.tests)


@pytest.mark.slow
def test_solution_passes_the_hidden_experiment_for_two_seeds():
    assert failure("test_experiment_hidden", seeds=(1, 2)) is None


@pytest.mark.parametrize("grade_id", ["test_drop_block_seeds_hidden", "test_random_lighting_hidden"])
def test_right_random_answers_pass_on_many_seeds(grade_id):
    """The statistical judges reject a right answer about once in a million cases: 40 seeds must all pass."""
    assert failure(grade_id, seeds=range(10, 50)) is None


@pytest.mark.parametrize("grade_id", ["test_smooth_labels_hidden", "test_pca_lighting_hidden"])
def test_right_answers_pass_the_hidden_targets_and_lighting_on_many_seeds(grade_id):
    assert failure(grade_id, seeds=range(10, 50)) is None


# --- the references agree with PyTorch and course_lib ---------------------------------------------------------


def test_drop_block_reference_is_course_libs_with_the_seeds_moved_to_the_centres():
    """course_lib draws seeds on the (H - b + 1) x (W - b + 1) grid and grows each block down and to the right; a
    seed there is the centre of this lab's block shifted by b // 2."""
    g = torch.Generator().manual_seed(0)
    for b, shape in ((3, (2, 3, 9, 8)), (5, (1, 2, 12, 10)), (1, (2, 1, 5, 5))):
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        grid = torch.bernoulli(torch.full((*shape[:2], shape[2] - b + 1, shape[3] - b + 1), 0.1, dtype=torch.float64),
                               generator=g)
        centres = torch.zeros(shape, dtype=torch.float64)
        centres[:, :, b // 2:b // 2 + grid.shape[2], b // 2:b // 2 + grid.shape[3]] = grid
        out, keep = drop_block_reference(x, centres, b)
        assert torch.equal(keep, 1 - CR._dilate(grid, b))
        torch.testing.assert_close(out, x * keep * (keep.numel() / keep.sum()))


def test_smoothing_references_agree_with_course_lib_and_pytorch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 5, (7,), generator=g)
    for eps in (0.0, 0.1, 0.3, 1.0):
        loss, grad = smoothing_loss_reference(logits, targets, eps)
        torch.testing.assert_close(loss, CR.label_smoothing_cross_entropy(logits, targets, eps))
        q = smooth_labels_reference(targets, 5, eps)
        torch.testing.assert_close(q.sum(1), torch.ones(7, dtype=torch.float64))
        torch.testing.assert_close(loss, -(q * logits.log_softmax(1)).sum(1).mean())
        torch.testing.assert_close(grad, (logits.softmax(1) - q) / 7)


def test_pca_references_agree_with_course_lib():
    images = SPEC.test("test_pca_components").cases(0)[0].args[0]
    values, vectors = principal_components_reference(images)
    lib_values, lib_vectors = augment.pca_colour_basis(images)
    torch.testing.assert_close(values, lib_values)
    torch.testing.assert_close(vectors.abs(), lib_vectors.abs())
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, torch.cov(images.transpose(0, 1).reshape(3, -1)))
    # The lighting shift of course_lib's fancy_pca with the alphas it draws is this lab's pca_lighting of the same alphas.
    g = torch.Generator().manual_seed(3)
    alphas = torch.randn(images.shape[0], 3, generator=torch.Generator().manual_seed(3)) * 0.1
    torch.testing.assert_close(lighting_reference(images, alphas.double(), lib_values, lib_vectors),
                               augment.fancy_pca(images, lib_values, lib_vectors, 0.1, generator=g))


# --- wrong answers, each named ---------------------------------------------------------------------------------


def block(mistake=None):
    """drop_block as a student might write it, by a loop over the seeds, with one deliberate ``mistake``."""

    def drop_block(x, seeds, block_size):
        r = block_size // 2
        h, w = x.shape[2:]
        dropped = torch.zeros_like(x)
        for n, c, i, j in seeds.nonzero().tolist():
            if mistake == "down-right":
                rows, cols = slice(i, i + block_size), slice(j, j + block_size)
            elif mistake == "radius":
                rows, cols = slice(max(i - block_size, 0), i + block_size + 1), slice(max(j - block_size, 0),
                                                                                   j + block_size + 1)
            elif mistake == "skip border" and not (r <= i < h - r and r <= j < w - r):
                continue
            elif mistake == "seed only":
                rows, cols = slice(i, i + 1), slice(j, j + 1)
            else:
                rows, cols = slice(max(i - r, 0), i + r + 1), slice(max(j - r, 0), j + r + 1)
            if mistake == "wrap":
                for u in range(i - r, i + r + 1):
                    for v in range(j - r, j + r + 1):
                        dropped[n, c, u % h, v % w] = 1
            else:
                dropped[n, c, rows, cols] = 1
        mask = 1 - dropped
        if mistake == "drop mask":
            return x * mask * mask.numel() / mask.sum().clamp_min(1), dropped
        kept = mask.sum()
        if mistake == "not rescaled":
            return x * mask, mask
        if mistake == "per map":
            return x * mask * (h * w) / mask.sum((2, 3), keepdim=True), mask
        if mistake == "upside down":
            return x * mask * kept / mask.numel(), mask
        if mistake == "no zero case":
            return x * mask * (mask.numel() / kept), mask
        return (torch.zeros_like(x) if kept == 0 else x * mask * (mask.numel() / kept)), mask

    return drop_block


def seeds_function(mistake=None):
    """drop_block_seeds with one deliberate ``mistake``."""

    def drop_block_seeds(shape, p, block_size, generator=None):
        n, c, h, w = shape
        b, r = block_size, block_size // 2
        gamma = {"no b2": p * h * w / ((h - b + 1) * (w - b + 1)), "no ratio": p / b**2,
                 "keep": (1 - p) / b**2 * h * w / ((h - b + 1) * (w - b + 1))}.get(
            mistake, p / b**2 * h * w / ((h - b + 1) * (w - b + 1)))
        if mistake == "everywhere":
            return (torch.rand(shape, generator=generator) < gamma).float()
        if mistake == "global generator":
            generator = None
        grid = (torch.rand(n, c, h - b + 1, w - b + 1, generator=generator) < gamma).float()
        seeds = torch.zeros(shape)
        if mistake == "corner":
            seeds[:, :, :h - b + 1, :w - b + 1] = grid
        else:
            seeds[:, :, r:r + h - b + 1, r:r + w - b + 1] = grid
        return seeds

    return drop_block_seeds


def smoothing(mistake=None):
    """smooth_labels with one deliberate ``mistake``."""

    def smooth_labels(targets, num_classes, smoothing):
        one_hot = F.one_hot(targets, num_classes).double()
        eps, k = smoothing, num_classes
        return {
            "twice": (1 - eps) * one_hot + eps / k + eps / k * one_hot,
            "unscaled": one_hot + eps / k,
            "k-1": (1 - eps) * one_hot + eps / (k - 1) * (1 - one_hot),
            "k mixed": (1 - eps) * one_hot + eps / k * (1 - one_hot),
            "swapped": eps * one_hot + (1 - eps) / k,
            "transposed": ((1 - eps) * one_hot + eps / k).T,
        }.get(mistake, (1 - eps) * one_hot + eps / k)

    return smooth_labels


def loss_function(mistake=None):
    """label_smoothing_loss with one deliberate ``mistake`` (it uses the namespace's smooth_labels)."""

    def label_smoothing_loss(logits, targets, smoothing=0.0):
        k = logits.shape[1]
        q = smoothing_fn(targets, k, smoothing).to(logits.dtype)
        if mistake == "unstable":
            log_p = torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))
        else:
            log_p = logits - torch.logsumexp(logits, 1, keepdim=True)
        per_example = -(q * log_p).sum(1)
        if mistake == "sum":
            return per_example.sum()
        if mistake == "mean over classes":
            return -(q * log_p).mean()
        if mistake == "per example":
            return per_example
        if mistake == "item":
            return per_example.mean().item()
        if mistake == "detached":
            return per_example.mean().detach()
        if mistake == "no smoothing":
            return -log_p.gather(1, targets[:, None]).mean()
        return per_example.mean()

    smoothing_fn = smoothing()
    return label_smoothing_loss


def principal(mistake=None):
    """rgb_principal_components with one deliberate ``mistake``."""

    def rgb_principal_components(images):
        pixels = {"reshape": lambda: images.reshape(3, -1), "last axis": lambda: images.reshape(-1, 3).T}.get(
            mistake, lambda: images.transpose(0, 1).reshape(3, -1))()
        if mistake == "pixels":
            return torch.linalg.eigh(torch.cov(pixels.T[:50]))
        centred = pixels if mistake == "uncentred" else pixels - pixels.mean(1, keepdim=True)
        divisor = pixels.shape[1] if mistake == "biased" else pixels.shape[1] - 1
        values, vectors = torch.linalg.eigh(centred @ centred.T / divisor)
        if mistake == "ascending":
            return values, vectors
        values, vectors = values.flip(0), vectors.flip(1)
        return {"rows": (values, vectors.T), "sqrt": (values.sqrt(), vectors),
                "columns not reordered": (values, vectors.flip(1)),
                "signs": (values, -vectors)}.get(mistake, (values, vectors))

    return rgb_principal_components


def lighting(mistake=None):
    """pca_lighting with one deliberate ``mistake``."""

    def pca_lighting(images, alphas, eigenvalues, eigenvectors):
        scale = {"sqrt": eigenvalues.sqrt(), "no lambda": torch.ones_like(eigenvalues)}.get(mistake, eigenvalues)
        basis = eigenvectors if mistake == "rows" else eigenvectors.T
        return images + ((alphas * scale) @ basis)[:, :, None, None]

    return pca_lighting


def random_lighting_function(mistake=None):
    """random_lighting with one deliberate ``mistake``; it calls the solution's pca_lighting."""

    def random_lighting(images, eigenvalues, eigenvectors, alpha_std=0.1, generator=None):
        n, _, h, w = images.shape
        if mistake == "per pixel":
            alphas = alpha_std * torch.randn(n, h, w, 3, generator=generator, dtype=images.dtype)
            shift = (alphas * eigenvalues) @ eigenvectors.T
            return images + shift.permute(0, 3, 1, 2)
        std = {"variance": alpha_std**2, "unscaled": 1.0}.get(mistake, alpha_std)
        rows = 1 if mistake == "one draw" else n
        alphas = std * torch.randn(rows, 3, generator=None if mistake == "global generator" else generator,
                                   dtype=images.dtype).expand(n, 3)
        return SOLUTION["pca_lighting"](images, alphas, eigenvalues, eigenvectors)

    return random_lighting


MISTAKES = [
    # (id, test cell, the wrong definitions, what its message must say)
    ("mask-not-centred", "test_drop_block_mask", dict(drop_block=block("down-right")),
     r"mask \(the keep mask, 1 = kept\) has the right shape but wrong values(?s:.*)Likely cause: blocks not centred: "
     r"each of yours starts at its seed"),
    ("mask-radius", "test_drop_block_mask", dict(drop_block=block("radius")), r"your blocks are 7 x 7: block_size = 3"),
    ("mask-seed-only", "test_drop_block_mask", dict(drop_block=block("seed only")), r"only the seed pixels are dropped"),
    ("drop-mask", "test_drop_block_mask", dict(drop_block=block("drop mask")),
     r"your mask is 1 where pixels are dropped"),
    ("wraps-around", "test_drop_block_borders", dict(drop_block=block("wrap")), r"blocks wrap around the border"),
    ("border-seeds-skipped", "test_drop_block_borders", dict(drop_block=block("skip border")),
     r"seeds near the border ignored"),
    ("block-mask-not-rescaled", "test_drop_block_output", dict(drop_block=block("not rescaled")),
     r"out has the right shape but wrong values(?s:.*)Likely cause: block mask not rescaled"),
    ("rescaled-per-map", "test_drop_block_output", dict(drop_block=block("per map")), r"rescaled per feature map"),
    ("rescaled-upside-down", "test_drop_block_output", dict(drop_block=block("upside down")), r"rescaled upside down"),
    ("all-dropped-nan", "test_drop_block_output", dict(drop_block=block("no zero case")),
     r"out has the right shape but wrong values(?s:.*)every pixel is dropped here(?s:.*)divided 0 by 0"),
    ("gamma-no-b2", "test_drop_block_seeds", dict(drop_block_seeds=seeds_function("no b2")),
     r"Likely cause: gamma without the division by block_size\^2 = 25"),
    ("gamma-no-area-ratio", "test_drop_block_seeds", dict(drop_block_seeds=seeds_function("no ratio")),
     r"Likely cause: gamma = p / block_size\^2: the area ratio"),
    ("gamma-keep-probability", "test_drop_block_seeds", dict(drop_block_seeds=seeds_function("keep")),
     r"seeds among 32768 positions(?s:.*)z = "),
    ("seeds-everywhere", "test_drop_block_seeds", dict(drop_block_seeds=seeds_function("everywhere")),
     r"lie where a 5 x 5 block centred on them does not fit(?s:.*)rows and columns 2 to H - 1 - 2"),
    ("seeds-in-the-corner", "test_drop_block_seeds", dict(drop_block_seeds=seeds_function("corner")),
     r"Likely cause: your seeds fill the top-left \(H - b \+ 1\) x \(W - b \+ 1\) corner"),
    ("seeds-ignore-generator", "test_drop_block_seeds", dict(drop_block_seeds=seeds_function("global generator")),
     r"two calls with generators seeded alike gave different seed maps"),
    ("smoothing-mass-twice", "test_smooth_labels", dict(smooth_labels=smoothing("twice")),
     r"Likely cause: the smoothing mass is given to the true class twice"),
    ("one-hot-not-scaled", "test_smooth_labels", dict(smooth_labels=smoothing("unscaled")),
     r"Likely cause: the one-hot part is not scaled by 1 - eps"),
    ("smoothing-over-k-1", "test_smooth_labels", dict(smooth_labels=smoothing("k-1")),
     r"Likely cause: eps spread over the K - 1 = 4 other classes"),
    ("k-and-k-1-mixed", "test_smooth_labels", dict(smooth_labels=smoothing("k mixed")),
     r"Likely cause: K and K - 1 mixed: the true class gets 1 - eps without its eps/K share"),
    ("smoothing-swapped", "test_smooth_labels", dict(smooth_labels=smoothing("swapped")),
     r"Likely cause: smoothing and 1 - smoothing swapped"),
    ("targets-transposed", "test_smooth_labels", dict(smooth_labels=smoothing("transposed")),
     r"has shape \(5, 6\), expected \(6, 5\)\.\nLikely cause: your targets are transposed"),
    ("loss-summed", "test_smoothing_loss", dict(label_smoothing_loss=loss_function("sum")),
     r"Likely cause: summed over the batch instead of averaged: your loss is N = 6 times too large"),
    ("loss-mean-over-classes", "test_smoothing_loss", dict(label_smoothing_loss=loss_function("mean over classes")),
     r"Likely cause: averaged over the classes too"),
    ("loss-per-example", "test_smoothing_loss", dict(label_smoothing_loss=loss_function("per example")),
     r"has shape \(6,\), expected \(\)\.\nLikely cause: one loss per example"),
    ("loss-without-smoothing", "test_smoothing_loss", dict(label_smoothing_loss=loss_function("no smoothing")),
     r"Likely cause: smoothing ignored"),
    ("loss-item", "test_smoothing_loss", dict(label_smoothing_loss=loss_function("item")),
     r"the loss is a Python float .*no \.item\(\)"),
    ("loss-with-wrong-targets", "test_smoothing_loss",
     dict(smooth_labels=smoothing("twice")),
     r"Likely cause: the targets are wrong: the smoothing mass is given to the true class twice"),
    ("loss-unstable", "test_smoothing_stable", dict(label_smoothing_loss=loss_function("unstable")),
     r"Likely cause: not numerically stable: exp\(logits\) overflowed"),
    ("loss-detached", "test_smoothing_gradient", dict(label_smoothing_loss=loss_function("detached")),
     r"your loss carries no gradient back to the logits"),
    ("pca-wrong-axis-reshape", "test_pca_components", dict(rgb_principal_components=principal("reshape")),
     r"Likely cause: PCA on the wrong axis: images\.reshape\(3, -1\) does not gather each channel's values"),
    ("pca-wrong-axis-last", "test_pca_components", dict(rgb_principal_components=principal("last axis")),
     r"Likely cause: PCA on the wrong axis: reshape\(-1, 3\)"),
    ("pca-over-pixels", "test_pca_components", dict(rgb_principal_components=principal("pixels")),
     r"Likely cause: your eigenvalues have 50 entries: you took a covariance between pixels"),
    ("pca-not-centred", "test_pca_components", dict(rgb_principal_components=principal("uncentred")),
     r"Likely cause: the mean is not subtracted"),
    ("pca-biased", "test_pca_components", dict(rgb_principal_components=principal("biased")),
     r"Likely cause: covariance divided by P = 120 instead of P - 1"),
    ("pca-ascending", "test_pca_components", dict(rgb_principal_components=principal("ascending")),
     r"Likely cause: eigenvalues in ascending order, as torch\.linalg\.eigh returns them"),
    ("pca-rows", "test_pca_components", dict(rgb_principal_components=principal("rows")),
     r"Likely cause: your eigenvectors are the rows"),
    ("pca-sqrt", "test_pca_components", dict(rgb_principal_components=principal("sqrt")),
     r"Likely cause: your eigenvalues are square roots"),
    ("pca-columns-not-reordered", "test_pca_components",
     dict(rgb_principal_components=principal("columns not reordered")),
     r"Likely cause: eigenvalues sorted in descending order but the eigenvectors' columns not reordered"),
    ("lighting-sqrt", "test_pca_lighting", dict(pca_lighting=lighting("sqrt")),
     r"Likely cause: square roots of the eigenvalues used"),
    ("lighting-no-lambda", "test_pca_lighting", dict(pca_lighting=lighting("no lambda")),
     r"Likely cause: the eigenvalues are missing"),
    ("lighting-rows", "test_pca_lighting", dict(pca_lighting=lighting("rows")),
     r"Likely cause: eigenvectors used as rows"),
    ("alphas-per-pixel", "test_random_lighting", dict(random_lighting=random_lighting_function("per pixel")),
     r"Likely cause: alphas drawn per pixel instead of per image"),
    ("alphas-once-per-batch", "test_random_lighting", dict(random_lighting=random_lighting_function("one draw")),
     r"Likely cause: one draw of alphas for the whole batch"),
    ("alpha-variance", "test_random_lighting", dict(random_lighting=random_lighting_function("variance")),
     r"Likely cause: alpha_std squared"),
    ("alpha-unscaled", "test_random_lighting", dict(random_lighting=random_lighting_function("unscaled")),
     r"Likely cause: the alphas are not multiplied by alpha_std"),
    ("alphas-global-generator", "test_random_lighting",
     dict(random_lighting=random_lighting_function("global generator")),
     r"two calls with generators seeded alike gave different images"),
]


@pytest.mark.parametrize(("grade_id", "replaced", "message"), [pytest.param(*m[1:], id=m[0]) for m in MISTAKES])
def test_a_known_mistake_is_named(grade_id, replaced, message):
    found = failure(grade_id, **replaced)
    assert found is not None, "the mistake passed the test"
    assert re.search(message, found), found


# The hidden tests of smooth_labels, pca_lighting and random_lighting (through sample_lighting) draw their cases from
# the submission's seed; their judges are the visible tests', so a mistake is named there too, whatever the seed.
HIDDEN_MISTAKES = [
    ("smoothing-mass-twice", "test_smooth_labels_hidden", dict(smooth_labels=smoothing("twice")),
     r"Likely cause: the smoothing mass is given to the true class twice"),
    ("one-hot-not-scaled", "test_smooth_labels_hidden", dict(smooth_labels=smoothing("unscaled")),
     r"Likely cause: the one-hot part is not scaled by 1 - eps"),
    ("smoothing-over-k-1", "test_smooth_labels_hidden", dict(smooth_labels=smoothing("k-1")),
     r"Likely cause: eps spread over the K - 1 = \d+ other classes"),
    ("k-and-k-1-mixed", "test_smooth_labels_hidden", dict(smooth_labels=smoothing("k mixed")),
     r"Likely cause: K and K - 1 mixed"),
    ("smoothing-swapped", "test_smooth_labels_hidden", dict(smooth_labels=smoothing("swapped")),
     r"Likely cause: smoothing and 1 - smoothing swapped"),
    ("targets-transposed", "test_smooth_labels_hidden", dict(smooth_labels=smoothing("transposed")),
     r"Likely cause: your targets are transposed"),
    ("lighting-sqrt", "test_pca_lighting_hidden", dict(pca_lighting=lighting("sqrt")),
     r"Likely cause: square roots of the eigenvalues used"),
    ("eigenvalues-not-multiplied", "test_pca_lighting_hidden", dict(pca_lighting=lighting("no lambda")),
     r"Likely cause: the eigenvalues are missing"),
    ("lighting-rows", "test_pca_lighting_hidden", dict(pca_lighting=lighting("rows")),
     r"Likely cause: eigenvectors used as rows"),
    ("alphas-per-pixel", "test_random_lighting_hidden", dict(random_lighting=random_lighting_function("per pixel")),
     r"Likely cause: alphas drawn per pixel instead of per image"),
    ("alphas-once-per-batch", "test_random_lighting_hidden",
     dict(random_lighting=random_lighting_function("one draw")), r"Likely cause: one draw of alphas for the whole batch"),
    ("alpha-variance", "test_random_lighting_hidden", dict(random_lighting=random_lighting_function("variance")),
     r"Likely cause: alpha_std squared"),
    ("alpha-unscaled", "test_random_lighting_hidden", dict(random_lighting=random_lighting_function("unscaled")),
     r"Likely cause: the alphas are not multiplied by alpha_std"),
    ("alphas-global-generator", "test_random_lighting_hidden",
     dict(random_lighting=random_lighting_function("global generator")),
     r"two calls with generators seeded alike gave different images"),
]


@pytest.mark.parametrize(("grade_id", "replaced", "message"),
                         [pytest.param(*m[1:], id=m[0]) for m in HIDDEN_MISTAKES])
def test_a_known_mistake_is_named_by_the_hidden_test_for_every_seed(grade_id, replaced, message):
    ns = namespace(**replaced)
    test = SPEC.test(grade_id)
    for seed in range(8):
        found = None
        for case in test.cases(seed):
            found = test.judge(case, ns[test.function](*case.args, **dict(case.kwargs)), None)
            if found is not None:
                break
        assert found is not None, f"the mistake passed the hidden test for seed {seed}"
        assert re.search(message, found), (seed, found)


@pytest.mark.parametrize(("hidden", "visible"), [("test_smooth_labels_hidden", "test_smooth_labels"),
                                                 ("test_pca_lighting_hidden", "test_pca_lighting"),
                                                 ("test_random_lighting_hidden", "test_random_lighting")])
def test_a_hidden_test_calls_and_judges_as_its_visible_test(hidden, visible):
    assert SPEC.test(hidden).hidden and not SPEC.test(visible).hidden
    assert SPEC.test(hidden).function == SPEC.test(visible).function
    assert SPEC.test(hidden).judge is SPEC.test(visible).judge


def _visible_only(grade_id, right, wrong):
    """An answer that special-cases the inputs of the visible test ``grade_id``: ``right`` for them, ``wrong`` else."""
    seen = [case.args for case in SPEC.test(grade_id).cases(0)]

    def answer(first, *rest, **kwargs):
        known = any(first.shape == args[0].shape and torch.equal(first, args[0]) for args in seen)
        return (right if known else wrong)(first, *rest, **kwargs)

    return answer


def test_an_answer_that_special_cases_the_visible_inputs_fails_the_hidden_tests():
    def variance_std(images, eigenvalues, eigenvectors, alpha_std=0.1, generator=None):
        return random_lighting_function("variance")(images, eigenvalues, eigenvectors, alpha_std, generator)

    special = {
        "test_smooth_labels": dict(smooth_labels=_visible_only("test_smooth_labels", SOLUTION["smooth_labels"],
                                                               smoothing("k-1"))),
        "test_pca_lighting": dict(pca_lighting=_visible_only("test_pca_lighting", SOLUTION["pca_lighting"],
                                                             lighting("no lambda"))),
        "test_random_lighting": dict(random_lighting=_visible_only("test_random_lighting", SOLUTION["random_lighting"],
                                                                   variance_std)),
    }
    for visible, replaced in special.items():
        assert failure(visible, **replaced) is None, visible
        assert failure(f"{visible}_hidden", seeds=(3,), **replaced) is not None, visible


def test_the_explainers_do_not_name_a_right_answer():
    for case in SPEC.test("test_drop_block_borders").cases(0) + SPEC.test("test_drop_block_output").cases(0):
        x, seeds, b = case.args
        out, mask = drop_block_reference(x, seeds, b)
        assert explain_drop_block_mask(mask, seeds, b) is None, case.label
        assert explain_drop_block_output(out, x, seeds, b) is None, case.label
    hidden_targets = [c for seed in range(5) for c in SPEC.test("test_smooth_labels_hidden").cases(seed)]
    for case in SPEC.test("test_smooth_labels").cases(0) + hidden_targets:
        targets, k, eps = case.args
        assert explain_smooth_labels(smooth_labels_reference(targets, k, eps), targets, k, eps) is None
    for case in SPEC.test("test_smoothing_loss").cases(0):
        logits, targets, eps = case.args
        assert explain_smoothing_loss(smoothing_loss_reference(logits, targets, eps)[0], logits, targets, eps) is None
    for case in SPEC.test("test_pca_components").cases(0):
        (images,) = case.args
        assert explain_principal_components(*principal_components_reference(images), images) is None
    hidden_lighting = [c for seed in range(5) for c in SPEC.test("test_pca_lighting_hidden").cases(seed)]
    for case in SPEC.test("test_pca_lighting").cases(0) + hidden_lighting:
        assert explain_lighting(lighting_reference(*case.args), *case.args) is None


def test_transposed_targets_are_named_when_n_equals_k_unless_they_are_symmetric():
    targets = torch.tensor([1, 2, 0])
    right = smooth_labels_reference(targets, 3, 0.1)
    assert "your targets are transposed" in explain_smooth_labels(right.T, targets, 3, 0.1)
    symmetric = torch.tensor([0, 1, 2])
    right = smooth_labels_reference(symmetric, 3, 0.1)
    assert explain_smooth_labels(right.T + 0.01, symmetric, 3, 0.1) is None


def test_an_eigenvector_may_have_either_sign():
    assert failure("test_pca_components", rgb_principal_components=principal("signs")) is None


def test_a_wrong_answer_that_matches_no_known_mistake_gets_no_guess():
    def noisy(targets, num_classes, smoothing):
        return SOLUTION["smooth_labels"](targets, num_classes, smoothing) + 0.003

    message = failure("test_smooth_labels", smooth_labels=noisy)
    assert message is not None and "Likely cause" not in message


def test_an_unwritten_function_says_so():
    def unwritten(*args, **kwargs):
        raise NotImplementedError()

    assert failure("test_drop_block_mask", drop_block=unwritten) == "raised NotImplementedError: "


# --- the experiment's judge ------------------------------------------------------------------------------------


def fake_runs(case: Heldout, accuracy: dict, same_as_none=()) -> dict:
    """What run_experiment might answer: logits whose argmax is right for the first share of each set of digits."""
    _, y_train, x_test, _ = case.args
    runs = {}
    for index, name in enumerate(REGULARIZERS):
        source = 0 if name in same_as_none else index

        def logits(labels, share):
            wrong = int(len(labels) * (1 - share))
            predicted = labels.clone()
            predicted[:wrong] = (predicted[:wrong] + 1) % 10
            return F.one_hot(predicted, 10).float() * 5 + source * 0.01

        train_share, test_share = accuracy.get(name, (0.95, 0.85))
        runs[name] = {"train": logits(y_train, train_share), "test": logits(case.answers, test_share), "seconds": 1.0}
    return runs


def judge_experiment(value, grade_id="test_experiment"):
    test = SPEC.test(grade_id)
    case = test.cases(5)[0]
    return test.judge(case, value(case) if callable(value) else value, None)


def test_the_experiment_judge_accepts_runs_that_learn_and_differ():
    assert judge_experiment(lambda case: fake_runs(case, {})) is None


@pytest.mark.parametrize(("runs", "message"), [
    (lambda case: fake_runs(case, {"none": (0.5, 0.5)}), r"only 50\.0% of its own training digits"),
    (lambda case: fake_runs(case, {"dropout": (0.9, 0.3)}), r"dropout: below 70% on the held-out digits"),
    (lambda case: fake_runs(case, {}, same_as_none=("weight_decay", "augmentation")),
     r"weight_decay, augmentation gave exactly the logits of 'none': the regularizer is not applied"),
    (lambda case: {**fake_runs(case, {}), "dropblock": {"error": "RuntimeError: boom"}},
     r"train_with\('dropblock', \.\.\.\) raised RuntimeError: boom"),
    (lambda case: {**fake_runs(case, {}), "none": {"train": torch.zeros(500, 10), "test": torch.zeros(3, 10)}},
     r"test_logits has shape \(3, 10\), expected \(1000, 10\)"),
    (lambda case: {name: run for name, run in fake_runs(case, {}).items() if name != "dropout"},
     r"not the description the grader asks for"),
])
def test_the_experiment_judge_names_what_is_wrong(runs, message):
    assert re.search(message, judge_experiment(runs) or ""), judge_experiment(runs)


def test_the_hidden_experiment_renames_the_classes_and_keeps_the_test_labels_in_the_grader():
    x, y, x_test, y_test = experiment_data()
    assert tuple(x.shape) == (4000, 1, 14, 14) and tuple(x_test.shape) == (1000, 1, 14, 14)
    (case,) = SPEC.test("test_experiment_hidden").cases(99)
    perm = label_permutation(99)
    assert not (perm == torch.arange(10)).any()
    sent_x, sent_y, sent_test, training_seed = case.args
    assert len(sent_x) == 500 and torch.equal(sent_test, x_test) and training_seed != 99
    assert torch.equal(case.answers, perm[y_test])
    assert not any(isinstance(a, torch.Tensor) and a.shape == y_test.shape and a.dtype == torch.int64 for a in case.args)
    (visible,) = SPEC.test("test_experiment").cases(0)
    assert torch.equal(visible.args[1], y[:500]) and torch.equal(visible.answers, y_test)


def test_the_experiment_helper_seeds_every_run_alike_and_reuses_a_kept_run():
    calls = []

    def train_with(regularizer, x_train, y_train, x_test):
        calls.append((regularizer, torch.rand(1).item()))
        return torch.zeros(len(x_train), 10), torch.zeros(len(x_test), 10)

    ns = namespace(train_with=train_with)
    x, y = torch.rand(4, 1, 14, 14), torch.arange(4)
    first = ns["run_experiment"](x, y, x[:2], 3, reuse=True)
    ns["run_experiment"](x, y, x[:2], 3, reuse=True)
    assert [name for name, _ in calls] == list(REGULARIZERS), "a second call with reuse=True must not train again"
    assert len({draw for _, draw in calls}) == 1, "each regularizer must start from the same seed"
    assert set(first) == set(REGULARIZERS) and tuple(first["none"]["test"].shape) == (2, 10)


# --- the test cases themselves -----------------------------------------------------------------------------------


def test_hidden_cases_change_with_the_seed_and_visible_ones_do_not():
    for test in SPEC.tests:
        labels = [[c.label for c in test.cases(seed)] for seed in (1, 2)]
        if test.grade_id == "test_experiment_hidden":
            cases = [test.cases(seed)[0] for seed in (1, 2)]
            assert not torch.equal(cases[0].args[1], cases[1].args[1])
        else:
            assert (labels[0] != labels[1]) == test.hidden, test.grade_id


def test_the_border_tests_hold_seeds_whose_blocks_are_clipped():
    for case in SPEC.test("test_drop_block_borders").cases(0):
        _, seeds, b = case.args
        r, (h, w) = b // 2, seeds.shape[2:]
        near = seeds[..., :r, :].sum() + seeds[..., h - r:, :].sum() + seeds[..., :, :r].sum() + seeds[..., :, w - r:].sum()
        assert near > 0, case.label


# --- the notebook and the specification agree --------------------------------------------------------------------


def test_points_and_answer_cells():
    points = {m["grade_id"]: m["points"] for m, _ in cells_of_kind(NOTEBOOK, "test")}
    assert sum(points.values()) == 24
    assert [points[g] for g in ("test_smooth_labels_hidden", "test_pca_lighting_hidden",
                                "test_random_lighting_hidden")] == [1, 1, 1]
    written = list(cells_of_kind(NOTEBOOK, "written"))
    assert [(m["grade_id"], m["points"]) for m, _ in written] == [("written_conclusion", 3)]
    assert "=== BEGIN MARK SCHEME ===" in written[0][1].source
    answers = [m["grade_id"] for m, _ in cells_of_kind(NOTEBOOK, "answer")]
    assert answers == list(FUNCTIONS) == [name for name, _ in SOLUTION_CELLS]
    for name, source in SOLUTION_CELLS:
        assert f"def {name}(" in source


def test_setup_cell_loads_this_labs_specification_and_its_helpers():
    setup = next(c for c in NOTEBOOK.cells if c.metadata["nbgrader"]["grade_id"] == "setup")
    assert 'LAB = get_spec("lab07_regularization")' in setup.source and "seed_everything(0)" in setup.source
    assert "exec(LAB.preamble)" in setup.source and "use_book_threads()" in setup.source
    assert setup.metadata["nbgrader"]["locked"] and not setup.metadata["nbgrader"]["grade"]


# --- shortcuts: refused in the notebook, flagged by the grader -------------------------------------------------


def test_the_solution_raises_no_flag():
    for name, source in SOLUTION_CELLS:
        assert scan_answer(name, source, SPEC.forbidden) == [], name
        assert copied_from(name, source, SPEC.originals) == [], name


@pytest.mark.parametrize(("source", "reason"), [
    ("return F.cross_entropy(logits, targets, label_smoothing=smoothing)", "uses cross_entropy"),
    ("loss = nn.CrossEntropyLoss(label_smoothing=0.1)(z, y)", "uses CrossEntropyLoss"),
    ("return F.nll_loss(logits.log_softmax(1), targets)", "uses nll_loss"),
    ("return F.kl_div(log_p, q, reduction='batchmean')", "uses kl_div"),
    ("from torchvision.ops import drop_block2d", "uses torchvision"),
    ("from course_lib.train.augment import pca_colour_basis", "uses course_lib"),
    ("from sklearn.decomposition import PCA", "uses sklearn"),
    ("u, s, v = torch.pca_lowrank(pixels.T)", "uses pca_lowrank"),
    ("data = open('/etc/passwd').read()", "reads a file"),
], ids=lambda v: v if len(v) < 40 else None)
def test_the_scan_flags_a_shortcut(source, reason):
    flags = scan_answer("label_smoothing_loss", source, SPEC.forbidden)
    assert any(reason in f.reason for f in flags), flags


@pytest.mark.parametrize("source", [
    "log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)",
    "log_p = F.log_softmax(logits, dim=1)",
    "dropped = F.max_pool2d(seeds, block_size, stride=1, padding=block_size // 2)",
    "values, vectors = torch.linalg.eigh(torch.cov(pixels))",
    "x = F.dropout(x, 0.5, self.training)",
    "optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-3)",
])
def test_the_scan_lets_the_building_blocks_through(source):
    assert scan_answer("train_with", source, SPEC.forbidden) == []


def test_a_copy_of_course_libs_drop_block_is_flagged():
    import inspect

    source = inspect.getsource(CR.drop_block2d).replace("def drop_block2d(", "def drop_block(")
    flags = copied_from("drop_block", source, SPEC.originals)
    assert flags and "course_lib.layers.functional.regularization.drop_block2d" in flags[0].reason


SHORTCUTS = [
    ("F.cross_entropy", "test_smoothing_loss", "label_smoothing_loss",
     lambda z, y, smoothing=0.0: F.cross_entropy(z, y, label_smoothing=smoothing), r"torch\.nn\.functional\.cross_entropy"),
    ("nn.CrossEntropyLoss", "test_smoothing_loss", "label_smoothing_loss",
     lambda z, y, smoothing=0.0: torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(z, y),
     r"torch\.nn\.functional\.cross_entropy"),
    ("course_lib-loss", "test_smoothing_loss", "label_smoothing_loss", CR.label_smoothing_cross_entropy,
     r"course_lib\.layers\.functional\.regularization\.label_smoothing_cross_entropy"),
    ("course_lib-pca", "test_pca_components", "rgb_principal_components", augment.pca_colour_basis,
     r"course_lib\.train\.augment\.pca_colour_basis"),
]


@pytest.mark.parametrize(("grade_id", "function", "shortcut", "named"), [pytest.param(*s[1:], id=s[0]) for s in SHORTCUTS])
def test_the_notebook_refuses_a_shortcut_and_names_it(grade_id, function, shortcut, named):
    with pytest.raises(AssertionError, match=rf"raised ForbiddenCallError: your code called {named}.*Lab 7 asks you"):
        SPEC.run(grade_id, {**SOLUTION, function: shortcut})
    # Everything is allowed again afterwards: the references use F.cross_entropy themselves.
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    assert torch.isfinite(F.cross_entropy(z, y, label_smoothing=0.1))


def test_a_shortcut_inside_the_experiment_is_refused_too():
    def train_with(regularizer, x_train, y_train, x_test):
        F.cross_entropy(torch.zeros(2, 10), torch.zeros(2, dtype=torch.int64))
        return torch.zeros(len(x_train), 10), torch.zeros(len(x_test), 10)

    with pytest.raises(AssertionError, match=r"train_with\('none', \.\.\.\) raised ForbiddenCallError: your code called "
                                             r"torch\.nn\.functional\.cross_entropy"):
        SPEC.run("test_experiment", namespace(train_with=train_with))


# --- the real sandbox (slow) ------------------------------------------------------------------------------------


def _grade(**replaced):
    from course_lib.grading.grader import grade_answers

    require_sandbox()
    cells = [(name, replaced.get(name, source)) for name, source in SOLUTION_CELLS]
    return grade_answers(cells, SPEC, seed=7)


@pytest.mark.slow
def test_the_solution_gets_every_point_in_the_sandbox_without_a_flag():
    result = _grade()
    failed = {k: v.message for k, v in result.verdicts.items() if not v.passed}
    assert not failed and not result.flags and not result.load_errors, (failed, result.flags, result.load_errors)
    print(f"\nlab 7 solution graded in the sandbox in {result.seconds:.1f} s")


SHORTCUT_LOSS = '''
def label_smoothing_loss(logits, targets, smoothing=0.0):
    return F.cross_entropy(logits, targets, label_smoothing=smoothing)
'''

IMPORT_PCA = '''
from course_lib.train.augment import pca_colour_basis


def rgb_principal_components(images):
    return pca_colour_basis(images)
'''

# pca_lighting with the square roots of the eigenvalues, which then tampers with its own process so that any check
# made there would agree with it, and prints a verdict of its own: the verdict is computed in the grader.
TAMPERING_LIGHTING = '''
import builtins


def pca_lighting(images, alphas, eigenvalues, eigenvectors):
    print("pca_lighting: passed (2 cases).")
    return images + ((alphas * eigenvalues.sqrt()) @ eigenvectors.T)[:, :, None, None]


torch.testing.assert_close = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
builtins.__import__("sys").modules.pop("course_lib", None)
'''

# random_lighting that reads files of the host (there are none in the sandbox) before it answers right.
READING_LIGHTING = '''
def random_lighting(images, eigenvalues, eigenvectors, alpha_std=0.1, generator=None):
    import os
    found = [p for p in ("/etc/passwd", "/work", "/root", "/home") if os.path.exists(p)]
    if found:
        raise RuntimeError("LEAKED " + ", ".join(found))
    alphas = alpha_std * torch.randn(images.shape[0], 3, generator=generator, dtype=images.dtype)
    return pca_lighting(images, alphas, eigenvalues, eigenvectors)
'''

HANGING_EXPERIMENT = '''
def train_with(regularizer, x_train, y_train, x_test):
    while True:
        pass
'''


@pytest.mark.slow
def test_sandbox_shortcuts_are_flagged_and_a_course_lib_import_loses_its_tests():
    result = _grade(label_smoothing_loss=SHORTCUT_LOSS, rgb_principal_components=IMPORT_PCA)
    lost = sorted(k for k, v in result.verdicts.items() if not v.passed)
    assert lost == ["test_pca_components", "test_pca_components_hidden"], lost
    assert "ModuleNotFoundError" in result.load_errors["rgb_principal_components"]
    flags = [str(f) for f in result.flags]
    assert any(f.startswith("label_smoothing_loss") and "uses cross_entropy" in f for f in flags), flags
    assert any(f.startswith("rgb_principal_components") and "uses course_lib" in f for f in flags), flags


@pytest.mark.slow
def test_sandbox_tampering_reading_and_hanging_earn_nothing_they_should_not():
    from dataclasses import replace

    from course_lib.grading.grader import grade_answers
    from course_lib.grading.sandbox import Limits

    require_sandbox()
    replaced = {"pca_lighting": TAMPERING_LIGHTING, "random_lighting": READING_LIGHTING, "train_with": HANGING_EXPERIMENT}
    cells = [(name, replaced.get(name, source)) for name, source in SOLUTION_CELLS]
    # A shorter call timeout than the lab's, so that the hanging experiment costs seconds, not minutes.
    limits = replace(SPEC.limits_for(Limits()), call_timeout_s=15.0, wall_s=150.0)
    result = grade_answers(cells, SPEC, seed=7, limits=limits)
    verdicts = result.verdicts
    for grade_id in ("test_pca_lighting", "test_pca_lighting_hidden"):
        lighting = verdicts[grade_id]
        assert not lighting.passed and "Likely cause: square roots of the eigenvalues used" in lighting.message
    # random_lighting calls the tampered pca_lighting, so its spread is wrong; it read nothing of the host.
    for grade_id in ("test_random_lighting", "test_random_lighting_hidden"):
        assert not verdicts[grade_id].passed
        assert "LEAKED" not in verdicts[grade_id].message
    for grade_id in ("test_experiment", "test_experiment_hidden"):
        assert not verdicts[grade_id].passed and ("timed out" in verdicts[grade_id].message
                                                  or "not run" in verdicts[grade_id].message), verdicts[grade_id].message
    passed = {k for k, v in verdicts.items() if v.passed}
    assert {t.grade_id for t in SPEC.tests if t.function not in ("pca_lighting", "sample_lighting", "run_experiment")} \
        <= passed, sorted(set(verdicts) - passed)
