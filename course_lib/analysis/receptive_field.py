"""Receptive fields: which input pixels one unit of a layer can see.

Along one axis, a layer with kernel ``k``, stride ``s``, dilation ``d`` and
padding ``p`` (before the first pixel) turns the field of its input units
(size ``r``, jump ``j`` between neighbouring units, centre ``start`` of unit 0,
all in input pixels) into

.. math::

    k_\\text{eff} = d (k - 1) + 1, \\qquad
    r_\\text{out} = r_\\text{in} + (k_\\text{eff} - 1)\\, j_\\text{in}, \\qquad
    j_\\text{out} = j_\\text{in}\\, s, \\qquad
    \\text{start}_\\text{out} = \\text{start}_\\text{in} + \\Big(\\frac{k_\\text{eff} - 1}{2} - p\\Big) j_\\text{in}

starting from the input itself: ``r = 1, j = 1, start = 0`` (pixel ``i`` has
its centre at ``i``). Unit ``i`` of a layer is centred on input pixel
``start + i j`` and sees the ``r`` pixels around it (fewer at the image
border, where some of them are padding). Example: two 3x3 convolutions, the
first with stride 2: r = 1 + 2 * 1 = 3, j = 2, then r = 3 + 2 * 2 = 7.

:func:`receptive_field` runs the recursion on (kernel, stride, ...) tuples,
:func:`receptive_field_of` reads them from an ``nn.Sequential``, and
:func:`empirical_receptive_field` measures the field by back-propagation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import as_pair
from ..layers.functional.conv import resolve_padding
from ..layers.geometry import output_size, sliding_windows

__all__ = [
    "POINTWISE_LAYERS",
    "ReceptiveField",
    "ReceptiveField2d",
    "empirical_receptive_field",
    "receptive_field",
    "receptive_field_of",
]

# Layers that act on each pixel separately (or on channels only): they leave the receptive
# field unchanged. Batch norm counts as one: in eval mode it is a per-channel affine map.
POINTWISE_LAYERS = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Softmax2d,
    nn.Threshold,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.BatchNorm2d,
    nn.LocalResponseNorm,
)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's units along one axis, in input pixels.

    size: ``r``, how many input pixels one unit sees.
    jump: ``j``, the input distance between two neighbouring units.
    start: centre of unit 0's field (input pixel ``i`` is centred at ``i``).
    """

    size: int
    jump: int
    start: float


@dataclass(frozen=True)
class ReceptiveField2d:
    """Receptive field of a network's output units, as (height, width) pairs, and its output size."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    output_size: tuple[int, int]


def _int_at_least(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def receptive_field(layers: Sequence[Sequence[int]]) -> list[ReceptiveField]:
    """Run the receptive-field recursion along one axis.

    Args:
        layers: one tuple per layer, input first: ``(kernel_size, stride)``,
            ``(kernel_size, stride, dilation)`` or ``(kernel_size, stride,
            dilation, padding)`` (ints; padding only moves ``start``).
            Layers that act per pixel (ReLU, batch norm) can be left out or
            written ``(1, 1)``.

    Returns:
        One :class:`ReceptiveField` per layer: the field of that layer's output units.
        ``receptive_field([(3, 2), (3, 1)])[-1].size == 7``.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ValueError(
            f"layers must be a sequence of (kernel_size, stride[, dilation[, padding]]) tuples, got {layers!r}"
        )
    size, jump, start, fields = 1, 1, 0.0, []
    for i, layer in enumerate(layers):
        if not (isinstance(layer, Sequence) and 2 <= len(layer) <= 4):
            raise ValueError(f"layers[{i}] must be (kernel_size, stride[, dilation[, padding]]), got {layer!r}")
        kernel, stride, dilation, padding = tuple(layer) + (1, 0)[len(layer) - 2 :]  # defaults d = 1, p = 0
        if not all(_int_at_least(v, 1) for v in (kernel, stride, dilation)) or not _int_at_least(padding, 0):
            raise ValueError(
                f"layers[{i}] must hold ints kernel_size, stride, dilation >= 1 and padding >= 0, got {layer!r}"
            )
        span = dilation * (kernel - 1) + 1  # k_eff: input units one window covers
        start += ((span - 1) / 2 - padding) * jump
        size += (span - 1) * jump
        jump *= stride
        fields.append(ReceptiveField(size, jump, start))
    return fields


