"""The arithmetic of sliding windows, stated once.

Convolution, pooling, their backward passes, the transposed convolution, the
receptive-field calculator and the model builders all slide a window of
``K`` taps, ``D`` pixels apart (dilation), in steps of ``S`` (stride) over an
axis of ``W`` pixels padded by ``P_b`` pixels before and ``P_a`` after. Tap
``u`` of window ``i`` reads pixel ``i S + u D`` of the padded axis, so one
window covers ``D (K - 1) + 1`` pixels and there are

.. math::

    W_\\text{out} = \\left\\lfloor \\frac{W + P_b + P_a - D (K - 1) - 1}{S} \\right\\rfloor + 1

windows: with ``P_b = P_a = P`` and ``D = 1``, the familiar ``(W - K + 2P) / S + 1``.
Pooling's ``ceil_mode`` rounds up instead - one more, partial, window where
the last one would leave pixels unseen - but, as in PyTorch, a window must
start inside the input or the padding before it (``(W_out - 1) S < W + P_b``).

The transposed convolution runs the rule backwards,

.. math::

    W_\\text{out} = (W - 1) S - 2P + D (K - 1) + \\text{output\\_padding} + 1,

and "same" padding is the ``D (K - 1)`` pixels that make ``W_out = W`` at stride 1.

The layers (``course_lib.layers.functional``) and the receptive-field
calculator take every size from :func:`output_size`,
:func:`transposed_output_size` and :func:`same_padding`, and every window
from :func:`sliding_windows`; :func:`fold_windows`, its adjoint, adds window
entries back onto the pixels they were read from (im2col and col2im are the
two, flattened).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import Pair, check_flag, check_int

__all__ = ["fold_windows", "output_size", "same_padding", "sliding_windows", "transposed_output_size"]


def _span(kernel_size: int, dilation: int) -> int:
    """Pixels one window covers: its K taps, D pixels apart."""
    return dilation * (kernel_size - 1) + 1


def _check_axis(in_size, kernel_size, stride, padding, dilation) -> None:
    """The ints that describe windows sliding along one axis are in range (ValueError naming the one that is not)."""
    for arg, value, least in (
        ("in_size", in_size, 1),
        ("kernel_size", kernel_size, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        check_int(arg, value, least)


def output_size(
    in_size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    *,
    padding_after: int | None = None,
    ceil_mode: bool = False,
) -> int:
    """Number of windows along one axis: the spatial size of a convolution's or pooling's output.

    .. math::

        W_\\text{out} = \\left\\lfloor \\frac{W_\\text{in} + P + P_\\text{after} - D (K - 1) - 1}{S} \\right\\rfloor + 1

    Args:
        in_size: ``W_in``, pixels along the axis before padding.
        kernel_size, stride, dilation: ``K``, ``S``, ``D``.
        padding: pixels added before the first pixel, and after the last unless
            ``padding_after`` is given (PyTorch's "same" padding of an even
            kernel puts one more after).
        ceil_mode: round up instead of down, except that a window starting in
            the padding after the input is dropped (PyTorch's pooling rule).
            The last window may then reach up to ``S - 1`` pixels past the
            padded input.

    Raises ``ValueError`` naming the argument that is out of range, or when the
    (dilated) kernel does not fit into the padded input (in ceil mode: not
    even with ``S - 1`` more pixels).
    """
    _check_axis(in_size, kernel_size, stride, padding, dilation)
    if padding_after is None:
        padding_after, padded = padding, f"{in_size} + 2*{padding}"
    else:
        check_int("padding_after", padding_after, 0)
        padded = f"{in_size} + {padding} + {padding_after}"
    check_flag("ceil_mode", ceil_mode)
    span = _span(kernel_size, dilation)
    room = in_size + padding + padding_after - span  # how far the first window can move
    if ceil_mode:
        windows = -(-room // stride) + 1
        if (windows - 1) * stride >= in_size + padding:  # the last window would start in the padding after
            windows -= 1
    else:
        windows = room // stride + 1
    if windows < 1:
        overhang = f" plus stride - 1 = {stride - 1} (ceil_mode)" if ceil_mode else ""
        raise ValueError(
            f"kernel_size {kernel_size} with dilation {dilation} spans {span} pixels, "
            f"more than the padded input ({padded} = {in_size + padding + padding_after}){overhang}"
        )
    return windows


def same_padding(kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """Padding (before, after) that keeps an axis's length at stride 1: ``D (K - 1)`` pixels in all.

    When the total is odd the extra pixel goes after (right / bottom), as in
    PyTorch's ``padding="same"``. At stride ``S`` the same padding gives
    ``ceil(W / S)`` outputs.
    """
    check_int("kernel_size", kernel_size, 1)
    check_int("dilation", dilation, 1)
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


def transposed_output_size(
    in_size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output length of a transposed convolution (or max unpooling) along one axis.

    .. math:: W_\\text{out} = (W_\\text{in} - 1) S - 2P + D (K - 1) + \\text{output\\_padding} + 1

    It inverts :func:`output_size`: a stride-``S`` convolution maps up to ``S``
    input lengths to the same output length, and ``output_padding`` (smaller
    than the stride or the dilation, as PyTorch requires) picks which one to
    return to. The result is below 1 when the padding removes more than the
    kernel adds; callers decide what they accept (a transposed convolution
    needs 1, max unpooling 0).

    Raises ``ValueError`` naming the argument that is out of range.
    """
    _check_axis(in_size, kernel_size, stride, padding, dilation)
    check_int("output_padding", output_padding, 0)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding must be smaller than either stride or dilation, "
            f"got output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    return (in_size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def _reach(windows: int, kernel_size: int, stride: int, dilation: int) -> int:
    """Pixels from the first window's first tap to the last window's last tap."""
    return (windows - 1) * stride + _span(kernel_size, dilation)


def sliding_windows(
    x: torch.Tensor,
    kernel_size: Pair,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    *,
    ceil_mode: bool = False,
    value: float = 0.0,
) -> torch.Tensor:
    """Every window over the last two axes of ``x``: (..., H, W) -> (..., H_out, W_out, kH, kW).

    Args:
        x: (..., H, W), e.g. (N, C, H, W).
        kernel_size, stride, padding, dilation: (h, w) pairs.
        ceil_mode: count windows as :func:`output_size` does with ``ceil_mode``.
        value: what the padding holds (0 for a convolution, -inf for max pooling).

    Returns:
        ``windows[..., i, j, u, v] = x_pad[..., i S_h + u D_h, j S_w + v D_w]``,
        where ``x_pad`` is ``x`` padded with ``value`` by ``padding`` on every
        side, and in ceil mode further right and bottom as far as the last
        window reaches. ``H_out, W_out`` are :func:`output_size`'s, which
        checks that the kernel fits.

    A view of the padded input, no copy (``Tensor.unfold``): windows that
    overlap share memory. Whoever reshapes it to a matrix (im2col) copies
    ``kH kW / (S_h S_w)`` times the input.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    h, w = x.shape[-2:]
    h_out = output_size(h, kh, sh, ph, dh, ceil_mode=ceil_mode)
    w_out = output_size(w, kw, sw, pw, dw, ceil_mode=ceil_mode)
    if ph or pw or ceil_mode:
        # After the input: the padding, or in ceil mode as far as the last window reaches.
        bottom = max(ph, _reach(h_out, kh, sh, dh) - h - ph)
        right = max(pw, _reach(w_out, kw, sw, dw) - w - pw)
        x = F.pad(x, (pw, right, ph, bottom), value=value)
    # unfold takes every run of span neighbouring pixels; every D-th pixel of a run is a tap.
    windows = x.unfold(-2, _span(kh, dh), sh).unfold(-2, _span(kw, dw), sw)
    return windows[..., ::dh, ::dw]


def fold_windows(
    windows: torch.Tensor, size: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1)
) -> torch.Tensor:
    """The adjoint of :func:`sliding_windows`: add every window entry back onto the pixel it was read from.

    Args:
        windows: (..., H_out, W_out, kH, kW), laid out as :func:`sliding_windows` returns them
            (a broadcast view is fine: expand a value to every tap of its window).
        size: (H, W) of the input the windows were read from, before padding.
        stride, padding, dilation: (h, w) pairs, as given to :func:`sliding_windows`.

    Returns:
        (..., H, W): pixel ``p`` receives the sum of the entries read from it
        (one per window it lies in: none where a stride skips it); entries read
        from the padding are dropped. So ``<sliding_windows(x), w> = <x,
        fold_windows(w)>``: this is how gradients flow back through windows.
        (``F.fold`` computes the same on im2col's layout.)
    """
    *batch, h_out, w_out, kh, kw = windows.shape
    (h, w), (sh, sw), (ph, pw), (dh, dw) = size, stride, padding, dilation
    # Room for every tap: the padded input, or more where ceil mode's last window reaches past it.
    image = windows.new_zeros(
        *batch, max(h + 2 * ph, _reach(h_out, kh, sh, dh)), max(w + 2 * pw, _reach(w_out, kw, sw, dw))
    )
    # Tap (u, v) of all windows reads a strided grid of pixels, so one slice-add per tap returns
    # them all. Taps of overlapping windows meet on the same pixel, which is why this adds (add_ on
    # the slice: `+=` would then also copy the slice onto itself).
    for u in range(kh):
        for v in range(kw):
            rows = slice(u * dh, u * dh + (h_out - 1) * sh + 1, sh)
            cols = slice(v * dw, v * dw + (w_out - 1) * sw + 1, sw)
            image[..., rows, cols].add_(windows[..., u, v])
    return image[..., ph : ph + h, pw : pw + w]
