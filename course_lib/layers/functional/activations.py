"""Activation functions beyond ReLU: ReLU6, leaky / parametric ReLU, ELU and maxout.

Each is applied element by element except maxout, which takes a maximum over
groups of channels:

.. math::

    \\operatorname{relu6}(x) &= \\min(\\max(x, 0), 6) \\\\
    \\operatorname{leaky\\_relu}(x) &= x \\text{ if } x > 0 \\text{ else } a x
        \\quad (a \\text{ fixed, e.g. } 0.01) \\\\
    \\operatorname{prelu}(x) &= x \\text{ if } x > 0 \\text{ else } a_c x
        \\quad (a_c \\text{ learned, one per channel or one in all}) \\\\
    \\operatorname{elu}(x) &= x \\text{ if } x > 0 \\text{ else } \\alpha (e^x - 1) \\\\
    \\operatorname{maxout}(x)_j &= \\max_{i < k} x_{jk + i}

Leaky ReLU, PReLU and ELU keep a non-zero gradient for negative inputs, so a
unit cannot "die" (get stuck with zero gradient for every input) as a ReLU
can. ReLU6 caps the output at 6, which keeps activations in a range that
low-precision arithmetic represents well (MobileNet v2).

Same names, arguments and semantics as ``torch.nn.functional`` (without the
``inplace`` flag); ``maxout`` has no PyTorch counterpart. Built from
``torch.where``, ``clamp`` and reductions, so autograd differentiates them.
"""

from __future__ import annotations

import torch

from ..._checks import check_int, check_number, check_tensor

__all__ = ["elu", "leaky_relu", "maxout", "prelu", "relu6"]


def _negative_part_scaled(input: torch.Tensor, slope) -> torch.Tensor:
    """``x`` where ``x > 0``, ``slope * x`` elsewhere: leaky ReLU and PReLU differ only in where ``slope`` comes from."""
    return torch.where(input > 0, input, slope * input)


def relu6(input: torch.Tensor) -> torch.Tensor:
    """ReLU capped at 6: ``min(max(x, 0), 6)``, any shape in, same shape out.

    The gradient is 1 on (0, 6) and 0 outside.
    """
    check_tensor("input", input)
    return torch.clamp(input, min=0.0, max=6.0)


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise; any shape in, same shape out.

    The small slope for negative inputs keeps the gradient from being exactly
    zero there, so a unit pushed into the negative range can still recover.
    """
    check_tensor("input", input)
    check_number("negative_slope", negative_slope)
    return _negative_part_scaled(input, negative_slope)


def prelu(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Parametric ReLU: a leaky ReLU whose negative slope ``weight`` is learned.

    Args:
        input: (N, C, *) - the channels are dimension 1; an input with fewer
            than 2 dimensions has a single channel.
        weight: 0-d or 1-D tensor of 1 element (one slope shared by all
            channels) or of C elements (one slope per channel).

    Returns:
        Same shape as ``input``. Autograd gives ``weight`` the gradient
        ``sum of grad * x`` over the negative inputs of its channel.
    """
    check_tensor("input", input)
    check_tensor("weight", weight)
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.ndim > 1 or weight.numel() not in (1, channels):
        raise ValueError(
            f"weight must be a 0-d or 1-D tensor of 1 or C = input.shape[1] = {channels} elements, "
            f"got shape {tuple(weight.shape)}"
        )
    if weight.numel() == 1:
        slope = weight.reshape(())
    else:
        # (C,) -> (C, 1, ..., 1), so that it broadcasts over dimension 1 and not over the last one.
        slope = weight.reshape(channels, *([1] * (input.ndim - 2)))
    return _negative_part_scaled(input, slope)


def elu(input: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` otherwise.

    Any shape in, same shape out. Negative outputs saturate smoothly at
    ``-alpha``, which pushes the mean activation towards zero.
    """
    check_tensor("input", input)
    check_number("alpha", alpha)
    # exp only of the non-positive part: torch.where differentiates both branches, and exp(x)
    # of a large positive x would overflow to inf, and 0 * inf gives a NaN gradient. The mask is a
    # where, not clamp(max=0), which passes no gradient at exactly 0, where PyTorch's slope is alpha.
    # expm1(x) = exp(x) - 1 without the cancellation for x near 0.
    negative_part = torch.where(input > 0, torch.zeros_like(input), input)
    return torch.where(input > 0, input, alpha * torch.expm1(negative_part))


def maxout(input: torch.Tensor, num_pieces: int, dim: int = 1) -> torch.Tensor:
    """Maxout (Goodfellow et al., 2013): the maximum over groups of ``num_pieces`` consecutive channels.

    Args:
        input: any shape; ``input.shape[dim]`` (C) must be divisible by ``num_pieces`` (k).
        num_pieces: k, the number of linear pieces each output unit takes the maximum of.
        dim: the channel dimension (1 for NCHW feature maps).

    Returns:
        ``input``'s shape with ``dim`` shrunk to C / k; output channel j is
        ``max(x[jk], x[jk + 1], ..., x[jk + k - 1])``.

    Fed with the outputs of a linear layer, maxout is a learned convex
    piecewise-linear activation. ReLU and the absolute value are maxouts of
    two pieces: ``relu(x) = max(x, 0)`` and ``|x| = max(x, -x)``. The gradient
    flows only to the piece that won (shared evenly between exact ties).
    """
    check_tensor("input", input)
    check_int("num_pieces", num_pieces, 1)
    if not isinstance(dim, int) or isinstance(dim, bool) or not -input.ndim <= dim < input.ndim:
        raise ValueError(f"dim must be an int in [{-input.ndim}, {input.ndim - 1}] for a {input.ndim}-d input, got {dim!r}")
    dim = dim % input.ndim
    channels = input.shape[dim]
    if channels % num_pieces:
        raise ValueError(
            f"num_pieces={num_pieces} must divide the size of dimension {dim} (input.shape[{dim}] = {channels})"
        )
    # (..., C, ...) -> (..., C / k, k, ...): consecutive channels land in one group.
    groups = input.unflatten(dim, (channels // num_pieces, num_pieces))
    return groups.amax(dim=dim + 1)
