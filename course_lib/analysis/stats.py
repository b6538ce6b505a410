"""Statistics of activations and gradients, layer by layer.

The chapters on activations, initialisation and normalisation plot how these
numbers change with depth: activations whose std shrinks to 0 or blows up
layer after layer, ReLUs that output mostly zeros, gradients that vanish
towards the input. For a tensor ``t`` with ``n`` entries each row reports

.. math::

    \\text{mean} = \\frac{1}{n}\\sum t, \\quad
    \\text{std} = \\sqrt{\\frac{1}{n}\\sum (t - \\text{mean})^2}, \\quad
    \\text{zeros} = \\frac{\\#\\{t = 0\\}}{n}, \\quad
    \\text{norm} = \\sqrt{\\sum t^2}

(the std without Bessel's correction; statistics computed in float64). Rows
are plain dicts, ready for ``pandas.DataFrame``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._checks import check_module

__all__ = ["DEFAULT_LAYER_TYPES", "activation_stats", "gradient_stats", "update_ratios"]

# Layers whose outputs activation_stats reports by default: the linear maps, the
# normalisations and the activation functions.
DEFAULT_LAYER_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)


def _summary(t: torch.Tensor) -> dict:
    """mean, std (population), zeros (fraction of exact zeros) and L2 norm of all entries of ``t``."""
    t = t.detach().double()
    return {
        "mean": t.mean().item(),
        "std": t.std(correction=0).item(),
        "zeros": t.eq(0).double().mean().item(),
        "norm": t.norm().item(),
    }


def _layers_of_types(model: nn.Module, layer_types) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module of ``layer_types`` (a class or a tuple of classes), in registration order."""
    types = layer_types if isinstance(layer_types, tuple) else (layer_types,)
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise ValueError(f"layer_types must be an nn.Module subclass or a tuple of them, got {layer_types!r}")
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, types)]
    if not layers:
        raise ValueError(f"model has no module of layer_types {[t.__name__ for t in types]}")
    return layers


def _layers_with_trainable_weight(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module with a ``weight`` parameter that requires grad, in registration order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, "weight", None), nn.Parameter) and module.weight.requires_grad
    ]


def _loss(model: nn.Module, batch, loss_fn: Callable) -> torch.Tensor:
    """``loss_fn(model(x))`` for a tensor batch, ``loss_fn(model(x), y)`` for a pair; checked to be a scalar."""
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if isinstance(batch, torch.Tensor):
        loss = loss_fn(model(batch))
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        loss = loss_fn(model(batch[0]), batch[1])
    else:
        raise ValueError(f"batch must be a tensor x or a pair (x, y), got {type(batch).__name__}")
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        raise ValueError(f"loss_fn must return a scalar tensor, got {loss!r}")
    return loss


