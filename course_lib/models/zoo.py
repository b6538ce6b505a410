"""The zoo table: every model's size and cost, computed rather than copied.

Chapters 10-15 print it; ``python benchmarks/model_zoo.py`` prints it as Markdown.
Models are built on PyTorch's ``meta`` device: shapes without memory, so even
VGG-19 and EfficientNet-B7 are counted in milliseconds.
"""

from __future__ import annotations

import torch

from ..analysis.counting import count_flops, count_parameters
from .registry import create_model, default_input_size, list_models, model_builder

__all__ = ["zoo_table"]


def zoo_table(names: list[str] | None = None, *, num_classes: int = 1000, in_channels: int = 3) -> list[dict]:
    """One row per model: ``model``, ``family``, ``parameters``, ``input`` (side) and ``gflops``.

    ``gflops`` counts one multiply-add as 2 FLOPs (``torch.utils.flop_counter``),
    for one image at the model's registered input size; divide by 2 for the
    multiply-adds most papers report. Rows are plain dicts, ready for pandas.
    """
    rows = []
    for name in names if names is not None else list_models():
        size = default_input_size(name)
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_channels=in_channels)
        rows.append(
            {
                "model": name,
                "family": model_builder(name).__module__.rsplit(".", 1)[-1],
                "parameters": count_parameters(model),
                "input": size,
                "gflops": count_flops(model, (1, in_channels, size, size)).total / 1e9,
            }
        )
    return rows
