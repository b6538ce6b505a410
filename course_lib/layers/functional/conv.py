"""Convolution from scratch: explicit loops, im2col + matrix product, and 1D.

Like PyTorch (and every deep-learning library), these compute the
*cross-correlation*: the kernel is not flipped.

.. math::

    y[n, o, i, j] = b[o] + \\sum_{c, u, v} x_\\text{pad}[n,\\; g(o) + c,\\;
                    i S_h + u D_h,\\; j S_w + v D_w] \\; w[o, c, u, v]

where ``c`` runs over the ``C_in / groups`` input channels of output channel
``o``'s group ``g(o)``. Same names, arguments and semantics as
``torch.nn.functional.conv1d`` / ``conv2d``; built only from tensor primitives
(padding, strided views, matrix products), so autograd differentiates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import Pair, accepts_unbatched, as_int, as_pair, check_int, check_rank
from ..geometry import output_size, same_padding, sliding_windows

__all__ = ["conv1d", "conv2d", "conv2d_naive", "im2col", "resolve_padding"]


def resolve_padding(padding, kernel_size: Pair, stride: Pair, dilation: Pair) -> tuple[int, int, int, int]:
    """Padding as (left, right, top, bottom), the order ``F.pad`` takes for the last two axes.

    ``padding`` is an int, an (H, W) pair, ``"valid"`` (no padding) or
    ``"same"`` (output as large as the input; stride 1 only, split as
    :func:`~course_lib.layers.geometry.same_padding` splits it: an odd extra
    pixel goes right/bottom, as in PyTorch).
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride {stride}")
        (top, bottom), (left, right) = (same_padding(k, d) for k, d in zip(kernel_size, dilation))
        return (left, right, top, bottom)
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    ph, pw = as_pair("padding", padding, 0)
    return (pw, pw, ph, ph)


def _check_conv2d_args(input, weight, bias, stride, padding, dilation, groups):
    """Validate conv2d's arguments; return (stride, dilation, (left, right, top, bottom))."""
    check_rank("input", input, 4, "(N, C_in, H, W)")
    check_rank("weight", weight, 4, "(C_out, C_in / groups, kH, kW)")
    check_int("groups", groups, 1)
    c_in, c_out = input.shape[1], weight.shape[0]
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both input channels ({c_in}) and output channels (weight.shape[0]={c_out})"
        )
    if weight.shape[1] * groups != c_in:
        raise ValueError(
            f"weight.shape[1] must be input channels / groups = {c_in} / {groups} = {c_in // groups}, "
            f"got weight of shape {tuple(weight.shape)}"
        )
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (c_out,)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {got}")
    stride = as_pair("stride", stride, 1)
    dilation = as_pair("dilation", dilation, 1)
    pads = resolve_padding(padding, tuple(weight.shape[2:]), stride, dilation)
    # output_size checks that the dilated kernel fits into the padded input.
    for axis, (size, k, s, d, lo, hi) in enumerate(
        [
            (input.shape[2], weight.shape[2], stride[0], dilation[0], pads[2], pads[3]),
            (input.shape[3], weight.shape[3], stride[1], dilation[1], pads[0], pads[1]),
        ]
    ):
        try:
            output_size(size + lo + hi, k, s, 0, d)
        except ValueError as err:
            raise ValueError(f"weight does not fit input along {'HW'[axis]}: {err}") from None
    return stride, dilation, pads


def im2col(x: torch.Tensor, kernel_size: Pair, stride: Pair = (1, 1), dilation: Pair = (1, 1)) -> torch.Tensor:
    """Gather every receptive field of an (already padded) input into a column.

    Args:
        x: (N, C, H, W) input, padding already applied.
        kernel_size, stride, dilation: (h, w) pairs.

    Returns:
        (N, C * kH * kW, H_out * W_out): column ``l`` holds the pixels that
        output position ``l`` (row-major) sees, ordered (c, u, v) - the same
        layout as ``torch.nn.functional.unfold``.

    :func:`~course_lib.layers.geometry.sliding_windows` gives the windows as a
    *view* (no copy); only the final reshape copies, which is why im2col needs
    ``kH * kW`` times the input's memory.
    """
    return _columns(sliding_windows(x, kernel_size, stride, dilation=dilation))


def _columns(windows: torch.Tensor) -> torch.Tensor:
    """(N, C, H_out, W_out, kH, kW) windows as im2col's (N, C * kH * kW, H_out * W_out) matrix (a copy)."""
    n, c, h_out, w_out, kh, kw = windows.shape
    # -> (N, C, kH, kW, H_out, W_out) -> (N, C*kH*kW, H_out*W_out)
    return windows.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, h_out * w_out)


