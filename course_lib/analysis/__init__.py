"""Measuring networks: output sizes, receptive fields, parameter and FLOP counts, timings."""

from .shapes import output_size
from .timing import compare_timings, time_function

__all__ = ["compare_timings", "output_size", "time_function"]
