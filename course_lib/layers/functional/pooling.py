"""Pooling from scratch: max, average, Lp, adaptive, global and stochastic pooling, and max unpooling.

A pooling layer slides a ``kH x kW`` window over every channel *separately*,
with stride ``S``, padding ``P`` and dilation ``D`` exactly as a convolution
does, but it has no weights: it reduces each window to one number.

.. math::

    y[n, c, i, j] = \\operatorname{reduce}_{u < k_H,\\; v < k_W}\\;
                    x_\\text{pad}[n,\\; c,\\; i S_h + u D_h,\\; j S_w + v D_w]

with ``reduce`` the maximum (max pooling), the mean (average pooling),
``(sum x^p)^(1/p)`` (Lp pooling) or one value drawn at random (stochastic
pooling). The stride defaults to the kernel size: non-overlapping windows.

Output size along each axis is ``output_size(H, kH, S, P, D, ceil_mode=...)``
= ``floor((H + 2P - D (kH - 1) - 1) / S) + 1``, and the windows are
``sliding_windows``' (both in :mod:`course_lib.layers.geometry`). With
``ceil_mode=True`` the floor becomes a ceiling - one more, partial, window
where the last one would leave pixels unseen - except that, as in PyTorch, a
last window must start inside the input or the left padding: one that would
start in the right padding is dropped.

All functions here but ``global_avg_pool2d``, ``stochastic_pool2d`` and the
two explicit backward passes have the name, signature and semantics of their
``torch.nn.functional`` twin; like them they take a batch ``(N, C, H, W)`` or
one image ``(C, H, W)``. Floating-point inputs only (PyTorch also pools
integer tensors). ``max_pool2d_backward`` and ``avg_pool2d_backward`` compute
without autograd the input gradient that autograd finds through
``max_pool2d`` and ``avg_pool2d``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..._checks import Pair, accepts_unbatched, as_pair, check_flag, check_rank
from ..geometry import fold_windows, output_size, sliding_windows, transposed_output_size

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_avg_pool2d",
    "lp_pool2d",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "stochastic_pool2d",
]


# --- shared machinery ----------------------------------------------------------------------------


def _check_input(input) -> None:
    """``input`` is a floating-point (N, C, H, W) tensor with H, W >= 1."""
    check_rank("input", input, 4, "(N, C, H, W)")
    if not input.is_floating_point():
        raise ValueError(f"input must be a floating-point tensor, got dtype {input.dtype}")
    if 0 in input.shape[2:]:
        raise ValueError(f"input must have H, W >= 1, got shape {tuple(input.shape)}")


class _Pool(NamedTuple):
    """A sliding-window pooling's hyper-parameters, checked, as (h, w) pairs, and its output (H_out, W_out)."""

    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    ceil_mode: bool
    out: Pair


def _pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode) -> _Pool:
    """Check a sliding-window pooling's hyper-parameters against ``input``.

    ``stride=None`` means the kernel size. Like PyTorch, padding may be at most half the kernel
    size, so that every window holds at least one input pixel.
    """
    kernel = as_pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else as_pair("stride", stride, 1)
    padding = as_pair("padding", padding, 0)
    dilation = as_pair("dilation", dilation, 1)
    check_flag("ceil_mode", ceil_mode)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"padding must be at most half of kernel_size {kernel} (rounded down), got {padding}")
    out = []
    for axis, (size, k, s, p, d) in enumerate(zip(input.shape[2:], kernel, stride, padding, dilation)):
        try:
            out.append(output_size(size, k, s, p, d, ceil_mode=ceil_mode))
        except ValueError as err:
            raise ValueError(
                f"kernel_size {kernel} with dilation {dilation} does not fit input along {'HW'[axis]}: {err}"
            ) from None
    return _Pool(kernel, stride, padding, dilation, ceil_mode, tuple(out))