@accepts_unbatched("(N, C_in, H, W)")
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """2D convolution (cross-correlation) by im2col and one matrix product per group.

    Args:
        input: (N, C_in, H, W).
        weight: (C_out, C_in / groups, kH, kW).
        bias: (C_out,) or None.
        stride, dilation: int or (h, w) pair, each >= 1.
        padding: int, (h, w) pair, ``"same"`` or ``"valid"``; zeros are added.
        groups: input and output channels are split into ``groups`` groups;
            group g's outputs see only group g's inputs.

    Returns:
        (N, C_out, H_out, W_out) with ``H_out = output_size(H, kH, S, P, D)``.

    Cost: one (C_out/g) x (C_in/g kH kW) by (C_in/g kH kW) x (H_out W_out) matrix
    product per group and image - the form BLAS and GPUs are fastest at.
    """
    stride, dilation, pads = _check_conv2d_args(input, weight, bias, stride, padding, dilation, groups)
    c_out, c_per_group, kh, kw = weight.shape
    x = F.pad(input, pads) if any(pads) else input
    windows = sliding_windows(x, (kh, kw), stride, dilation=dilation)  # (N, C_in, H_out, W_out, kH, kW), a view
    n, _, h_out, w_out = windows.shape[:4]
    cols = _columns(windows)  # im2col: (N, C_in*kH*kW, H_out*W_out)
    # Split rows of the column matrix and rows of the weight matrix into groups.
    cols = cols.view(n, groups, c_per_group * kh * kw, h_out * w_out)
    w = weight.reshape(groups, c_out // groups, c_per_group * kh * kw)
    out = torch.einsum("gok,ngkl->ngol", w, cols).reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


@accepts_unbatched("(N, C_in, H, W)")
def conv2d_naive(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """2D convolution by explicit loops over groups and output positions, for teaching.

    Same arguments, shapes and result as :func:`conv2d`. Each output pixel
    (i, j) is the dot product of the kernel with the (dilated) input patch
    whose top-left corner is (i S_h, j S_w) in the padded input. Python loops
    make it hundreds of times slower than :func:`conv2d`; use it to read, not
    to train.
    """
    stride, dilation, pads = _check_conv2d_args(input, weight, bias, stride, padding, dilation, groups)
    (sh, sw), (dh, dw) = stride, dilation
    c_out, c_per_group, kh, kw = weight.shape
    o_per_group = c_out // groups
    x = F.pad(input, pads) if any(pads) else input
    n = x.shape[0]
    h_out, w_out = output_size(x.shape[2], kh, sh, 0, dh), output_size(x.shape[3], kw, sw, 0, dw)
    out = x.new_zeros(n, c_out, h_out, w_out)
    for g in range(groups):
        x_g = x[:, g * c_per_group : (g + 1) * c_per_group]  # (N, C_in/g, H_p, W_p)
        w_g = weight[g * o_per_group : (g + 1) * o_per_group]  # (C_out/g, C_in/g, kH, kW)
        for i in range(h_out):
            for j in range(w_out):
                top, left = i * sh, j * sw
                patch = x_g[:, :, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw]
                # (N, C/g, kH, kW) . (O/g, C/g, kH, kW) summed over (C/g, kH, kW) -> (N, O/g)
                out[:, g * o_per_group : (g + 1) * o_per_group, i, j] = torch.einsum("nckl,ockl->no", patch, w_g)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


@accepts_unbatched("(N, C_in, L)")
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """1D convolution (cross-correlation) of signals.

    Args:
        input: (N, C_in, L).
        weight: (C_out, C_in / groups, K).
        bias: (C_out,) or None.
        stride, padding, dilation: ints (``padding`` may be ``"same"``/``"valid"``).

    Returns:
        (N, C_out, L_out), ``L_out = output_size(L, K, stride, padding, dilation)``.

    A 1D signal is an image of height 1, so this is :func:`conv2d` on
    (N, C, 1, L) with a (1, K) kernel.
    """
    check_rank("input", input, 3, "(N, C_in, L)")
    check_rank("weight", weight, 3, "(C_out, C_in / groups, K)")
    stride, dilation = as_int("stride", stride, 1), as_int("dilation", dilation, 1)
    if not isinstance(padding, str):
        padding = as_int("padding", padding, 0)
    pad2d = padding if isinstance(padding, str) else (0, padding)
    out = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, stride), pad2d, (1, dilation), groups)
    return out.squeeze(2)
