"""Checks for the regularization lab (lab 7) that recognise the usual mistakes and name them.

Lab 7 asks for DropBlock (the blocks grown from a given seed map, the rescaling, and the random seeds), the
label-smoothing loss, AlexNet's "fancy PCA" colour augmentation and an experiment. The right answers are
computed here in float64: DropBlock's blocks by a max-pooling of the seed map (centred blocks, clipped at the
border), the label-smoothing loss and its gradient by ``F.cross_entropy(..., label_smoothing=...)`` and autograd,
the colour basis by ``torch.cov`` and ``torch.linalg.eigh``. A wrong answer is compared with the outputs of
known *wrong* answers - a block mask not rescaled, blocks grown from the seed to the right and down, blocks that
wrap around the border, the smoothing mass given to the true class twice, eps spread over K - 1 classes, a
covariance over the wrong axis, square roots of the eigenvalues - and when it matches one of them, the
``explain_*`` function says which mistake it is (the "Likely cause" line of a test message).

Shapes: DropBlock's ``x`` and ``seeds`` (N, C, H, W), ``block_size`` odd; label smoothing's ``logits`` (N, K),
``targets`` (N,) int64; fancy PCA's ``images`` (N, 3, H, W), eigenvalues (3,), eigenvectors (3, 3) with the axes
as columns, alphas (N, 3).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..layers.functional import regularization as reference
from ..train import augment
from .checks import matches

__all__ = [
    "NO_SHORTCUTS",
    "REFERENCE_FUNCTIONS",
    "LIBRARY_LOSSES",
    "block_gamma",
    "drop_block_reference",
    "explain_drop_block_mask",
    "explain_drop_block_output",
    "explain_seed_rate",
    "explain_smooth_labels",
    "explain_smoothing_loss",
    "explain_smoothing_gradient",
    "explain_principal_components",
    "explain_lighting",
    "lighting_reference",
    "principal_components_reference",
    "seed_zone",
    "smooth_labels_reference",
    "smoothing_loss_reference",
]

NO_SHORTCUTS = (
    "Lab 7 asks you to write DropBlock, the label-smoothing loss and fancy PCA yourself: course_lib's versions "
    "(drop_block2d, label_smoothing_cross_entropy, pca_colour_basis, fancy_pca), torchvision's drop_block2d and "
    "PyTorch's cross-entropy losses (F.cross_entropy, nn.CrossEntropyLoss, F.nll_loss, F.kl_div) are not allowed "
    "in your answer; use your own label_smoothing_loss in the experiment too."
)

# course_lib's reference implementations: the answers a student must not call (or copy).
REFERENCE_FUNCTIONS = (
    reference.drop_block2d,
    reference._dilate,
    reference.label_smoothing_cross_entropy,
    augment.pca_colour_basis,
    augment.fancy_pca,
)
# PyTorch's losses that compute a (smoothed) cross-entropy in one call: refused in the student's notebook.
LIBRARY_LOSSES = (F.cross_entropy, F.nll_loss, F.kl_div)


def _first(wrong: Iterator[tuple[str, torch.Tensor | None]], actual, right: torch.Tensor | None = None) -> str | None:
    """The description of the first wrong output that ``actual`` matches, or None. Wrong outputs that equal the
    ``right`` one in this case (smoothing 0 makes most smoothing slips right) are never named."""
    for description, output in wrong:
        if output is not None and matches(actual, output) and (right is None or not matches(output, right)):
            return description
    return None


# --- DropBlock -------------------------------------------------------------------------------------


def _grow(seeds: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """1 at every pixel that has a seed between ``before`` pixels up/left and ``after`` pixels down/right of it,
    along both axes: a seed at (i, j) covers rows i - after .. i + before (and the same for columns), clipped at
    the border. ``before = after = block_size // 2`` is a centred block."""
    size = before + after + 1
    padded = F.pad(seeds.double(), (before, after, before, after))
    return padded.unfold(2, size, 1).unfold(3, size, 1).amax((-1, -2))


