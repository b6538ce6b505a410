"""The model registry: every architecture of the course by name, with its facts.

Each family file decorates its builders with :func:`register_model`, which
records what the course states about the model in one place (like timm's
``default_cfgs``): the paper it follows, the image side it is designed for, and
its parameter counts, each with the configuration it counts and where the
figure is published::

    @register_model(
        paper="He et al. 2016, Deep residual learning for image recognition",
        params=[published(11_689_512, "torchvision.models.resnet18")],
    )
    def resnet18(*, num_classes=1000, in_channels=3, small_input=False): ...

``create_model("resnet18", num_classes=10)`` then builds one by name,
:func:`list_models` lists them and :func:`model_record` returns the facts; one
test (``tests/test_models_registry.py``) checks every count of every record.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from .._checks import check_int, did_you_mean

__all__ = [
    "ModelRecord",
    "ParameterCount",
    "create_model",
    "default_input_size",
    "list_models",
    "model_builder",
    "model_record",
    "published",
    "register_model",
]


@dataclass(frozen=True)
class ParameterCount:
    """A published parameter count and the configuration it counts.

    ``create_model(name, num_classes=num_classes, in_channels=in_channels, **options)``
    has exactly ``parameters`` parameters; ``source`` says where the figure is
    published (or how it was computed when no paper gives the total).
    """

    parameters: int
    source: str
    num_classes: int = 1000
    in_channels: int = 3
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        check_int("parameters", self.parameters, 1)
        if not self.source:
            raise ValueError("source must say where the count is published")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def configuration(self) -> dict:
        """The keyword arguments of ``create_model`` that build the counted model."""
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, **self.options}


def published(parameters: int, source: str, *, num_classes: int = 1000, in_channels: int = 3, **options):
    """A :class:`ParameterCount`: ``published(61_706, "LeNet-5 ...", num_classes=10, in_channels=1)``."""
    return ParameterCount(parameters, source, num_classes, in_channels, options)


@dataclass(frozen=True)
class ModelRecord:
    """What the course states about one registered model."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    paper: str
    params: tuple[ParameterCount, ...]

    @property
    def family(self) -> str:
        """The family file the builder lives in (``resnet``, ``vgg``, ...)."""
        return self.builder.__module__.rsplit(".", 1)[-1]

    def count_for(self, num_classes: int = 1000, in_channels: int = 3, **options) -> int | None:
        """The recorded parameter count of that configuration, or None when none is recorded."""
        wanted = {"num_classes": num_classes, "in_channels": in_channels, **options}
        return next((count.parameters for count in self.params if count.configuration == wanted), None)

    @property
    def parameters(self) -> int | None:
        """The recorded parameter count of the default configuration (1000 classes, 3 channels, no options)."""
        return self.count_for()


_RECORDS: dict[str, ModelRecord] = {}


def register_model(
    builder: Callable[..., nn.Module] | None = None,
    *,
    input_size: int = 224,
    paper: str = "",
    params: ParameterCount | Sequence[ParameterCount] = (),
):
    """Register a builder under its function name. Builders take ``num_classes`` and ``in_channels``.

    Use as ``@register_model`` or with the model's facts:

    Args:
        input_size: side of the square images the design expects (224 for ImageNet
            models, 299 for Inception v3, 32 for CIFAR networks); zoo tables and FLOP
            counts use it.
        paper: the publication the architecture follows.
        params: its published parameter counts (see :func:`published`), the default
            configuration first.
    """
    check_int("input_size", input_size, 1)
    counts = (params,) if isinstance(params, ParameterCount) else tuple(params)
    for count in counts:
        if not isinstance(count, ParameterCount):
            raise TypeError(f"params must hold ParameterCount records (see published()), got {count!r}")

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _RECORDS:
            raise ValueError(f"a model named {name!r} is already registered (by {_RECORDS[name].builder.__module__})")
        _RECORDS[name] = ModelRecord(name, fn, input_size, paper, counts)
        return fn

    return register(builder) if builder is not None else register


def model_record(name: str) -> ModelRecord:
    """The facts registered with the model ``name``."""
    try:
        return _RECORDS[name]
    except KeyError:
        raise ValueError(f"name must be a registered model, got {name!r}{did_you_mean(name, _RECORDS)} "
                         "See list_models().") from None


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as ``name``."""
    return model_record(name).builder


def default_input_size(name: str) -> int:
    """The image side the model registered as ``name`` is designed for."""
    return model_record(name).input_size


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style ``pattern`` (e.g. ``"resnet*"``)."""
    return sorted(name for name in _RECORDS if fnmatch.fnmatch(name, pattern))


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
