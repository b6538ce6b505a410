r"""Looking inside a trained CNN: feature maps, occlusion sensitivity and saliency maps.

Three questions, three tools:

* **What does a layer compute?** :func:`feature_maps` records the outputs of named layers
  with forward hooks, for plotting the maps of low, middle and high layers.
* **Which part of the image does the answer depend on?** :func:`occlusion_sensitivity`
  (Zeiler and Fergus 2014) slides a grey patch over the image and records how much the
  score of a class drops with the patch at each position. It needs only forward passes, and
  measures the effect of removing a whole region, however non-linear the network.
* **Which pixels would change the answer fastest?** :func:`saliency_map` (Simonyan,
  Vedaldi and Zisserman 2014) takes the gradient of the class score with respect to the input
  pixels: one backward pass, a first-order (local, linear) answer.

For a linear model :math:`s_c(x) = w_c \cdot x + b_c` the two agree exactly: occluding the
patch :math:`P` with the value :math:`v` lowers the score by :math:`\sum_{p \in P} w_{c,p}
(x_p - v)`, and the gradient is :math:`w_c` everywhere. For a deep network they differ, which
is what makes comparing them instructive.

Every function runs the model in eval mode (batch norm with running statistics, no dropout)
and restores its train/eval mode afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import as_pair, check_choice, check_int, check_module, check_number, check_rank, did_you_mean
from ..modes import evaluating

__all__ = ["SCORES", "feature_maps", "occlusion_sensitivity", "input_gradient", "saliency_map"]

SCORES = ("logit", "probability")


def _named_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``{name: module}`` for the names in ``layers`` (``model.named_modules()`` names), in that order."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be a non-empty sequence of module names, e.g. ['0', '4'], got {layers!r}")
    modules = dict(model.named_modules())
    chosen = {}
    for name in layers:
        if not isinstance(name, str) or name not in modules:
            raise ValueError(f"layers: model has no module named {name!r}{did_you_mean(name, modules)}")
        if name in chosen:
            raise ValueError(f"layers: {name!r} is named twice")
        chosen[name] = modules[name]
    return chosen


def feature_maps(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The outputs of the named layers of ``model`` on ``x``, recorded with forward hooks.

    Args:
        model: any nn.Module; run once in eval mode without autograd.
        x: its input, e.g. (N, C, H, W).
        layers: names from ``model.named_modules()`` (``"0"``, ``"features.3"``, ...); the
            model's own name ``""`` gives its final output.

    Returns:
        ``{name: output}`` in the order of ``layers``, each detached, e.g. (N, C_l, H_l, W_l)
        for a convolution. A layer that the forward pass calls several times keeps its last
        output; a layer that it never calls raises ``ValueError``, as does one whose output is
        not a tensor. The hooks are removed afterwards, also when the forward pass raises.
    """
    check_module("model", model)
    chosen = _named_layers(model, layers)
    outputs: dict[str, torch.Tensor] = {}

    def make_hook(name):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"layer {name!r} ({type(module).__name__}) returned {type(output).__name__}, "
                                 "not a tensor")
            outputs[name] = output.detach()

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in chosen.items()]
    try:
        with evaluating(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in chosen if name not in outputs]
    if missing:
        raise ValueError(f"layers {missing} were not called by model's forward pass")
    return {name: outputs[name] for name in chosen}


def _check_targets(x: torch.Tensor, target) -> torch.Tensor:
    """``target`` as an (N,) int64 tensor of class indices, one per image of ``x``."""
    if isinstance(target, int) and not isinstance(target, bool):
        target = torch.full((x.shape[0],), target, dtype=torch.int64)
    if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32) or target.ndim != 1:
        raise ValueError(f"target must be an int or an (N,) integer tensor of class indices, got {target!r}")
    if target.shape[0] != x.shape[0]:
        raise ValueError(f"target must have one class per image: shape ({x.shape[0]},), got {tuple(target.shape)}")
    return target.long()


def _class_scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    """(B,) score of class ``target[b]`` for image ``b``: its logit, or its softmax probability."""
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must return (N, K) logits for (N, ...) inputs, got {got}")
    if int(target.max()) >= logits.shape[1] or int(target.min()) < 0:
        raise ValueError(f"target must hold class indices in [0, {logits.shape[1] - 1}], got {target.tolist()}")
    values = logits.softmax(dim=1) if score == "probability" else logits
    return values.gather(1, target[:, None].to(logits.device))[:, 0]