def drop_block_reference(x: torch.Tensor, seeds: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, keep)`` of DropBlock with the given seed map, in float64.

    ``keep`` (N, C, H, W) is 0 in the ``block_size x block_size`` square centred on every seed (clipped at the
    border) and 1 elsewhere; ``out = x * keep * keep.numel() / keep.sum()``, or zeros when every pixel is dropped.
    """
    r = block_size // 2
    keep = 1.0 - _grow(seeds, r, r)
    kept = keep.sum()
    scale = keep.numel() / kept if kept > 0 else 0.0
    return x.double() * keep * scale, keep


def _rolled(seeds: torch.Tensor, r: int) -> torch.Tensor:
    """Centred blocks grown with torch.roll: a block near the border wraps around to the other side."""
    grown = torch.zeros_like(seeds, dtype=torch.float64)
    for du in range(-r, r + 1):
        for dv in range(-r, r + 1):
            grown = torch.maximum(grown, torch.roll(seeds.double(), (du, dv), (2, 3)))
    return grown


def seed_zone(shape, block_size: int) -> torch.Tensor:
    """A (H, W) bool map of where a seed may lie: where the whole centred block fits inside the map."""
    h, w = shape[-2:]
    r = block_size // 2
    zone = torch.zeros(h, w, dtype=torch.bool)
    zone[r:h - r, r:w - r] = True
    return zone


def _known_mask_mistakes(seeds, block_size) -> Iterator[tuple[str, torch.Tensor]]:
    b, r = block_size, block_size // 2
    keep = 1.0 - _grow(seeds, r, r)
    yield ("your mask is 1 where pixels are dropped; return the keep mask (1 = kept, 0 = dropped), the one x is "
           "multiplied by"), 1.0 - keep
    if b > 1:
        yield (f"blocks not centred: each of yours starts at its seed and extends {b - 1} pixel(s) to the right and "
               f"down. The {b} x {b} block is centred on its seed: rows i - {r} to i + {r}, columns j - {r} to "
               f"j + {r}"), 1.0 - _grow(seeds, b - 1, 0)
        yield (f"blocks not centred: each of yours ends at its seed, extending {b - 1} pixel(s) to the left and up. "
               f"The {b} x {b} block is centred on its seed: rows i - {r} to i + {r}"), 1.0 - _grow(seeds, 0, b - 1)
        yield ("blocks wrap around the border (torch.roll?): the part of a block that falls outside the map is "
               "cut off, not brought back on the opposite side"), 1.0 - _rolled(seeds, r)
        zone = seed_zone(seeds.shape, b)
        inside = seeds.double() * zone
        if not torch.equal(inside, seeds.double()):
            yield ("seeds near the border ignored: a block that does not fit inside the map is clipped at the "
                   "border, and its inside part is still dropped"), 1.0 - _grow(inside, r, r)
        yield (f"only the seed pixels are dropped: each seed drops the whole {b} x {b} square centred on it"),\
            1.0 - seeds.double()
        yield (f"your blocks are {2 * b + 1} x {2 * b + 1}: block_size = {b} is the side of the square, its half-width "
               f"is block_size // 2 = {r}"), 1.0 - _grow(seeds, b, b)
        if b > 2:
            yield (f"your blocks are {b - 1} x {b - 1} (or otherwise one pixel short): the block centred on seed "
                   f"(i, j) covers rows i - {r} to i + {r} inclusive, {b} rows"), 1.0 - _grow(seeds, r - 1, r)


def explain_drop_block_mask(actual, seeds, block_size) -> str | None:
    """The known mistake whose keep mask ``actual`` matches, or None (a wrong mask that happens to be the right one
    here, e.g. wrapped blocks that do not reach the border, is not named)."""
    keep = 1.0 - _grow(seeds, block_size // 2, block_size // 2)
    return _first(((d, m) for d, m in _known_mask_mistakes(seeds, block_size) if not torch.equal(m, keep)), actual)


def _rescaled(x, keep, over) -> torch.Tensor:
    """x * keep rescaled by numel / kept counted over the dimensions ``over`` (a tuple of axes)."""
    kept = keep.sum(dim=over, keepdim=True)
    count = math.prod(keep.shape[d] for d in over)
    return torch.where(kept > 0, x * keep * count / kept.clamp_min(1), torch.zeros_like(x))


def _known_output_mistakes(x, seeds, block_size) -> Iterator[tuple[str, torch.Tensor | None]]:
    """(description, output) of the wrong outputs of drop_block; those that happen to equal the right output here
    (a per-example count with one example...) are left out."""
    right = drop_block_reference(x, seeds, block_size)[0]
    for description, wrong in _output_slips(x, seeds, block_size):
        if wrong is not None and not matches(wrong, right):
            yield description, wrong


def _output_slips(x, seeds, block_size) -> Iterator[tuple[str, torch.Tensor | None]]:
    x = x.double()
    right, keep = drop_block_reference(x, seeds, block_size)
    kept, total = keep.sum().item(), keep.numel()
    if kept < total:
        yield ("block mask not rescaled: the kept activations must be multiplied by (number of entries) / (number "
               f"kept) = {total} / {kept:g} over the whole tensor, so that the layer's output keeps its scale"),\
            x * keep
        if kept > 0:
            yield (f"rescaled upside down: you multiplied by kept / total = {kept:g} / {total}; multiply by "
                   f"total / kept"), x * keep * kept / total
            yield ("rescaled per feature map: the count of kept entries is taken over the whole tensor, "
                   "numel / sum of the mask, not map by map"), _rescaled(x, keep, (2, 3))
            yield ("rescaled per example: the count of kept entries is taken over the whole tensor (all examples "
                   "and channels), not example by example"), _rescaled(x, keep, (1, 2, 3))
        yield "you multiplied x by the drop mask (1 where dropped): multiply by the keep mask", x * (1 - keep) * (
            total / max(total - kept, 1))
    for description, wrong_keep in _known_mask_mistakes(seeds, block_size):
        wrong_kept = wrong_keep.sum().item()
        if wrong_kept > 0 and not torch.equal(wrong_keep, keep):
            yield f"the blocks are wrong ({description})", x * wrong_keep * (total / wrong_kept)


def explain_drop_block_output(actual, x, seeds, block_size) -> str | None:
    """The known mistake whose output ``actual`` matches, or None; names a NaN from dividing by zero kept pixels."""
    _, keep = drop_block_reference(x, seeds, block_size)
    if isinstance(actual, torch.Tensor) and keep.sum() == 0 and actual.is_floating_point() and actual.isnan().any():
        return ("every pixel is dropped here, so the count of kept entries is 0 and your rescaling divided 0 by 0: "
                "when nothing is kept, return zeros")
    return _first(_known_output_mistakes(x, seeds, block_size), actual)


def block_gamma(p: float, block_size: int, height: int, width: int) -> float:
    """The probability of a seed at each position where a block fits: p / b^2 * HW / ((H - b + 1)(W - b + 1))."""
    b = block_size
    return p / b**2 * (height * width) / ((height - b + 1) * (width - b + 1))


def _z(count: float, trials: int, rate: float) -> float:
    """How many standard deviations ``count`` lies from its binomial expectation ``trials * rate``."""
    if rate <= 0 or rate >= 1:
        return 0.0 if count == trials * rate else math.inf
    return (count - trials * rate) / math.sqrt(trials * rate * (1 - rate))


def explain_seed_rate(count: int, trials: int, p: float, block_size: int, height: int, width: int,
                      limit: float = 5.0) -> str | None:
    """The known wrong seed probability that ``count`` seeds among ``trials`` positions agree with, or None."""
    b = block_size
    ratio = height * width / ((height - b + 1) * (width - b + 1))
    rates = [
        (f"gamma = p: each seed drops a {b} x {b} block, so gamma must be p / block_size^2 (times the area ratio)", p),
        (f"gamma = p / block_size^2: the area ratio HW / ((H - b + 1)(W - b + 1)) = {ratio:.3g} is missing; seeds "
         "fall only where a block fits, so each of those positions must be a seed more often", p / b**2),
        (f"gamma = p / block_size: divide by block_size^2 = {b * b}, the number of pixels a block drops",
         p / b * ratio),
        ("gamma is the keep probability 1 - p: seeds mark dropped blocks, so gamma comes from p", 1 - p),
        (f"gamma without the division by block_size^2 = {b * b}", min(p * ratio, 1.0)),
    ]
    for description, rate in rates:
        if abs(_z(count, trials, rate)) < limit:
            return description
    return None


# --- label smoothing ----------------------------------------------------------------------------------


def smooth_labels_reference(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(N, K) float64: ``1 - eps + eps / K`` for the true class, ``eps / K`` for every other one."""
    one_hot = F.one_hot(targets.long(), num_classes).double()
    return (1.0 - smoothing) * one_hot + smoothing / num_classes


