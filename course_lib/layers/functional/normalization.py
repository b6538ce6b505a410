"""Normalization layers from scratch: batch, layer, group, instance, LRN and LCN; weight and spectral norm.

The first four standardize ``x`` with a mean and a (biased) variance taken
over some axes, then scale and shift per channel:

.. math::

    \\hat x = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\qquad
    y = \\gamma \\, \\hat x + \\beta .

They differ only in the axes of (N, C, H, W) that share one
:math:`(\\mu, \\sigma^2)`:

=================  ==============================  ==========================
layer              statistics over                 one pair per
=================  ==============================  ==========================
batch norm         N, H, W                         channel
layer norm         the trailing normalized_shape   example (and leading axes)
instance norm      H, W                            example and channel
group norm         C / G channels, H, W            example and group of channels
=================  ==============================  ==========================

Local response normalization (AlexNet) and local contrast normalization
(Jarrett et al. 2009) divide instead by the activity of a neighbourhood.
Weight normalization and spectral normalization normalize a layer's *weight*,
not its activations: :func:`weight_norm` rebuilds it from a direction and a
length, :func:`spectral_norm` divides it by its largest singular value.
Names, arguments and semantics are those of ``torch.nn.functional`` where
PyTorch has the op; everything is built from tensor primitives (means,
variances, padding, sliding windows, one small convolution), so autograd
differentiates it. :func:`batch_norm_backward` writes batch norm's backward
pass by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..._checks import check_int, check_rank, check_shape, check_tensor

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "local_contrast_norm",
    "local_response_norm",
    "spectral_norm",
    "weight_norm",
]


# --- argument checks ----------------------------------------------------------------------------


def _check_eps(eps, positive: bool = False) -> None:
    """eps >= 0, or > 0 where PyTorch demands it (batch norm in training)."""
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0 or (positive and eps == 0):
        raise ValueError(f"eps must be a number {'>' if positive else '>='} 0, got {eps!r}")


def _check_running_stats(running_mean, running_var, channels: int, momentum) -> None:
    """Both running statistics or neither, each (C,); momentum a number (the caller turns None into 1/t)."""
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "running_mean and running_var must be given together, got "
            f"running_mean={'None' if running_mean is None else 'a tensor'}, "
            f"running_var={'None' if running_var is None else 'a tensor'}"
        )
    check_shape("running_mean", running_mean, (channels,), "(C,)")
    check_shape("running_var", running_var, (channels,), "(C,)")
    if not isinstance(momentum, (int, float)) or isinstance(momentum, bool) or not 0.0 <= momentum <= 1.0:
        raise ValueError(
            f"momentum must be a number in [0, 1], got {momentum!r} "
            "(for a cumulative average pass momentum=1/t at step t, as nn.BatchNorm does for momentum=None)"
        )


# --- shared pieces ------------------------------------------------------------------------------


def _moments(x: torch.Tensor, dims) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and *biased* variance (divide by n) over ``dims``, kept as size-1 axes for broadcasting."""
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, correction=0, keepdim=True)
    return mean, var


def _per_channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A (C,) tensor viewed as (1, C, 1, ..., 1) so that it broadcasts along axis 1 of an ``ndim``-dim input."""
    return t.view(1, -1, *(1,) * (ndim - 2))


def _scale_shift(x_hat: torch.Tensor, weight, bias, shape) -> torch.Tensor:
    """``weight * x_hat + bias``, each viewed as ``shape``; a missing one is 1 (weight) or 0 (bias)."""
    out = x_hat if weight is None else x_hat * weight.view(shape)
    return out if bias is None else out + bias.view(shape)


def _channel_dims(x: torch.Tensor) -> list[int]:
    """Every axis but the channel axis 1: batch norm's reduction axes."""
    return [0, *range(2, x.ndim)]


@torch.no_grad()
def _update_running_stats(running_mean, running_var, mean, var, count: int, momentum: float) -> None:
    """In place, PyTorch's exponential moving averages; ``var`` is biased (over ``count`` values) and is
    stored unbiased, times ``count / (count - 1)``: ``r <- (1 - momentum) r + momentum * new``."""
    running_mean.mul_(1.0 - momentum).add_(mean, alpha=momentum)
    running_var.mul_(1.0 - momentum).add_(var * (count / (count - 1)), alpha=momentum)


