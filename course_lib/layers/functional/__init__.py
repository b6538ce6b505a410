"""Layers as plain functions on NCHW tensors, built from tensor primitives.

Each function has the name, signature and semantics of its PyTorch
counterpart in ``torch.nn.functional`` and is tested equal to it
(``tests/test_functional_*.py``), values and gradients.
"""

from .conv import conv1d, conv2d, conv2d_naive, im2col, resolve_padding

__all__ = ["conv1d", "conv2d", "conv2d_naive", "im2col", "resolve_padding"]
