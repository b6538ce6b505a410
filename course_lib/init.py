"""Weight initialisation: zeros, small normal, Xavier/Glorot, Kaiming/He, orthogonal, LSUV.

Why the scale matters: a unit of a linear or conv layer computes
``y_j = sum_i W_ji x_i`` over ``n_in = fan_in`` inputs. With independent,
zero-mean weights and inputs,

.. math::

    \\operatorname{Var}(y_j) = n_\\text{in} \\operatorname{Var}(W) \\operatorname{Var}(x)
    \\qquad\\text{and backwards}\\qquad
    \\operatorname{Var}(\\delta_i) = n_\\text{out} \\operatorname{Var}(W) \\operatorname{Var}(\\delta).

Keeping both variances constant from layer to layer asks for
``Var(W) = 1 / n_in`` (forward) and ``Var(W) = 1 / n_out`` (backward);
Glorot and Bengio (2010) compromise on ``Var(W) = 2 / (n_in + n_out)``. A ReLU
zeroes half of its inputs, halving the second moment, so He et al. (2015) use
``Var(W) = 2 / n_in``. In general ``Var(W) = gain^2 / fan`` with the gain of
the nonlinearity that follows (:func:`calculate_gain`).

A uniform ``U(-b, b)`` has variance ``b^2 / 3``, so a uniform initialiser with
standard deviation ``std`` uses the bound ``b = sqrt(3) std``.

Every ``*_`` function fills its tensor in place without recording the
operation for autograd, and returns it. Same names, signatures and random
draws as ``torch.nn.init``: with the same generator state the results are
identical. :func:`lsuv_` and :func:`init_model` work on whole models.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_choice, check_int, check_module, check_number, check_tensor
from .modes import evaluating

__all__ = [
    "INIT_SCHEMES",
    "calculate_gain",
    "fan_in_and_fan_out",
    "init_model",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lsuv_",
    "normal_",
    "orthogonal_",
    "torchvision_init_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

# Nonlinearities after which a layer computes a linear map of its input (gain 1).
_LINEAR_NAMES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
_NONLINEARITIES = (*_LINEAR_NAMES, "sigmoid", "tanh", "relu", "leaky_relu", "selu")
_MODES = ("fan_in", "fan_out")
#: Layout of a weight with a fan: (out, in) for a linear layer, (out, in / groups, kH, kW) for a conv.
_WEIGHT_LAYOUT = "(out, in, ...)"


def fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """Number of inputs and outputs each weight is connected to.

    For a linear weight (out, in): ``fan_in = in``, ``fan_out = out``. For a
    conv weight (out, in / groups, kH, kW) every output unit sums
    ``in / groups * kH * kW`` inputs, so with the receptive field
    ``r = kH * kW`` (the product of all trailing dims):
    ``fan_in = (in / groups) r`` and ``fan_out = out r``.

    Raises ``ValueError`` for tensors with fewer than 2 dimensions (a bias has no fan).
    """
    check_tensor("tensor", tensor, 2, _WEIGHT_LAYOUT)
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which to scale the weights' std for the nonlinearity that follows the layer.

    =========================== ==========================================
    nonlinearity                gain
    =========================== ==========================================
    linear, conv*, sigmoid      1
    tanh                        5 / 3
    relu                        sqrt(2)
    leaky_relu                  sqrt(2 / (1 + negative_slope^2)), ``param`` = negative_slope (default 0.01)
    selu                        3 / 4
    =========================== ==========================================

    ReLU's sqrt(2) compensates for the half of the units it zeroes; a leaky
    ReLU with slope ``a`` keeps a fraction ``a^2`` of the negative half's
    second moment. Same values as ``torch.nn.init.calculate_gain``.
    """
    check_choice("nonlinearity", nonlinearity, _NONLINEARITIES)
    if nonlinearity in _LINEAR_NAMES or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    # leaky_relu
    if param is None:
        param = 0.01
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise ValueError(f"param (the negative slope of leaky_relu) must be a number, got {param!r}")
    return math.sqrt(2.0 / (1 + param**2))