def smoothing_loss_reference(logits: torch.Tensor, targets: torch.Tensor, smoothing: float):
    """``(loss, dlogits)``: the mean label-smoothed cross-entropy and its gradient, by PyTorch (float64)."""
    with torch.enable_grad():
        z = logits.detach().double().requires_grad_()
        loss = F.cross_entropy(z, targets.long(), label_smoothing=smoothing)
        (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), grad


def _wrong_targets(targets, k, eps) -> Iterator[tuple[str, torch.Tensor]]:
    """(description, target distribution) of the usual mistakes in building the smoothed targets."""
    one_hot = F.one_hot(targets.long(), k).double()
    others = 1.0 - one_hot
    yield (f"the smoothing mass is given to the true class twice: it gets 1 - eps + 2 eps/K, and each row sums to "
           f"1 + eps/K = {1 + eps / k:g}; the target is (1 - eps) * one_hot + eps/K, once"),\
        (1 - eps) * one_hot + eps / k + eps / k * one_hot
    yield (f"the one-hot part is not scaled by 1 - eps: the true class gets 1 + eps/K and each row sums to 1 + eps = "
           f"{1 + eps:g}; the target is (1 - eps) * one_hot + eps/K"), one_hot + eps / k
    if k > 1:
        yield (f"eps spread over the K - 1 = {k - 1} other classes (true class 1 - eps, others eps/(K-1)): a valid "
               "convention, but not this lab's, PyTorch's or Szegedy et al.'s, who spread eps over all K classes "
               "(true class 1 - eps + eps/K, others eps/K)"), (1 - eps) * one_hot + eps / (k - 1) * others
        yield (f"K and K - 1 mixed: the true class gets 1 - eps without its eps/K share, the others eps/K, so each row "
               f"sums to 1 - eps/K = {1 - eps / k:g}; every class, the true one too, gets eps/K"),\
            (1 - eps) * one_hot + eps / k * others
        yield ("K and K - 1 mixed: the true class gets 1 - eps + eps/K, the others eps/(K-1), so rows do not sum to 1; "
               "every class gets eps/K"), (1 - eps + eps / k) * one_hot + eps / (k - 1) * others
    yield ("smoothing and 1 - smoothing swapped: the true class must get the large share 1 - eps (+ eps/K)"),\
        eps * one_hot + (1 - eps) / k
    yield "no smoothing: your targets are one-hot; add eps/K to every class and scale the one-hot by 1 - eps", one_hot