def _windows(x: torch.Tensor, pool: _Pool, value) -> torch.Tensor:
    """Every pooling window of ``x`` (N, C, H, W), as (N, C, H_out, W_out, kH * kW), row-major in a window.

    ``x`` is padded with ``value`` (see :func:`~course_lib.layers.geometry.sliding_windows`); the
    windows are a view, and flattening them copies kH kW / (S_h S_w) times x's memory.
    """
    windows = sliding_windows(
        x, pool.kernel, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode, value=value
    )
    return windows.flatten(-2)


def _positions(input: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W): each pixel's flat index ``h W + w`` in its plane - the index max pooling returns."""
    h, w = input.shape[2:]
    return torch.arange(h * w, device=input.device).view(1, 1, h, w)


def _window_max(windows: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum of every window and its flat index in the input plane, chosen as PyTorch chooses.

    Args:
        windows: (..., K) values.
        positions: (..., K), broadcastable to ``windows``: each value's flat index in the input
            plane, -1 for a filler (padding) that must never be returned.

    Returns:
        (values, indices), both (...). PyTorch scans a window row-major and moves to a value that
        is larger than the maximum so far, or NaN: so ties go to the *first* maximum, and a window
        with NaNs returns its *last* NaN. The values are gathered from ``windows`` at that position,
        so autograd sends each output's gradient to exactly that input pixel.
    """
    positions = positions.expand_as(windows)
    real = positions >= 0
    values = windows.detach()
    best = values.amax(-1, keepdim=True)  # NaN if the window holds one
    first_max = ((values == best) & real).to(torch.uint8).argmax(-1, keepdim=True)  # argmax: first of ties
    nan = values.isnan() & real
    last_nan = windows.shape[-1] - 1 - nan.flip(-1).to(torch.uint8).argmax(-1, keepdim=True)
    choice = torch.where(nan.any(-1, keepdim=True), last_nan, first_max)
    return windows.gather(-1, choice).squeeze(-1), positions.gather(-1, choice).squeeze(-1)


def _scatter_to_planes(values: torch.Tensor, indices: torch.Tensor, size: Pair, accumulate: bool) -> torch.Tensor:
    """(N, C, H, W) zeros with ``values`` (N, C, ...) written at flat plane ``indices``; added up if ``accumulate``."""
    n, c = values.shape[:2]
    planes = values.new_zeros(n, c, size[0] * size[1])
    scatter = planes.scatter_add if accumulate else planes.scatter
    return scatter(2, indices.reshape(n, c, -1), values.reshape(n, c, -1)).view(n, c, *size)


def _check_grad_output(grad_output, out: Pair, input: torch.Tensor) -> None:
    """``grad_output`` has the shape the forward pass gives: (N, C, H_out, W_out)."""
    expected = (*input.shape[:2], *out)
    if not isinstance(grad_output, torch.Tensor) or tuple(grad_output.shape) != expected:
        got = tuple(grad_output.shape) if isinstance(grad_output, torch.Tensor) else type(grad_output).__name__
        raise ValueError(f"grad_output must have the output's shape (N, C, H_out, W_out) = {expected}, got {got}")


# --- max pooling -----------------------------------------------------------------------------------


@accepts_unbatched("(N, C, H, W)")
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2D max pooling: the largest value of every (dilated) window.

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride, padding, dilation: int or (h, w) pair; ``stride`` defaults to
            ``kernel_size``; ``padding`` (-inf, so it never wins) is at most half the kernel.
        ceil_mode: round the output size up (see the module docstring).
        return_indices: also return where each maximum is.

    Returns:
        (N, C, H_out, W_out), ``H_out = output_size(H, kH, S, P, D)`` (ceil_mode: see module
        docstring); with ``return_indices`` also the int64 indices, of the same shape, of the
        maxima as flat positions ``h W + w`` in their (unpadded) input plane - what
        :func:`max_unpool2d` takes. Ties go to the first maximum in row-major window order.

    The gradient flows only to each window's maximum, and adds up where windows overlap
    (see :func:`max_pool2d_backward`).
    """
    _check_input(input)
    pool = _pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode)
    windows = _windows(input, pool, value=float("-inf"))
    positions = _windows(_positions(input), pool, value=-1)
    out, indices = _window_max(windows, positions)
    return (out, indices) if return_indices else out