def _fan(tensor: torch.Tensor, mode: str) -> int:
    """``fan_in`` or ``fan_out`` of ``tensor``, chosen by ``mode`` (case-insensitive, as in PyTorch)."""
    if not isinstance(mode, str) or mode.lower() not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return fan_in if mode.lower() == "fan_in" else fan_out


@torch.no_grad()
def _fill_uniform_(tensor: torch.Tensor, bound: float, generator) -> torch.Tensor:
    """Fill with U(-bound, bound) (variance bound^2 / 3), no autograd record."""
    return tensor.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def _fill_normal_(tensor: torch.Tensor, mean: float, std: float, generator) -> torch.Tensor:
    """Fill with N(mean, std^2), no autograd record."""
    return tensor.normal_(mean, std, generator=generator)


@torch.no_grad()
def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill with zeros. Every unit of a zero-initialised layer computes the same
    output and gets the same gradient, so the units never become different (symmetry)."""
    check_tensor("tensor", tensor)
    return tensor.zero_()


def normal_(
    tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill with samples of N(mean, std^2)."""
    check_tensor("tensor", tensor)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std!r}")
    return _fill_normal_(tensor, mean, std, generator)


def _xavier_std(tensor: torch.Tensor, gain: float) -> float:
    """``gain sqrt(2 / (fan_in + fan_out))``, the std both Xavier initialisers aim for."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot & Bengio (2010), uniform: U(-b, b) with ``b = gain sqrt(6 / (fan_in + fan_out))``.

    Its variance ``b^2 / 3 = gain^2 * 2 / (fan_in + fan_out)`` is the
    compromise between the forward (1 / fan_in) and backward (1 / fan_out)
    conditions. (Computed as ``b = sqrt(3) std``, in PyTorch's order, so the
    rounding, and hence the values, are PyTorch's.)
    Tensor of shape (out, in, *kernel), at least 2 dims.
    """
    return _fill_uniform_(tensor, math.sqrt(3.0) * _xavier_std(tensor, gain), generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot & Bengio (2010), normal: N(0, std^2) with ``std = gain sqrt(2 / (fan_in + fan_out))``."""
    return _fill_normal_(tensor, 0.0, _xavier_std(tensor, gain), generator)


def _kaiming_std(tensor: torch.Tensor, a: float, mode: str, nonlinearity: str) -> float:
    """``gain / sqrt(fan)``, the std both Kaiming initialisers aim for (0 for an empty tensor: nothing to fill)."""
    gain, fan = calculate_gain(nonlinearity, a), _fan(tensor, mode)
    return gain / math.sqrt(fan) if fan else 0.0


def kaiming_uniform_(
    tensor: torch.Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He et al. (2015), uniform: U(-b, b) with ``b = sqrt(3) gain / sqrt(fan)``.

    ``fan`` is fan_in (``mode="fan_in"``: preserves the forward variance) or
    fan_out (``"fan_out"``: preserves the backward variance); ``gain =
    calculate_gain(nonlinearity, a)``, with ``a`` the negative slope of a leaky
    ReLU (the default ``a=0`` gives ReLU's sqrt(2): ``Var(W) = 2 / fan_in``).
    PyTorch's default for nn.Linear / nn.Conv2d is ``a = sqrt(5)``, i.e.
    ``b = 1 / sqrt(fan_in)``.
    """
    return _fill_uniform_(tensor, math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity), generator)


