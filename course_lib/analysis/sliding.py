"""Dense predictions from a classifier: sliding windows, and the same network made fully convolutional.

A classifier of ``window``-sized crops gives a prediction for every position of a larger
image if it is run on every crop, ``stride`` pixels apart (the sliding window). Each crop
is processed from scratch, although neighbouring crops overlap and share most of their
convolutions. Turning the classifier's fully connected layers into convolutions
(:func:`convolutionalize`: a linear layer on a (C, h, w) feature map *is* a convolution
with an h x w kernel) lets it run on the whole image at once; its output map then holds,
at (i, j), the prediction for the crop at ``(i * stride, j * stride)``, where ``stride``
is the network's total downsampling - the same numbers, each shared convolution computed
only once (Sermanet et al. 2014, OverFeat; Long et al. 2015, FCN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._checks import as_pair, check_int, check_rank

__all__ = ["convolutionalize", "sliding_window_predict", "window_crops"]


def window_crops(images: torch.Tensor, window, stride) -> torch.Tensor:
    """Every ``window``-sized crop of ``images``, ``stride`` pixels apart, row by row.

    Args:
        images: (N, C, H, W).
        window: int or (h, w), at most (H, W).
        stride: int or (s_h, s_w).

    Returns:
        (N, H_out, W_out, C, h, w) with ``H_out = (H - h) // s_h + 1`` (and the same for W): crop (i, j)
        starts at pixel ``(i s_h, j s_w)``. A view of ``images`` (no copy); pixels beyond the last
        full window are left out, as a convolution without padding leaves them.
    """
    check_rank("images", images, 4, "(N, C, H, W)")
    (wh, ww), (sh, sw) = as_pair("window", window, 1), as_pair("stride", stride, 1)
    height, width = images.shape[-2:]
    if wh > height or ww > width:
        raise ValueError(f"window must fit in the images: window {(wh, ww)}, images of shape {tuple(images.shape)}")
    crops = images.unfold(2, wh, sh).unfold(3, ww, sw)  # (N, C, H_out, W_out, h, w)
    return crops.permute(0, 2, 3, 1, 4, 5)


def sliding_window_predict(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window,
    stride,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """Run ``classifier`` on every crop of :func:`window_crops` and arrange its scores as maps.

    Args:
        classifier: maps (B, C, h, w) crops to (B, K) scores (call ``.eval()`` on a module first,
            and wrap the call in ``torch.no_grad()`` unless gradients are wanted).
        images: (N, C, H, W).
        window, stride: as in :func:`window_crops`.
        batch_size: crops per call of the classifier (memory, not results).

    Returns:
        (N, K, H_out, W_out): ``out[n, :, i, j]`` is the classifier's output for the crop of image
        ``n`` starting at ``(i s_h, j s_w)``.
    """
    check_int("batch_size", batch_size, 1)
    crops = window_crops(images, window, stride)
    n, rows, cols = crops.shape[:3]
    flat = crops.reshape(n * rows * cols, *crops.shape[3:])  # (N H_out W_out, C, h, w): a copy, crop after crop
    scores = []
    for start in range(0, len(flat), batch_size):
        out = classifier(flat[start:start + batch_size])
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(flat[start:start + batch_size]):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"classifier must map (B, C, h, w) crops to (B, K) scores, got {got} for "
                             f"{len(flat[start:start + batch_size])} crops")
        scores.append(out)
    scores = torch.cat(scores)
    return scores.reshape(n, rows, cols, -1).permute(0, 3, 1, 2)


def convolutionalize(linear: nn.Linear, feature_shape) -> nn.Conv2d:
    """The convolution that computes ``linear`` on a flattened (C, h, w) feature map, at every position.

    Args:
        linear: an ``nn.Linear`` with ``in_features == C * h * w``.
        feature_shape: (C, h, w), the shape of the map that was flattened (C-major, as
            ``torch.flatten`` orders it); (C, 1, 1) for a linear layer after another one.

    Returns:
        ``nn.Conv2d(C, out_features, (h, w))`` with the linear layer's weights reshaped to
        (out_features, C, h, w) and its bias: on an (N, C, h, w) input it gives (N, out_features, 1, 1),
        the linear layer's output; on a larger map, that output for every h x w window, stride 1.
    """
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    if not isinstance(feature_shape, (tuple, list, torch.Size)) or len(feature_shape) != 3:
        raise ValueError(f"feature_shape must be (C, h, w), got {feature_shape!r}")
    for name, value in zip(("C", "h", "w"), feature_shape):
        check_int(f"feature_shape's {name}", value, 1)
    channels, height, width = feature_shape
    if channels * height * width != linear.in_features:
        raise ValueError(f"feature_shape {tuple(feature_shape)} has {channels * height * width} entries, but linear "
                         f"takes in_features={linear.in_features}")
    conv = nn.Conv2d(channels, linear.out_features, (height, width), bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, channels, height, width))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv
