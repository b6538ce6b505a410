"""Checks for the backpropagation lab (lab 2) that recognise the usual mistakes and name them.

Lab 2 asks for the backward pass of a convolution (``dx``, ``dw``, ``db``), max
pooling forward with the indices of the maxima, and the backward passes of max
and average pooling. The right answers come from PyTorch's autograd, computed
here on float64 copies (:func:`conv2d_gradients`, :func:`max_pool2d_gradient`,
:func:`avg_pool2d_gradient`). A wrong answer is compared with the outputs of
known *wrong* backward passes - a kernel gradient rotated by 180 degrees, a
stride forgotten, a padding left on ``dx``, a gradient sent to every tied
maximum, an average not divided by the window, overlapping windows overwritten
instead of added up - and when it matches one of them, the ``explain_*``
function says which mistake it is (the "Likely cause" line of a test message).

Shapes: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kH, kW), ``dout`` (N,
C_out, H_out, W_out) for the convolution; (N, C, H, W) and (N, C, H_out, W_out)
for pooling. Stride, padding and dilation are ints (the same along both axes);
pooling has square ``kernel_size`` x ``kernel_size`` windows, no padding, and a
stride that defaults to the kernel size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..layers import functional as reference
from .checks import matches
from .forbid import CONVOLUTION_OPS

__all__ = [
    "BACKPROP_OPS",
    "NO_SHORTCUTS",
    "REFERENCE_FUNCTIONS",
    "avg_pool2d_gradient",
    "conv2d_gradients",
    "explain_avg_pool2d_backward",
    "explain_conv2d_db",
    "explain_conv2d_dw",
    "explain_conv2d_dx",
    "explain_max_pool2d_backward",
    "explain_max_pool2d_indices",
    "explain_max_pool2d_values",
    "max_pool2d_gradient",
]

NO_SHORTCUTS = (
    "Lab 2 asks you to compute the gradients yourself, from the chain rule: autograd (.backward(), "
    "torch.autograd, torch.func), torch.nn.grad, library convolutions and pooling, F.fold and course_lib's "
    "own backward passes are not allowed in your answer."
)

# course_lib's reference implementations: the answers a student must not call (or copy).
REFERENCE_FUNCTIONS = (
    reference.conv2d_backward,
    reference.col2im,
    reference.max_pool2d,
    reference.max_pool2d_backward,
    reference.avg_pool2d_backward,
    reference.conv_transpose2d,
)

# ATen operators a shortcut ends in, whatever name it was called by (see course_lib.grading.forbid).
BACKPROP_OPS = {
    **CONVOLUTION_OPS,
    "convolution_backward": "torch.nn.grad.conv2d_input / conv2d_weight (or autograd through a library convolution)",
    "max_pool2d_with_indices": "torch.nn.functional.max_pool2d or nn.MaxPool2d",
    "max_pool2d_with_indices_backward": "PyTorch's max pooling backward",
    "max_pool3d_with_indices": "torch.nn.functional.max_pool3d",
    "max_unpool2d": "torch.nn.functional.max_unpool2d",
    "adaptive_max_pool2d": "torch.nn.functional.adaptive_max_pool2d",
    "fractional_max_pool2d": "torch.nn.functional.fractional_max_pool2d",
    "avg_pool2d": "torch.nn.functional.avg_pool2d or nn.AvgPool2d",
    "avg_pool2d_backward": "PyTorch's average pooling backward",
    "avg_pool3d": "torch.nn.functional.avg_pool3d",
    "_adaptive_avg_pool2d": "torch.nn.functional.adaptive_avg_pool2d",
}


# --- the right answers, by autograd ----------------------------------------------------------------


def conv2d_gradients(dout, x, weight, stride=1, padding=0, dilation=1):
    """``(dx, dw, db)`` of ``y = F.conv2d(x, weight, bias, stride, padding, dilation)`` for ``dL/dy = dout``.

    Computed by PyTorch's autograd on float64 copies: dx (N, C_in, H, W), dw (C_out, C_in, kH, kW), db (C_out,).
    """
    with torch.enable_grad():
        x = x.detach().double().requires_grad_()
        w = weight.detach().double().requires_grad_()
        b = torch.zeros(weight.shape[0], dtype=torch.float64, requires_grad=True)
        y = F.conv2d(x, w, b, stride, padding, dilation)
        return torch.autograd.grad(y, (x, w, b), dout.detach().double())


def _stride(kernel_size, stride):
    return kernel_size if stride is None else stride


def max_pool2d_gradient(dout, x, kernel_size, stride=None):
    """dL/dx (N, C, H, W) of ``F.max_pool2d(x, kernel_size, stride)`` for ``dL/dy = dout``, by autograd (float64)."""
    with torch.enable_grad():
        x = x.detach().double().requires_grad_()
        y = F.max_pool2d(x, kernel_size, _stride(kernel_size, stride))
        (dx,) = torch.autograd.grad(y, x, dout.detach().double())
        return dx


def avg_pool2d_gradient(dout, x_shape, kernel_size, stride=None):
    """dL/dx (of shape ``x_shape``) of ``F.avg_pool2d(x, kernel_size, stride)`` for ``dL/dy = dout``, by autograd."""
    with torch.enable_grad():
        x = torch.zeros(tuple(x_shape), dtype=torch.float64, requires_grad=True)
        y = F.avg_pool2d(x, kernel_size, _stride(kernel_size, stride))
        (dx,) = torch.autograd.grad(y, x, dout.detach().double())
        return dx


# --- wrong backward passes of the convolution ------------------------------------------------------


def _dx_padded(dout, weight, padded_size, stride, dilation):
    """Gradient with respect to the *padded* input, (N, C_in, H + 2P, W + 2P), when window (i, j) starts at
    (i * stride, j * stride) and its taps are ``dilation`` apart: what a loop that adds ``dout[n, o, i, j] *
    weight[o]`` back onto the pixels of each window computes (right for the true stride and dilation)."""
    g = F.conv_transpose2d(dout, weight, stride=stride, dilation=dilation)
    hp, wp = padded_size
    out = g.new_zeros(*g.shape[:2], hp, wp)
    h, w = min(hp, g.shape[2]), min(wp, g.shape[3])
    out[..., :h, :w] = g[..., :h, :w]
    return out


def _transposed(dout, weight, **settings):
    """``F.conv_transpose2d(dout, weight, **settings)``, or None when those settings give no output."""
    try:
        return F.conv_transpose2d(dout, weight, **settings)
    except RuntimeError:
        return None


def _crop(t, p):
    return t[..., p:t.shape[2] - p, p:t.shape[3] - p]


def _known_dx_mistakes(dout, x, weight, stride, padding, dilation) -> Iterator[tuple[str, torch.Tensor | None]]:
    """(description, output) of the wrong input gradients a student's ``dx`` is compared with."""
    p, s, d = padding, stride, dilation
    dout, weight = dout.double(), weight.double()
    padded = (x.shape[2] + 2 * p, x.shape[3] + 2 * p)
    right = _dx_padded(dout, weight, padded, s, d)
    if p > 0:  # (the padded shape itself is recognised by explain_conv2d_dx)
        height, width = x.shape[2:]
        yield (f"padding cropped on one side only: you kept the top-left {height} x {width} of the padded gradient; "
               f"crop {p} row(s) and column(s) from every side"), right[..., :height, :width]
        yield (f"padding cropped on one side only: you kept the bottom-right {height} x {width} of the padded "
               f"gradient; crop {p} row(s) and column(s) from every side"), right[..., 2 * p:, 2 * p:]
    yield ("kernel rotated the wrong way: your dx is the one of the kernel rotated by 180 degrees. dx is the full "
           "correlation of dout with the ROTATED kernel - or, without any rotation, each dout[n, o, i, j] * "
           "w[o, :, u, v] goes back onto the pixel that tap (u, v) of window (i, j) read"),\
        _crop(_dx_padded(dout, weight.flip(-1, -2), padded, s, d), p)
    if s > 1:
        why = (f"stride ignored: dout was not spread out by the stride. Window (i, j) starts at (i*{s}, j*{s}), so "
               f"its gradient goes back there; in the full-correlation view, insert {s - 1} zero(s) between "
               "neighbouring entries of dout (dilate it by the stride) before correlating")
        yield why, _crop(_dx_padded(dout, weight, padded, 1, d), p)
        yield why, _transposed(dout, weight, stride=1, padding=p, dilation=d)
    if d > 1:
        why = (f"dilation ignored: the kernel's taps read pixels {d} apart in the forward pass, so their "
               f"gradients go back to pixels {d} apart (dilate the kernel in dx's correlation too)")
        yield why, _crop(_dx_padded(dout, weight, padded, s, 1), p)
        yield why, _transposed(dout, weight, stride=s, padding=p, dilation=1)