def kaiming_normal_(
    tensor: torch.Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He et al. (2015), normal: N(0, std^2) with ``std = gain / sqrt(fan)``; arguments as :func:`kaiming_uniform_`."""
    return _fill_normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


@torch.no_grad()
def orthogonal_(tensor: torch.Tensor, gain: float = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Saxe et al. (2013): a (semi-)orthogonal matrix times ``gain``.

    The tensor is viewed as a (rows, cols) matrix with ``rows = shape[0]``
    (for a conv weight: one row per output channel, cols = in / groups * kH * kW).
    Draw A ~ N(0, 1) of that shape (transposed when rows < cols, so that it is
    tall), factor ``A = QR`` and multiply Q's columns by ``sign(diag(R))`` -
    without that correction Q would not be uniformly distributed over the
    orthogonal matrices (Mezzadri 2007). Afterwards ``W W^T = gain^2 I`` if
    rows <= cols, ``W^T W = gain^2 I`` otherwise: every singular value equals
    ``gain``, so the layer preserves the norm of (the component of) its input.
    """
    check_tensor("tensor", tensor, 2, _WEIGHT_LAYOUT)
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = tensor.new_empty((rows, cols)).normal_(0, 1, generator=generator)
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)  # q: (max, min) with orthonormal columns
    q = q * torch.diagonal(r).sign()  # column j times sign(R_jj)
    if rows < cols:
        q = q.t()
    tensor.view_as(q).copy_(q)
    return tensor.mul_(gain)


