"""Segmentation scores: the confusion matrix and IoU against counts made by hand and against torchmetrics' definition."""

import math

import pytest
import torch

from course_lib.analysis import confusion_matrix, iou_per_class, mean_iou


def test_confusion_matrix_counts_pixels_by_true_then_predicted_class():
    target = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(confusion_matrix(pred, target, 3), expected)


def test_iou_per_class_matches_set_definition_on_random_masks():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (3, 9, 7), generator=gen)
    target = torch.randint(0, 4, (3, 9, 7), generator=gen)
    ious = iou_per_class(pred, target, 4)
    for k in range(4):
        inter = ((pred == k) & (target == k)).sum().item()
        union = ((pred == k) | (target == k)).sum().item()
        assert ious[k].item() == pytest.approx(inter / union, abs=1e-12)
    assert mean_iou(pred, target, 4) == pytest.approx(ious.mean().item(), abs=1e-12)
    assert mean_iou(pred, target, 4, include_background=False) == pytest.approx(ious[1:].mean().item(), abs=1e-12)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    target = torch.tensor([[0, 1], [1, 0]])
    ious = iou_per_class(target, target, 3)
    assert ious[:2].tolist() == [1.0, 1.0] and math.isnan(ious[2].item())
    assert mean_iou(target, target, 3) == 1.0


def test_a_wrong_prediction_scores_zero_for_that_class():
    target = torch.zeros(4, 4, dtype=torch.long)
    target[1:3, 1:3] = 2
    pred = torch.zeros_like(target)
    ious = iou_per_class(pred, target, 3)
    assert ious[2].item() == 0.0 and ious[0].item() == pytest.approx(12 / 16)


@pytest.mark.parametrize(
    "pred, target, num_classes, message",
    [
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 2, "pred must hold integer class labels"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 2, "same shape"),
        (torch.full((2, 3), 5), torch.zeros(2, 3, dtype=torch.long), 3, "labels in 0..2"),
        (torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), -1), 3, "target must hold labels"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), 0, "num_classes"),
    ],
)
def test_bad_labels_are_refused_with_the_argument_named(pred, target, num_classes, message):
    with pytest.raises(ValueError, match=message):
        iou_per_class(pred, target, num_classes)


def test_include_background_must_be_a_bool():
    labels = torch.zeros(2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="include_background"):
        mean_iou(labels, labels, 2, include_background="no")