@accepts_unbatched("(N, C, H, W)", batched=("input", "grad_output"))
def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Gradient of :func:`max_pool2d` with respect to its input, without autograd.

    Args:
        grad_output: (N, C, H_out, W_out), the upstream gradient dL/dy.
        input: (N, C, H, W), the forward pass's input.
        kernel_size, stride, padding, dilation, ceil_mode: as given to :func:`max_pool2d`.

    Returns:
        (N, C, H, W) ``dL/dx``. ``y[n, c, i, j] = x[n, c, argmax]`` is a copy of one input pixel,
        so ``dy/dx`` is 1 at that pixel and 0 elsewhere: each output's gradient goes to its
        window's maximum (the first one on ties, the same pixel PyTorch picks), and a pixel that is
        the maximum of several overlapping windows receives the sum of their gradients.
    """
    _check_input(input)
    _, indices = max_pool2d(input.detach(), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    _check_grad_output(grad_output, indices.shape[2:], input)
    return _scatter_to_planes(grad_output, indices, input.shape[2:], accumulate=True)


def _unpool_size(input, kernel: Pair, stride: Pair, padding: Pair, output_size) -> Pair:
    """max_unpool2d's (H_out, W_out), as PyTorch's ``_unpool_output_size`` works it out."""
    default = tuple(transposed_output_size(n, k, s, p) for n, k, s, p in zip(input.shape[2:], kernel, stride, padding))
    if output_size is None:
        size = default
    else:
        size = tuple(output_size)
        size = size[2:] if len(size) == 4 else size  # a full (N, C, H, W) shape is allowed
        if len(size) != 2 or not all(isinstance(v, int) for v in size):
            raise ValueError(f"output_size must be (H, W) or (N, C, H, W) ints, got {output_size!r}")
        for axis, (got, best, s) in enumerate(zip(size, default, stride)):
            # Pooling rounds sizes down, so any size within a stride of the default is possible.
            if not best - s < got < best + s:
                raise ValueError(
                    f"output_size {size} along {'HW'[axis]} must lie strictly between "
                    f"{best - s} and {best + s}, got {got}"
                )
    if min(size) < 0:
        raise ValueError(f"output_size must not be negative, got {size} (from padding {padding})")
    return size


@accepts_unbatched("(N, C, H, W)", batched=("input", "indices"))
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of :func:`max_pool2d`: put every value back where its maximum came from.

    Args:
        input: (N, C, H_in, W_in), e.g. pooled values; (C, H_in, W_in) also works.
        indices: int64, the shape of ``input``: flat positions in the output plane, as
            ``max_pool2d(..., return_indices=True)`` returns them.
        kernel_size, stride, padding: those of the max pooling undone (stride defaults to
            ``kernel_size``); they only set the output size.
        output_size: (H, W) or (N, C, H, W), to tell apart the input sizes a pooling maps to the
            same size; within ``stride`` of the default.

    Returns:
        (N, C, H_out, W_out), zero except at ``indices``, with ``H_out = (H_in - 1) S - 2P + kH``
        by default. Where indices repeat (overlapping windows), one of the values is kept. This
        is the "upsampling with remembered indices" of segmentation networks; the gradient of
        each input value is the output gradient at its index.
    """
    _check_input(input)
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64 or indices.shape != input.shape:
        got = f"{indices.dtype} of shape {tuple(indices.shape)}" if isinstance(indices, torch.Tensor) else indices
        raise ValueError(f"indices must be an int64 tensor of input's shape {tuple(input.shape)}, got {got}")
    kernel = as_pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else as_pair("stride", stride, 1)
    size = _unpool_size(input, kernel, stride, as_pair("padding", padding, 0), output_size)
    if indices.numel() and (indices.min() < 0 or indices.max() >= size[0] * size[1]):
        raise ValueError(
            f"indices must lie in [0, H_out * W_out) = [0, {size[0] * size[1]}) for output size {size}, "
            f"got values in [{indices.min().item()}, {indices.max().item()}]"
        )
    return _scatter_to_planes(input, indices, size, accumulate=False)


