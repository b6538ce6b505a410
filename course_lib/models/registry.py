"""The model registry: every architecture of the course by name.

Each family file decorates its builder functions with :func:`register_model`;
``create_model("resnet18", num_classes=10)`` then builds one by name and
:func:`list_models` lists them, like timm's registry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

from .._checks import check_int

__all__ = ["register_model", "list_models", "create_model", "model_builder", "default_input_size"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_INPUT_SIZES: dict[str, int] = {}


def register_model(builder: Callable[..., nn.Module] | None = None, *, input_size: int = 224):
    """Register a builder under its function name. Builders take ``num_classes`` and ``in_channels``.

    Use as ``@register_model`` or ``@register_model(input_size=32)``: ``input_size``
    is the side of the square images the design expects (224 for ImageNet models,
    299 for Inception v3, 32 for CIFAR networks), used by zoo tables and FLOP counts.
    """

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _BUILDERS:
            raise ValueError(f"a model named {name!r} is already registered (by {_BUILDERS[name].__module__})")
        _BUILDERS[name] = fn
        _INPUT_SIZES[name] = input_size
        return fn

    return register(builder) if builder is not None else register


def default_input_size(name: str) -> int:
    """The image side the model registered as ``name`` is designed for."""
    model_builder(name)  # raises a helpful error for unknown names
    return _INPUT_SIZES[name]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style ``pattern`` (e.g. ``"resnet*"``)."""
    return sorted(name for name in _BUILDERS if fnmatch.fnmatch(name, pattern))


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as ``name``."""
    try:
        return _BUILDERS[name]
    except KeyError:
        close = [n for n in _BUILDERS if name.split("_")[0] in n][:8]
        hint = f"; similar: {close}" if close else ""
        raise ValueError(f"name must be a registered model, got {name!r}{hint}. See list_models().") from None


def create_model(name: str, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build the model registered as ``name``.

    Args:
        name: one of :func:`list_models`.
        num_classes: outputs of the classifier (or output maps of a segmentation model).
        in_channels: channels of the input images (1 for MNIST, 3 for RGB).
        **kwargs: the builder's own options, e.g. ``small_input=True`` for 28x28 / 32x32 inputs.
    """
    check_int("num_classes", num_classes, 1)
    check_int("in_channels", in_channels, 1)
    return model_builder(name)(num_classes=num_classes, in_channels=in_channels, **kwargs)
