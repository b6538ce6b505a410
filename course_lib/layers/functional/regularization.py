"""Regularization from scratch: dropout and its relatives, and label smoothing.

Every random op draws a Bernoulli *keep mask* ``m`` (1 with probability
``1 - p``, 0 with probability ``p``) and multiplies. The *inverted* form
rescales the survivors during training so that nothing changes at test time:

.. math::

    y = x \\odot \\frac{m}{1 - p}, \\qquad
    \\mathbb{E}[y] = x \\, \\frac{\\mathbb{E}[m]}{1 - p} = x .

What differs is *what* one mask entry switches off: one activation
(:func:`dropout`), one weight of one example (:func:`drop_connect`), a
``block_size x block_size`` square of a feature map (:func:`drop_block2d`) or
a whole residual branch of one example (:func:`drop_path`).

Every random op takes ``generator`` (a ``torch.Generator`` on the input's
device) so that a lab can reproduce a mask; with ``generator=None`` the
masks come from PyTorch's default generator, drawn with ``Tensor.bernoulli_``
exactly as ``F.dropout`` (on CPU) and ``torchvision.ops`` draw theirs, so
after the same ``torch.manual_seed`` they drop the same entries.
Drop probabilities must lie in [0, 1): ``p = 1`` would divide by zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import check_choice, check_flag, check_int, check_probability, check_rank, check_shape, check_tensor

__all__ = [
    "drop_block2d",
    "drop_connect",
    "drop_path",
    "dropout",
    "dropout_classic",
    "label_smoothing_cross_entropy",
]


def _bernoulli(shape, q: float, like: torch.Tensor, generator) -> torch.Tensor:
    """A 0/1 tensor of ``shape`` in ``like``'s dtype and device: each entry is 1 with probability ``q``."""
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(q, generator=generator)


def _check_drop_args(input, p, training, least_dims: int = 0, layout: str = "") -> None:
    """The arguments every drop op takes: ``input`` a tensor (of at least ``least_dims`` dims, as ``layout``
    describes), ``p`` a drop probability, ``training`` a bool."""
    check_tensor("input", input, least_dims, layout)
    check_probability("p", p)
    check_flag("training", training)


def dropout(input, p=0.5, training=True, generator=None) -> torch.Tensor:
    """Inverted dropout (Srivastava et al. 2014, in the form every library uses).

    Args:
        input: a tensor of any shape.
        p: probability of zeroing each entry, in [0, 1).
        training: if False, return ``input`` unchanged.
        generator: ``torch.Generator`` for the mask, or None for the default one.

    Returns:
        A tensor of ``input``'s shape: ``y = x * m / (1 - p)`` with
        ``m ~ Bernoulli(1 - p)`` drawn independently for every entry, so
        ``E[y] = x``; survivors equal ``x * (1 / (1 - p))``, computed as
        PyTorch does. In eval mode ``y = x`` (no rescaling is needed, which is
        the point of the inverted form).

    Same semantics as ``F.dropout`` except: no ``inplace`` argument (always a
    new tensor), and ``p = 1`` is refused.
    """
    _check_drop_args(input, p, training)
    if not training or p == 0:
        return input
    return input * (_bernoulli(input.shape, 1.0 - p, input, generator) / (1.0 - p))


def dropout_classic(input, p=0.5, training=True, generator=None) -> torch.Tensor:
    """Dropout as first published (Hinton et al. 2012): no rescaling in training, ``x (1 - p)`` at test time.

    Args and shapes as :func:`dropout`.

    Returns:
        In training ``y = x * m`` with ``m ~ Bernoulli(1 - p)``, so
        ``E[y] = (1 - p) x``; in eval ``y = (1 - p) x``, the same expectation,
        deterministically. The net trained on thinned sub-networks is used at
        test time with every unit on and its outgoing signal scaled down.
    """
    _check_drop_args(input, p, training)
    if not training:
        return input * (1.0 - p)
    return input * _bernoulli(input.shape, 1.0 - p, input, generator)