def activation_stats(model: nn.Module, batch: torch.Tensor, layer_types=DEFAULT_LAYER_TYPES) -> list[dict]:
    """Statistics of the output of every layer of the given types, in the order the forward pass calls them.

    Runs ``model(batch)`` once without autograd, in the model's current
    train/eval mode (batch norm and dropout behave accordingly), with a forward
    hook on each module that is an instance of ``layer_types``. A module called
    several times (one ``nn.ReLU`` reused after every conv) gives one row per call.

    Args:
        model: any nn.Module.
        batch: the input, e.g. (N, C, H, W).
        layer_types: a class or tuple of classes (default :data:`DEFAULT_LAYER_TYPES`).

    Returns:
        Rows ``{"name", "type", "call", "shape", "mean", "std", "zeros", "norm"}``:
        ``call`` counts the calls of that module (0 for the first), ``shape``
        is the output's shape (batch included), and the statistics are over
        all its entries (norm: of the whole batch's output).

    The hooks are removed afterwards, also when the forward pass raises.
    """
    check_module("model", model)
    layers = _layers_of_types(model, layer_types)
    rows, calls = [], dict.fromkeys((name for name, _ in layers), 0)

    def make_hook(name):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(
                    f"layer {name!r} ({type(module).__name__}) returned {type(output).__name__}, not a tensor; "
                    "leave its type out of layer_types"
                )
            row = {"name": name, "type": type(module).__name__, "call": calls[name], "shape": tuple(output.shape)}
            rows.append({**row, **_summary(output)})
            calls[name] += 1

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in layers]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def gradient_stats(model: nn.Module, batch, loss_fn: Callable) -> list[dict]:
    """Statistics of the loss's gradient with respect to every layer's weight.

    One forward and backward pass: ``loss = loss_fn(model(x))`` when ``batch``
    is a tensor ``x``, ``loss = loss_fn(model(x), y)`` when it is a pair
    ``(x, y)`` (e.g. ``nn.CrossEntropyLoss()`` with labels ``y``). The
    gradients come from ``torch.autograd.grad``: the parameters' ``.grad``
    fields are left as they were, and no hooks are installed.

    These are gradients of the *weights* (what the optimizer uses), not of
    the layers' outputs. Rows follow the module registration order (usually
    the forward order), one per module with a ``weight`` parameter that
    requires grad (conv, linear, and normalisation layers' scales); biases are
    left out. A weight the loss does not depend on has a zero gradient.

    Returns:
        Rows ``{"name", "type", "shape", "mean", "std", "zeros", "norm",
        "weight_norm"}``: ``shape`` is the weight's shape, the statistics are
        those of its gradient, ``weight_norm`` the weight's own L2 norm (their
        ratio times the learning rate is the relative size of an SGD step).
    """
    check_module("model", model)
    loss = _loss(model, batch, loss_fn)
    layers = _layers_with_trainable_weight(model)
    if not layers:
        raise ValueError("model has no weight parameter that requires grad")
    weights = [module.weight for _, module in layers]
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [
        {
            "name": name,
            "type": type(module).__name__,
            "shape": tuple(module.weight.shape),
            **_summary(grad if grad is not None else torch.zeros_like(module.weight)),
            "weight_norm": module.weight.detach().double().norm().item(),
        }
        for (name, module), grad in zip(layers, grads)
    ]


def update_ratios(model: nn.Module, step: Callable[[], object]) -> list[dict]:
    """How far one optimizer step moves every layer's weight, relative to the weight's size.

    Copies every layer's weight, calls ``step()`` once (anything that updates the model in
    place: ``lambda: train_step(model, batch, optimizer, device="cpu")``, or
    ``optimizer.step`` after a ``backward``), and compares:

    .. math::

        \\text{ratio} = \\frac{\\lVert W_\\text{after} - W_\\text{before} \\rVert}{\\lVert W_\\text{before} \\rVert}

    (L2 norms over all entries, in float64). It is the relative change of the layer per
    step; for plain SGD it is ``lr * gradient norm / weight norm`` (see :func:`gradient_stats`),
    for any optimizer it is what actually happened. A rule of thumb for babysitting a
    training run (Karpathy's CS231n notes): around ``1e-3``; far below, the learning rate is
    too low (the layer hardly moves); ``1e-2`` and above, too high.

    The layers are those of :func:`gradient_stats`: every module with a ``weight`` parameter
    that requires grad (conv, linear, normalisation scales); biases are left out.

    Args:
        model: the model ``step`` updates.
        step: a callable that takes no argument; its return value is discarded.

    Returns:
        Rows ``{"name", "type", "shape", "update_norm", "weight_norm", "ratio"}``:
        ``weight_norm`` is the norm before the step; ``ratio`` is ``inf`` (or ``nan``)
        for a weight that was exactly zero before the step.
    """
    check_module("model", model)
    if not callable(step):
        raise ValueError(f"step must be a callable that takes no argument, got {type(step).__name__}")
    layers = _layers_with_trainable_weight(model)
    if not layers:
        raise ValueError("model has no weight parameter that requires grad")
    before = [module.weight.detach().double().clone() for _, module in layers]
    step()
    rows = []
    for (name, module), old in zip(layers, before):
        update_norm = (module.weight.detach().double() - old).norm()
        weight_norm = old.norm()
        rows.append({
            "name": name,
            "type": type(module).__name__,
            "shape": tuple(module.weight.shape),
            "update_norm": update_norm.item(),
            "weight_norm": weight_norm.item(),
            "ratio": (update_norm / weight_norm).item(),
        })
    return rows