def explain_smooth_labels(actual, targets, num_classes, smoothing) -> str | None:
    """The known mistake whose smoothed targets ``actual`` match, or None."""
    right = smooth_labels_reference(targets, num_classes, smoothing)
    # With N = K the shape alone cannot tell: transposed, unless the right targets happen to be symmetric.
    if isinstance(actual, torch.Tensor) and tuple(actual.shape) == (num_classes, len(targets)) \
            and matches(actual.T, right) and not matches(actual, right):
        return "your targets are transposed: one row per example, one column per class, shape (N, K)"
    return _first(_wrong_targets(targets, num_classes, smoothing), actual, right)


def _loss_with(logits, q):
    """Mean over the batch of the cross-entropy of softmax(logits) against the target distributions q."""
    return -(q * logits.double().log_softmax(1)).sum(1).mean()


def _known_loss_mistakes(logits, targets, eps) -> Iterator[tuple[str, torch.Tensor]]:
    k = logits.shape[1]
    n = logits.shape[0]
    q = smooth_labels_reference(targets, k, eps)
    right = _loss_with(logits, q)
    if n > 1:
        yield f"summed over the batch instead of averaged: your loss is N = {n} times too large", right * n
    yield (f"averaged over the classes too: sum -q_k log p_k over the K = {k} classes, then average over the "
           "examples only"), right / k
    if eps > 0:
        yield ("smoothing ignored: your loss is the plain cross-entropy with one-hot targets"),\
            F.cross_entropy(logits.double(), targets.long())
    log_p = logits.double().log_softmax(1)
    yield ("the sign is wrong: the loss is -sum q_k log p_k, a positive number"), -right
    yield ("probabilities used instead of log-probabilities: the loss is -sum q_k log softmax(z)_k"),\
        -(q * log_p.exp()).sum(1).mean()
    for description, wrong_q in _wrong_targets(targets, k, eps):
        yield f"the targets are wrong: {description}", _loss_with(logits, wrong_q)


