"""course_lib.models.zoo: the receptive-field and top-1 columns of zoo_table, and published_top1.

References: the chain calculator and the gradient measurement of the receptive field
(course_lib.analysis.receptive_field), count_flops for the FLOPs measured in the same pass,
and the ImageNet accuracies torchvision ships in its weight metadata (read offline).
"""

from __future__ import annotations

import pytest
import torch

from course_lib.analysis.counting import count_flops
from course_lib.analysis.receptive_field import receptive_field_of
from course_lib.models import create_model
from course_lib.models.zoo import published_top1, same_architecture_as_torchvision, zoo_table


@pytest.fixture(scope="module")
def rows():
    names = ["alexnet", "vgg16", "nin", "resnet18", "resnet20", "se_resnet50", "unet", "highway_net", "zfnet"]
    return {row["model"]: row for row in zoo_table(names)}


def test_columns_and_the_counts_already_tested_elsewhere_are_unchanged(rows):
    assert set(rows["alexnet"]) == {"model", "family", "parameters", "published", "input", "gflops",
                                    "receptive_field", "receptive_field_note", "top1", "top1_source"}
    assert rows["resnet18"]["parameters"] == 11_689_512
    assert rows["resnet18"]["gflops"] == pytest.approx(2 * 1.814, rel=1e-3)  # torchvision's 1.814 GMACs
    assert rows["alexnet"]["gflops"] == pytest.approx(2 * 0.714, rel=1e-3)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "se_resnet50", "unet", "highway_net"])
def test_flops_of_the_shared_pass_equal_count_flops(rows, name):
    size = rows[name]["input"]
    with torch.device("meta"):
        model = create_model(name)
    assert rows[name]["gflops"] * 1e9 == pytest.approx(count_flops(model, (1, 3, size, size)).total, rel=1e-12)


def test_receptive_field_of_chain_models_equals_the_chain_calculator(rows):
    for name in ("alexnet", "vgg16", "zfnet"):
        with torch.device("meta"):
            model = create_model(name)
        size = rows[name]["input"]
        assert rows[name]["receptive_field"] == receptive_field_of(model.features, (3, size, size)).size[0]
        assert rows[name]["receptive_field_note"] == ""
    assert (rows["alexnet"]["receptive_field"], rows["vgg16"]["receptive_field"]) == (195, 212)


def test_receptive_field_of_branched_models_and_honest_gaps(rows):
    # ResNet-18: 435 by the recursion over both paths of every block; larger than the 224 input
    assert rows["resnet18"]["receptive_field"] == 435 > rows["resnet18"]["input"]
    assert rows["resnet20"]["receptive_field"] == 81  # checked against gradients in test_receptive_field.py
    assert rows["se_resnet50"]["receptive_field"] == 427 and rows["se_resnet50"]["receptive_field_note"] == (
        "global context")
    assert rows["unet"]["receptive_field"] is None and "transposed" in rows["unet"]["receptive_field_note"]
    assert rows["highway_net"]["receptive_field"] is None and "flattens" in rows["highway_net"]["receptive_field_note"]


def test_top1_column(rows):
    assert rows["resnet18"]["top1"] == pytest.approx(69.758)
    assert rows["resnet18"]["top1_source"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert rows["nin"]["top1"] is None and rows["nin"]["top1_source"] is None
    ten = zoo_table(["resnet18"], num_classes=10)[0]  # not the ImageNet configuration: no accuracy
    assert ten["top1"] is None and ten["receptive_field"] == 435


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet50", 76.13), ("vgg16", 71.592), ("alexnet", 56.522), ("densenet121", 74.434),
     ("squeezenet1_1", 58.178), ("efficientnet_b0", 77.692), ("mobilenet_v2", 71.878)],
)
def test_published_top1_reads_torchvision_metadata(name, expected):
    import torchvision.models as tvm

    accuracy, source = published_top1(name)
    assert accuracy == pytest.approx(expected)
    weights = tvm.get_model_weights(name)
    assert source == f"torchvision {weights.__name__}.IMAGENET1K_V1"
    assert accuracy == weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"]


def test_published_top1_only_for_the_same_architecture():
    assert published_top1("nin") is None  # torchvision has no NIN
    assert published_top1("resnet20") is None  # a CIFAR network
    assert published_top1("zfnet") is None
    # torchvision's GoogLeNet and Inception v3, compared without their auxiliary heads (as evaluated)
    assert published_top1("googlenet") == (pytest.approx(69.778), "torchvision GoogLeNet_Weights.IMAGENET1K_V1")
    assert published_top1("inception_v3")[0] == pytest.approx(77.294)
    assert same_architecture_as_torchvision("resnet18")
    # same name, other tensors: course_lib's CIFAR-style options change the stem, so they are not the same
    assert not same_architecture_as_torchvision("cbam_resnet50")  # torchvision has no such model
    with pytest.raises(ValueError, match="registered model"):
        published_top1("resnet19")