def explain_conv2d_dx(actual, dout, x, weight, stride=1, padding=0, dilation=1) -> str | None:
    """The known mistake whose input gradient ``actual`` matches, or None.

    Besides the outputs of :func:`_known_dx_mistakes`, two shapes are recognised: the padded input's shape
    with the right answer inside (padding not cropped, whatever the border holds), and x's shape short of
    the last rows or columns that no window reads (a stride that does not divide the input evenly).
    """
    if not isinstance(actual, torch.Tensor) or actual.dim() != 4:
        return None
    right = conv2d_gradients(dout, x, weight, stride, padding, dilation)[0]
    p = padding
    if p > 0 and tuple(actual.shape) == (*x.shape[:2], x.shape[2] + 2 * p, x.shape[3] + 2 * p):
        if matches(_crop(actual, p), right):
            return (f"padding not cropped: your dx has the padded input's shape {tuple(actual.shape)} and the right "
                    f"gradient inside; crop {p} row(s) and column(s) from every side so that dx has x's shape "
                    f"{tuple(x.shape)}")
    # A stride that does not divide evenly leaves r rows (columns) of the padded input, at the bottom (right),
    # that no window reads: a full correlation of the dilated dout does not produce them.
    kh, kw = weight.shape[2:]
    h_out, w_out = dout.shape[2:]
    rows = x.shape[2] + 2 * p - ((h_out - 1) * stride + dilation * (kh - 1) + 1)
    cols = x.shape[3] + 2 * p - ((w_out - 1) * stride + dilation * (kw - 1) + 1)
    if (rows or cols) and min(x.shape[2] - rows, x.shape[3] - cols) > 0 \
            and matches(actual, right[..., :x.shape[2] - rows, :x.shape[3] - cols]):
        short = " and ".join(([f"the last {rows} row(s)"] if rows else [])
                             + ([f"the last {cols} column(s)"] if cols else []))
        return (f"the last rows or columns are missing: your dx lacks {short} of x. With stride {stride}, that many "
                "rows or columns at the end of the padded input are read by no window, so the full correlation "
                "does not produce them; they still belong to the input, with gradient 0: append them as zeros "
                "before cropping the padding")
    for description, wrong in _known_dx_mistakes(dout, x, weight, stride, padding, dilation):
        if wrong is not None and matches(actual, wrong):
            return description
    return None