def explain_smoothing_loss(actual, logits, targets, smoothing) -> str | None:
    """The known mistake whose loss ``actual`` matches, or None. Names an overflow (inf or nan)."""
    if isinstance(actual, torch.Tensor) and actual.is_floating_point() and not torch.isfinite(actual).all():
        return ("not numerically stable: exp(logits) overflowed (these logits reach "
                f"{logits.abs().max().item():g}). Compute log softmax as z - logsumexp(z) (torch.logsumexp, or "
                "subtract each row's maximum before exp), never log(softmax(z))")
    if isinstance(actual, torch.Tensor) and actual.numel() == logits.shape[0] and actual.dim() == 1:
        q = smooth_labels_reference(targets, logits.shape[1], smoothing)
        if matches(actual, -(q * logits.double().log_softmax(1)).sum(1)):
            return "one loss per example: return their mean, a scalar (a tensor of shape ())"
    return _first(_known_loss_mistakes(logits, targets, smoothing), actual,
                  smoothing_loss_reference(logits, targets, smoothing)[0])


def explain_smoothing_gradient(actual, logits, targets, smoothing) -> str | None:
    """The known mistake whose gradient with respect to the logits ``actual`` matches, or None."""
    k, n = logits.shape[1], logits.shape[0]
    p = logits.double().softmax(1)
    wrong = [("the gradient of the plain cross-entropy: smoothing is ignored in the loss",
              (p - F.one_hot(targets.long(), k).double()) / n)]
    if n > 1:
        wrong.append((f"summed over the batch instead of averaged: N = {n} times too large",
                      (p - smooth_labels_reference(targets, k, smoothing)) * 1.0))
    wrong += [(f"the targets are wrong: {d}", (p - q) / n) for d, q in _wrong_targets(targets, k, smoothing)]
    return _first(iter(wrong), actual, smoothing_loss_reference(logits, targets, smoothing)[1])


# --- fancy PCA -------------------------------------------------------------------------------------------


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """(3, N*H*W) float64: one row per channel, one column per pixel of every image."""
    return images.detach().double().transpose(0, 1).reshape(3, -1)