# ----------------------------------------------------------------------------------------------
# Reading the layers from a model


def _as_nchw(input_shape) -> tuple[int, int, int, int]:
    """(N, C, H, W) from an (N, C, H, W) or (C, H, W) shape (N = 1)."""
    shape = tuple(input_shape) if isinstance(input_shape, (Sequence, torch.Size)) else ()
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or not all(_int_at_least(v, 1) for v in shape):
        raise ValueError(f"input_shape must be (N, C, H, W) or (C, H, W) with ints >= 1, got {input_shape!r}")
    return shape


def _leaves(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of the layers of a Sequential, nested Sequentials flattened."""
    for name, module in model.named_children():
        full = f"{prefix}{name}"
        if isinstance(module, nn.Sequential):
            yield from _leaves(module, full + ".")
        else:
            yield full, module


def _spatial_params(name: str, module: nn.Module):
    """(kernel, stride, dilation, pad_before, pad_after, ceil_mode) per-axis pairs, or None for a pointwise layer.

    Convolutions are recognised by a 4-D ``weight`` and a ``kernel_size``
    attribute (nn.Conv2d and course_lib's Conv2d); pools are nn.MaxPool2d,
    nn.AvgPool2d and nn.LPPool2d. A pool's stride defaults to its kernel size.
    """
    if isinstance(module, POINTWISE_LAYERS):
        return None
    is_conv = isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.ndim == 4
    if not (is_conv and hasattr(module, "kernel_size")) and not isinstance(
        module, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)
    ):
        raise ValueError(
            f"layer {name!r} ({type(module).__name__}) has an unknown effect on the receptive field; model must "
            "hold only Conv2d, MaxPool2d, AvgPool2d, LPPool2d and pointwise layers (pass e.g. model.features)"
        )
    kernel = as_pair("kernel_size", module.kernel_size, 1)
    stride = as_pair("stride", module.stride if module.stride is not None else module.kernel_size, 1)
    dilation = as_pair("dilation", getattr(module, "dilation", 1), 1)
    left, right, top, bottom = resolve_padding(getattr(module, "padding", 0), kernel, stride, dilation)
    return kernel, stride, dilation, (top, left), (bottom, right), bool(getattr(module, "ceil_mode", False))


def receptive_field_of(model: nn.Module, input_shape) -> ReceptiveField2d:
    """Receptive field of the output units of a convolutional ``nn.Sequential``.

    Args:
        model: an nn.Sequential (nested Sequentials are flattened) of Conv2d,
            MaxPool2d, AvgPool2d, LPPool2d and pointwise layers
            (:data:`POINTWISE_LAYERS`); kernel, stride, dilation and padding
            (ints, pairs, 'same' or 'valid') are read from the modules.
        input_shape: (N, C, H, W) or (C, H, W); used to check that every layer
            fits its input and to compute the output size.

    Returns:
        :class:`ReceptiveField2d` with (height, width) pairs: ``size``,
        ``jump``, ``start`` (as in :func:`receptive_field`) and the output's
        spatial ``output_size``. The size is the theoretical field: near the
        border part of it lies in the padding.

    Raises ``ValueError`` naming the first layer whose spatial effect is
    unknown (Linear, Flatten, adaptive pools, ...) or which does not fit its input.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential, got {type(model).__name__}")
    sizes = list(_as_nchw(input_shape)[2:])
    axes: tuple[list, list] = ([], [])  # (kernel, stride, dilation, padding before) per layer, per axis
    for name, module in _leaves(model):
        params = _spatial_params(name, module)
        if params is None:
            continue
        kernel, stride, dilation, before, after, ceil_mode = params
        for axis, axis_name in enumerate("HW"):
            k, st, d, p = kernel[axis], stride[axis], dilation[axis], before[axis]
            try:
                sizes[axis] = output_size(sizes[axis], k, st, p, d, padding_after=after[axis], ceil_mode=ceil_mode)
            except ValueError as err:
                message = f"layer {name!r} does not fit input_shape {input_shape} along {axis_name}: {err}"
                raise ValueError(message) from None
            axes[axis].append((k, st, d, p))
    fields = [receptive_field(layers)[-1] if layers else ReceptiveField(1, 1, 0.0) for layers in axes]
    return ReceptiveField2d(
        size=(fields[0].size, fields[1].size),
        jump=(fields[0].jump, fields[1].jump),
        start=(fields[0].start, fields[1].start),
        output_size=tuple(sizes),
    )


# ----------------------------------------------------------------------------------------------
# Measuring the field by back-propagation


class _MeanPool2d(nn.Module):
    """Average over the same windows as a MaxPool2d (kernel, stride, padding, dilation, ceil_mode).

    Zero padding; for ceil_mode the right/bottom edge gets the extra zeros the
    last partial window needs. Used in place of max pooling when measuring a
    field: every pixel of a window gets gradient, not only the maximum.
    """

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel, self.stride, self.dilation, before, _, self.ceil_mode = _spatial_params("pool", pool)
        self.padding = before

    def forward(self, x):
        windows = sliding_windows(x, self.kernel, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode)
        return windows.mean((-2, -1))


def _positive_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` in eval mode in which no gradient can vanish by accident.

    Max pools become mean pools; every 2+-D weight is set to ``1 / (its
    numel per output unit)`` (each unit averages its inputs), other parameters
    to 1, biases to 0, batch-norm statistics to mean 0, variance 1. Fed a
    positive input, every activation is then positive, so ReLUs pass gradient.
    """
    probe = copy.deepcopy(model).double().eval()
    for parent in list(probe.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, child_name, _MeanPool2d(child))
            elif isinstance(child, nn.AdaptiveMaxPool2d):
                setattr(parent, child_name, nn.AdaptiveAvgPool2d(child.output_size))
    with torch.no_grad():
        for module in probe.modules():
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
            for name, param in module.named_parameters(recurse=False):
                value = 0.0 if name == "bias" else 1.0 / param[0].numel() if param.ndim >= 2 else 1.0
                param.fill_(value)
    return probe


def empirical_receptive_field(model: nn.Module, input_shape) -> tuple[int, int]:
    """Measure the receptive field of the centre output unit by back-propagation.

    Method: on a positive copy of the model (:func:`_positive_copy`: float64,
    eval mode, all weights equal and positive, max pools replaced by mean pools,
    so no gradient is zero by accident), feed the constant input 0.5 of shape
    ``input_shape``, back-propagate from the output unit at
    ``(H_out // 2, W_out // 2)`` of sample 0 summed over channels, and take the
    bounding box of the input pixels (any channel) with a non-zero gradient.
    The model itself is not modified. It works for any model whose output is
    (N, C, H_out, W_out), not only Sequentials (residual blocks, ...); max
    pooling called functionally inside ``forward`` cannot be replaced and may
    make the field look smaller.

    Returns:
        (height, width) of the support; equal to :func:`receptive_field_of`'s
        size when the input is large enough for the field to fit inside it.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    probe = _positive_copy(model)
    param = next(probe.parameters(), None)
    device = param.device if param is not None else None
    x = torch.full(_as_nchw(input_shape), 0.5, dtype=torch.float64, device=device, requires_grad=True)
    out = probe(x)
    if out.ndim != 4:
        raise ValueError(f"model must output (N, C, H_out, W_out), got shape {tuple(out.shape)}")
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    support = x.grad[0].ne(0).any(0)  # (H, W): pixels that influence the unit
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
