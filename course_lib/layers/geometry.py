"""The arithmetic of sliding windows, stated once.

Convolution, pooling, the receptive-field calculator and the model builders
all slide a window of ``kernel_size`` pixels (spread by ``dilation``) over a
padded axis in steps of ``stride``. Every size they compute comes from here.
"""

from __future__ import annotations

from .._checks import check_int

__all__ = ["same_padding"]


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
