"""Measuring networks: output sizes, receptive fields, parameter and FLOP counts, statistics, timings."""

from .counting import FlopCount, count_flops, count_parameters, parameter_table
from .memory import ActivationMemory, activation_memory
from .depth import DEEP_MLP_ACTIVATIONS, DEPTH_LAYER_TYPES, deep_mlp, signal_variances, weight_layer_depth
from .receptive_field import (
    POINTWISE_LAYERS,
    GraphReceptiveField,
    UnsupportedReceptiveField,
    ReceptiveField,
    ReceptiveField2d,
    empirical_receptive_field,
    graph_receptive_field,
    receptive_field,
    receptive_field_of,
)
from .segmentation import confusion_matrix, iou_per_class, mean_iou
from .shapes import output_size
from .stats import DEFAULT_LAYER_TYPES, activation_stats, gradient_stats, update_ratios
from .timing import compare_timings, time_function

__all__ = [
    "ActivationMemory",
    "DEEP_MLP_ACTIVATIONS",
    "DEFAULT_LAYER_TYPES",
    "DEPTH_LAYER_TYPES",
    "FlopCount",
    "GraphReceptiveField",
    "POINTWISE_LAYERS",
    "ReceptiveField",
    "ReceptiveField2d",
    "UnsupportedReceptiveField",
    "activation_memory",
    "activation_stats",
    "compare_timings",
    "confusion_matrix",
    "count_flops",
    "count_parameters",
    "deep_mlp",
    "empirical_receptive_field",
    "gradient_stats",
    "iou_per_class",
    "mean_iou",
    "graph_receptive_field",
    "output_size",
    "parameter_table",
    "receptive_field",
    "receptive_field_of",
    "signal_variances",
    "time_function",
    "update_ratios",
    "weight_layer_depth",
]
