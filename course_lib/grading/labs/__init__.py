"""The graded labs' specifications, one module per lab, named like the lab's folder in solutions/."""

from __future__ import annotations

import importlib

from ..spec import LabSpec

__all__ = ["get_spec"]


def get_spec(lab: str) -> LabSpec:
    """The :class:`~course_lib.grading.spec.LabSpec` of ``lab`` (e.g. ``"lab01_convolution"``)."""
    if not lab.isidentifier():
        raise ValueError(f"lab must be a lab's folder name such as 'lab01_convolution', got {lab!r}")
    try:
        module = importlib.import_module(f"{__name__}.{lab}")
    except ModuleNotFoundError as missing:
        raise ValueError(f"no grading specification for lab {lab!r} in course_lib/grading/labs/") from missing
    return module.SPEC
