"""Signals through a deep stack: how the variance of the activations and of the gradients changes with depth.

Initialisation (chapter 6) and normalisation (chapter 7) are judged by one
picture: the variance of every layer's output in the forward pass, and of the
loss's gradient with respect to that output in the backward pass, plotted
against the layer's index. A good scheme keeps both roughly constant; a bad
one makes them shrink or grow geometrically. For layer ``l`` with output
``z_l`` (all its entries, batch included) the rows report

.. math::

    \\operatorname{Var}(z_l) \\quad\\text{and}\\quad
    \\operatorname{Var}\\Big(\\frac{\\partial L}{\\partial z_l}\\Big),

population variances computed in float64. :func:`deep_mlp` builds the
classic test bed, a stack of equally wide fully connected layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._checks import check_choice, check_int, check_module
from .stats import _layers_of_types, _loss, _summary

__all__ = ["DEEP_MLP_ACTIVATIONS", "DEPTH_LAYER_TYPES", "deep_mlp", "signal_variances", "weight_layer_depth"]

#: Activation names :func:`deep_mlp` accepts; the same names as ``course_lib.init.calculate_gain``'s.
DEEP_MLP_ACTIVATIONS = {"linear": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

#: Layers whose outputs signal_variances reports by default: the linear maps (their outputs are pre-activations).
DEPTH_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def deep_mlp(
    depth: int,
    width: int,
    in_features: int,
    num_classes: int,
    activation: str = "relu",
    *,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """``Flatten``, ``depth`` blocks ``Linear(width) + activation``, then ``Linear(num_classes)``.

    Input (N, *) with ``in_features`` entries per example (e.g. (N, 1, 28, 28)
    images for ``in_features = 784``); output (N, num_classes). Block ``l``
    (1-based) is ``model[2l - 1]`` (its linear layer) and ``model[2l]`` (its
    activation); the classifier is ``model[-1]``. The weights are PyTorch's
    defaults: initialise them with ``course_lib.init.init_model``.

    Args:
        depth: number of hidden layers (>= 1).
        width: units per hidden layer.
        in_features: entries of one flattened input.
        num_classes: outputs of the last layer.
        activation: one of :data:`DEEP_MLP_ACTIVATIONS` (``"linear"`` for none).
        dtype: of the parameters (default: PyTorch's default dtype).
    """
    for name, value in (("depth", depth), ("width", width), ("in_features", in_features), ("num_classes", num_classes)):
        check_int(name, value, 1)
    check_choice("activation", activation, tuple(DEEP_MLP_ACTIVATIONS))
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [in_features] + [width] * depth
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out, dtype=dtype), DEEP_MLP_ACTIVATIONS[activation]()]
    layers.append(nn.Linear(width, num_classes, dtype=dtype))
    return nn.Sequential(*layers)


def signal_variances(
    model: nn.Module, batch, loss_fn: Callable, layer_types=DEPTH_LAYER_TYPES
) -> list[dict]:
    """Variance of every layer's output and of the loss's gradient with respect to it, in forward order.

    One forward and one backward pass, in the model's current train/eval
    mode: ``loss = loss_fn(model(x))`` when ``batch`` is a tensor ``x``,
    ``loss = loss_fn(model(x), y)`` when it is a pair ``(x, y)``. A forward
    hook on each module of ``layer_types`` keeps its output ``z``; the
    gradient ``dL/dz`` comes from ``torch.autograd.grad``, so the
    parameters' ``.grad`` fields are left as they were. A module called
    several times gives one row per call. Unlike
    :func:`~course_lib.analysis.gradient_stats` (gradients of the *weights*),
    these are gradients of the layers' *outputs*, the quantity the backward
    half of the Xavier derivation keeps constant.

    Args:
        model: any nn.Module whose parameters require grad (or whose input does).
        batch: the input x, e.g. (N, C, H, W), or a pair (x, y).
        loss_fn: returns a scalar, e.g. ``nn.CrossEntropyLoss()``.
        layer_types: a class or tuple of classes (default :data:`DEPTH_LAYER_TYPES`,
            the linear and conv layers, whose outputs are the pre-activations).

    Returns:
        Rows ``{"index", "name", "type", "call", "shape", "activation_mean",
        "activation_var", "gradient_var"}``: ``index`` counts the rows from 1
        (the layer's depth in a plain stack), ``call`` the calls of that
        module (0 for the first), ``shape`` is the output's shape; the
        variances are population variances over all entries, in float64.

    The hooks are removed afterwards, also when the forward pass raises.
    """
    check_module("model", model)
    layers = _layers_of_types(model, layer_types)
    outputs: list[tuple[str, nn.Module, int, torch.Tensor]] = []
    calls = dict.fromkeys((name for name, _ in layers), 0)

    def make_hook(name):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(
                    f"layer {name!r} ({type(module).__name__}) returned {type(output).__name__}, not a tensor; "
                    "leave its type out of layer_types"
                )
            if not output.requires_grad:
                raise ValueError(
                    f"the output of layer {name!r} ({type(module).__name__}) does not require grad: "
                    "no gradient reaches it (are its parameters frozen, or is grad mode off?)"
                )
            outputs.append((name, module, calls[name], output))
            calls[name] += 1

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in layers]
    try:
        loss = _loss(model, batch, loss_fn)
    finally:
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(loss, [out for *_, out in outputs], allow_unused=True)
    rows = []
    for index, ((name, module, call, out), grad) in enumerate(zip(outputs, grads), start=1):
        activation = _summary(out)
        gradient = _summary(grad if grad is not None else torch.zeros_like(out))
        rows.append({
            "index": index,
            "name": name,
            "type": type(module).__name__,
            "call": call,
            "shape": tuple(out.shape),
            "activation_mean": activation["mean"],
            "activation_var": activation["std"] ** 2,
            "gradient_var": gradient["std"] ** 2,
        })
    return rows


def weight_layer_depth(model: nn.Module, input_shape) -> int:
    """Number of layers with weights on the deepest input-to-output path of ``model``, found by autograd.

    This is how papers count depth ("22 layers" for GoogLeNet, 16 for VGG-16, 18 for
    ResNet-18): a layer counts when it multiplies by a weight (a conv or a linear layer;
    a weight is a parameter with 2 or more dimensions, so biases, BatchNorm and other
    per-channel scales do not count), parallel branches count by their deepest one,
    and pooling, activations, concatenation and additions count 0.

    Method: one eval-mode forward pass of zeros of ``input_shape`` (N, C, H, W) with
    gradients on; then a walk over the autograd graph from the output back to the
    input. An operation of the graph is a weight layer when one of its inputs comes
    from a weight and not from the input image; the depth of an operation is the
    largest depth among its inputs that lead back to the image, plus one for a weight
    layer. The model's mode is restored afterwards. Auxiliary heads run only in training
    mode, so they are not on the path (GoogLeNet's deepest path is the main one anyway).

    Returns:
        The depth, an int >= 0. ``ValueError`` if the output does not depend on the input.
    """
    check_module("model", model)
    if not (isinstance(input_shape, (tuple, list, torch.Size)) and len(input_shape) >= 2):
        raise ValueError(f"input_shape must be a tuple like (N, C, H, W), got {input_shape!r}")
    param = next(model.parameters(), None)
    like = {"dtype": param.dtype, "device": param.device} if param is not None else {}
    x = torch.zeros(tuple(input_shape), requires_grad=True, **like)
    weights = {id(p) for p in model.parameters() if p.ndim >= 2}
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        raise ValueError("the model's output must be a tensor that depends on the input")

    # Post-order walk (iterative: the graph of a deep network is deeper than Python's recursion limit).
    # For every node: its depth if it leads back to the input (else None), and whether it leads to a weight.
    depth: dict = {}
    to_weight: dict = {}
    stack = [(out.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        if node in depth:
            continue
        children = [child for child, _ in node.next_functions if child is not None]
        if not expanded:
            stack.append((node, True))
            stack.extend((child, False) for child in children if child not in depth)
            continue
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf tensor
        if variable is not None:
            depth[node] = 0 if variable is x else None
            to_weight[node] = id(variable) in weights
            continue
        from_input = [depth[child] for child in children if depth[child] is not None]
        is_weight_layer = any(to_weight[child] and depth[child] is None for child in children)
        to_weight[node] = any(to_weight[child] for child in children)
        depth[node] = max(from_input) + int(is_weight_layer) if from_input else None
    if depth[out.grad_fn] is None:
        raise ValueError("the model's output does not depend on its input")
    return depth[out.grad_fn]
