"""Checks for the normalization and dropout lab (lab 3) that recognise the usual mistakes and name them.

Lab 3 asks for batch norm's forward pass (training and evaluation, with running
statistics) and its backward pass, layer norm, group norm, and inverted dropout
forward and backward. The right answers of the normalizations come from PyTorch,
computed here in float64 (:func:`batchnorm_reference`, :func:`batchnorm_gradients`
by autograd, :func:`layernorm_reference`, :func:`groupnorm_reference`). A wrong
answer is compared with the outputs of known *wrong* versions - statistics over
the wrong axes, the unbiased variance where the biased one belongs (or the
reverse), eval using the batch's statistics, momentum applied backwards, eps in
the wrong place, a backward pass that forgets the paths through the mean and
the variance - and the ``explain_*`` function whose output it matches says which
mistake it is (the "Likely cause" line of a test message).

Dropout is random, so it is judged by statistics, not against one mask
(:func:`dropout_problem`): every entry is either 0 or ``x / (1 - p)``, about a
fraction ``p`` is dropped (within six standard deviations of the binomial count),
spread over the whole tensor and drawn anew for every entry and every call; in
eval mode, and for ``p = 0``, the output is ``x``; for ``p = 1`` it is all zeros.

Shapes: ``x`` is (N, D) (batch norm per feature) or (N, C, H, W) (per channel);
``gamma``, ``beta``, ``running_mean`` and ``running_var`` are (D,) or (C,) for
batch and group norm, and ``x.shape[1:]`` for layer norm. PyTorch's conventions
hold throughout: ``new = (1 - momentum) * old + momentum * batch``; the running
variance stores the *unbiased* batch variance, the normalization uses the
*biased* one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..layers import functional as reference
from .checks import matches

__all__ = [
    "NORMALIZATION_OPS",
    "NO_SHORTCUTS",
    "REFERENCE_FUNCTIONS",
    "LIBRARY_FUNCTIONS",
    "batchnorm_axes",
    "batchnorm_gradients",
    "batchnorm_reference",
    "dropout_gradient_problem",
    "dropout_problem",
    "explain_batchnorm_dbeta",
    "explain_batchnorm_dgamma",
    "explain_batchnorm_dx",
    "explain_batchnorm_out",
    "explain_groupnorm",
    "explain_layernorm",
    "explain_running_mean",
    "explain_running_var",
    "groupnorm_reference",
    "layernorm_reference",
]

NO_SHORTCUTS = (
    "Lab 3 asks you to compute the normalizations, their gradients and dropout yourself, with tensor maths: "
    "the library's batch, layer, group and instance norm, its dropout, autograd and course_lib are not allowed "
    "in your answer."
)

# course_lib's reference implementations: the answers a student must not call (or copy).
REFERENCE_FUNCTIONS = (
    reference.batch_norm,
    reference.batch_norm_backward,
    reference.layer_norm,
    reference.group_norm,
    reference.dropout,
    reference.instance_norm,
    reference.dropout_classic,
)

# PyTorch's dropout on the CPU decomposes into bernoulli_ and mul (operators the lab allows), so the
# notebook refuses its Python functions instead of an operator.
LIBRARY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout)

_BN = "torch.nn.functional.batch_norm, nn.BatchNorm1d/2d or instance norm"
# ATen operators a shortcut ends in, whatever name it was called by (see course_lib.grading.forbid).
NORMALIZATION_OPS = {
    "native_batch_norm": _BN, "_native_batch_norm_legit": _BN, "_native_batch_norm_legit_no_training": _BN,
    "_batch_norm_impl_index": "torch.batch_norm", "batch_norm": "torch.batch_norm",
    "cudnn_batch_norm": "a cuDNN batch norm", "miopen_batch_norm": "a MIOpen batch norm",
    "native_layer_norm": "torch.nn.functional.layer_norm or nn.LayerNorm", "layer_norm": "torch.layer_norm",
    "native_group_norm": "torch.nn.functional.group_norm or nn.GroupNorm", "group_norm": "torch.group_norm",
    "instance_norm": "torch.instance_norm", "native_dropout": "a fused dropout",
    "dropout": "torch.dropout", "feature_dropout": "torch.feature_dropout",
    "alpha_dropout": "torch.alpha_dropout", "feature_alpha_dropout": "torch.feature_alpha_dropout",
}


# --- axes --------------------------------------------------------------------------------------------

_NAMES = {2: "ND", 4: "NCHW", 5: "NGKHW"}


def batchnorm_axes(ndim: int) -> tuple[int, ...]:
    """The axes batch norm reduces: every axis but the channel (feature) axis 1."""
    return (0, *range(2, ndim))


def _axes(dims, ndim: int) -> str:
    letters = _NAMES.get(ndim, "".join(f"x{i}" for i in range(ndim)))
    names = [letters[d] for d in dims]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _subsets(ndim: int) -> Iterator[tuple[int, ...]]:
    """Every non-empty set of axes of an ``ndim``-dimensional tensor, smallest first."""
    for size in range(1, ndim + 1):
        yield from itertools.combinations(range(ndim), size)


# --- shared pieces -----------------------------------------------------------------------------------


def _var(x, dims, correction=0, keepdim=False):
    """``x.var`` over ``dims``; nan (without PyTorch's warning) where fewer than ``correction + 1`` values share one."""
    count = math.prod(x.shape[d] for d in dims)
    if count > correction:
        return x.var(dims, correction=correction, keepdim=keepdim)
    return torch.full_like(x.mean(dims, keepdim=keepdim), math.nan)


def _standardize(x, dims, eps, correction=0, rule="inside"):
    """(x - mean) / sqrt(var + eps) over ``dims``; ``correction=1`` uses the unbiased variance, and ``rule``
    puts eps elsewhere: "outside" (std + eps), "no sqrt" (var + eps) or "ignored" (std)."""
    mean = x.mean(dims, keepdim=True)
    return _divide(x - mean, _var(x, dims, correction, keepdim=True), eps, rule)


def _divide(centred, var, eps, rule="inside"):
    if rule == "inside":
        return centred / torch.sqrt(var + eps)
    if rule == "outside":
        return centred / (torch.sqrt(var) + eps)
    if rule == "no sqrt":
        return centred / (var + eps)
    return centred / torch.sqrt(var)  # "ignored"


def _per_channel(t, ndim):
    return t.double().view(1, -1, *(1,) * (ndim - 2))


_EPS_MISTAKES = (
    ("ignored", "eps ignored: divide by sqrt(var + eps); eps keeps the division safe when a variance is tiny"),
    ("outside", "eps added outside the square root: divide by sqrt(var + eps), not by sqrt(var) + eps"),
    ("no sqrt", "divided by the variance, not the standard deviation: x_hat = (x - mean) / sqrt(var + eps)"),
)


def _affine_mistakes(x_hat, gamma, beta) -> Iterator[tuple[str, torch.Tensor]]:
    """Wrong ways of applying the scale and shift to the right ``x_hat`` (``gamma``, ``beta`` already shaped)."""
    yield "gamma and beta swapped: out = gamma * x_hat + beta", beta * x_hat + gamma
    yield "beta not added: out = gamma * x_hat + beta", gamma * x_hat
    yield "gamma not applied: out = gamma * x_hat + beta", x_hat + beta
    yield "neither gamma nor beta applied: out = gamma * x_hat + beta", x_hat
    yield "beta added before scaling: out = gamma * x_hat + beta, not gamma * (x_hat + beta)", gamma * (x_hat + beta)


def _first_match(actual, candidates, right=None) -> str | None:
    """The description of the first wrong output ``actual`` matches; candidates that match the ``right`` answer
    too (a mistake that makes no difference for these inputs, e.g. eps ignored when every variance is large) are
    skipped, so a right answer is never named after a mistake."""
    for description, wrong in candidates:
        if wrong is not None and matches(actual, wrong) and (right is None or not matches(wrong, right)):
            return description
    return None


# --- batch norm: the right answers -------------------------------------------------------------------


def batchnorm_reference(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """``(out, new_running_mean, new_running_var)`` of batch norm, by ``F.batch_norm`` on float64 copies
    (the arguments are not changed). In eval mode the running statistics come back unchanged."""
    mean, var = running_mean.detach().double().clone(), running_var.detach().double().clone()
    out = F.batch_norm(x.detach().double(), mean, var, gamma.detach().double(), beta.detach().double(),
                       training, momentum, eps)
    return out, mean, var


def batchnorm_gradients(x, gamma, beta, dout, eps=1e-5):
    """``(dx, dgamma, dbeta)`` of training-mode batch norm for ``dL/dout = dout``, by autograd in float64."""
    with torch.enable_grad():
        x, gamma, beta = (t.detach().double().requires_grad_() for t in (x, gamma, beta))
        out = F.batch_norm(x, None, None, gamma, beta, True, 0.1, eps)
        return torch.autograd.grad(out, (x, gamma, beta), dout.detach().double())


# --- batch norm forward: wrong versions --------------------------------------------------------------

_BN_AXES_WHY = {
    # (ndim, axes) -> what the student computed instead of batch norm's statistics
    (2, (1,)): "statistics per example over its D features (that is layer norm); batch norm takes one mean and "
               "variance per feature, over the batch (axis 0)",
    (2, (0, 1)): "one mean and variance for the whole batch; batch norm keeps one pair per feature, over the "
                 "batch (axis 0)",
    (4, (0,)): "statistics over N only, one pair per channel AND position; for (N, C, H, W) maps batch norm "
               "shares one mean and variance per channel, over N, H and W (axes 0, 2, 3)",
    (4, (2, 3)): "statistics per example over H and W (that is instance norm); batch norm pools each channel "
                 "over the batch too: axes 0, 2, 3",
    (4, (1, 2, 3)): "statistics per example over C, H and W (that is layer norm); batch norm takes one pair per "
                    "channel, over N, H and W (axes 0, 2, 3)",
    (4, (0, 1, 2, 3)): "one mean and variance for the whole tensor; batch norm keeps one pair per channel, over "
                       "N, H and W (axes 0, 2, 3)",
}


def _bn_axes_why(dims, ndim) -> str:
    right = batchnorm_axes(ndim)
    return _BN_AXES_WHY.get((ndim, dims), f"statistics over {_axes(dims, ndim)} (axes {dims}) instead of "
                            f"{_axes(right, ndim)} (axes {right}): batch norm keeps one mean and variance per "
                            f"{'feature' if ndim == 2 else 'channel'}")


def _updated(x, running_mean, running_var, momentum):
    """The right new running statistics, (1, C, 1, ...)-shaped, for normalizing with them."""
    dims = batchnorm_axes(x.ndim)
    new_mean = (1 - momentum) * running_mean.double() + momentum * x.mean(dims)
    new_var = (1 - momentum) * running_var.double() + momentum * _var(x, dims, correction=1)
    return _per_channel(new_mean, x.ndim), _per_channel(new_var, x.ndim)


def _known_batchnorm_mistakes(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    x = x.detach().double()
    ndim = x.ndim
    dims = batchnorm_axes(ndim)
    g, b = _per_channel(gamma, ndim), _per_channel(beta, ndim)
    r_mean, r_var = _per_channel(running_mean, ndim), _per_channel(running_var, ndim)
    new_mean, new_var = _updated(x, running_mean, running_var, momentum)
    with_running = g * _divide(x - r_mean, r_var, eps) + b
    with_updated = g * _divide(x - new_mean, new_var, eps) + b
    if training:
        for other in _subsets(ndim):
            if other != dims:
                yield _bn_axes_why(other, ndim), g * _standardize(x, other, eps) + b
        yield ("normalized with the unbiased variance (divided by n - 1): batch norm normalizes with the BIASED "
               "batch variance (divide by n); only the running variance stores the unbiased one"),\
            g * _standardize(x, dims, eps, correction=1) + b
        yield ("normalized with the running statistics in training: in training batch norm uses the batch's own "
               "mean and variance (and only updates the running ones)"), with_running
        yield ("normalized with the running statistics after updating them: in training batch norm uses the "
               "batch's own mean and variance"), with_updated
        for rule, why in _EPS_MISTAKES:
            yield why, g * _standardize(x, dims, eps, rule=rule) + b
        x_hat = _standardize(x, dims, eps)
    else:
        why = ("eval mode used the batch's statistics: in eval batch norm normalizes with the RUNNING mean and "
               "variance, so that an example's output does not depend on the rest of its batch")
        yield why, g * _standardize(x, dims, eps) + b
        yield why, g * _standardize(x, dims, eps, correction=1) + b
        yield ("eval mode updated the running statistics with this batch and normalized with them: in eval they "
               "are only read"), with_updated
        for rule, why in _EPS_MISTAKES:
            yield why, g * _divide(x - r_mean, r_var, eps, rule) + b
        x_hat = _divide(x - r_mean, r_var, eps)
    yield from _affine_mistakes(x_hat, g, b)


def explain_batchnorm_out(actual, x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """The known mistake whose batch-norm output ``actual`` matches, or None."""
    right = batchnorm_reference(x, gamma, beta, running_mean, running_var, training, momentum, eps)[0]
    return _first_match(actual, _known_batchnorm_mistakes(x, gamma, beta, running_mean, running_var, training,
                                                          momentum, eps), right)


# --- running statistics: wrong versions --------------------------------------------------------------

_BACKWARDS = ("momentum applied backwards: new = momentum * old + (1 - momentum) * batch. momentum is the weight "
              "of the NEW batch, as in PyTorch: new = (1 - momentum) * old + momentum * batch")
_NOT_DECAYED = "the old value is not decayed: new = (1 - momentum) * old + momentum * batch, not old + momentum * batch"


def explain_running_mean(actual, x, running_mean, momentum) -> str | None:
    """The known mistake whose new running mean ``actual`` matches (training mode), or None."""
    x, old, m = x.detach().double(), running_mean.double(), momentum
    mean = x.mean(batchnorm_axes(x.ndim))
    right = (1 - m) * old + m * mean
    return _first_match(actual, [
        (_BACKWARDS, m * old + (1 - m) * mean),
        ("the running mean is not updated: in training it moves towards the batch mean, "
         "new = (1 - momentum) * old + momentum * batch mean", old),
        ("the running mean is replaced by the batch mean: momentum ignored; new = (1 - momentum) * old + "
         "momentum * batch mean", mean),
        (_NOT_DECAYED, old + m * mean),
        ("the running mean was updated with one mean of the whole tensor: take the batch mean per channel "
         "(feature), over the same axes as the normalization", (1 - m) * old + m * x.mean()),
    ], right)


def explain_running_var(actual, x, running_var, momentum) -> str | None:
    """The known mistake whose new running variance ``actual`` matches (training mode), or None."""
    x, old, m = x.detach().double(), running_var.double(), momentum
    dims = batchnorm_axes(x.ndim)
    count = x.numel() // x.shape[1]
    biased, unbiased = x.var(dims, correction=0), x.var(dims, correction=1)
    candidates = [
        ("biased variance in the running estimate: the running variance stores the UNBIASED batch variance "
         "(divide by n - 1), as PyTorch does; only the normalization uses the biased one (divide by n)",
         (1 - m) * old + m * biased),
        (_BACKWARDS, m * old + (1 - m) * unbiased),
        (_BACKWARDS + "; and store the UNBIASED batch variance (divide by n - 1), not the biased one",
         m * old + (1 - m) * biased),
        ("the running variance is not updated: in training it moves towards the batch's unbiased variance",
         old),
        ("the running variance is replaced by the batch variance: momentum ignored; new = (1 - momentum) * old + "
         "momentum * unbiased batch variance", unbiased),
        ("the running variance is replaced by the batch's biased variance: momentum ignored, and store the "
         "UNBIASED variance (divide by n - 1)", biased),
        (_NOT_DECAYED, old + m * unbiased),
        ("the standard deviation is stored instead of the variance: the running variance averages the "
         "unbiased batch VARIANCE", (1 - m) * old + m * unbiased.sqrt()),
        ("the standard deviation is stored instead of the variance: the running variance averages the "
         "unbiased batch VARIANCE", (1 - m) * old + m * biased.sqrt()),
        ("the running variance was updated with one variance of the whole tensor: take it per channel "
         "(feature), over the same axes as the normalization", (1 - m) * old + m * x.var()),
    ]
    if x.ndim > 2 and x.shape[0] > 1 and count != x.shape[0]:
        n = x.shape[0]
        candidates.insert(1, (
            f"unbiased correction with N / (N - 1) = {n}/{n - 1}: n counts every value of a channel, N*H*W = "
            f"{count}, so the correction is {count}/{count - 1}", (1 - m) * old + m * biased * n / (n - 1)))
    return _first_match(actual, candidates, (1 - m) * old + m * unbiased)


def explain_changed_in_eval(actual_mean, actual_var, x, running_mean, running_var, momentum) -> str:
    """Why the running statistics changed in eval mode (they must come back as they were)."""
    new_mean, new_var = _updated(x.detach().double(), running_mean, running_var, momentum)
    if matches(actual_mean, new_mean.flatten()) or matches(actual_var, new_var.flatten()):
        return ("eval mode updated the running statistics: in eval they are only read, and returned unchanged "
                "(they learn only in training)")
    return "eval mode changed the running statistics: in eval they are only read, and returned unchanged"


# --- batch norm backward: wrong versions -------------------------------------------------------------


def _autograd_dx(x, gamma, dout, forward):
    with torch.enable_grad():
        x = x.detach().double().requires_grad_()
        (dx,) = torch.autograd.grad(forward(x), x, dout.detach().double())
        return dx


def _known_dx_mistakes(x, gamma, dout, eps) -> Iterator[tuple[str, torch.Tensor]]:
    x, dout = x.detach().double(), dout.detach().double()
    ndim = x.ndim
    dims = batchnorm_axes(ndim)
    g = _per_channel(gamma, ndim)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, correction=0, keepdim=True)
    inv_std = 1 / torch.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    mean_dout = dout.mean(dims, keepdim=True)
    mean_dout_xhat = (dout * x_hat).mean(dims, keepdim=True)
    yield ("only the direct path: dx = gamma * dout / sqrt(var + eps) forgets that the batch mean and variance "
           "depend on x too; add the paths through them: dx = gamma / sqrt(var + eps) * (dout - mean(dout) - "
           "x_hat * mean(dout * x_hat))"), g * inv_std * dout
    yield ("the path through the variance is missing: dx = gamma / sqrt(var + eps) * (dout - mean(dout) - "
           "x_hat * mean(dout * x_hat)); the last term comes from the variance"), g * inv_std * (dout - mean_dout)
    yield ("the path through the mean is missing: dx = gamma / sqrt(var + eps) * (dout - mean(dout) - "
           "x_hat * mean(dout * x_hat)); the term mean(dout) comes from the mean"),\
        g * inv_std * (dout - x_hat * mean_dout_xhat)
    yield ("gamma forgotten in dx: out = gamma * x_hat + beta, so every path back to x is multiplied by gamma"),\
        inv_std * (dout - mean_dout - x_hat * mean_dout_xhat)
    yield ("sign of the path through the variance flipped: dx = gamma / sqrt(var + eps) * (dout - mean(dout) - "
           "x_hat * mean(dout * x_hat))"), g * inv_std * (dout - mean_dout + x_hat * mean_dout_xhat)
    if ndim > 2 and x.shape[0] > 1:
        n, count = x.shape[0], x.numel() // x.shape[1]
        sums = dout.sum(dims, keepdim=True), (dout * x_hat).sum(dims, keepdim=True)
        yield (f"the means in dx divide by N = {n} instead of n = N*H*W = {count}: every value of a channel "
               "took part in its mean and variance"), g * inv_std * (dout - sums[0] / n - x_hat * sums[1] / n)
    yield ("your dx is the gradient of a batch norm normalized with the UNBIASED variance: the forward pass "
           "divides by the biased one (n, not n - 1), and so does its gradient"),\
        _autograd_dx(x, gamma, dout, lambda t: g * _standardize(t, dims, eps, correction=1))
    for other in _subsets(ndim):
        if other != dims:
            yield (f"your dx is the gradient of a normalization with statistics over {_axes(other, ndim)} (axes "
                   f"{other}); batch norm's are over {_axes(dims, ndim)} (axes {dims})"),\
                _autograd_dx(x, gamma, dout, lambda t, other=other: g * _standardize(t, other, eps))


def explain_batchnorm_dx(actual, x, gamma, dout, eps=1e-5) -> str | None:
    """The known mistake whose input gradient ``actual`` matches, or None."""
    right = batchnorm_gradients(x, gamma, torch.zeros_like(gamma), dout, eps)[0]
    return _first_match(actual, _known_dx_mistakes(x, gamma, dout, eps), right)


def _reduced_shape_why(actual, x, what: str) -> str | None:
    """Why a per-channel gradient ``actual`` has the shape it has: summed over the wrong axes."""
    if not isinstance(actual, torch.Tensor):
        return None
    shape, ndim = tuple(actual.shape), x.ndim
    right = f"sum over {_axes(batchnorm_axes(ndim), ndim)} (axes {batchnorm_axes(ndim)}) to keep one value per " \
            f"{'feature' if ndim == 2 else 'channel'}"
    if shape == ():
        return f"{what} summed over every axis: {right}"
    if ndim > 2 and shape == tuple(x.shape[1:]):
        return f"{what} summed over N only: {right}"
    if ndim > 2 and shape == tuple(x.shape[:2]):
        return f"{what} summed over H and W only: {right}"
    if ndim > 2 and shape in ((1, x.shape[1], 1, 1), (1, x.shape[1])):
        return f"{what} kept its reduced axes (keepdim=True): return a ({x.shape[1]},) tensor"
    if shape == (x.shape[0],):
        return f"{what} summed over the {'features' if ndim == 2 else 'channels'}: {right}"
    return None


def explain_batchnorm_dgamma(actual, x, dout, eps=1e-5) -> str | None:
    """The known mistake whose gamma gradient ``actual`` matches, or None."""
    x, dout = x.detach().double(), dout.detach().double()
    dims = batchnorm_axes(x.ndim)
    centred = x - x.mean(dims, keepdim=True)
    x_hat = _standardize(x, dims, eps)
    right = (dout * x_hat).sum(dims)
    return _reduced_shape_why(actual, x, "dgamma") or _first_match(actual, [
        ("dgamma summed dout * x: gamma multiplies the NORMALIZED input, so dgamma = sum of dout * x_hat",
         (dout * x).sum(dims)),
        ("dgamma summed dout * (x - mean) without dividing by sqrt(var + eps): dgamma = sum of dout * x_hat",
         (dout * centred).sum(dims)),
        ("dgamma is a mean, not a sum: every value of the channel adds its dout * x_hat", (dout * x_hat).mean(dims)),
        ("dgamma holds dbeta (the two swapped?): dgamma = sum of dout * x_hat, dbeta = sum of dout",
         dout.sum(dims)),
        ("dgamma normalized with the unbiased variance: x_hat uses the biased one",
         (dout * _standardize(x, dims, eps, correction=1)).sum(dims)),
    ], right)


def explain_batchnorm_dbeta(actual, x, dout) -> str | None:
    """The known mistake whose beta gradient ``actual`` matches, or None."""
    x, dout = x.detach().double(), dout.detach().double()
    dims = batchnorm_axes(x.ndim)
    x_hat = _standardize(x, dims, 0.0)
    return _reduced_shape_why(actual, x, "dbeta") or _first_match(actual, [
        ("dbeta is a mean, not a sum: beta is added to every value of the channel, so dbeta = sum of dout",
         dout.mean(dims)),
        ("dbeta holds dgamma (the two swapped?): dbeta = sum of dout, dgamma = sum of dout * x_hat",
         (dout * x_hat).sum(dims)),
    ], dout.sum(dims))


# --- layer norm --------------------------------------------------------------------------------------


def layernorm_reference(x, gamma, beta, eps=1e-5):
    """Layer norm of every example over all its axes (``F.layer_norm(x, x.shape[1:])``), float64; ``gamma`` and
    ``beta`` have the shape of one example."""
    return F.layer_norm(x.detach().double(), tuple(x.shape[1:]), gamma.detach().double(), beta.detach().double(),
                        eps)


_LN_AXES_WHY = {
    (2, (0,)): "statistics over the batch axis, one pair per feature (that is batch norm); layer norm takes one "
               "mean and variance per EXAMPLE, over its features (axis 1)",
    (2, (0, 1)): "one mean and variance for the whole batch; layer norm takes one pair per example (axis 1)",
    (4, (0, 2, 3)): "statistics over N, H and W, one pair per channel (that is batch norm); layer norm takes one "
                    "pair per EXAMPLE, over C, H and W (axes 1, 2, 3)",
    (4, (2, 3)): "statistics over H and W only, one pair per example and channel (that is instance norm); layer "
                 "norm takes one pair per example over C, H and W (axes 1, 2, 3)",
    (4, (1,)): "statistics over the channels only, one pair per example and position; layer norm takes one pair "
               "per example over C, H and W (axes 1, 2, 3)",
    (4, (3,)): "statistics over the last axis (W) only: for (N, C, H, W) layer norm takes one pair per example "
               "over C, H and W (axes 1, 2, 3)",
    (4, (0, 1, 2, 3)): "one mean and variance for the whole tensor; layer norm takes one pair per example "
                       "(axes 1, 2, 3)",
}


def explain_layernorm(actual, x, gamma, beta, eps=1e-5) -> str | None:
    """The known mistake whose layer-norm output ``actual`` matches, or None."""
    x = x.detach().double()
    ndim = x.ndim
    dims = tuple(range(1, ndim))
    g, b = gamma.double().unsqueeze(0), beta.double().unsqueeze(0)

    def candidates():
        for other in _subsets(ndim):
            if other != dims:
                why = _LN_AXES_WHY.get((ndim, other), f"statistics over {_axes(other, ndim)} (axes {other}); layer "
                                       f"norm takes one pair per example, over {_axes(dims, ndim)} (axes {dims})")
                yield why, g * _standardize(x, other, eps) + b
        yield ("normalized with the unbiased variance (divided by n - 1): layer norm uses the biased variance "
               "(divide by n)"), g * _standardize(x, dims, eps, correction=1) + b
        for rule, why in _EPS_MISTAKES:
            yield why, g * _standardize(x, dims, eps, rule=rule) + b
        yield from _affine_mistakes(_standardize(x, dims, eps), g, b)

    return _first_match(actual, candidates(), layernorm_reference(x, gamma, beta, eps))


# --- group norm --------------------------------------------------------------------------------------


def groupnorm_reference(x, gamma, beta, num_groups, eps=1e-5):
    """Group norm (``F.group_norm``) in float64: x (N, C, H, W), gamma and beta (C,)."""
    return F.group_norm(x.detach().double(), num_groups, gamma.detach().double(), beta.detach().double(), eps)


def explain_groupnorm(actual, x, gamma, beta, num_groups, eps=1e-5) -> str | None:
    """The known mistake whose group-norm output ``actual`` matches, or None."""
    x = x.detach().double()
    n, c = x.shape[:2]
    rest = tuple(x.shape[2:])
    G = num_groups
    size = c // G
    g, b = _per_channel(gamma, x.ndim), _per_channel(beta, x.ndim)
    spatial = tuple(range(3, 3 + len(rest)))
    grouped = x.reshape(n, G, size, *rest)  # group g: channels g*size ... (g+1)*size - 1

    def norm(t, dims, **kw):
        return _standardize(t, dims, eps, **kw).reshape(x.shape)

    def candidates():
        if G > 1 and size > 1:
            strided = x.reshape(n, size, G, *rest)  # channel c in group c % G
            yield (f"groups made of every {G}th channel (channel c in group c mod {G}): a group is {size} "
                   f"CONSECUTIVE channels, group g holding channels g*{size} to g*{size} + {size - 1}; reshape x to "
                   f"(N, G, C/G, H, W) = (N, {G}, {size}, ...)"), g * norm(strided, (1, *spatial)) + b
        if size != G:
            yield (f"num_groups taken as the size of a group: you made {size} groups of {G} channels; num_groups = "
                   f"{G} groups of C / G = {size} channels"), g * norm(x.reshape(n, size, G, *rest), (2, *spatial)) + b
        yield ("statistics over the channels of a group only, one pair per position: take them over the group's "
               "channels AND all positions H, W"), g * norm(grouped, (2,)) + b
        yield ("statistics over H and W only, one pair per channel (that is instance norm): group norm pools the "
               f"{size} channels of a group with their positions"), g * norm(grouped, spatial) + b
        yield ("statistics pooled over the batch too: group norm, like layer norm, normalizes each example on its "
               "own"), g * norm(grouped, (0, 2, *spatial)) + b
        if G > 1:
            yield ("one group for all the channels (that is layer norm with per-channel gamma and beta): split the "
                   f"channels into {G} groups"), g * norm(x.reshape(n, 1, c, *rest), (2, *spatial)) + b
        yield ("normalized with the unbiased variance (divided by n - 1): group norm uses the biased variance "
               "(divide by n)"), g * norm(grouped, (2, *spatial), correction=1) + b
        for rule, why in _EPS_MISTAKES:
            yield why, g * norm(grouped, (2, *spatial), rule=rule) + b
        yield from _affine_mistakes(norm(grouped, (2, *spatial)), g, b)

    return _first_match(actual, candidates(), groupnorm_reference(x, gamma, beta, num_groups, eps))


# --- dropout: judged by statistics ---------------------------------------------------------------------

SIGMAS = 6.0  # a right answer fails a count check with probability ~2e-9


def _count_ok(count: int, total: int, p: float) -> bool:
    """``count`` drops out of ``total`` entries is within SIGMAS standard deviations of a Binomial(total, p)."""
    return abs(count - total * p) <= SIGMAS * math.sqrt(total * p * (1 - p)) + 1


def _scale_problem(ratio: torch.Tensor, p: float, dropped_fraction: float) -> str | None:
    """What is wrong with the kept entries, ``ratio = out / x`` on them, or None when they are x / (1 - p)."""
    def all_near(value):
        return bool(((ratio - value).abs() <= 1e-5 * max(1.0, abs(value))).all())

    if all_near(1 / (1 - p)):
        return None
    low, high = ratio.min().item(), ratio.max().item()
    head = (f"the kept entries should be x / (1 - p) = x * {1 / (1 - p):.4g}; yours are x times "
            + (f"{low:.4g}" if math.isclose(low, high, rel_tol=1e-5) else f"{low:.4g} to {high:.4g}"))
    if all_near(1 / p) and abs(dropped_fraction - (1 - p)) < abs(dropped_fraction - p):
        why = ("p used as the keep probability: you keep each entry with probability p and divide by p; p is the "
               "probability of DROPPING an entry, so keep with probability 1 - p and divide by 1 - p")
    elif all_near(1.0):
        why = ("dropout not rescaled: inverted dropout divides the kept entries by 1 - p (the keep probability), "
               "so that E[out] = x in training and eval can return x unchanged")
    elif all_near(1 - p):
        why = "kept entries multiplied by 1 - p instead of divided by it: inverted dropout computes x * mask / (1 - p)"
    elif all_near(1 / p):
        why = "kept entries divided by p (the drop probability) instead of 1 - p (the keep probability)"
    elif all_near(p):
        why = "kept entries multiplied by p: inverted dropout divides them by 1 - p"
    else:
        return head
    return f"{head}.\nLikely cause: {why}"


def _pattern_problem(dropped: torch.Tensor) -> str | None:
    """Masks that drop whole blocks together (``dropped``: bool, x's shape, each drop decision)."""
    n = dropped.shape[0]
    rows = dropped.reshape(n, -1)
    if n > 1 and bool((rows == rows[:1]).all()):
        return ("every example of the batch has the same entries dropped.\nLikely cause: one mask shared by the "
                f"{n} examples (a mask of shape x.shape[1:]): draw an independent decision for every entry of x, "
                "with a mask of x's full shape")
    if n > 1 and bool((rows.all(1) | (~rows).all(1)).all()):
        return ("each example is either dropped whole or kept whole.\nLikely cause: one random draw per example: "
                "dropout decides for every entry of x on its own")
    if dropped.ndim == 4:
        planes = dropped.flatten(2)
        if bool((planes.all(2) | (~planes).all(2)).all()):
            return ("each channel of each example is either dropped whole or kept whole.\nLikely cause: whole "
                    "channels dropped (spatial dropout, as nn.Dropout2d does): this lab's dropout decides for every "
                    "entry of x on its own")
    return None


def _spread_problem(dropped: torch.Tensor, p: float) -> str | None:
    """The share dropped in each quarter of the (flattened) tensor must agree with p: drops spread at random."""
    quarters = dropped.flatten().tensor_split(4)
    if all(_count_ok(int(q.sum()), q.numel(), p) for q in quarters if q.numel()):
        return None
    shares = ", ".join(f"{q.double().mean().item():.1%}" for q in quarters)
    return (f"the dropped entries are not spread at random: the four quarters of the tensor (in memory order) "
            f"have {shares} of their entries dropped, while each should be near p = {p:.0%}.\nLikely cause: a "
            "mask that is not drawn at random for every entry (draw it with torch.rand(x.shape) < p, "
            "torch.bernoulli, or the like)")


def dropout_problem(out, x, p, training) -> str | None:
    """None when ``out`` is a valid output of inverted dropout for input ``x`` (no zero in ``x``), drop
    probability ``p`` and mode ``training``; else what is wrong (with a "Likely cause" where one is known)."""
    if not isinstance(out, torch.Tensor):
        return f"out should be a torch.Tensor, got {type(out).__name__}"
    if tuple(out.shape) != tuple(x.shape):
        return f"out has shape {tuple(out.shape)}, expected x's shape {tuple(x.shape)}"
    if out.is_complex() or not out.is_floating_point():
        return f"out has dtype {out.dtype}; it should be a floating-point tensor like x ({x.dtype})"
    out, x = out.detach().double(), x.detach().double()
    if not training or p == 0:
        if matches(out, x):
            return None
        where = "in eval mode" if not training else "with p = 0"
        head = f"{where} out should equal x"
        if bool((out == 0).any()) and not training:
            why = "entries dropped in eval mode: dropout is active in training only; in eval it returns x"
        elif not training and matches(out, x * (1 - p)):
            why = ("eval mode multiplied by 1 - p: that is the original (non-inverted) dropout's test-time rule. "
                   "Inverted dropout does its scaling in training, so in eval it returns x unchanged")
        elif not training and p < 1 and matches(out, x / (1 - p)):
            why = "eval mode divided by 1 - p: in eval dropout returns x unchanged"
        elif training and bool((out == 0).any()):
            why = "entries dropped with p = 0: an entry is dropped with probability p, so none is"
        else:
            return head
        return f"{head}.\nLikely cause: {why}"
    if p == 1:
        if bool(out.isnan().any()):
            return ("with p = 1 out holds nan values.\nLikely cause: x * mask / (1 - p) divides by 1 - p = 0 "
                    "(0 / 0 is nan): with p = 1 every entry is dropped, so return zeros")
        if bool((out == 0).all()):
            return None
        return "with p = 1 every entry is dropped: out should be all zeros"
    if not bool(out.isfinite().all()):
        return "out holds nan or infinite values"
    dropped = out == 0
    total, count = dropped.numel(), int(dropped.sum())
    if count == total:
        return f"every entry of out is 0, with p = {p:g}: each entry should be dropped with probability p only"
    problem = _scale_problem(out[~dropped] / x[~dropped], p, count / total)
    if problem is not None:
        return problem
    problem = _pattern_problem(dropped)
    if problem is not None:
        return problem
    if not _count_ok(count, total, p):
        head = f"{count / total:.1%} of the entries are dropped; with p = {p:g} expect {p:.1%}"
        if _count_ok(count, total, 1 - p):
            return (f"{head}.\nLikely cause: p used as the keep probability: p is the probability of DROPPING an "
                    "entry (keep it when a uniform draw is >= p, i.e. with probability 1 - p)")
        return f"{head} (give or take {SIGMAS * math.sqrt(p * (1 - p) / total):.1%})"
    return _spread_problem(dropped, p)


def dropout_gradient_problem(dx, out, x, dout, p, training) -> str | None:
    """None when ``dx`` is the gradient of the dropout whose (valid) output is ``out``, for ``dL/dout = dout``
    (no zero in x or dout); else what is wrong, with a "Likely cause" where one is known."""
    if not isinstance(dx, torch.Tensor):
        return f"dx should be a torch.Tensor, got {type(dx).__name__}"
    if tuple(dx.shape) != tuple(x.shape):
        return f"dx has shape {tuple(dx.shape)}, expected x's shape {tuple(x.shape)}"
    dx, out, x, dout = dx.detach().double(), out.detach().double(), x.detach().double(), dout.detach().double()
    if not training or p == 0:
        expected = dout
    elif p == 1:
        expected = torch.zeros_like(dout)
    else:
        expected = dout * out / x  # dout times the scaled mask: 0 or 1 / (1 - p)
    if matches(dx, expected):
        return None
    head = "dx has the right shape but wrong values"
    if not training:
        why = "in eval mode dropout is the identity, so dx = dout" if not matches(dx, dout * (1 - p)) else \
            "eval mode multiplied by 1 - p: in eval dropout is the identity, so dx = dout"
        return f"{head}.\nLikely cause: {why}"
    kept = out != 0
    candidates = [
        ("dx not rescaled: the forward pass multiplied each kept entry by 1 / (1 - p), so its gradient is "
         "dout / (1 - p); dx = dout * mask / (1 - p)", dout * kept),
        ("the mask is ignored: a dropped entry did not reach the output, so its gradient is 0; dx = dout * mask "
         "/ (1 - p)", dout),
        ("dx multiplied by the forward's output: multiply dout by the scaled MASK (0 or 1 / (1 - p)), not by out",
         dout * out),
        ("dx divided by 1 - p but the mask is ignored: dx = dout * mask / (1 - p)", dout / (1 - p)),
    ]
    why = _first_match(dx, candidates)
    if why is None and bool(dx.isfinite().all()) and 0 < p < 1:
        dx_zero = dx == 0
        if not bool((dx_zero == ~kept).all()) and _count_ok(int(dx_zero.sum()), dx.numel(), p):
            why = ("dx drops other entries than the forward pass did: dropout_backward drew a new mask. Keep the "
                   "forward's mask in the cache and reuse it")
    return f"{head}.\nLikely cause: {why}" if why else head
