"""Layers of the course, written from scratch.

``course_lib.layers.functional`` holds the functions (``conv2d``, ``max_pool2d``,
``batch_norm``, ...); the modules here wrap them where the course needs a layer
PyTorch lacks, or one that a chapter builds itself (``Conv2d``).
"""

from . import functional
from .blocks import ConvNormAct, make_divisible
from .attention import CBAM, AttentionRecorder, SelfAttention2d, SqueezeExcitation, record_attention
from .conv import Conv2d, DepthwiseSeparableConv2d
from .highway import HighwayLayer
from .modules import DropBlock2d, DropConnectLinear, DropPath, LocalContrastNorm, Maxout, StochasticPool2d

__all__ = [
    "AttentionRecorder",
    "CBAM",
    "Conv2d",
    "ConvNormAct",
    "DepthwiseSeparableConv2d",
    "DropBlock2d",
    "DropConnectLinear",
    "DropPath",
    "HighwayLayer",
    "LocalContrastNorm",
    "Maxout",
    "SelfAttention2d",
    "SqueezeExcitation",
    "StochasticPool2d",
    "functional",
    "make_divisible",
    "record_attention",
]
