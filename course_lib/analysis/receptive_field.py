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
:func:`receptive_field_of` reads them from an ``nn.Sequential``,
:func:`graph_receptive_field` follows them through any model that ``torch.fx`` can
trace (branches united where they meet), and :func:`empirical_receptive_field`
measures the field by back-propagation.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import as_pair
from ..layers.functional.conv import resolve_padding
from ..layers.geometry import output_size, sliding_windows

__all__ = [
    "POINTWISE_LAYERS",
    "GraphReceptiveField",
    "ReceptiveField",
    "ReceptiveField2d",
    "UnsupportedReceptiveField",
    "empirical_receptive_field",
    "graph_receptive_field",
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


# ----------------------------------------------------------------------------------------------
# Any model: the recursion along the operations it runs


class UnsupportedReceptiveField(ValueError):
    """:func:`graph_receptive_field` cannot give a model's field; the message names the operation and why."""


@dataclass(frozen=True)
class GraphReceptiveField:
    """Result of :func:`graph_receptive_field`, as (height, width) pairs.

    size, jump, start: the field of the units of the map (as in :class:`ReceptiveField2d`).
    output_size: that map's spatial size.
    operation: the operation that produced the map (e.g. ``"aten.cat"``, ``"aten.relu_"``).
    global_context: True when a global operation fed that map: a squeeze-and-excitation gate,
        channel attention or self-attention (an (N, C, 1, 1) vector, or a map computed from all
        positions, combined with the map). Every unit then depends, weakly, on every input
        pixel; ``size`` counts the convolutions and pools only.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    output_size: tuple[int, int]
    operation: str
    global_context: bool = False


@dataclass(frozen=True)
class _Field:
    """(size, jump, start) per spatial axis of a tensor whose last two dimensions are (H, W)."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    operation: str
    global_context: bool = False
    hw: tuple[int, int] | None = None  # the spatial size of the tensor it was recorded on


@dataclass(frozen=True)
class _Collapsed:
    """A tensor without spatial layout (after global pooling, flatten, a fully connected layer).

    ``source`` is the field of the map it was read from, the map "before global pooling / flatten".
    """

    source: _Field


def _merge(fields: Sequence[_Field], operation: str, gated: bool) -> _Field:
    """Union of the fields of maps on the same grid: the merged unit sees what any of them sees."""
    jumps = {field.jump for field in fields}
    if len(jumps) > 1:
        raise UnsupportedReceptiveField(
            f"{operation} merges maps with different jumps {sorted(jumps)}: they are not on the same grid"
        )
    sizes, starts = [], []
    for axis in range(2):
        low = min(f.start[axis] - (f.size[axis] - 1) / 2 for f in fields)
        high = max(f.start[axis] + (f.size[axis] - 1) / 2 for f in fields)
        sizes.append(int(round(high - low)) + 1)
        starts.append((low + high) / 2)
    flag = gated or any(f.global_context for f in fields)
    return _Field(tuple(sizes), fields[0].jump, tuple(starts), operation, flag)


def _window(field: _Field, operation: str, kernel, stride, dilation=(1, 1), before=(0, 0)) -> _Field:
    """One step of the recursion of :func:`receptive_field` along each axis."""
    sizes, jumps, starts = [], [], []
    for axis in range(2):
        span = dilation[axis] * (kernel[axis] - 1) + 1
        jump = field.jump[axis]
        starts.append(field.start[axis] + ((span - 1) / 2 - before[axis]) * jump)
        sizes.append(field.size[axis] + (span - 1) * jump)
        jumps.append(jump * stride[axis])
    return _Field(tuple(sizes), tuple(jumps), tuple(starts), operation, field.global_context)


def _hw(value) -> tuple[int, ...] | None:
    """The last two dimensions of a tensor (its spatial size when it carries a field)."""
    return tuple(value.shape[-2:]) if isinstance(value, torch.Tensor) and value.ndim >= 2 else None


def _pairs(values, default=None) -> tuple[int, int]:
    """A kernel/stride/padding list of aten (1 or 2 ints, or empty for the default) as a pair."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values:
        values = list(default) if isinstance(default, (list, tuple)) else [default]
    return (values[0], values[0]) if len(values) == 1 else (values[-2], values[-1])


# aten operations that only move data around; the field follows if the last two dimensions survive.
_LAYOUT_OPS = {
    "view", "_unsafe_view", "reshape", "unsqueeze", "unsqueeze_", "squeeze", "squeeze_", "flatten", "expand",
    "clone", "_to_copy", "alias", "detach", "contiguous", "lift_fresh_copy", "copy_", "permute", "transpose", "t",
    "split", "split_with_sizes", "chunk", "unbind", "slice", "select", "narrow",
}  # fmt: skip
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "prod", "norm"}
_MAX_POOLS = {"max_pool2d_with_indices", "max_pool2d", "_max_pool2d"}


def _dims(dims, ndim: int) -> set[int]:
    dims = [dims] if isinstance(dims, int) else list(dims or range(ndim))
    return {d % ndim for d in dims}


def _output_state(name: str, func, args, kwargs, out, fields, collapsed):
    """The state of an operation's output(s) given the states of its tensor inputs."""
    first = args[0] if args and isinstance(args[0], torch.Tensor) else None
    out_hw = _hw(out[0] if isinstance(out, (tuple, list)) and out else out)
    in_hw = _hw(first)
    label = f"aten.{name}"
    field = fields[0]
    if name == "convolution":
        stride, padding, dilation, transposed = args[3], args[4], args[5], args[6]
        if transposed:
            raise UnsupportedReceptiveField(f"{label}: a transposed convolution's field varies from unit to unit")
        if args[1].ndim != 4:
            raise UnsupportedReceptiveField(f"{label}: only 2-D convolutions, got a {args[1].ndim - 2}-D one")
        kernel = tuple(args[1].shape[2:])
        return _window(field, label, kernel, _pairs(stride), _pairs(dilation), _pairs(padding))
    if name in _MAX_POOLS or name in ("avg_pool2d", "avg_pool3d"):
        kernel = _pairs(args[1])
        stride = _pairs(args[2] if len(args) > 2 else [], default=args[1])
        padding = _pairs(args[3] if len(args) > 3 else 0)
        dilation = _pairs(args[4] if name in _MAX_POOLS and len(args) > 4 else 1)
        if name == "avg_pool3d" and not (len(args[1]) == 3 and kernel == (1, 1) and stride == (1, 1)):
            raise UnsupportedReceptiveField(f"{label}: only pools over channels (as in LocalResponseNorm)")
        return _window(field, label, kernel, stride, dilation, padding)
    if name in ("_adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d"):
        if out_hw == in_hw:
            return field
        if out_hw == (1, 1):
            return _Collapsed(field)
        if all(i % o == 0 for i, o in zip(in_hw, out_hw)):
            kernel = tuple(i // o for i, o in zip(in_hw, out_hw))
            return _window(field, label, kernel, kernel)
        raise UnsupportedReceptiveField(f"{label} resamples {in_hw} to {out_hw}: its windows differ in size")
    if name in _REDUCTIONS:
        dims = _dims(args[1] if len(args) > 1 else kwargs.get("dim"), first.ndim)
        if dims & {first.ndim - 2, first.ndim - 1}:
            return _Collapsed(field)  # global pooling: every output sees the whole map
        return field  # a reduction over channels keeps each pixel's own field
    if name == "cat":
        tensors = args[0]
        dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % tensors[0].ndim
        if dim >= tensors[0].ndim - 2:
            raise UnsupportedReceptiveField(f"{label} along a spatial axis")
        return _merge(fields, label, bool(collapsed))
    if name == "constant_pad_nd":
        pad = list(args[1]) + [0] * 4
        left, top = pad[0], pad[2]
        start = (field.start[0] - top * field.jump[0], field.start[1] - left * field.jump[1])
        return _Field(field.size, field.jump, start, label, field.global_context)
    if "batch_norm" in name:  # in eval mode a per-channel affine map with stored statistics
        return (field, None, None) if isinstance(out, (tuple, list)) else field
    if name == "native_group_norm":  # statistics over the whole map: every pixel takes part
        return (dataclasses.replace(field, global_context=True), None, None)
    if name in ("slice", "narrow", "select") and (args[1] if len(args) > 1 else 0) % first.ndim >= first.ndim - 2:
        # x[:, :, a::s]: keeps every s-th unit from unit a, a 1-wide window with stride s
        axis = (args[1] % first.ndim) - (first.ndim - 2)
        if name == "select":
            raise UnsupportedReceptiveField(f"{label} picks one row or column of a map")
        begin = args[2] if len(args) > 2 and args[2] is not None else 0
        begin = begin % in_hw[axis] if begin < 0 else begin
        step = args[4] if name == "slice" and len(args) > 4 else 1
        kernel, stride, before = [1, 1], [1, 1], [0, 0]
        stride[axis], before[axis] = step, -begin
        return _window(field, label, kernel, stride, (1, 1), before)
    if name in ("permute", "transpose", "t") and out_hw != in_hw:
        raise UnsupportedReceptiveField(f"{label} moves the spatial axes")
    if name in _LAYOUT_OPS:
        if out_hw == in_hw and first.ndim >= 3 and out.ndim >= 3:
            return field
        # The positions are flattened (into a classifier's input, or into a sequence for attention):
        # whatever reads them sees every pixel of this map.
        return _Collapsed(field)
    if name == "stack":
        dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % out.ndim
        if dim >= out.ndim - 2:
            raise UnsupportedReceptiveField(f"{label} along a spatial axis")
        return _merge(fields, label, bool(collapsed))
    if torch.Tag.pointwise in func.tags or name in ("where", "_softmax", "softmax", "_log_softmax"):
        if name in ("_softmax", "_log_softmax") and args[1] % first.ndim >= first.ndim - 2:
            return _Collapsed(field)
        full = [f for f in fields if f.hw == out_hw]
        partial = len(full) < len(fields)  # an operand broadcast over the map: a global gate
        if not full:
            return _Collapsed(field)
        return _merge(full, label, bool(collapsed) or partial)
    raise UnsupportedReceptiveField(f"{label} has an unknown effect on the receptive field")


class _FieldMode:
    """A TorchDispatchMode that records the field of every tensor an operation produces."""

    def __new__(cls, x: torch.Tensor):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.states: dict[int, tuple[torch.Tensor, object]] = {}
                self.set(x, _Field((1, 1), (1, 1), (0.0, 0.0), "input", hw=_hw(x)))

            def get(self, tensor):
                entry = self.states.get(id(tensor))
                return entry[1] if entry is not None and entry[0] is tensor else None

            def set(self, tensor, state):
                # The tensor is kept alive with its state, so that its id is never reused.
                self.states[id(tensor)] = (tensor, state)

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                inputs = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
                states = [(self.get(t), t) for t in inputs]
                fields = [s for s, _ in states if isinstance(s, _Field)]
                collapsed = [s for s, _ in states if isinstance(s, _Collapsed)]
                if fields:
                    state = _output_state(func.overloadpacket.__name__, func, args, kwargs, out, fields, collapsed)
                elif collapsed:
                    state = collapsed[0]  # fully connected layers, a gate's activations, ...
                else:
                    return out  # weights, constants, random numbers: no field
                outputs = out if isinstance(out, (tuple, list)) else (out,)
                per_output = state if isinstance(state, tuple) else (state,) * len(outputs)
                for tensor, tensor_state in zip(outputs, per_output):
                    if isinstance(tensor, torch.Tensor) and tensor_state is not None:
                        if isinstance(tensor_state, _Field):
                            tensor_state = dataclasses.replace(tensor_state, hw=_hw(tensor))
                        self.set(tensor, tensor_state)
                return out

        return Mode()


def graph_receptive_field(model: nn.Module, input_shape) -> GraphReceptiveField:
    """Theoretical receptive field of any model, branches included, by following the operations it runs.

    The model runs once, in eval mode, on an input of ``input_shape`` (on a
    copy on the ``meta`` device: shapes without data, so even EfficientNet-B7
    at 600x600 takes a moment). Every tensor the forward pass creates gets the
    field of its units, the (size, jump, start) of :func:`receptive_field` per
    axis: convolutions and pools apply the recursion; pointwise operations,
    normalisation and reshapes that keep (H, W) keep it; where branches meet
    (addition, concatenation along channels, products) the fields are united,
    so the merged unit sees every pixel that some branch sees. Branches must
    be on the same grid (equal jumps).

    Which map: the field of **the last spatial map before the global pooling /
    flatten** that the output is read from (the map a classifier sees), or of
    the output itself when it is spatial. It can exceed the input: the units
    near the centre then see the whole image and the rest of the field lies in
    the padding.

    Global operations inside the network (a map multiplied by an (N, C, 1, 1)
    gate computed from a whole map: squeeze-and-excitation, channel
    attention; self-attention) set ``global_context``: every later unit then
    depends on every pixel, and ``size`` counts the convolutions and pools.

    Raises :class:`UnsupportedReceptiveField` (a ValueError) naming the
    operation: transposed convolutions and upsampling (the field varies from
    unit to unit), merges of maps on different grids, and operations whose
    spatial effect is unknown. Never a guess.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    shape = _as_nchw(input_shape)
    real = any(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    probe = copy.deepcopy(model).to("meta") if real else model
    was_training = probe.training
    x = torch.zeros(shape, device="meta")
    mode = _FieldMode(x)
    try:
        probe.eval()
        with torch.no_grad(), mode:
            out = probe(x)
    except UnsupportedReceptiveField:
        raise
    finally:
        probe.train(was_training)
    out = out[0] if isinstance(out, (tuple, list)) else out
    state = mode.get(out) if isinstance(out, torch.Tensor) else None
    field = state.source if isinstance(state, _Collapsed) else state
    if not isinstance(field, _Field):
        raise UnsupportedReceptiveField("the model's output depends on no spatial map of the input")
    if field.operation == "input":
        raise UnsupportedReceptiveField("the model flattens its input before any convolution or pool (fully "
                                        "connected): every output sees the whole image, there is no local field")
    return GraphReceptiveField(field.size, field.jump, field.start, field.hw, field.operation, field.global_context)
