"""Parameter-free upsampling from scratch: nearest neighbour and "bed of nails".

A segmentation network shrinks its maps to see more context, then has to grow
them back to one prediction per pixel. The simplest ways to enlarge a map by
an integer factor ``S`` (``s_h`` rows, ``s_w`` columns) learn nothing:

* **nearest neighbour** copies every value into its whole ``s_h x s_w`` block,

  .. math:: y[n, c, i, j] = x[n, c, \\lfloor i / s_h \\rfloor, \\lfloor j / s_w \\rfloor];

* **bed of nails** puts every value at the top-left corner of its block and
  zeros everywhere else,

  .. math:: y[n, c, i, j] = x[n, c, i / s_h, j / s_w] \\text{ if } s_h \\mid i \\text{ and } s_w \\mid j,
            \\text{ else } 0.

Bed of nails is max unpooling (:func:`~course_lib.layers.functional.pooling.max_unpool2d`)
with the indices fixed at the top-left corners instead of remembered from a max
pooling; it is also the zero insertion a transposed convolution starts with
(:func:`~course_lib.layers.functional.transposed.conv_transpose2d`).
Nearest neighbour equals ``F.interpolate(x, scale_factor=S, mode="nearest")``.

Both take a batch (N, C, H, W) or one image (C, H, W), of any dtype (an int64
label map can be enlarged too), and return (N, C, s_h H, s_w W). Their gradient
is what autograd finds through copies: for nearest neighbour the sum of the
output gradient over each block, for bed of nails the output gradient at each
corner.
"""

from __future__ import annotations

import torch

from ..._checks import accepts_unbatched, as_pair, check_rank

__all__ = ["bed_of_nails", "upsample_nearest"]


def _check(input, scale) -> tuple[int, int]:
    check_rank("input", input, 4, "(N, C, H, W)")
    return as_pair("scale", scale, 1)


@accepts_unbatched("(N, C, H, W)")
def upsample_nearest(input: torch.Tensor, scale) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor: each value fills an ``s_h x s_w`` block.

    Args:
        input: (N, C, H, W) or (C, H, W), any dtype.
        scale: int or (s_h, s_w) pair of ints >= 1.

    Returns:
        (N, C, s_h H, s_w W), the same as ``F.interpolate(input, scale_factor=scale, mode="nearest")``
        (which, unlike this, needs a floating-point input).
    """
    sh, sw = _check(input, scale)
    n, c, h, w = input.shape
    # A new axis after each spatial axis, repeated s times by a view, then merged with it: row i
    # becomes rows i s_h .. i s_h + s_h - 1, all equal to it, and the same for columns.
    blocks = input[:, :, :, None, :, None].expand(n, c, h, sh, w, sw)
    return blocks.reshape(n, c, h * sh, w * sw)


@accepts_unbatched("(N, C, H, W)")
def bed_of_nails(input: torch.Tensor, scale) -> torch.Tensor:
    """"Bed of nails" upsampling: each value at the top-left of its ``s_h x s_w`` block, zeros elsewhere.

    Args:
        input: (N, C, H, W) or (C, H, W), any dtype.
        scale: int or (s_h, s_w) pair of ints >= 1.

    Returns:
        (N, C, s_h H, s_w W): ``out[..., ::s_h, ::s_w] == input`` and every other entry is 0. The
        same as ``F.max_unpool2d(input, indices, scale)`` with every index at its block's top-left
        corner, ``indices[..., i, j] = (i s_h) (s_w W) + j s_w``.
    """
    sh, sw = _check(input, scale)
    n, c, h, w = input.shape
    out = input.new_zeros(n, c, h * sh, w * sw)
    out[:, :, ::sh, ::sw] = input  # an indexed copy: autograd routes each corner's gradient back
    return out