def drop_connect(input, weight, bias=None, p=0.5, training=True, generator=None) -> torch.Tensor:
    """A linear layer whose *weights* are dropped (DropConnect, Wan et al. 2013).

    Args:
        input: (*, in_features); every row (example) gets its own weight mask.
        weight: (out_features, in_features).
        bias: (out_features,) or None; never dropped.
        p: probability of dropping each weight, in [0, 1).
        training: if False, the plain linear layer.
        generator: ``torch.Generator`` for the masks, or None.

    Returns:
        (*, out_features). In training, for each example ``n`` a fresh mask
        ``M_n ~ Bernoulli(1 - p)`` of weight's shape:

        .. math:: y_n = \\frac{(M_n \\odot W)\\, x_n}{1 - p} + b,
                  \\qquad \\mathbb{E}[y_n] = W x_n + b,

        which stores an (N, out_features, in_features) mask. In eval,
        ``y = x W^T + b`` (``F.linear``): the *mean* network. Wan et al.
        instead sample from a Gaussian moment-matched to each unit's input at
        test time; that is not done here.
    """
    _check_drop_args(input, p, training, 1, "(*, in_features)")
    check_rank("weight", weight, 2, "(out_features, in_features)")
    out_features, in_features = weight.shape
    if input.shape[-1] != in_features:
        raise ValueError(
            f"input.shape[-1] must be in_features = weight.shape[1] = {in_features}, got input of shape {tuple(input.shape)}"
        )
    check_shape("bias", bias, (out_features,), "(out_features,)")
    if not training or p == 0:
        out = input @ weight.T
    else:
        rows = input.reshape(-1, in_features)  # (N, in): leading dims flattened, one mask per row
        masks = _bernoulli((rows.shape[0], out_features, in_features), 1.0 - p, weight, generator)
        out = torch.einsum("noi,ni->no", weight * (masks / (1.0 - p)), rows).reshape(*input.shape[:-1], out_features)
    return out if bias is None else out + bias


def _dilate(seeds: torch.Tensor, block_size: int) -> torch.Tensor:
    """Grow every seed of an (N, C, H - b + 1, W - b + 1) 0/1 map into a b x b square; returns (N, C, H, W).

    Output pixel (i, j) is 1 if a seed lies at (i - u, j - v) for some 0 <= u, v < b:
    a sliding b x b maximum over the seed map padded with b - 1 zeros on each side,
    taken along rows and then along columns (a square max is a max of maxes).
    """
    pad = block_size - 1
    padded = F.pad(seeds, (pad, pad, pad, pad))
    rows = padded.unfold(2, block_size, 1).amax(-1)  # (N, C, H, W + b - 1)
    return rows.unfold(3, block_size, 1).amax(-1)  # (N, C, H, W)


def drop_block2d(input, p=0.1, block_size=7, training=True, generator=None) -> torch.Tensor:
    """DropBlock (Ghiasi et al. 2018): drop contiguous squares of each feature map.

    Neighbouring pixels of a conv feature map are correlated, so a dropped
    pixel is re-inferred from its neighbours; dropping a whole square removes
    that information for real.

    Args:
        input: (N, C, H, W).
        p: the fraction of pixels to drop, in [0, 1) (the paper's ``1 - keep_prob``).
        block_size: side of the dropped squares, >= 1; clamped to ``min(H, W)``
            as torchvision does. Even sizes are allowed (torchvision refuses them).
        training: if False, return ``input`` unchanged.
        generator: ``torch.Generator`` for the seeds, or None.

    Returns:
        (N, C, H, W). Block seeds are drawn independently per (n, c) at the
        ``(H - b + 1) x (W - b + 1)`` positions where a whole block fits, with

        .. math:: \\gamma = \\frac{p}{b^2} \\, \\frac{H W}{(H - b + 1)(W - b + 1)},

        so that about a fraction ``p`` of the pixels ends up dropped
        (overlapping blocks make it a little less). Each seed drops the
        ``b x b`` square below and to the right of it (its centre is
        ``b // 2`` further). With the keep mask ``M`` (0 inside the squares),

        .. math:: y = x \\odot M \\, \\frac{\\#M}{\\sum M},

        the rescaling by (number of entries) / (number kept) over the whole
        batch keeps the activations' scale. This is torchvision's
        ``drop_block2d`` without its ``inplace`` and ``eps`` arguments: when
        every pixel is dropped the output is 0 instead of dividing by ``eps``.
    """
    _check_drop_args(input, p, training)
    check_rank("input", input, 4, "(N, C, H, W)")
    check_int("block_size", block_size, 1)
    if not training or p == 0:
        return input
    n, c, h, w = input.shape
    b = min(block_size, h, w)
    gamma = p / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
    seeds = _bernoulli((n, c, h - b + 1, w - b + 1), gamma, input, generator)
    keep = 1 - _dilate(seeds, b)
    # clamp: if every pixel is dropped the output is 0 whatever the scale; avoid 0 / 0.
    return input * keep * (keep.numel() / keep.sum().clamp_min(1))


