"""The backward pass of a convolution, written out by hand (Lab 2).

Forward (cross-correlation, as :func:`course_lib.layers.functional.conv.conv2d`),
with ``X`` the padded input:

.. math::

    Y[n, o, i, j] = b[o] + \\sum_{c, u, v} X[n, c, iS + uD, jS + vD] \\; W[o, c, u, v]

Given the upstream gradient ``dY = dL/dY`` (same shape as Y), the chain rule gives

.. math::

    db[o] &= \\sum_{n, i, j} dY[n, o, i, j] \\\\
    dW[o, c, u, v] &= \\sum_{n, i, j} dY[n, o, i, j] \\; X[n, c, iS + uD, jS + vD] \\\\
    dX[n, c, p, q] &= \\sum_{o, u, v, i, j:\\; iS + uD = p,\\; jS + vD = q} dY[n, o, i, j] \\; W[o, c, u, v]

(channel sums restricted to one group). In words: ``dW`` is the
cross-correlation of the padded input with ``dY`` (``dY`` used as the kernel,
with dilation S and stride D, cropped to kH x kW when a stride skips the last
rows); ``dX`` is the *full* convolution of ``dY`` (S - 1 zeros inserted
between its pixels) with the spatially flipped kernel, minus the padding's
border - a transposed convolution. With im2col the forward is one matrix
product per group, ``Y = W X_col``, so the backward is two matrix products,
``dW = dY X_col^T`` and ``dX_col = W^T dY``, and col2im takes ``dX_col``
back to image layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import Pair, accepts_unbatched, check_rank
from ..geometry import fold_windows, output_size, sliding_windows
from .conv import _check_conv2d_args, _columns

__all__ = ["col2im", "conv2d_backward"]


def col2im(
    cols: torch.Tensor, input_size: Pair, kernel_size: Pair, stride: Pair = (1, 1), dilation: Pair = (1, 1)
) -> torch.Tensor:
    """Scatter-add columns back into an image: the adjoint of :func:`~course_lib.layers.functional.conv.im2col`.

    Args:
        cols: (N, C * kH * kW, H_out * W_out), laid out as im2col makes them:
            rows ordered (c, u, v), columns the output positions, row-major.
        input_size: (H, W) of the (padded) image that im2col read.
        kernel_size, stride, dilation: (h, w) pairs, as given to im2col.

    Returns:
        (N, C, H, W): every entry of ``cols`` *added* to the pixel im2col
        copied it from. A pixel in k receptive fields receives the sum of
        k entries; a pixel in none (rows/columns the stride skips) stays 0.
        So ``<im2col(x), cols> = <x, col2im(cols)>``, and ``col2im(dX_col)``
        is the gradient with respect to the image. (``F.fold`` computes the
        same.)
    """
    check_rank("cols", cols, 3, "(N, C * kH * kW, H_out * W_out)")
    kh, kw = kernel_size
    h_out, w_out = (output_size(size, k, s, 0, d) for size, k, s, d in zip(input_size, kernel_size, stride, dilation))
    n, rows, length = cols.shape
    if rows % (kh * kw) or length != h_out * w_out:
        raise ValueError(
            f"cols must have shape (N, C * kH * kW, H_out * W_out) with kH * kW = {kh * kw} and "
            f"H_out * W_out = {h_out} * {w_out} = {h_out * w_out}, got shape {tuple(cols.shape)}"
        )
    # (N, C kH kW, L) -> (N, C, H_out, W_out, kH, kW): back to the windows im2col flattened.
    windows = cols.reshape(n, rows // (kh * kw), kh, kw, h_out, w_out).permute(0, 1, 4, 5, 2, 3)
    return fold_windows(windows, input_size, stride, dilation=dilation)


@accepts_unbatched("(N, C_in, H, W)", batched=("input", "grad_output"), results=(0,))
def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of :func:`~course_lib.layers.functional.conv.conv2d` with respect to input, weight and bias.

    Args:
        grad_output: dL/dY, (N, C_out, H_out, W_out) - the shape of the forward's output.
        input: the forward's input X, (N, C_in, H, W).
        weight: the forward's weight W, (C_out, C_in / groups, kH, kW).
        stride, padding, dilation, groups: the forward's settings (padding may be an int,
            an (h, w) pair, ``"same"`` or ``"valid"``).

    Returns:
        ``(grad_input, grad_weight, grad_bias)`` of shapes (N, C_in, H, W),
        (C_out, C_in / groups, kH, kW) and (C_out,) - the module docstring
        has the formulas. ``grad_bias`` is returned even if the forward had
        no bias; the bias itself is not needed, since Y depends on it additively.

    What the forward must cache: the input (or its im2col columns, which
    this recomputes), the weight, and the settings. Nothing about the bias.

    Computed from the formulas, without autograd: im2col of the padded input
    and one matrix product per group for ``grad_weight``; for
    ``grad_input``, the transposed matrix product gives the gradient of every
    column entry, and :func:`col2im` adds each back onto the pixel it was
    copied from (chosen over ``conv_transpose2d`` because it shows where the
    sum over overlapping windows comes from). Input pixels that no window
    reads (bottom/right rows a stride skips) get gradient 0; the gradient
    that lands on the padding is dropped.
    """
    stride, dilation, (left, right, top, bottom) = _check_conv2d_args(
        input, weight, None, stride, padding, dilation, groups
    )
    c_out, c_per_group, kh, kw = weight.shape
    x = F.pad(input, (left, right, top, bottom))
    windows = sliding_windows(x, (kh, kw), stride, dilation=dilation)  # (N, C_in, H_out, W_out, kH, kW)
    h_out, w_out = windows.shape[2:4]
    cols = _columns(windows)  # (N, C_in kH kW, L): im2col, the forward's X_col
    n, rows, length = cols.shape
    expected = (n, c_out, h_out, w_out)
    if not isinstance(grad_output, torch.Tensor) or tuple(grad_output.shape) != expected:
        got = tuple(grad_output.shape) if isinstance(grad_output, torch.Tensor) else type(grad_output).__name__
        raise ValueError(
            f"grad_output must have the forward output's shape (N, C_out, H_out, W_out) = {expected}, got {got}"
        )

    # Group g: Y_g = W_g X_col_g with W_g (C_out/g, C_in/g kH kW), X_col_g (C_in/g kH kW, L) per image.
    cols = cols.reshape(n, groups, rows // groups, length)
    w = weight.reshape(groups, c_out // groups, c_per_group * kh * kw)
    dy = grad_output.reshape(n, groups, c_out // groups, length)

    grad_bias = grad_output.sum(dim=(0, 2, 3))
    # dW_g = sum over images of dY_g X_col_g^T.
    grad_weight = torch.einsum("ngol,ngkl->gok", dy, cols).reshape(weight.shape)
    # dX_col_g = W_g^T dY_g; col2im sums each entry onto the pixel it was copied from (rather than
    # conv_transpose2d, which computes the same but hides where the sum over windows comes from).
    # Finally drop the gradient of the padding.
    grad_cols = torch.einsum("gok,ngol->ngkl", w, dy).reshape(n, rows, length)
    grad_padded = col2im(grad_cols, tuple(x.shape[2:]), (kh, kw), stride, dilation)
    grad_input = grad_padded[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]
    return grad_input, grad_weight, grad_bias
