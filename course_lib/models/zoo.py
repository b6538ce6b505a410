"""The zoo table: every model's size, cost and receptive field, computed rather than copied.

Chapters 10-15 print it; ``python benchmarks/model_zoo.py`` prints it as Markdown.
Models are built on PyTorch's ``meta`` device: shapes without memory, so even
VGG-19 and EfficientNet-B7 are counted in a moment. One forward pass per model
gives both its FLOPs and its receptive field.

:func:`published_top1` reads the ImageNet top-1 accuracy that the installed
torchvision records for the same architecture (offline: the figures ship in
torchvision's code, no weights are downloaded).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..analysis.counting import count_flops, count_parameters
from ..analysis.receptive_field import UnsupportedReceptiveField, graph_receptive_field
from .registry import create_model, list_models, model_record

__all__ = ["published_top1", "same_architecture_as_torchvision", "zoo_table"]

# The weights whose accuracy the table quotes: torchvision's first ImageNet-1K weights, trained with
# the recipe of (or close to) the paper. Later ones (IMAGENET1K_V2) use a modern recipe
# (longer training, heavy augmentation) and would credit the architecture with the recipe's gains.
TORCHVISION_WEIGHTS = "IMAGENET1K_V1"


def _tensor_shapes(model: torch.nn.Module) -> list[tuple[int, ...]]:
    """Shapes of the parameters and buffers in registration order (BatchNorm's step counters left out)."""
    return [tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]


@functools.lru_cache(maxsize=None)
def same_architecture_as_torchvision(name: str) -> bool:
    """True when torchvision has a model called ``name`` with the same tensors, shape by shape, in order.

    That is the condition under which :func:`course_lib.models.transfer_state_dict` copies
    torchvision's weights into ``create_model(name)``; both are built on the meta device
    (torchvision's GoogLeNet and Inception v3 without their auxiliary heads, as they are
    evaluated; their weights also expect ``transform_input=True``, a change of input scaling).
    """
    import torchvision.models as tvm

    model_record(name)  # a clear error for an unknown name
    if name not in tvm.list_models(module=tvm):
        return False
    with torch.device("meta"), warnings.catch_warnings():
        # torchvision warns that GoogLeNet's and Inception v3's default initialization will change
        warnings.simplefilter("ignore", FutureWarning)
        # GoogLeNet and Inception v3 are built with auxiliary heads unless told otherwise; their
        # published weights are evaluated without them, as course_lib's default models are built.
        options = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
        theirs = tvm.get_model(name, weights=None, **options)
        ours = create_model(name)
    return _tensor_shapes(ours) == _tensor_shapes(theirs)


def published_top1(name: str) -> tuple[float, str] | None:
    """ImageNet-1K top-1 accuracy (%) of torchvision's ``IMAGENET1K_V1`` weights for the same architecture.

    Returns ``(accuracy, source)``, e.g. ``(69.758, "torchvision ResNet18_Weights.IMAGENET1K_V1")``,
    or None when torchvision has no model of that name, its tensors differ from
    ``create_model(name)``'s (:func:`same_architecture_as_torchvision`), or it has no such
    weights. Read from the installed torchvision's weight metadata, offline. The accuracy is
    single-crop (resize, 224 centre crop, or the model's own size), torchvision's evaluation.
    """
    if not same_architecture_as_torchvision(name):
        return None
    import torchvision.models as tvm

    weights = tvm.get_model_weights(name)
    if TORCHVISION_WEIGHTS not in weights.__members__:
        return None
    entry = weights[TORCHVISION_WEIGHTS]
    accuracy = entry.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    return float(accuracy), f"torchvision {weights.__name__}.{TORCHVISION_WEIGHTS}"


def _flops_and_field(model, shape) -> tuple[int, object, str | None]:
    """FLOPs of one forward pass and the receptive field (or None and the reason), in one pass when possible."""
    with FlopCounterMode(display=False) as counter:
        try:
            field = graph_receptive_field(model, shape)
        except UnsupportedReceptiveField as err:
            field, reason = None, str(err)
        else:
            reason = None
    if field is None:  # the pass stopped part way: count the FLOPs on their own
        return count_flops(model, shape).total, None, reason
    return counter.get_total_flops(), field, reason


def zoo_table(names: list[str] | None = None, *, num_classes: int = 1000, in_channels: int = 3) -> list[dict]:
    """One row per model, as a plain dict ready for pandas.

    Keys:
        ``model``, ``family``;
        ``parameters``: counted on the model built here; ``published``: the count its
        registration records for the same ``num_classes`` and ``in_channels`` (default
        options), or None when none is recorded;
        ``input``: the side of the square image the model is designed for;
        ``gflops``: one forward pass of one image at that size, a multiply-add counted as
        2 FLOPs (``torch.utils.flop_counter``); divide by 2 for the multiply-adds most
        papers report;
        ``receptive_field``: the side of the theoretical receptive field of the last spatial
        map before global pooling / flatten (:func:`~course_lib.analysis.receptive_field.graph_receptive_field`);
        it can exceed ``input`` (then the central units see the whole image); None when it
        cannot be computed, with the reason in ``receptive_field_note`` (which otherwise
        says ``"global context"`` for networks with squeeze-and-excitation or attention gates,
        whose units also depend on every pixel through them, or is empty);
        ``top1``, ``top1_source``: :func:`published_top1` (None when torchvision has no
        identical model), for ``num_classes == 1000`` and ``in_channels == 3`` only.
    """
    configuration = {"num_classes": num_classes, "in_channels": in_channels}
    imagenet = num_classes == 1000 and in_channels == 3
    rows = []
    for name in names if names is not None else list_models():
        record = model_record(name)
        size = record.input_size
        with torch.device("meta"):
            model = create_model(name, **configuration)
        flops, field, reason = _flops_and_field(model, (1, in_channels, size, size))
        top1 = published_top1(name) if imagenet else None
        note = reason if field is None else "global context" if field.global_context else ""
        rows.append(
            {
                "model": name,
                "family": record.family,
                "parameters": count_parameters(model),
                "published": record.count_for(**configuration),
                "input": size,
                "gflops": flops / 1e9,
                "receptive_field": None if field is None else field.size[0],
                "receptive_field_note": note,
                "top1": None if top1 is None else top1[0],
                "top1_source": None if top1 is None else top1[1],
            }
        )
    return rows