@torch.no_grad()
def occlusion_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    target,
    patch: int | Sequence[int] = 8,
    stride: int | Sequence[int] = 2,
    fill: float = 0.0,
    *,
    score: str = "probability",
    batch_size: int = 256,
) -> torch.Tensor:
    r"""Zeiler and Fergus's occlusion experiment: how much a class score drops under a sliding patch.

    Args:
        model: maps (B, C, H, W) images to (B, K) logits.
        x: (N, C, H, W) images.
        target: the class whose score is watched, an int or an (N,) tensor (one per image).
        patch: ``(ph, pw)`` or an int, the side of the occluding square, at most (H, W).
        stride: ``(sh, sw)`` or an int, the step between patch positions.
        fill: the value written into every channel of the patch (grey: the data's mean).
        score: ``"probability"`` (the softmax of the target class, as Zeiler and Fergus plot)
            or ``"logit"``.
        batch_size: occluded copies per forward pass (memory).

    Returns:
        (N, H', W') with :math:`H' = \lfloor (H - p_h) / s_h \rfloor + 1` (and W' alike): entry
        ``[n, i, j]`` is :math:`s(x_n) - s(x_n \text{ with rows } i s_h \dots i s_h + p_h - 1
        \text{ and columns } j s_w \dots j s_w + p_w - 1 \text{ set to fill})`. Positive: covering
        that region lowers the score, so the network relies on it. The patch centred on entry
        ``[i, j]`` sits at pixel :math:`(i s_h + (p_h - 1)/2,\ j s_w + (p_w - 1)/2)`.
    """
    check_module("model", model)
    check_rank("x", x, 4, "(N, C, H, W)")
    target = _check_targets(x, target)
    ph, pw = as_pair("patch", patch, 1)
    sh, sw = as_pair("stride", stride, 1)
    height, width = x.shape[-2:]
    if ph > height or pw > width:
        raise ValueError(f"patch ({ph}, {pw}) must fit in the image ({height}, {width})")
    check_number("fill", fill)
    check_choice("score", score, SCORES)
    check_int("batch_size", batch_size, 1)
    rows = range(0, height - ph + 1, sh)
    cols = range(0, width - pw + 1, sw)
    positions = [(r, c) for r in rows for c in cols]
    maps = torch.empty(x.shape[0], len(rows), len(cols), dtype=x.dtype)
    with evaluating(model):
        base = _class_scores(model, x, target, score).cpu()
        for n in range(x.shape[0]):
            drops = []
            for start in range(0, len(positions), batch_size):
                chunk = positions[start:start + batch_size]
                copies = x[n].expand(len(chunk), *x.shape[1:]).clone()
                for k, (r, c) in enumerate(chunk):
                    copies[k, :, r:r + ph, c:c + pw] = fill
                scores = _class_scores(model, copies, target[n].expand(len(chunk)), score).cpu()
                drops.append(base[n] - scores)
            maps[n] = torch.cat(drops).view(len(rows), len(cols))
    return maps


def input_gradient(model: nn.Module, x: torch.Tensor, target, *, score: str = "logit") -> torch.Tensor:
    r"""The gradient of each image's class score with respect to its pixels, :math:`\partial s_c / \partial x`.

    Args:
        model: maps (N, C, H, W) images to (N, K) logits; run in eval mode. Its parameters'
            ``.grad`` are left untouched.
        x: (N, C, H, W) images.
        target: the class of each image, an int or an (N,) tensor.
        score: ``"logit"`` (Simonyan et al.'s choice: the unnormalised class score) or
            ``"probability"``.

    Returns:
        (N, C, H, W), entry ``[n]`` the gradient of image ``n``'s score alone (the images of a
        batch do not interact in eval mode, so one backward pass of the summed scores gives
        them all).
    """
    check_module("model", model)
    check_rank("x", x, 4, "(N, C, H, W)")
    target = _check_targets(x, target)
    check_choice("score", score, SCORES)
    inputs = x.detach().clone().requires_grad_(True)
    with evaluating(model), torch.enable_grad():
        scores = _class_scores(model, inputs, target, score)
        (gradient,) = torch.autograd.grad(scores.sum(), inputs)
    return gradient


def saliency_map(model: nn.Module, x: torch.Tensor, target, *, score: str = "logit") -> torch.Tensor:
    r"""Simonyan et al.'s image-specific saliency map: :math:`M_{ij} = \max_c |\partial s / \partial x_{c,i,j}|`.

    The largest absolute gradient over the colour channels of :func:`input_gradient`; the
    arguments are the same. Returns (N, H, W), non-negative.
    """
    return input_gradient(model, x, target, score=score).abs().amax(dim=1)