def _dw_from_windows(dout, x, weight, padding, stride, dilation):
    """sum over n, i, j of dout[n, o, i, j] * x_pad[n, c, i*stride + u*dilation, j*stride + v*dilation]:
    dw when window (i, j) starts at (i*stride, j*stride) with taps ``dilation`` apart (right for the true
    stride and dilation), or None when those windows do not fit."""
    kh, kw = weight.shape[2:]
    h_out, w_out = dout.shape[2:]
    xp = F.pad(x.double(), (padding,) * 4)
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    if span_h > xp.shape[2] or span_w > xp.shape[3]:
        return None
    windows = xp.unfold(2, span_h, stride).unfold(3, span_w, stride)[..., ::dilation, ::dilation]
    if windows.shape[2] < h_out or windows.shape[3] < w_out:
        return None
    return torch.einsum("nohw,nchwuv->ocuv", dout.double(), windows[:, :, :h_out, :w_out])


def _known_dw_mistakes(dout, x, weight, stride, padding, dilation) -> Iterator[tuple[str, torch.Tensor | None]]:
    """(description, output) of the wrong weight gradients a student's ``dw`` is compared with."""
    right = conv2d_gradients(dout, x, weight, stride, padding, dilation)[1]
    yield ("dw is rotated by 180 degrees: you correlated dout with x (input and gradient swapped), or rotated "
           "as in dx's formula. dw is the correlation of x with dout: dw[o, c, u, v] = sum over n, i, j of "
           f"dout[n, o, i, j] * x_pad[n, c, i*S + u*D, j*S + v*D] (here S = {stride}, D = {dilation})"),\
        right.flip(-1, -2)
    if x.shape[0] > 1:
        yield (f"dw is averaged over the batch ({x.shape[0]} times too small): the loss adds up every sample's "
               "contribution, so sum over n, do not average"), right / x.shape[0]
    yield ("dw has its first two axes swapped: it must have weight's shape (C_out, C_in, kH, kW), "
           "dw[o, c] pairing output channel o with input channel c"), right.transpose(0, 1)
    if stride > 1:
        yield (f"stride ignored in dw: tap (u, v) of window (i, j) read x_pad[i*S + u*D, j*S + v*D], not "
               f"x_pad[i + u*D, j + v*D] (here S = {stride}, D = {dilation})"),\
            _dw_from_windows(dout, x, weight, padding, 1, dilation)
    if dilation > 1:
        yield (f"dilation ignored in dw: the kernel's taps read pixels {dilation} apart, so tap (u, v) pairs "
               f"dout with x_pad[i*S + u*D, j*S + v*D], not x_pad[i*S + u, j*S + v] (here S = {stride}, "
               f"D = {dilation})"),\
            _dw_from_windows(dout, x, weight, padding, stride, 1)