def _descending(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(covariance)
    return values.flip(0), vectors.flip(1)


def principal_components_reference(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eigenvalues (3,), eigenvectors (3, 3))`` of the RGB covariance (``torch.cov``, divided by P - 1) of every
    pixel of ``images``, eigenvalues descending, eigenvectors as columns; float64."""
    return _descending(torch.cov(_pixels(images)))


def align_signs(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``actual`` (3, 3) with each column's sign flipped where that brings it closer to ``expected``'s column: an
    eigenvector is defined up to its sign, so either is right."""
    actual = actual.detach().double()
    signs = torch.where((actual * expected).sum(0) < 0, -1.0, 1.0)
    return actual * signs


def _wrong_bases(images) -> Iterator[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    x = images.detach().double()
    n, c, h, w = x.shape
    p = n * h * w
    pixels = _pixels(x)
    centred = pixels - pixels.mean(1, keepdim=True)
    if n > 1:
        yield ("PCA on the wrong axis: images.reshape(3, -1) does not gather each channel's values, because the batch "
               "axis comes first in (N, 3, H, W). Put the channel axis first: images.transpose(0, 1).reshape(3, -1), "
               "one row per channel (R, G, B) and one column per pixel"), _descending(torch.cov(x.reshape(3, -1)))
    yield ("PCA on the wrong axis: reshape(-1, 3) takes three neighbouring values of one channel as a pixel's (R, G, B); "
           "the three values of a pixel are 3 channels apart. Put the channel axis last first: "
           "images.permute(0, 2, 3, 1).reshape(-1, 3)"), _descending(torch.cov(x.reshape(-1, 3).T))
    yield ("the mean is not subtracted: a covariance is computed from the values minus each channel's mean"),\
        _descending(pixels @ pixels.T / (p - 1))
    yield (f"covariance divided by P = {p} instead of P - 1 (torch.cov and numpy.cov divide by P - 1)"),\
        _descending(centred @ centred.T / p)
    if n > 1:
        per_image = torch.stack([torch.cov(x[i].reshape(3, -1)) for i in range(n)]).mean(0)
        yield ("one covariance per image, averaged: every image is centred on its own mean, so the differences in colour "
               "between images are lost. Take the covariance of all pixels of all images at once"), _descending(per_image)


def explain_principal_components(eigenvalues, eigenvectors, images) -> str | None:
    """The known mistake that the answer ``(eigenvalues, eigenvectors)`` matches, or None."""
    values, vectors = principal_components_reference(images)
    if isinstance(eigenvalues, torch.Tensor) and eigenvalues.dim() == 1 and eigenvalues.numel() not in (0, 3):
        return (f"your eigenvalues have {eigenvalues.numel()} entries: you took a covariance between pixels (or images), "
                "not between the 3 channels. The covariance must be 3 x 3: one row per channel (R, G, B), one column "
                "per pixel of every image")
    if not isinstance(eigenvalues, torch.Tensor) or not isinstance(eigenvectors, torch.Tensor) \
            or tuple(eigenvalues.shape) != (3,) or tuple(eigenvectors.shape) != (3, 3):
        return None
    ev = eigenvalues.detach().double()
    if matches(ev, values.flip(0)):
        if matches(align_signs(eigenvectors.flip(1), vectors), vectors):
            return ("eigenvalues in ascending order, as torch.linalg.eigh returns them: sort them in descending order "
                    "and reorder the eigenvectors' columns to match")
        return "eigenvalues in ascending order: the largest comes first (eigenvalues[0] >= eigenvalues[1] >= ...)"
    if matches(ev, values):
        if matches(align_signs(eigenvectors.T, vectors), vectors):
            return ("your eigenvectors are the rows; the lab asks for them as columns, eigenvectors[:, k] for "
                    "eigenvalues[k], as torch.linalg.eigh returns them")
        if matches(align_signs(eigenvectors.flip(1), vectors), vectors):
            return ("eigenvalues sorted in descending order but the eigenvectors' columns not reordered to match: "
                    "flip both")
    if matches(ev, values.clamp_min(0).sqrt()):
        return ("your eigenvalues are square roots (standard deviations along the axes): return the eigenvalues of "
                "the covariance themselves (variances)")
    for description, (wrong_values, _) in _wrong_bases(images):
        if matches(ev, wrong_values):
            return description
    return None


def lighting_reference(images, alphas, eigenvalues, eigenvectors) -> torch.Tensor:
    """AlexNet's shift in float64: every pixel of image i gets ``eigenvectors @ (alphas[i] * eigenvalues)``."""
    shift = (alphas.double() * eigenvalues.double()) @ eigenvectors.double().T  # (N, 3)
    return images.double() + shift[:, :, None, None]


def _known_lighting_mistakes(images, alphas, values, vectors) -> Iterator[tuple[str, torch.Tensor]]:
    x, a, lam, v = images.double(), alphas.double(), values.double(), vectors.double()
    shifted = lambda shift: x + shift[:, :, None, None]  # noqa: E731
    yield ("square roots of the eigenvalues used: AlexNet multiplies each alpha by the eigenvalue itself, "
           "shift = V (alpha * lambda)"), shifted((a * lam.clamp_min(0).sqrt()) @ v.T)
    yield ("the eigenvalues are missing: the shift is V (alpha * lambda), each alpha scaled by its axis' eigenvalue"),\
        shifted(a @ v.T)
    yield ("eigenvectors used as rows: the axes are the columns of eigenvectors, so the shift is "
           "eigenvectors @ (alpha * lambda), not (alpha * lambda) @ eigenvectors"), shifted((a * lam) @ v)
    yield ("the shift is subtracted: add V (alpha * lambda) to every pixel"), shifted(-(a * lam) @ v.T)
    yield ("the shift multiplies the pixels: AlexNet adds V (alpha * lambda) to every pixel's RGB value"),\
        x * (1 + ((a * lam) @ v.T))[:, :, None, None]


def explain_lighting(actual, images, alphas, eigenvalues, eigenvectors) -> str | None:
    """The known mistake whose shifted images ``actual`` match, or None."""
    return _first(_known_lighting_mistakes(images, alphas, eigenvalues, eigenvectors), actual,
                  lighting_reference(images, alphas, eigenvalues, eigenvectors))