def drop_path(input, p=0.0, training=True, generator=None) -> torch.Tensor:
    """Stochastic depth / drop path (Huang et al. 2016): drop a residual branch for whole examples.

    Apply it to the residual branch ``F(x)`` of a block, ``x + drop_path(F(x), p)``:
    a dropped example skips the block through the identity.

    Args:
        input: (N, *), the branch output for a batch of N examples.
        p: probability of dropping an example's branch, in [0, 1); in a deep
            net usually ``p_l = l / L * p_L`` for block l of L (survival
            ``1 - l / L (1 - p_L)`` in the paper's words).
        training: if False, return ``input`` unchanged.
        generator: ``torch.Generator`` for the mask, or None.

    Returns:
        ``input``'s shape: ``y_n = x_n * m_n / (1 - p)`` with one
        ``m_n ~ Bernoulli(1 - p)`` per example, so ``E[y] = x``. This is
        ``torchvision.ops.stochastic_depth(input, p, mode="row")``, inverted
        scaling included; the paper instead scales by the survival
        probability at test time.
    """
    _check_drop_args(input, p, training, 1, "(N, *)")
    if not training or p == 0:
        return input
    shape = (input.shape[0],) + (1,) * (input.ndim - 1)  # one mask entry per example, broadcast over the rest
    return input * (_bernoulli(shape, 1.0 - p, input, generator) / (1.0 - p))


REDUCTIONS = ("none", "mean", "sum")


def label_smoothing_cross_entropy(logits, target, smoothing=0.1, reduction="mean") -> torch.Tensor:
    """Cross-entropy against a smoothed one-hot target (Szegedy et al. 2016, Inception v3).

    Args:
        logits: (N, K) or (N, K, d1, ...) unnormalized scores for K classes.
        target: class indices in [0, K), integer dtype, shape (N,) or (N, d1, ...).
        smoothing: epsilon in [0, 1]: the target gives ``1 - eps + eps / K`` to the
            true class and ``eps / K`` to every other one.
        reduction: "none" (one loss per example/position), "mean" or "sum".

    Returns:
        With ``log q = log_softmax(logits)`` over the class axis,

        .. math:: \\ell = -\\sum_k \\big((1 - \\varepsilon)\\, [k = y] + \\tfrac{\\varepsilon}{K}\\big) \\log q_k
                        = (1 - \\varepsilon)(-\\log q_y) + \\varepsilon \\cdot \\operatorname{mean}_k(-\\log q_k),

        reduced as asked. Equals ``F.cross_entropy(logits, target,
        label_smoothing=smoothing, reduction=reduction)``; class weights,
        ``ignore_index`` and probability targets are not supported.
    """
    check_tensor("logits", logits, 2, "(N, K) or (N, K, d1, ...)")
    expected = (logits.shape[0], *logits.shape[2:])
    if not isinstance(target, torch.Tensor) or tuple(target.shape) != expected:
        got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"target must have shape (N, d1, ...) = {expected} for logits of shape {tuple(logits.shape)}, got {got}")
    k = logits.shape[1]
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.numel() and (target.min() < 0 or target.max() >= k):
        raise ValueError(f"target must lie in [0, K) = [0, {k}), got values in [{target.min()}, {target.max()}]")
    if not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool) or not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1], got {smoothing!r}")
    check_choice("reduction", reduction, REDUCTIONS)
    neg_log_q = torch.logsumexp(logits, dim=1, keepdim=True) - logits  # -log softmax, (N, K, ...)
    true_class = neg_log_q.gather(1, target.long().unsqueeze(1)).squeeze(1)
    loss = (1.0 - smoothing) * true_class + smoothing * neg_log_q.mean(1)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss
