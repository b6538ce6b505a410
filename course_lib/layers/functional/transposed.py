"""Transposed convolution ("deconvolution", fractionally strided convolution) from scratch.

A convolution maps a large input to a small output; its transpose goes back
from small to large, which is how segmentation networks upsample. Each input
pixel is multiplied by the whole kernel and the result is *added* into the
output at stride ``S``; overlapping contributions sum:

.. math::

    y[n, o, p, q] = b[o] + \\sum_{c, i, j, u, v:\\; iS_h + uD_h - P_h = p,\\;
                    jS_w + vD_w - P_w = q} x[n, c, i, j] \\; w[c, o', u, v]

where ``c`` runs over the input channels of output channel ``o``'s group and
``o'`` is ``o``'s index inside the group. Same name, arguments and semantics
as ``torch.nn.functional.conv_transpose2d``.

It is the adjoint of :func:`course_lib.layers.functional.conv.conv2d` with the
same weight and settings: ``<conv2d(x, w), y> = <x, conv_transpose2d(y, w)>``,
that is, the gradient of conv2d with respect to its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import accepts_unbatched, as_pair, check_int, check_rank
from ..geometry import transposed_output_size
from .conv import conv2d

__all__ = ["conv_transpose2d"]


def _check_args(input, weight, bias, stride, padding, output_padding, groups, dilation):
    """Validate the arguments; return stride, padding, output_padding, dilation as (h, w) pairs."""
    check_rank("input", input, 4, "(N, C_in, H, W)")
    check_rank("weight", weight, 4, "(C_in, C_out / groups, kH, kW)")
    check_int("groups", groups, 1)
    c_in = input.shape[1]
    if weight.shape[0] != c_in:
        raise ValueError(f"weight.shape[0] must be input channels C_in = {c_in}, got weight of shape {tuple(weight.shape)}")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({c_in})")
    c_out = weight.shape[1] * groups
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (c_out,)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must have shape (C_out,) = (weight.shape[1] * groups,) = ({c_out},), got {got}")
    stride = as_pair("stride", stride, 1)
    padding = as_pair("padding", padding, 0)
    output_padding = as_pair("output_padding", output_padding, 0)
    dilation = as_pair("dilation", dilation, 1)
    for axis, name in enumerate("HW"):
        try:
            size = transposed_output_size(
                input.shape[2 + axis], weight.shape[2 + axis], stride[axis], padding[axis], dilation[axis],
                output_padding[axis],
            )
        except ValueError as err:
            raise ValueError(f"{err} along {name}") from None
        if size < 1:
            raise ValueError(
                f"padding={padding} is too large: the output would have size {size} along {name} "
                f"(input {tuple(input.shape[2:])}, kernel {tuple(weight.shape[2:])})"
            )
    return stride, padding, output_padding, dilation


@accepts_unbatched("(N, C_in, H, W)")
def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> torch.Tensor:
    """2D transposed convolution: zero insertion, padding, then a convolution with the flipped kernel.

    Args:
        input: (N, C_in, H, W). (PyTorch also accepts an unbatched (C_in, H, W); this does not.)
        weight: (C_in, C_out / groups, kH, kW) - the layout of the conv2d it transposes,
            whose weight maps C_out / groups channels to C_in.
        bias: (C_out,) or None.
        stride, padding, dilation: int or (h, w) pair: the settings of that conv2d.
        output_padding: int or (h, w) pair, extra rows/columns added at the bottom/right
            of the output; must be smaller than the stride or the dilation.
        groups: input and output channels are split into ``groups`` groups.

    Returns:
        (N, C_out, H_out, W_out) with ``H_out = transposed_output_size(H, kH, S, P, D, output_padding)``
        = ``(H - 1) S - 2P + D (kH - 1) + output_padding + 1`` (and the same for W;
        :mod:`course_lib.layers.geometry`). This inverts conv2d's output size: a
        stride-S conv2d maps S different input sizes to the same output size, and
        ``output_padding`` picks which one to go back to.

    How (the 1D example, stride 2, padding 1, kernel 3): insert S - 1 zeros
    between the input pixels (``x1 0 x2 0 x3``), pad each side with
    D (k - 1) - P zeros, and slide the *flipped* kernel over it with stride 1
    and dilation D. Each output pixel then collects exactly the input pixels
    whose scattered copy of the kernel covers it. The zeros waste S^2 of the
    multiplications; col2im (see ``backward.col2im``) scatters without them.

    Checkerboard artifacts: when the kernel size is not divisible by the
    stride (e.g. k = 3, S = 2), output pixels are covered by unequal numbers
    of kernel copies (here alternately 1 and 2 per axis), so even a constant
    input gives a striped or checkerboard output until the weights learn to
    compensate. Kernel sizes divisible by the stride, or nearest-neighbour
    upsampling followed by a convolution, avoid it.
    """
    stride, padding, output_padding, dilation = _check_args(
        input, weight, bias, stride, padding, output_padding, groups, dilation
    )
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    n, c_in, h, w = input.shape
    kh, kw = weight.shape[2:]

    # 1. Zero insertion: S - 1 zeros between neighbouring pixels, (H - 1) S + 1 rows in all.
    spread = input.new_zeros(n, c_in, (h - 1) * sh + 1, (w - 1) * sw + 1)
    spread[:, :, ::sh, ::sw] = input

    # 2. D (k - 1) - P zeros on each side, plus output_padding at the bottom/right. When P exceeds
    #    D (k - 1) the amount is negative, and F.pad crops instead of padding.
    top, left = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    padded = F.pad(spread, (left, left + opw, top, top + oph))

    # 3. The kernel as conv2d wants it: (C_in, C_out/g) -> (C_out/g, C_in/g) within each group,
    #    flipped in space, since scattering is correlation with the flipped kernel.
    c_out_per_group = weight.shape[1]
    flipped = (
        weight.reshape(groups, c_in // groups, c_out_per_group, kh, kw)
        .transpose(1, 2)
        .reshape(groups * c_out_per_group, c_in // groups, kh, kw)
        .flip(-2, -1)
    )
    return conv2d(padded, flipped, bias, stride=1, padding=0, dilation=dilation, groups=groups)
