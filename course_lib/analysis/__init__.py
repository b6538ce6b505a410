"""Measuring networks: output sizes, receptive fields, parameter and FLOP counts, statistics, timings."""

from .counting import FlopCount, count_flops, count_parameters, parameter_table
from .gabor_fit import GABOR_PARAMETERS, GaborFit, fit_gabor, gabor_function
from .interpret import feature_maps, input_gradient, occlusion_sensitivity, saliency_map
from .invariance import TRANSFORMS, feature_similarity, invariance_by_layer, transform_images
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
from .sliding import convolutionalize, sliding_window_predict, window_crops
from .stats import DEFAULT_LAYER_TYPES, activation_stats, gradient_stats, update_ratios
from .timing import compare_timings, time_function

__all__ = [
    "activation_memory",
    "activation_stats",
    "ActivationMemory",
    "compare_timings",
    "confusion_matrix",
    "convolutionalize",
    "count_flops",
    "count_parameters",
    "deep_mlp",
    "DEEP_MLP_ACTIVATIONS",
    "DEFAULT_LAYER_TYPES",
    "DEPTH_LAYER_TYPES",
    "empirical_receptive_field",
    "feature_maps",
    "feature_similarity",
    "fit_gabor",
    "FlopCount",
    "gabor_function",
    "GABOR_PARAMETERS",
    "GaborFit",
    "gradient_stats",
    "graph_receptive_field",
    "GraphReceptiveField",
    "input_gradient",
    "invariance_by_layer",
    "iou_per_class",
    "mean_iou",
    "occlusion_sensitivity",
    "output_size",
    "parameter_table",
    "POINTWISE_LAYERS",
    "receptive_field",
    "receptive_field_of",
    "ReceptiveField",
    "ReceptiveField2d",
    "saliency_map",
    "signal_variances",
    "sliding_window_predict",
    "time_function",
    "transform_images",
    "TRANSFORMS",
    "UnsupportedReceptiveField",
    "update_ratios",
    "weight_layer_depth",
    "window_crops",
]
