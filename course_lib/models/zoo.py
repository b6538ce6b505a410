"""The zoo table: every model's size and cost, computed rather than copied.

Chapters 10-15 print it; ``python benchmarks/model_zoo.py`` prints it as Markdown.
Models are built on PyTorch's ``meta`` device: shapes without memory, so even
VGG-19 and EfficientNet-B7 are counted in milliseconds.
"""

from __future__ import annotations

import torch

from ..analysis.counting import count_flops, count_parameters
from .registry import create_model, list_models, model_record

__all__ = ["zoo_table"]


def zoo_table(names: list[str] | None = None, *, num_classes: int = 1000, in_channels: int = 3) -> list[dict]:
    """One row per model: ``model``, ``family``, ``parameters``, ``published``, ``input`` (side) and ``gflops``.

    ``parameters`` is counted on the model built here; ``published`` is the count
    its registration records for the same ``num_classes`` and ``in_channels``
    (default options), or None when none is recorded. ``gflops`` counts one
    multiply-add as 2 FLOPs (``torch.utils.flop_counter``), for one image at the
    model's registered input size; divide by 2 for the multiply-adds most papers
    report. Rows are plain dicts, ready for pandas.
    """
    configuration = {"num_classes": num_classes, "in_channels": in_channels}
    rows = []
    for name in names if names is not None else list_models():
        record = model_record(name)
        size = record.input_size
        with torch.device("meta"):
            model = create_model(name, **configuration)
        rows.append(
            {
                "model": name,
                "family": record.family,
                "parameters": count_parameters(model),
                "published": record.count_for(**configuration),
                "input": size,
                "gflops": count_flops(model, (1, in_channels, size, size)).total / 1e9,
            }
        )
    return rows