# --- batch, instance, layer and group norm ------------------------------------------------------


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
) -> torch.Tensor:
    """Batch normalization (Ioffe and Szegedy 2015), one (mean, variance) per channel.

    Args:
        input: (N, C), (N, C, L), (N, C, H, W) or more spatial axes.
        running_mean, running_var: (C,) or None (both or neither). Updated in place in training.
        weight, bias: (C,) gamma and beta, or None (1 and 0).
        training: use the batch's statistics (and update the running ones) or the running ones.
        momentum: weight of the new batch in the running averages, a number in [0, 1].
            ``None`` (cumulative average) is not accepted: nn.BatchNorm implements it by
            passing ``momentum = 1 / num_batches_tracked``, and so can the caller.
        eps: added to the variance; > 0 in training, as PyTorch requires.

    Returns:
        input's shape, ``y = gamma (x - mu) / sqrt(var + eps) + beta`` per channel.
        In training ``mu`` and ``var`` are the mean and the *biased* variance
        over the ``n = N * H * W`` values of each channel, and the running
        statistics become

        .. math:: \\bar\\mu \\leftarrow (1 - m)\\bar\\mu + m\\,\\mu, \\qquad
                  \\bar\\sigma^2 \\leftarrow (1 - m)\\bar\\sigma^2 + m\\, \\frac{n}{n - 1}\\mathrm{var}

        (the *unbiased* variance is stored, as in PyTorch). In eval
        ``mu, var = running_mean, running_var``.
    """
    check_tensor("input", input, 2, "(N, C, *)")
    channels = input.shape[1]
    _check_running_stats(running_mean, running_var, channels, momentum)
    check_shape("weight", weight, (channels,), "(C,)")
    check_shape("bias", bias, (channels,), "(C,)")
    _check_eps(eps, positive=training)
    count = input.numel() // channels
    if training:
        if count <= 1:
            raise ValueError(f"input must have more than 1 value per channel when training, got shape {tuple(input.shape)}")
        mean, var = _moments(input, _channel_dims(input))
        if running_mean is not None:
            _update_running_stats(running_mean, running_var, mean.flatten(), var.flatten(), count, momentum)
    elif running_mean is None:
        raise ValueError("running_mean and running_var must be tensors when training=False, got None")
    else:
        mean, var = _per_channel(running_mean, input.ndim), _per_channel(running_var, input.ndim)
    x_hat = (input - mean) * torch.rsqrt(var + eps)
    return _scale_shift(x_hat, weight, bias, (1, channels, *(1,) * (input.ndim - 2)))


