"""Scores of dense predictions: the confusion matrix over pixels and intersection over union per class.

For K classes, predicted labels ``pred`` and true labels ``target`` of the same shape
(any shape: (H, W) for one image, (N, H, W) for a batch), the confusion matrix counts
pixels by (true class, predicted class). For class k,

    IoU_k = |pred == k  and  target == k| / |pred == k  or  target == k|
          = C[k, k] / (sum_j C[k, j] + sum_i C[i, k] - C[k, k]).

The mean IoU averages IoU_k over the classes that occur in the prediction or the target
(a class absent from both has no IoU: 0 / 0, reported as NaN and left out of the mean),
pooling the pixels of the whole batch, as PASCAL VOC and Cityscapes do.
"""

from __future__ import annotations

import torch

from .._checks import check_flag, check_int

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]


def _check_labels(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    check_int("num_classes", num_classes, 1)
    for name, labels in (("pred", pred), ("target", target)):
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of class labels, got {type(labels).__name__}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(
                f"{name} must hold integer class labels (e.g. logits.argmax(1)), got dtype {labels.dtype}"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} must hold labels in 0..{num_classes - 1} (num_classes={num_classes}), "
                f"got values from {int(labels.min())} to {int(labels.max())}"
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, e.g. (N, H, W), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64: entry [i, j] counts the pixels of true class i predicted as j.

    ``pred`` and ``target``: integer labels of one shape, e.g. (N, H, W).
    """
    _check_labels(pred, target, num_classes)
    pairs = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(pairs.cpu(), minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) float64: the IoU of each class over all pixels; NaN for a class in neither tensor."""
    matrix = confusion_matrix(pred, target, num_classes).double()
    intersection = matrix.diagonal()
    union = matrix.sum(0) + matrix.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, include_background: bool = True) -> float:
    """The mean of :func:`iou_per_class` over the classes present in pred or target.

    ``include_background=False`` leaves class 0 out of the mean (its IoU is near 1 on
    images that are mostly background, which hides poor object masks).
    """
    check_flag("include_background", include_background)
    ious = iou_per_class(pred, target, num_classes)
    if not include_background:
        ious = ious[1:]
    present = ious[~ious.isnan()]
    if present.numel() == 0:
        raise ValueError("mean_iou: no class to average (every class counted is absent from pred and target)")
    return float(present.mean())
