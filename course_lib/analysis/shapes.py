"""Shape arithmetic of convolution and pooling layers."""

from __future__ import annotations

from .._checks import check_int

__all__ = ["output_size"]


def output_size(in_size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial size of a convolution's or pooling's output along one axis.

    .. math::

        W_\\text{out} = \\left\\lfloor \\frac{W_\\text{in} + 2P - D (F - 1) - 1}{S} \\right\\rfloor + 1

    With ``dilation=1`` this is the familiar ``(W - F + 2P) / S + 1``: a
    dilated kernel covers ``D (F - 1) + 1`` input pixels.

    Raises ``ValueError`` when an argument is out of range or the (dilated)
    kernel does not fit into the padded input.
    """
    for arg, value, least in (
        ("in_size", in_size, 1),
        ("kernel_size", kernel_size, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        check_int(arg, value, least)
    span = dilation * (kernel_size - 1) + 1
    if span > in_size + 2 * padding:
        raise ValueError(
            f"kernel_size {kernel_size} with dilation {dilation} spans {span} pixels, "
            f"more than the padded input ({in_size} + 2*{padding} = {in_size + 2 * padding})"
        )
    return (in_size + 2 * padding - span) // stride + 1