def instance_norm(
    input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True, momentum=0.1, eps=1e-5
) -> torch.Tensor:
    """Instance normalization (Ulyanov et al. 2016): one (mean, variance) per example and channel.

    Args:
        input: (N, C, L), (N, C, H, W) or more spatial axes.
        running_mean, running_var: (C,) or None (both or neither).
        weight, bias: (C,) or None.
        use_input_stats: standardize each (n, c) map by its own statistics; if
            running statistics are given they are updated in place with the
            *batch average* of the per-instance mean and unbiased variance.
            If False, use the running statistics (batch norm in eval mode).
        momentum, eps: as in :func:`batch_norm`.

    Returns:
        input's shape, ``y[n, c] = gamma[c] (x[n, c] - mu[n, c]) / sqrt(var[n, c] + eps) + beta[c]``
        with the biased variance over the spatial axes. Every path of
        ``F.instance_norm`` is supported.
    """
    check_tensor("input", input, 3, "(N, C, *spatial)")
    channels = input.shape[1]
    _check_running_stats(running_mean, running_var, channels, momentum)
    check_shape("weight", weight, (channels,), "(C,)")
    check_shape("bias", bias, (channels,), "(C,)")
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, training=False, eps=eps)
    _check_eps(eps)
    count = math.prod(input.shape[2:])
    if count <= 1:
        raise ValueError(f"input must have more than 1 spatial value per channel, got shape {tuple(input.shape)}")
    mean, var = _moments(input, list(range(2, input.ndim)))  # (N, C, 1, ..., 1)
    if running_mean is not None:
        _update_running_stats(running_mean, running_var, mean.mean(0).flatten(), var.mean(0).flatten(), count, momentum)
    x_hat = (input - mean) * torch.rsqrt(var + eps)
    return _scale_shift(x_hat, weight, bias, (1, channels, *(1,) * (input.ndim - 2)))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5) -> torch.Tensor:
    """Layer normalization (Ba et al. 2016): statistics over the trailing ``normalized_shape`` axes.

    Args:
        input: (*, *normalized_shape).
        normalized_shape: a sequence of ints, the last axes of input, or an int
            for one axis (as nn.LayerNorm accepts; F.layer_norm itself takes only sequences).
        weight, bias: of shape ``normalized_shape`` (elementwise, not per channel), or None.
        eps: added to the variance.

    Returns:
        input's shape; every slice ``input[i]`` over the leading axes is
        standardized by its own mean and biased variance, then
        ``y = weight * x_hat + bias``. For an (N, C, H, W) map and
        ``normalized_shape = (C, H, W)`` that is one pair per example.
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    if (
        not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(f"normalized_shape must be an int or a non-empty sequence of ints >= 1, got {normalized_shape!r}")
    shape = tuple(shape)
    check_tensor("input", input, len(shape), f"(*, {', '.join(map(str, shape))})")
    if tuple(input.shape[-len(shape) :]) != shape:
        raise ValueError(f"input's last {len(shape)} dims must be normalized_shape = {shape}, got input of shape {tuple(input.shape)}")
    check_shape("weight", weight, shape, "normalized_shape")
    check_shape("bias", bias, shape, "normalized_shape")
    _check_eps(eps)
    mean, var = _moments(input, list(range(-len(shape), 0)))
    return _scale_shift((input - mean) * torch.rsqrt(var + eps), weight, bias, shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5) -> torch.Tensor:
    """Group normalization (Wu and He 2018): one (mean, variance) per example and group of channels.

    Args:
        input: (N, C, *), C divisible by ``num_groups``.
        num_groups: G; the channels are split into G consecutive groups of C / G.
        weight, bias: (C,) or None, per channel.
        eps: added to the variance.

    Returns:
        input's shape; each example's group g (channels ``g C/G ... (g+1) C/G - 1``
        and all their positions) is standardized by its own mean and biased
        variance. G = 1 is layer norm over (C, H, W) (but with per-channel
        gamma/beta), G = C is instance norm. Unlike batch norm it does not
        depend on the batch size.
    """
    check_tensor("input", input, 2, "(N, C, *)")
    check_int("num_groups", num_groups, 1)
    n, channels = input.shape[:2]
    if channels % num_groups:
        raise ValueError(f"num_groups must divide the number of channels C = {channels}, got num_groups={num_groups}")
    check_shape("weight", weight, (channels,), "(C,)")
    check_shape("bias", bias, (channels,), "(C,)")
    _check_eps(eps)
    shape = (1, channels, *(1,) * (input.ndim - 2))
    if n == 0:  # an empty batch: nothing to normalize (and reshape(0, G, -1) is ambiguous)
        return _scale_shift(input.clone(), weight, bias, shape)
    if input.numel() == 0:
        raise ValueError(f"input must have at least one position per channel, got shape {tuple(input.shape)}")
    grouped = input.reshape(n, num_groups, -1)  # (N, G, C/G * H * W)
    mean, var = _moments(grouped, [2])
    x_hat = ((grouped - mean) * torch.rsqrt(var + eps)).view(input.shape)
    return _scale_shift(x_hat, weight, bias, shape)


# --- batch norm's backward pass, by hand --------------------------------------------------------


def batch_norm_backward(grad_output, input, weight, eps=1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of training-mode :func:`batch_norm` (batch statistics), in closed form.

    Args:
        grad_output: dL/dy, input's shape.
        input: (N, C) or (N, C, *spatial), the input of the forward pass.
        weight: (C,) gamma, or None (gamma = 1).
        eps: the forward pass's eps.

    Returns:
        ``(grad_input, grad_weight, grad_bias)``, of shapes input, (C,), (C,).
        Per channel, with the ``n = N * H * W`` values, ``x_hat`` the
        standardized input and ``inv_std = 1 / sqrt(var + eps)``:

        .. math::

            \\frac{\\partial L}{\\partial \\beta} = \\sum dy, \\qquad
            \\frac{\\partial L}{\\partial \\gamma} = \\sum dy\\, \\hat x, \\qquad
            dx = \\frac{\\gamma \\, \\mathrm{inv\\_std}}{n}
                 \\Big(n\\, dy - \\sum dy - \\hat x \\sum dy \\, \\hat x\\Big).

        The two subtracted sums are the paths through the mean and the
        variance: dx has zero mean and is orthogonal to x_hat in every
        channel. ``grad_weight`` and ``grad_bias`` are returned even when
        ``weight`` is None (the gradients for gamma = 1, beta = 0).
    """
    check_tensor("input", input, 2, "(N, C, *)")
    channels = input.shape[1]
    if not isinstance(grad_output, torch.Tensor) or grad_output.shape != input.shape:
        got = tuple(grad_output.shape) if isinstance(grad_output, torch.Tensor) else type(grad_output).__name__
        raise ValueError(f"grad_output must have input's shape {tuple(input.shape)}, got {got}")
    check_shape("weight", weight, (channels,), "(C,)")
    _check_eps(eps)
    dims, count = _channel_dims(input), input.numel() // channels
    if count <= 1:
        raise ValueError(f"input must have more than 1 value per channel, got shape {tuple(input.shape)}")
    mean, var = _moments(input, dims)
    inv_std = torch.rsqrt(var + eps)
    x_hat = (input - mean) * inv_std
    grad_bias = grad_output.sum(dims)
    grad_weight = (grad_output * x_hat).sum(dims)
    gamma = 1.0 if weight is None else _per_channel(weight, input.ndim)
    grad_input = (gamma * inv_std / count) * (
        count * grad_output - _per_channel(grad_bias, input.ndim) - x_hat * _per_channel(grad_weight, input.ndim)
    )
    return grad_input, grad_weight, grad_bias