# --- average and Lp pooling ------------------------------------------------------------------------


def _check_divisor(divisor_override) -> None:
    if divisor_override is not None and (
        not isinstance(divisor_override, int) or isinstance(divisor_override, bool) or divisor_override == 0
    ):
        raise ValueError(f"divisor_override must be None or a non-zero int, got {divisor_override!r}")


def _avg_divisor(input, pool: _Pool, count_include_pad: bool, divisor_override):
    """What average pooling divides each window's sum by: (H_out, W_out), or the override.

    The number of pixels the window covers: input pixels only, or (``count_include_pad``)
    padding pixels too - but never the pixels past the padding that ceil_mode's last window
    reaches, as in PyTorch. Windows and the input are rectangles, so the count is a product of
    one count per axis.
    """
    if divisor_override is not None:
        return divisor_override
    counts = []
    for size, k, s, p, out in zip(input.shape[2:], pool.kernel, pool.stride, pool.padding, pool.out):
        start = torch.arange(out, device=input.device) * s - p  # first pixel of each window (no dilation here)
        first, end = (-p, size + p) if count_include_pad else (0, size)
        counts.append((start + k).clamp(max=end) - start.clamp(min=first))
    return counts[0][:, None] * counts[1]


@accepts_unbatched("(N, C, H, W)")
def avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """2D average pooling: the mean of every window.

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride, padding: int or (h, w) pair; ``stride`` defaults to ``kernel_size``;
            zero ``padding``, at most half the kernel. (PyTorch has no dilation here either.)
        ceil_mode: round the output size up (see the module docstring).
        count_include_pad: whether padding pixels count in the divisor.
        divisor_override: a non-zero int to divide every window's sum by instead.

    Returns:
        (N, C, H_out, W_out) with ``H_out = output_size(H, kH, S, P)`` (ceil_mode: see module
        docstring) and ``y[n, c, i, j] = sum(window) / divisor``, where the divisor is the number
        of pixels in the window: ``kH kW`` when ``count_include_pad`` (fewer only for a ceil_mode
        window that reaches past the padding), else only the input pixels in it.
    """
    _check_input(input)
    _check_divisor(divisor_override)
    pool = _pool_geometry(input, kernel_size, stride, padding, 1, ceil_mode)
    sums = _windows(input, pool, value=0.0).sum(-1)
    return sums / _avg_divisor(input, pool, count_include_pad, divisor_override)


