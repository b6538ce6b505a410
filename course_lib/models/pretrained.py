"""Transfer torchvision's weights into course_lib's models.

course_lib's models list their layers in the order torchvision's twins do, so
parameters and buffers can be matched one by one, in order, checking that every
shape agrees - whatever the layers are called. At full scale
(``COURSE_SCALE=full``, with a network) :func:`load_torchvision_weights`
downloads torchvision's pretrained weights and loads them this way.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import is_full_scale

__all__ = ["transfer_state_dict", "load_torchvision_weights"]


def _tensors(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    # BatchNorm's step counter is bookkeeping, not a weight: torchvision and course_lib may differ in having it.
    return [(k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]


def transfer_state_dict(model: nn.Module, source: dict[str, torch.Tensor]) -> nn.Module:
    """Copy ``source``'s tensors into ``model``'s, matched by position; shapes must agree.

    Raises ``ValueError`` naming the first pair that does not match (count or shape).
    Returns ``model``.
    """
    ours, theirs = _tensors(model.state_dict()), _tensors(source)
    if len(ours) != len(theirs):
        raise ValueError(f"source has {len(theirs)} tensors, the model {len(ours)}: not the same architecture")
    new_state = {}
    for (name, mine), (their_name, value) in zip(ours, theirs):
        if mine.shape != value.shape:
            raise ValueError(
                f"shape mismatch: model's {name} {tuple(mine.shape)} vs source's {their_name} {tuple(value.shape)}"
            )
        new_state[name] = value
    model.load_state_dict(new_state, strict=False)
    return model


def load_torchvision_weights(model: nn.Module, torchvision_name: str, weights: str = "DEFAULT") -> nn.Module:
    """Load torchvision's pretrained ``weights`` for ``torchvision_name`` (e.g. ``"resnet18"``) into ``model``.

    Downloads on first use, so it needs ``COURSE_SCALE=full`` and a network.
    """
    if not is_full_scale():
        raise ValueError("pretrained weights are downloaded: set COURSE_SCALE=full (and have a network) to use them")
    import torchvision.models as tvm

    source = tvm.get_model(torchvision_name, weights=weights)
    return transfer_state_dict(model, source.state_dict())
