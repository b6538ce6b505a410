"""Shape arithmetic of convolution and pooling layers.

The rules live in :mod:`course_lib.layers.geometry`, beside the layers that
follow them; ``course_lib.analysis.output_size`` is that module's
:func:`~course_lib.layers.geometry.output_size`.
"""

from __future__ import annotations

from ..layers.geometry import output_size

__all__ = ["output_size"]