# ----------------------------------------------------------------------------------------------
# Whole models


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module with a weight of 2+ dims whose class name contains 'Conv' or 'Linear'.

    That covers nn.Conv*d, nn.Linear and course_lib's own conv and linear
    modules, and skips normalisation layers (1-D weights) and embeddings.
    """
    check_module("model", model)
    return [
        (name, module)
        for name, module in model.named_modules()
        if any(word in type(module).__name__ for word in ("Conv", "Linear"))
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.ndim >= 2
    ]


def _zero_bias(module: nn.Module) -> None:
    if isinstance(getattr(module, "bias", None), torch.Tensor):
        zeros_(module.bias)


def lsuv_(
    model: nn.Module,
    batch: torch.Tensor,
    tol: float = 0.05,
    max_iters: int = 10,
    generator: torch.Generator | None = None,
) -> list[dict]:
    """Layer-sequential unit-variance initialisation (Mishkin & Matas, 2016), in place.

    1. Orthogonal init (:func:`orthogonal_`) of every conv / linear weight, biases zeroed.
    2. For each such layer in the order the forward pass reaches it: run
       ``model(batch)``, measure the variance ``v`` of that layer's output
       (over all its entries, with a forward hook) and divide the weight by
       ``sqrt(v)``; repeat until ``|v - 1| < tol`` or ``max_iters`` rescalings.
       Earlier layers are already fixed, so each layer's input has its final
       statistics when the layer is scaled.

    Runs in eval mode (dropout off, batch norm uses its running statistics)
    and restores each module's train/eval flag afterwards. A layer the forward
    pass calls several times is measured on its first call; layers the forward
    pass never reaches are orthogonally initialised but not scaled.

    Args:
        model: any nn.Module; ``model(batch)`` must run.
        batch: a batch of real (or realistic) inputs, e.g. (N, C, H, W).
        tol: accepted distance of the output variance from 1.
        max_iters: most rescalings per layer.
        generator: for the orthogonal draws.

    Returns:
        One row per scaled layer, in forward order: ``{"layer": name,
        "iterations": rescalings done, "variance": final output variance}``
        (plain dicts, ready for ``pandas.DataFrame``).
    """
    check_tensor("batch", batch)
    check_number("tol", tol, positive=True)
    check_int("max_iters", max_iters, 1)
    layers = _weight_layers(model)
    for _, module in layers:
        orthogonal_(module.weight, generator=generator)
        _zero_bias(module)

    outputs: dict[str, torch.Tensor] = {}  # layer name -> output of its first call, in call order

    def make_hook(name):
        def hook(module, args, output):
            outputs.setdefault(name, output)

        return hook

    def variance(name: str) -> float:
        outputs.clear()
        model(batch)
        return outputs[name].double().var(correction=0).item()

    handles = [module.register_forward_hook(make_hook(name)) for name, module in layers]
    report = []
    try:
        with evaluating(model):
            model(batch)
            order, weights = list(outputs), dict(layers)  # forward order of the layers actually called
            for name in order:
                weight, iterations = weights[name].weight, 0
                var = variance(name)
                while abs(var - 1) >= tol and iterations < max_iters:
                    if var == 0:
                        raise ValueError(f"layer {name!r} outputs a constant on batch: cannot scale it to variance 1")
                    weight.div_(math.sqrt(var))
                    iterations += 1
                    var = variance(name)
                report.append({"layer": name, "iterations": iterations, "variance": var})
    finally:
        for handle in handles:
            handle.remove()
    return report


def _apply_to_weights(fill):
    """An init_model scheme: ``fill(weight, generator)`` on every conv/linear weight, biases zeroed."""

    def scheme(model, generator, batch):
        for _, module in _weight_layers(model):
            fill(module.weight, generator)
            _zero_bias(module)

    return scheme


def _reset_parameters(model, generator, batch):
    for _, module in _weight_layers(model):
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def _lsuv(model, generator, batch):
    if batch is None:
        raise ValueError("batch must be given for scheme 'lsuv' (a batch of inputs to measure variances on)")
    lsuv_(model, batch, generator=generator)


# name -> function(model, generator, batch). Kaiming uses PyTorch's defaults (a=0, fan_in,
# leaky_relu), i.e. He's ReLU initialisation Var(W) = 2 / fan_in.
_SCHEMES = {
    "zeros": _apply_to_weights(lambda w, g: zeros_(w)),
    "normal": _apply_to_weights(lambda w, g: normal_(w, 0.0, 0.01, generator=g)),
    "xavier_uniform": _apply_to_weights(lambda w, g: xavier_uniform_(w, generator=g)),
    "xavier_normal": _apply_to_weights(lambda w, g: xavier_normal_(w, generator=g)),
    "kaiming_uniform": _apply_to_weights(lambda w, g: kaiming_uniform_(w, generator=g)),
    "kaiming_normal": _apply_to_weights(lambda w, g: kaiming_normal_(w, generator=g)),
    "orthogonal": _apply_to_weights(lambda w, g: orthogonal_(w, generator=g)),
    "lsuv": _lsuv,
    "default": _reset_parameters,
}
INIT_SCHEMES = tuple(_SCHEMES)


def init_model(
    model: nn.Module, scheme: str, generator: torch.Generator | None = None, batch: torch.Tensor | None = None
) -> nn.Module:
    """Initialise every conv / linear layer of ``model`` by the scheme named ``scheme``; returns ``model``.

    Layers: every module with a weight of 2+ dims whose class name contains
    'Conv' or 'Linear' (nn.Conv2d, nn.Linear, course_lib's conv layers, ...).

    Schemes (:data:`INIT_SCHEMES`): ``"zeros"``, ``"normal"`` (N(0, 0.01^2)),
    ``"xavier_uniform"``, ``"xavier_normal"``, ``"kaiming_uniform"``,
    ``"kaiming_normal"`` (He for ReLU: Var(W) = 2 / fan_in), ``"orthogonal"``,
    ``"lsuv"`` (needs ``batch``; call :func:`lsuv_` directly for its report) and
    ``"default"`` (each layer's own ``reset_parameters()``, PyTorch's default).
    Biases are zeroed, except by ``"default"``.
    """
    check_choice("scheme", scheme, INIT_SCHEMES)
    _weight_layers(model)  # checks model
    _SCHEMES[scheme](model, generator, batch)
    return model


def torchvision_init_(model: nn.Module, *, linear_std: float | None = 0.01) -> nn.Module:
    """The initialization torchvision gives its VGG, ResNet, MobileNet and (here) Inception nets; returns ``model``.

    Convolutions He-normal with fan-out (the ReLU gain, keeping the backward pass's
    variance steady) and zero bias; BatchNorm layers the identity (weight 1, bias 0);
    linear layers N(0, ``linear_std``^2) with zero bias, or PyTorch's default when
    ``linear_std`` is None (as ResNet leaves its classifier). Uses ``torch.nn.init``
    and the global RNG, so a seeded build matches torchvision's draw for draw.
    """
    check_module("model", model)
    if linear_std is not None:
        check_number("linear_std", linear_std, positive=True)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)
    return model