@accepts_unbatched("(N, C, H, W)", batched=("input", "grad_output"))
def avg_pool2d_backward(
    grad_output,
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """Gradient of :func:`avg_pool2d` with respect to its input, without autograd.

    Args:
        grad_output: (N, C, H_out, W_out), the upstream gradient dL/dy.
        input: (N, C, H, W), the forward pass's input (only its shape matters).
        kernel_size, ...: as given to :func:`avg_pool2d`.

    Returns:
        (N, C, H, W) ``dL/dx``. ``y = sum(window) / divisor``, so each pixel of a window gets
        ``dL/dy / divisor``; a pixel in several overlapping windows gets the sum of those shares,
        and the shares that fall on padding are dropped.
    """
    _check_input(input)
    _check_divisor(divisor_override)
    pool = _pool_geometry(input, kernel_size, stride, padding, 1, ceil_mode)
    _check_grad_output(grad_output, pool.out, input)
    share = grad_output / _avg_divisor(input, pool, count_include_pad, divisor_override)
    # Every pixel of a window gets the window's share: the same value at each of its kH x kW taps.
    taps = share[..., None, None].expand(*share.shape, *pool.kernel)
    return fold_windows(taps, input.shape[2:], pool.stride, pool.padding)


@accepts_unbatched("(N, C, H, W)")
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """2D power-average (Lp) pooling: ``(sum over the window of x^p)^(1/p)``.

    Args:
        input: (N, C, H, W) or (C, H, W).
        norm_type: p, non-zero. p = 1 is sum pooling, p = inf max pooling of ``|x|``
            (and -inf the minimum of ``|x|``); in between, Lp pooling interpolates.
        kernel_size, stride: int or (h, w) pair; no padding. ``stride`` defaults to ``kernel_size``.
        ceil_mode: round the output size up (see the module docstring).

    Returns:
        (N, C, H_out, W_out). Computed as PyTorch does, from the average:
        ``(kH kW * avg_pool2d(x^p))^(1/p)``. So (i) ``x^p`` is not ``|x|^p``: a negative window
        sum with p not an even integer gives NaN; (ii) a partial ceil_mode window's *mean* is
        scaled by the full ``kH kW``, not its own pixel count; (iii) the sum passes through
        ``sign(s) relu(|s|)``, which is ``s`` but makes the gradient of an all-zero window 0, not NaN.
    """
    if not isinstance(norm_type, (int, float)) or norm_type == 0 or math.isnan(norm_type):
        raise ValueError(f"norm_type must be a non-zero number, got {norm_type!r}")
    _check_input(input)
    if math.isinf(norm_type):  # the limits p -> +-inf
        sign = 1 if norm_type > 0 else -1
        return sign * max_pool2d(sign * input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    kh, kw = as_pair("kernel_size", kernel_size, 1)
    mean = avg_pool2d(input.pow(norm_type), kernel_size, stride, 0, ceil_mode)
    return (torch.sign(mean) * torch.relu(mean.abs())).mul(kh * kw).pow(1.0 / norm_type)


# --- adaptive and global pooling -------------------------------------------------------------------


def _adaptive_ranges(size: int, out: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input rows (or columns) pooled by each of ``out`` adaptive windows over ``size`` pixels.

    Window ``i`` covers ``[floor(i size / out), ceil((i + 1) size / out))``: the windows tile
    the input exactly, neighbours overlap by at most one pixel, and their sizes differ by at most
    one. Returns ``(index, real)``, both (out, K) with K the largest window size: the pixels of
    each window, padded by repeating its last pixel, and which entries are real.
    """
    start = torch.tensor([i * size // out for i in range(out)], dtype=torch.int64, device=device)
    end = torch.tensor([-(-(i + 1) * size // out) for i in range(out)], dtype=torch.int64, device=device)
    k = max((end - start).tolist(), default=1)
    index = start[:, None] + torch.arange(k, device=device)
    real = index < end[:, None]
    return torch.minimum(index, end[:, None] - 1), real


def _adaptive_windows(input, output_size) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive pooling's windows: (N, C, H_out, W_out, K) values and (1, 1, H_out, W_out, K) flat
    positions in the input plane, -1 for the fillers that make all windows K = kH_max kW_max long."""
    h, w = input.shape[2:]
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        output_size = (output_size, output_size)
    try:
        sizes = tuple(output_size)
    except TypeError:
        sizes = ()
    if len(sizes) != 2:
        raise ValueError(f"output_size must be an int or an (H, W) pair (None keeps a size), got {output_size!r}")
    out_h, out_w = as_pair("output_size", (h if sizes[0] is None else sizes[0], w if sizes[1] is None else sizes[1]), 0)
    rows, rows_real = _adaptive_ranges(h, out_h, input.device)  # (H_out, kH)
    cols, cols_real = _adaptive_ranges(w, out_w, input.device)  # (W_out, kW)
    # Broadcast to (H_out, W_out, kH, kW); indexing with them gives (N, C, H_out, W_out, kH, kW).
    rows, cols = rows[:, None, :, None], cols[None, :, None, :]
    real = rows_real[:, None, :, None] & cols_real[None, :, None, :]
    windows = input[:, :, rows, cols]
    positions = torch.where(real, rows * w + cols, -1)
    return windows.flatten(-2), positions.flatten(-2)[None, None]


@accepts_unbatched("(N, C, H, W)")
def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size, whatever the input size.

    Args:
        input: (N, C, H, W) or (C, H, W).
        output_size: int or (H_out, W_out); ``None`` in the pair keeps that input size.

    Returns:
        (N, C, H_out, W_out). Output row ``i`` averages input rows ``floor(i H / H_out)`` up to,
        not including, ``ceil((i + 1) H / H_out)`` - and likewise for columns. When ``H_out``
        divides ``H`` these are ordinary windows of size and stride ``H / H_out``; otherwise
        sizes vary by one and neighbouring windows may share a row. ``output_size=1`` is global
        average pooling.
    """
    _check_input(input)
    windows, positions = _adaptive_windows(input, output_size)
    real = positions >= 0
    return torch.where(real, windows, 0.0).sum(-1) / real.sum(-1)


@accepts_unbatched("(N, C, H, W)")
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max pooling to a fixed output size, whatever the input size.

    Args:
        input: (N, C, H, W) or (C, H, W).
        output_size: int or (H_out, W_out); ``None`` in the pair keeps that input size.
        return_indices: also return where each maximum is.

    Returns:
        (N, C, H_out, W_out) maxima of the windows of :func:`adaptive_avg_pool2d` (rows
        ``floor(i H / H_out)`` to ``ceil((i + 1) H / H_out)``, exclusive); with ``return_indices``
        also their flat positions ``h W + w`` in the input plane (first maximum on ties).
    """
    _check_input(input)
    out, indices = _window_max(*_adaptive_windows(input, output_size))
    return (out, indices) if return_indices else out


def global_avg_pool2d(input, keepdim=False):
    """Global average pooling (Network in Network): one number per channel, the mean of its map.

    Args:
        input: (N, C, H, W).
        keepdim: keep the spatial axes, as size 1.

    Returns:
        (N, C), or (N, C, 1, 1) with ``keepdim``: ``y[n, c] = mean over h, w of x[n, c, h, w]``.
        It replaces flatten + fully connected layers at a classifier's top: no parameters, and
        any input size works. Same as ``adaptive_avg_pool2d(input, 1)`` (without keepdim, squeezed).
    """
    _check_input(input)
    return input.mean(dim=(2, 3), keepdim=keepdim)


# --- stochastic pooling ----------------------------------------------------------------------------


def stochastic_pool2d(input, kernel_size, stride=None, training=True, generator=None):
    """Stochastic pooling (Zeiler & Fergus, 2013): each window outputs a randomly drawn activation.

    Args:
        input: (N, C, H, W) non-negative activations (e.g. after a ReLU).
        kernel_size, stride: int or (h, w) pair; ``stride`` defaults to ``kernel_size``. No padding.
        training: draw at random (True) or return the expectation (False).
        generator: a ``torch.Generator`` on input's device, for reproducible draws.

    Returns:
        (N, C, H_out, W_out). Within a window, activation ``a_i`` gets probability
        ``p_i = a_i / sum_j a_j``. Training: one position is drawn per window with these
        probabilities and its activation is the output (so larger activations win more often,
        but not always: a regularizer like dropout); the gradient goes to the drawn pixel, as in
        max pooling. Evaluation: the expectation ``sum_i p_i a_i = sum_i a_i^2 / sum_i a_i``,
        a probability-weighted average. A window of zeros outputs 0 in both modes.
    """
    _check_input(input)
    if (input < 0).any():
        raise ValueError(f"input must be non-negative activations, got a minimum of {input.min().item()}")
    windows = _windows(input, _pool_geometry(input, kernel_size, stride, 0, 1, False), value=0.0)
    total = windows.sum(-1, keepdim=True)
    if not training:
        # An all-zero window has sum(a^2) = 0: divide it by 1, not 0, so neither it nor its gradient is NaN.
        return windows.square().sum(-1) / torch.where(total > 0, total, 1.0).squeeze(-1)
    # Draw with weights a_i (multinomial normalizes them); a window of zeros draws among equal weights.
    weights = torch.where(total > 0, windows, 1.0).detach()
    choice = torch.multinomial(weights.reshape(-1, weights.shape[-1]), 1, generator=generator)
    return windows.gather(-1, choice.view(*windows.shape[:-1], 1)).squeeze(-1)
