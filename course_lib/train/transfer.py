"""Transfer learning: reuse a trained network on a new task.

Two ways to reuse a network trained on a source task (chapter 16):

* **feature extraction**: keep the trained body fixed and train only a new head on its features::

      freeze(model)                          # no gradients, every BatchNorm in eval mode
      head = replace_head(model, 5)          # a fresh, trainable nn.Linear instead of the old head
      fit(model, loader, optimizer=torch.optim.Adam(head.parameters(), 1e-3), epochs=5)

* **fine-tuning**: train everything, the lower layers with smaller learning rates (they hold generic
  features that need little change; the head starts from scratch)::

      unfreeze(model)
      groups = layerwise_param_groups([model.stem, model.layer1, model.layer2, model.fc], base_lr=1e-2, decay=0.3)
      optimizer = torch.optim.SGD(groups, momentum=0.9)

Frozen BatchNorm
----------------
A frozen layer must compute what it computed on the source task. A BatchNorm in training mode
does not: it normalizes with the statistics of the current batch and overwrites its running
statistics with those of the new data, even when none of its parameters requires a gradient.
:func:`freeze` therefore puts every BatchNorm it freezes into eval mode. :func:`~course_lib.train.fit`
keeps each module's own mode while it trains, so the frozen BatchNorm stays frozen there; a hand-written
loop that calls ``model.train()`` wakes it up again: call :func:`eval_frozen_batchnorm` after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .._checks import check_flag, check_int, check_module, check_number, check_tensor, did_you_mean
from ..modes import evaluating

__all__ = [
    "freeze",
    "unfreeze",
    "eval_frozen_batchnorm",
    "freeze_summary",
    "layerwise_param_groups",
    "replace_head",
    "find_head",
    "extract_features",
]


def _batchnorms(module: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """Every BatchNorm (1d, 2d, 3d, sync) inside ``module``, itself included, with its name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, _BatchNorm)]


def freeze(module: nn.Module, *, batchnorm_eval: bool = True) -> nn.Module:
    """Fix every parameter of ``module``: ``requires_grad=False``, so no gradient and no optimizer update.

    With ``batchnorm_eval`` (the default) every BatchNorm inside is also put in eval mode, so that it
    normalizes with the running statistics learned on the source data and never updates them
    (see the module docstring). Other modules keep their train/eval flag (a Dropout keeps dropping).

    Returns ``module``, changed in place.
    """
    check_module("module", module)
    check_flag("batchnorm_eval", batchnorm_eval)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    if batchnorm_eval:
        for _, bn in _batchnorms(module):
            bn.eval()
    return module


def unfreeze(module: nn.Module, *, batchnorm_train: bool = True) -> nn.Module:
    """Undo :func:`freeze`: every parameter of ``module`` requires a gradient again.

    With ``batchnorm_train`` (the default) every BatchNorm inside goes back to training mode (batch
    statistics, running statistics updated); ``False`` keeps BatchNorms in the mode they are in, the
    usual choice when fine-tuning on a small target set (its batches give poor statistics).

    Returns ``module``, changed in place.
    """
    check_module("module", module)
    check_flag("batchnorm_train", batchnorm_train)
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    if batchnorm_train:
        for _, bn in _batchnorms(module):
            bn.train()
    return module


def eval_frozen_batchnorm(model: nn.Module) -> list[str]:
    """Put back into eval mode every BatchNorm of ``model`` whose parameters are all frozen.

    For hand-written loops that call ``model.train()`` at every epoch, which sets every module,
    frozen ones included, to training mode. A BatchNorm without parameters (``affine=False``)
    cannot be told frozen from trainable and is left as it is.

    Returns the names of the BatchNorms now in eval mode (frozen ones), in the model's order.
    """
    check_module("model", model)
    names = []
    for name, bn in _batchnorms(model):
        parameters = list(bn.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            bn.eval()
            names.append(name)
    return names


def freeze_summary(model: nn.Module) -> list[dict]:
    """One row per direct child of ``model``: its parameters, how many are trainable, its BatchNorms' mode.

    Each row is a dict with keys ``block``, ``parameters``, ``trainable`` and ``batchnorm``
    (``"eval"``, ``"train"``, ``"mixed"`` or ``"-"`` without BatchNorm); ``pandas.DataFrame(rows)``
    shows it as a table.
    """
    check_module("model", model)
    rows = []
    for name, child in model.named_children():
        modes = {bn.training for _, bn in _batchnorms(child)}
        rows.append({
            "block": name,
            "parameters": sum(p.numel() for p in child.parameters()),
            "trainable": sum(p.numel() for p in child.parameters() if p.requires_grad),
            "batchnorm": "-" if not modes else "mixed" if len(modes) == 2 else "train" if modes.pop() else "eval",
        })
    return rows


def _named_blocks(blocks) -> list[tuple[str, nn.Module]]:
    if isinstance(blocks, nn.Module):
        named = list(blocks.named_children())
        if not named:
            raise ValueError(f"blocks: the module {type(blocks).__name__} has no children to give learning rates to")
        return named
    if isinstance(blocks, Sequence) and not isinstance(blocks, str) and blocks:
        if all(isinstance(b, nn.Module) for b in blocks):
            return [(str(i), b) for i, b in enumerate(blocks)]
    raise ValueError(
        "blocks must be an nn.Module (its children are the blocks) or a non-empty list of nn.Module, "
        f"ordered from the input to the output; got {blocks!r:.80}"
    )


def layerwise_param_groups(blocks, base_lr: float, decay: float) -> list[dict]:
    """Parameter groups whose learning rate shrinks by ``decay`` per block, going down from the output.

    ``blocks`` are ordered from the input to the output (an ``nn.Module``'s children, or a list);
    block ``i`` of ``L`` gets ``base_lr * decay ** (L - 1 - i)``: the last block (the new head)
    ``base_lr``, the one below ``base_lr * decay``, and so on ("discriminative fine-tuning",
    Howard and Ruder 2018). Every block counts one step, whether or not it has parameters.
    Only parameters with ``requires_grad`` are included; blocks with none are left out.

    Args:
        blocks: an ``nn.Module`` (its direct children are the blocks) or a list of ``nn.Module``.
        base_lr: learning rate of the last block, > 0.
        decay: factor per block, in (0, 1]; 1 gives every block ``base_lr``.

    Returns:
        A list of dicts ``{"params": [...], "lr": float, "name": str}`` for ``torch.optim`` optimizers
        (the extra ``name`` key is kept in ``optimizer.param_groups``).

    Raises:
        ValueError: bad arguments, or a parameter shared by two blocks (one parameter, two rates).
    """
    named = _named_blocks(blocks)
    check_number("base_lr", base_lr, positive=True)
    check_number("decay", decay, positive=True)
    if decay > 1:
        raise ValueError(f"decay must lie in (0, 1] (lower blocks learn more slowly), got {decay!r}")
    owner: dict[int, str] = {}
    groups = []
    for index, (name, block) in enumerate(named):
        params = []
        for p in block.parameters():
            if id(p) in owner:
                raise ValueError(f"blocks: a parameter of block {name!r} also belongs to block {owner[id(p)]!r}")
            owner[id(p)] = name
            if p.requires_grad:
                params.append(p)
        if params:
            groups.append({"params": params, "lr": base_lr * decay ** (len(named) - 1 - index), "name": name})
    return groups


def find_head(model: nn.Module) -> str:
    """The name of ``model``'s classifier head: its last registered ``nn.Linear`` (``"fc"``, ``"classifier.6"``, ``"4"``)."""
    check_module("model", model)
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"model: {type(model).__name__} has no nn.Linear layer to serve as its head; name one")
    return names[-1]


