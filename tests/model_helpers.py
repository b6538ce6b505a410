"""Helpers the model tests share: models on the meta device and their sizes."""

from __future__ import annotations

import torch
from torch import nn

from course_lib.models import create_model


def n_params(model: nn.Module) -> int:
    """Number of parameters (each element of each weight)."""
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **options) -> nn.Module:
    """``create_model(name, **options)`` on PyTorch's meta device: shapes without memory, built in milliseconds."""
    with torch.device("meta"):
        return create_model(name, **options)
