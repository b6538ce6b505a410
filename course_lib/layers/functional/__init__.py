"""Layers as plain functions on NCHW tensors, built from tensor primitives.

Each function with a PyTorch counterpart has its name, signature and
semantics and is tested equal to it, values and gradients
(``tests/test_functional_*.py``). The ``*_backward`` functions compute
gradients explicitly, as the labs on backpropagation ask students to.

Shapes, one rule for all (as in PyTorch): a function that takes images -
the convolutions, the pooling functions and their ``*_backward`` passes -
takes a batch (N, C, H, W) or one image (C, H, W) (conv1d: (N, C, L) or
(C, L)) and returns the same kind; any other rank is refused naming both
shapes (``course_lib._checks.accepts_unbatched``). Normalization takes
(N, C, *), as PyTorch's does. Kernel sizes, strides, paddings and dilations
may be an int, a pair, or the 1-tuple a module stores (``(2,)``).

=================  =====================================================================
family             functions
=================  =====================================================================
convolution        conv1d, conv2d, conv2d_naive, im2col, conv_transpose2d
pooling            max_pool2d, avg_pool2d, lp_pool2d, adaptive_avg_pool2d,
                   adaptive_max_pool2d, max_unpool2d, global_avg_pool2d, stochastic_pool2d
normalization      batch_norm, layer_norm, group_norm, instance_norm,
                   local_response_norm, local_contrast_norm, weight_norm, spectral_norm
regularization     dropout, dropout_classic, drop_connect, drop_block2d, drop_path,
                   label_smoothing_cross_entropy
activations        relu6, leaky_relu, prelu, elu, maxout
upsampling         upsample_nearest, bed_of_nails (max_unpool2d and conv_transpose2d above)
backward passes    conv2d_backward, col2im, max_pool2d_backward, avg_pool2d_backward,
                   batch_norm_backward
=================  =====================================================================
"""

from .activations import elu, leaky_relu, maxout, prelu, relu6
from .backward import col2im, conv2d_backward
from .conv import conv1d, conv2d, conv2d_naive, im2col, resolve_padding
from .normalization import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    instance_norm,
    layer_norm,
    local_contrast_norm,
    local_response_norm,
    spectral_norm,
    weight_norm,
)
from .pooling import (
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    lp_pool2d,
    max_pool2d,
    max_pool2d_backward,
    max_unpool2d,
    stochastic_pool2d,
)
from .regularization import (
    drop_block2d,
    drop_connect,
    drop_path,
    dropout,
    dropout_classic,
    label_smoothing_cross_entropy,
)
from .transposed import conv_transpose2d
from .upsampling import bed_of_nails, upsample_nearest

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "bed_of_nails",
    "batch_norm_backward",
    "col2im",
    "conv1d",
    "conv2d",
    "conv2d_backward",
    "conv2d_naive",
    "conv_transpose2d",
    "drop_block2d",
    "drop_connect",
    "drop_path",
    "dropout",
    "dropout_classic",
    "elu",
    "global_avg_pool2d",
    "group_norm",
    "im2col",
    "instance_norm",
    "label_smoothing_cross_entropy",
    "layer_norm",
    "leaky_relu",
    "local_contrast_norm",
    "local_response_norm",
    "lp_pool2d",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "maxout",
    "prelu",
    "relu6",
    "resolve_padding",
    "spectral_norm",
    "stochastic_pool2d",
    "upsample_nearest",
    "weight_norm",
]