def _linear_named(model: nn.Module, name: str) -> nn.Linear:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"head {name!r} is not a module of the model{did_you_mean(name, modules)}")
    if not isinstance(modules[name], nn.Linear):
        raise ValueError(f"head {name!r} must be an nn.Linear, it is a {type(modules[name]).__name__}")
    return modules[name]


def replace_head(model: nn.Module, num_classes: int, *, head: str | None = None) -> nn.Linear:
    """Put a fresh ``nn.Linear(in_features, num_classes)`` in place of ``model``'s head; return it.

    The new layer has the old one's input size, bias setting, device and dtype, PyTorch's default
    initialization, and trainable parameters (even in a frozen model). Build the optimizer after
    this call: it must hold the new layer's parameters, not the old ones.

    Args:
        model: changed in place.
        num_classes: outputs of the new head, >= 1.
        head: the dotted name of the ``nn.Linear`` to replace; default :func:`find_head` (the last one).
    """
    check_module("model", model)
    check_int("num_classes", num_classes, 1)
    name = find_head(model) if head is None else head
    old = _linear_named(model, name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)
    return new


def extract_features(model: nn.Module, x: torch.Tensor, *, layer: str | None = None, batch_size: int = 256,
                     flatten: bool = True) -> torch.Tensor:
    """What ``model`` computes at one layer for the images ``x``: a trained network as a feature extractor.

    Runs ``model`` in eval mode without gradients (every module's mode restored afterwards), in
    batches of ``batch_size``, and records the output of ``layer``; with ``layer=None``, the *input*
    of the head (:func:`find_head`), the penultimate features.

    Args:
        model: any network; its forward pass must reach ``layer``.
        x: (N, ...) inputs, e.g. (N, C, H, W) images; moved batch by batch to the model's device.
        layer: dotted name of a submodule (``"2"``, ``"layer3"``, ``"features.4"``), None for the head's input.
        batch_size: images per forward pass, >= 1.
        flatten: return (N, D) with D the product of the other dimensions; ``False``: the layer's
            own shape, e.g. (N, C, H, W) feature maps.

    Returns:
        (N, D) features (or the layer's shape), on the model's device.
    """
    check_module("model", model)
    check_tensor("x", x, 1, "(N, ...)")
    if len(x) == 0:
        raise ValueError("x must hold at least one input, got shape " + str(tuple(x.shape)))
    check_int("batch_size", batch_size, 1)
    check_flag("flatten", flatten)
    modules = dict(model.named_modules())
    if layer is not None and (not isinstance(layer, str) or layer not in modules):
        raise ValueError(f"layer {layer!r} is not a module of the model{did_you_mean(layer, modules)}")
    target = modules[find_head(model) if layer is None else layer]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x.device
    seen: list[torch.Tensor] = []

    def keep_input(module, args):
        seen.append(args[0])

    def keep_output(module, args, output):
        seen.append(output)

    hook = target.register_forward_pre_hook(keep_input) if layer is None else target.register_forward_hook(keep_output)
    parts = []
    try:
        with evaluating(model):
            for start in range(0, len(x), batch_size):
                seen.clear()
                model(x[start:start + batch_size].to(device))
                if not seen:
                    raise ValueError(f"layer {layer or find_head(model)!r} was not called by the model's forward pass")
                if not isinstance(seen[-1], torch.Tensor):
                    raise ValueError(f"layer {layer!r} returns a {type(seen[-1]).__name__}, not a tensor")
                parts.append(seen[-1].reshape(len(seen[-1]), -1) if flatten else seen[-1])  # the last call: a reused module's final use
    finally:
        hook.remove()
    return torch.cat(parts)
