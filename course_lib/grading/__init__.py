"""Grading: comparisons that explain, known mistakes named, and the sandboxed grader.

Labs' test cells run a lab's specification (``labs/``, ``spec.py``) for instant
feedback; ``nbgrader autograde`` scores the same specification outside the
student's process (``grader.py``, ``sandbox.py``, ``nbgrader_plugin.py``), and
``python -m course_lib.grading`` grades a class (``cli.py``).
"""

from .checks import check_tensor, describe_difference
from .conv import check_conv2d, check_output_size, explain_conv2d, explain_output_size
from .forbid import CONVOLUTION_OPS, ForbiddenCallError, forbid_calls
from .sandbox import AnswerSandbox, CallResult, Limits, sandbox_available

__all__ = [
    "AnswerSandbox",
    "CallResult",
    "CONVOLUTION_OPS",
    "Limits",
    "sandbox_available",
    "ForbiddenCallError",
    "check_conv2d",
    "check_output_size",
    "check_tensor",
    "describe_difference",
    "explain_conv2d",
    "explain_output_size",
    "forbid_calls",
]