def explain_conv2d_dw(actual, dout, x, weight, stride=1, padding=0, dilation=1) -> str | None:
    """The known mistake whose weight gradient ``actual`` matches, or None."""
    for description, wrong in _known_dw_mistakes(dout, x, weight, stride, padding, dilation):
        if wrong is not None and matches(actual, wrong):
            return description
    return None


def explain_conv2d_db(actual, dout) -> str | None:
    """The known mistake whose bias gradient ``actual`` matches, or None: sums over the wrong axes
    (recognised by the shape they give), or a mean instead of a sum."""
    dout = dout.double()
    n = dout.shape[0]
    wrong = [
        ("db summed over H and W only: sum over the batch axis N too (db has one value per output channel, "
         "shape (C_out,))", dout.sum(dim=(2, 3))),
        ("db summed over N only: sum over H and W too (db has one value per output channel, shape (C_out,))",
         dout.sum(dim=0)),
        ("db summed over the channels: sum dout over N, H and W (axes 0, 2, 3), keeping the channel axis 1",
         dout.sum(dim=(1, 2, 3))),
        ("db summed over every axis: keep the channel axis, sum over N, H and W only", dout.sum()),
        ("db is a mean, not a sum: every position of every sample adds b[o] to the output, so db[o] adds up "
         "dout[n, o, i, j] over n, i and j", dout.mean(dim=(0, 2, 3))),
    ]
    if n > 1:
        wrong.append((f"db is averaged over the batch ({n} times too small): sum over n, do not average",
                      dout.sum(dim=(0, 2, 3)) / n))
    for description, output in wrong:
        if matches(actual, output):
            return description
    return None


# --- wrong max pooling ------------------------------------------------------------------------------


def _windows(x, k, s):
    """Every k x k window of x (N, C, H, W), flattened row-major: (N, C, H_out, W_out, k*k)."""
    windows = x.unfold(2, k, s).unfold(3, k, s)
    return windows.reshape(*windows.shape[:4], k * k)


def _window_argmax(x, k, s, last=False):
    """Position (0 .. k*k - 1, row-major) of each window's first (or last) maximum: (N, C, H_out, W_out)."""
    windows = _windows(x.double(), k, s)
    ties = (windows == windows.amax(-1, keepdim=True)).to(torch.uint8)
    if last:
        return k * k - 1 - ties.flip(-1).argmax(-1)
    return ties.argmax(-1)


