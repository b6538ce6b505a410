"""Layers of the course, written from scratch.

``course_lib.layers.functional`` holds the functions (``conv2d``, ...);
modules built on them live beside it as the course needs them.
"""

from . import functional

__all__ = ["functional"]