# --- local normalizations -----------------------------------------------------------------------


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0) -> torch.Tensor:
    """Local response normalization across channels (Krizhevsky et al. 2012, AlexNet).

    Args:
        input: (N, C, *) with at least one spatial axis.
        size: number of neighbouring channels in the window, >= 1.
        alpha, beta, k: the constants of the formula (AlexNet: size 5, alpha 1e-4, beta 0.75, k 2).

    Returns:
        input's shape,

        .. math:: y_c = x_c \\Big/ \\Big(k + \\frac{\\alpha}{\\text{size}}
                  \\sum_{c' = c - \\lfloor \\text{size}/2 \\rfloor}^{c + \\lfloor (\\text{size}-1)/2 \\rfloor}
                  x_{c'}^2\\Big)^{\\beta}

        at every position, channels outside [0, C) counting as 0. That is
        ``F.local_response_norm``'s formula: alpha divided by size (AlexNet's
        paper writes alpha alone), the window centred on c with the extra
        channel of an even size *before* c.
    """
    check_tensor("input", input, 3, "(N, C, *spatial)")
    check_int("size", size, 1)
    squares = (input * input).movedim(1, -1)  # channels last, so F.pad and unfold act on them
    windows = F.pad(squares, (size // 2, (size - 1) // 2)).unfold(-1, size, 1)  # (..., C, size)
    energy = windows.sum(-1).movedim(-1, 1)
    return input / (k + alpha / size * energy).pow(beta)


def _gaussian_window(kernel_size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """A (1, 1, k, k) Gaussian exp(-(u^2 + v^2) / (2 sigma^2)) centred on the middle pixel, summing to 1."""
    offsets = torch.arange(kernel_size, dtype=like.dtype, device=like.device) - (kernel_size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    window = torch.outer(g, g)
    return (window / window.sum()).view(1, 1, kernel_size, kernel_size)


def local_contrast_norm(input, kernel_size=9, sigma=None, eps=1e-4) -> torch.Tensor:
    """Local contrast normalization (Jarrett et al. 2009): subtract, then divide by, a local average.

    Args:
        input: (N, C, H, W).
        kernel_size: side of the Gaussian window, an odd int >= 1.
        sigma: the Gaussian's standard deviation in pixels; None means
            ``kernel_size / 4.5`` (2 for the 9 x 9 window of the paper).
        eps: the smallest divisor, so flat regions are not blown up.

    Returns:
        input's shape. With ``w[c, p, q] = g[p, q] / C`` (a Gaussian window
        ``g`` summing to 1 over space, so ``w`` sums to 1 over channels and
        space), at every position (i, j):

        .. math::

            v_{c i j} = x_{c i j} - \\sum_{c', p, q} w_{c' p q}\\, x_{c',\\, i+p,\\, j+q}
            \\qquad \\text{(subtractive: the local mean, shared by all channels)}

            \\sigma_{i j} = \\Big(\\sum_{c', p, q} w_{c' p q}\\, v_{c',\\, i+p,\\, j+q}^2\\Big)^{1/2},
            \\qquad y_{c i j} = \\frac{v_{c i j}}{\\max(\\bar\\sigma, \\sigma_{i j}, \\epsilon)}

        (divisive), where ``p, q`` run from ``-(k-1)/2`` to ``(k-1)/2``,
        pixels outside the image count as 0 (so the border is not zero-mean),
        and ``sigma_bar`` is the mean of ``sigma`` over each image's H x W
        positions. Scaling ``x`` by ``a > 0`` leaves ``y`` unchanged while the
        divisor stays above ``eps``.
    """
    check_rank("input", input, 4, "(N, C, H, W)")
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 1, got {kernel_size!r}")
    sigma = kernel_size / 4.5 if sigma is None else sigma
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or sigma <= 0:
        raise ValueError(f"sigma must be a number > 0 or None, got {sigma!r}")
    _check_eps(eps)
    window = _gaussian_window(kernel_size, sigma, input)

    def local_average(t: torch.Tensor) -> torch.Tensor:
        """sum_{c', p, q} w[c', p, q] t[c', i+p, j+q]: the channel mean, Gaussian-blurred; (N, 1, H, W)."""
        return F.conv2d(t.mean(1, keepdim=True), window, padding=kernel_size // 2)

    centred = input - local_average(input)
    # sigma enters only through max(sigma_bar, sigma, eps), so raising it to eps changes nothing but
    # sigma_bar (by < eps) and keeps sqrt's gradient finite where a window is exactly flat (an MNIST background).
    local_std = local_average(centred * centred).clamp_min(eps * eps).sqrt()  # (N, 1, H, W)
    mean_std = local_std.mean((2, 3), keepdim=True)  # (N, 1, 1, 1)
    return centred / torch.maximum(local_std, mean_std).clamp_min(eps)


# --- normalizing the weight instead of the activations ------------------------------------------


def weight_norm(v, g, dim=0) -> torch.Tensor:
    """Weight normalization (Salimans and Kingma 2016): a weight rebuilt from a direction ``v`` and a length ``g``.

    Args:
        v: the direction, any shape with at least one axis, e.g. (C_out, C_in, kH, kW)
            for a convolution or (out_features, in_features) for a linear layer.
        g: the lengths, (v.shape[dim],) - one per slice ``v[..., i, ...]`` along ``dim``,
            e.g. one per output channel for dim = 0 - or a 0-dim tensor for ``dim=None``.
        dim: the axis that keeps one norm per index, an int in [0, v.ndim), or None
            for a single norm over the whole of ``v``. (PyTorch's own ``weight_norm``
            reads dim = -1 as "the whole tensor", not as the last axis; to avoid that
            trap a negative dim is refused.)

    Returns:
        v's shape, ``w = g v / ||v||`` with the Euclidean norm of each slice of ``v``
        along ``dim`` (over every other axis), so that every slice of ``w`` has
        norm ``|g_i|`` and the direction of ``v`` (of ``-v`` where ``g_i < 0``). That is what
        ``torch.nn.utils.parametrizations.weight_norm(module, dim=dim)`` computes
        from its ``original0`` (``g``, stored with size-1 axes: pass ``original0.flatten()``
        or, for ``dim=None``, ``original0`` itself) and ``original1`` (``v``).
        Autograd differentiates through the norm, so a gradient step on ``g``
        changes only lengths and one on ``v`` only directions. As in PyTorch
        there is no eps: a slice of ``v`` that is exactly 0 gives NaN.
    """
    check_tensor("v", v, 1, "(out, *)")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or not 0 <= dim < v.ndim):
        raise ValueError(
            f"dim must be None (one norm for the whole of v) or an int in [0, {v.ndim - 1}] (an axis of v), got {dim!r}"
        )
    if dim is None:
        if not isinstance(g, torch.Tensor) or g.ndim != 0:
            got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise ValueError(f"g must be a 0-dim tensor (one length) when dim=None, got {got}")
        return v * (g / v.norm())
    check_tensor("g", g, 1, "(v.shape[dim],)")
    check_shape("g", g, (v.shape[dim],), "(v.shape[dim],)")
    others = [d for d in range(v.ndim) if d != dim]
    norms = v.pow(2).sum(others, keepdim=True).sqrt() if others else v.abs()  # a 1-dim v: each entry is a slice
    shape = [1] * v.ndim
    shape[dim] = -1
    return v * (g.view(shape) / norms)


def _unit(t: torch.Tensor, eps: float) -> torch.Tensor:
    """``t / max(||t||, eps)``, as F.normalize does it."""
    return t / t.norm().clamp_min(eps)


def spectral_norm(weight, u, v, n_power_iterations=1, dim=0, eps=1e-12) -> torch.Tensor:
    """Spectral normalization (Miyato et al. 2018): the weight divided by an estimate of its largest singular value.

    Args:
        weight: (out, in, *) with at least two axes. It is read as the matrix
            ``W`` of shape (H, W_cols) = (weight.shape[dim], numel / H): axis ``dim``
            moved to the front, the others flattened (so a (C_out, C_in, k, k)
            convolution is a C_out x (C_in k k) matrix).
        u: (H,) and
        v: (W_cols,): the current estimates of the leading left and right singular
            vectors, buffers that this function updates **in place** (as batch norm
            updates its running statistics). Start them as random unit vectors.
        n_power_iterations: power-iteration steps done first, an int >= 0; each is
            ``u <- W v / ||W v||``, then ``v <- W^T u / ||W^T u||``. 0 uses ``u``
            and ``v`` as they are (PyTorch's module in eval mode).
        dim: the axis of ``weight`` that indexes the rows of ``W``, in
            [-weight.ndim, weight.ndim) (PyTorch uses 1 for transposed convolutions).
        eps: the smallest norm divided by in the power iteration, > 0.

    Returns:
        weight's shape, ``weight / sigma`` with ``sigma = u^T W v`` for the
        updated ``u`` and ``v``. After enough iterations ``sigma`` is the largest
        singular value of ``W``, and the result has spectral norm 1: the layer
        can lengthen no input by more than a factor 1 (it is 1-Lipschitz).
        ``u`` and ``v`` are constants for autograd; the gradient flows through
        ``W`` in both the numerator and ``sigma``. Called once per training step with
        ``n_power_iterations=1`` and the same buffers, the estimate follows the
        slowly changing weight, which is how
        ``torch.nn.utils.parametrizations.spectral_norm`` works (it also does 15
        iterations when it is created); this function matches it step for step.
    """
    check_tensor("weight", weight, 2, "(out, in, *)")
    if not isinstance(dim, int) or isinstance(dim, bool) or not -weight.ndim <= dim < weight.ndim:
        raise ValueError(f"dim must be an int in [{-weight.ndim}, {weight.ndim - 1}] (an axis of weight), got {dim!r}")
    check_int("n_power_iterations", n_power_iterations, 0)
    _check_eps(eps, positive=True)
    matrix = weight.movedim(dim, 0).flatten(1)  # (H, W_cols)
    rows, cols = matrix.shape
    check_tensor("u", u, 1, f"(weight.shape[dim],) = ({rows},)")
    check_shape("u", u, (rows,), "(weight.shape[dim],)")
    check_tensor("v", v, 1, f"(numel / weight.shape[dim],) = ({cols},)")
    check_shape("v", v, (cols,), "(numel / weight.shape[dim],)")
    with torch.no_grad():
        for _ in range(n_power_iterations):
            u.copy_(_unit(matrix @ v, eps))
            v.copy_(_unit(matrix.mT @ u, eps))
    sigma = torch.dot(u.clone(), matrix @ v.clone())  # clones: later in-place updates must not touch this graph
    return weight / sigma