def _plane_index(position, k, s, width):
    """Flat position h * width + w in the input plane of window position ``position`` (N, C, H_out, W_out)."""
    h_out, w_out = position.shape[2:]
    i = torch.arange(h_out).view(-1, 1)
    j = torch.arange(w_out).view(1, -1)
    return (i * s + position // k) * width + (j * s + position % k)


def explain_max_pool2d_values(actual, x, kernel_size, stride=None) -> str | None:
    """The known mistake whose pooled values ``actual`` match, or None (a stride read wrongly)."""
    k, s = kernel_size, _stride(kernel_size, stride)
    x = x.double()
    if s != 1 and matches(actual, F.max_pool2d(x, k, 1)):
        if stride is None:
            return (f"stride=None read as stride 1: your output is max pooling with stride 1; stride=None means "
                    f"stride = kernel_size = {k}, windows side by side")
        return f"stride ignored: your output is max pooling with stride 1 instead of {s}"
    if s != k and matches(actual, F.max_pool2d(x, k, k)):
        return f"stride ignored: your output is max pooling with stride = kernel_size = {k} instead of {s}"
    return None


def explain_max_pool2d_indices(actual, x, kernel_size, stride=None) -> str | None:
    """The known mistake whose indices ``actual`` match, or None."""
    k, s = kernel_size, _stride(kernel_size, stride)
    n, c, h, w = x.shape
    first = _window_argmax(x, k, s)
    right = _plane_index(first, k, s, w)
    channel = torch.arange(n * c).view(n, c, 1, 1)
    rows, cols = right // w, right % w
    wrong = [
        ("on a tie you return the LAST maximum of the window; keep the FIRST one in row-major order (top row first, "
         "left to right), as PyTorch does", _plane_index(_window_argmax(x, k, s, last=True), k, s, w)),
        (f"your indices are positions inside each window (0 to {k * k - 1}); return the flat position "
         "row * W + col of the maximum in its H x W input plane", first),
        ("your indices count over the whole tensor; return the flat position row * W + col of the maximum in "
         "its own H x W plane (0 to H*W - 1, the same range for every sample and channel)", channel * h * w + right),
        ("your indices are column-major (col * H + row); return row * W + col", cols * h + rows),
    ]
    for description, output in wrong:
        if matches(actual, output):
            return description
    return None


# --- wrong pooling backward passes ------------------------------------------------------------------


def _fold(taps, size, s):
    """Add each window's k x k ``taps`` (N, C, H_out, W_out, k, k) onto the pixels of a (N, C, *size) plane
    that the window covers (window (i, j) starts at (i*s, j*s)); None when the windows do not fit."""
    h_out, w_out, k = taps.shape[2], taps.shape[3], taps.shape[4]
    if (h_out - 1) * s + k > size[0] or (w_out - 1) * s + k > size[1]:
        return None
    out = taps.new_zeros(*taps.shape[:2], *size)
    for u in range(k):
        for v in range(k):
            out[:, :, u:u + s * (h_out - 1) + 1:s, v:v + s * (w_out - 1) + 1:s] += taps[..., u, v]
    return out


def _overwritten(values, plane_index, size, last_wins=True):
    """Write ``values`` (N, C, H_out, W_out) at flat plane positions ``plane_index`` (N, C, H_out, W_out, m), each
    write replacing what was there: overlapping windows overwritten instead of added up. With ``last_wins`` a
    pixel keeps the value of the last window that covers it in row-major order (a loop over the windows that
    assigns); otherwise the first one (a loop over the taps (u, v) of all windows at once that assigns)."""
    n, c, h_out, w_out, m = plane_index.shape
    out = values.new_zeros(n, c, size[0] * size[1])
    order = [(i, j) for i in range(h_out) for j in range(w_out)]
    for i, j in order if last_wins else reversed(order):
        out.scatter_(2, plane_index[:, :, i, j], values[:, :, i, j, None].expand(n, c, m).contiguous())
    return out.view(n, c, *size)


def _known_max_backward_mistakes(dout, x, k, s) -> Iterator[tuple[str, torch.Tensor | None]]:
    dout, x = dout.double(), x.double()
    size = tuple(x.shape[2:])
    windows = _windows(x, k, s)
    ties = windows == windows.amax(-1, keepdim=True)
    taps = lambda weights: _fold(weights.reshape(*weights.shape[:4], k, k), size, s)  # noqa: E731
    yield ("gradient sent to every tied maximum: when several pixels of a window share its maximum, only the "
           "first one (in row-major order, the index max_pool2d_forward returns) gets the window's gradient"),\
        taps(ties * dout[..., None])
    yield ("gradient split among the tied maxima: only the first maximum of a window (row-major order, the index "
           "max_pool2d_forward returns) gets the window's gradient, all of it"),\
        taps(ties * (dout / ties.sum(-1))[..., None])
    last = F.one_hot(_window_argmax(x, k, s, last=True), k * k)
    yield ("on a tie the gradient goes to the LAST maximum of the window; it must go to the FIRST one in "
           "row-major order (the index max_pool2d_forward returns)"), taps(last * dout[..., None])
    if s < k:
        index = _plane_index(_window_argmax(x, k, s), k, s, size[1])
        why = ("overlapping windows overwritten instead of accumulated: a pixel that is the maximum of several "
               "windows must receive the SUM of their gradients (+=, index_add_ or scatter_add_), not only one of them")
        yield why, _overwritten(dout, index[..., None], size)
        yield why, _overwritten(dout, index[..., None], size, last_wins=False)
    yield ("gradient spread over the whole window: max pooling sends each output's gradient to its window's "
           "maximum only (average pooling is the one that spreads it)"), taps(dout[..., None].expand(windows.shape))


def explain_max_pool2d_backward(actual, dout, x, kernel_size, stride=None) -> str | None:
    """The known mistake whose input gradient ``actual`` matches, or None."""
    k, s = kernel_size, _stride(kernel_size, stride)
    for description, wrong in _known_max_backward_mistakes(dout, x, k, s):
        if wrong is not None and matches(actual, wrong):
            return description
    return None


def _known_avg_backward_mistakes(dout, x_shape, k, s) -> Iterator[tuple[str, torch.Tensor | None]]:
    dout = dout.double()
    size = tuple(x_shape[2:])
    right = avg_pool2d_gradient(dout, x_shape, k, s)
    if k > 1:
        yield (f"not divided by the window: your dx is k*k = {k * k} times too large. Each output is the mean of "
               f"its {k * k} pixels, so each of them receives dout / (k*k)"), right * (k * k)
        yield (f"divided by k = {k} instead of k*k = {k * k}: a {k} x {k} window holds {k * k} pixels"), right * k
    share = (dout / (k * k))[..., None, None].expand(*dout.shape, k, k)
    if s < k:
        h_out, w_out = dout.shape[2:]
        u = torch.arange(k).view(k, 1)
        v = torch.arange(k).view(1, k)
        i = torch.arange(h_out).view(-1, 1, 1, 1)
        j = torch.arange(w_out).view(1, -1, 1, 1)
        index = ((i * s + u) * size[1] + (j * s + v)).reshape(1, 1, h_out, w_out, k * k).expand(*dout.shape, k * k)
        why = ("overlapping windows overwritten instead of accumulated: a pixel in several windows must receive "
               "the SUM of their shares (+=), not only one of them")
        yield why, _overwritten(dout / (k * k), index, size)
        yield why, _overwritten(dout / (k * k), index, size, last_wins=False)
    if s != 1:
        yield (f"stride ignored: window (i, j) covers the pixels from (i*{s}, j*{s}) on, so its share goes there, "
               "not to the pixels from (i, j) on"), _fold(share, size, 1)


def explain_avg_pool2d_backward(actual, dout, x_shape, kernel_size, stride=None) -> str | None:
    """The known mistake whose input gradient ``actual`` matches, or None."""
    k, s = kernel_size, _stride(kernel_size, stride)
    for description, wrong in _known_avg_backward_mistakes(dout, x_shape, k, s):
        if wrong is not None and matches(actual, wrong):
            return description
    return None
