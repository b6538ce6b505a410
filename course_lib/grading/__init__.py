"""Helpers the labs' tests use: comparisons that explain, shortcuts refused, known mistakes named."""

from .checks import check_tensor, describe_difference
from .conv import check_conv2d, check_output_size, explain_conv2d, explain_output_size
from .forbid import CONVOLUTION_OPS, ForbiddenCallError, forbid_calls

__all__ = [
    "CONVOLUTION_OPS",
    "ForbiddenCallError",
    "check_conv2d",
    "check_output_size",
    "check_tensor",
    "describe_difference",
    "explain_conv2d",
    "explain_output_size",
    "forbid_calls",
]
