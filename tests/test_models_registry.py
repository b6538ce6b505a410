"""The model registry: lookup, validation, and every registered model's recorded facts.

Each family file registers its builders with their facts (paper, input size,
published parameter counts); the tests here check every record of
``list_models()``, so a new model is tested the moment it is registered.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.models import (
    create_model,
    list_models,
    model_builder,
    model_record,
    published,
    register_model,
    transfer_state_dict,
)
from model_helpers import meta_model, n_params

COUNTS = [(name, count) for name in list_models() for count in model_record(name).params]


@pytest.mark.parametrize("name", list_models())
def test_every_model_records_its_paper_and_default_count(name):
    record = model_record(name)
    assert record.paper, f"{name} is registered without the paper it follows"
    assert record.parameters is not None, f"{name} records no count for 1000 classes, 3 channels, default options"


@pytest.mark.parametrize(
    "name, count", COUNTS, ids=[f"{name}-{dict(count.configuration)}" for name, count in COUNTS]
)
def test_recorded_parameter_count(name, count):
    assert n_params(meta_model(name, **count.configuration)) == count.parameters, count.source


@pytest.mark.parametrize("name", list_models())
def test_forward_at_the_recorded_input_size(name):
    record = model_record(name)
    model = meta_model(name, num_classes=7).eval()
    out = model(torch.zeros(2, 3, record.input_size, record.input_size, device="meta"))
    assert out.shape[:2] == (2, 7), f"{name} at {record.input_size}x{record.input_size} gave {tuple(out.shape)}"


def test_counts_must_be_positive_and_sourced():
    with pytest.raises(ValueError, match="parameters"):
        published(0, "somewhere")
    with pytest.raises(ValueError, match="source"):
        published(10, "")
    with pytest.raises(TypeError, match="ParameterCount"):
        register_model(params=[11_689_512])


def test_list_models_filters_by_pattern():
    assert "resnet18" in list_models("resnet*")
    assert all(name.startswith("vgg") for name in list_models("vgg*"))
    assert list_models() == sorted(list_models())


def test_unknown_model_is_refused_with_suggestions():
    with pytest.raises(ValueError, match="name must be a registered model.*did you mean 'resnet18'"):
        create_model("resnt18")


@pytest.mark.parametrize("arg", ["num_classes", "in_channels"])
@pytest.mark.parametrize("value", [0, -3, 2.0, True])
def test_create_model_validates_sizes(arg, value):
    with pytest.raises(ValueError, match=arg):
        create_model("resnet18", **{arg: value})


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model(model_builder("resnet18"))


def test_num_classes_and_in_channels_reach_the_model():
    with torch.device("meta"):
        model = create_model("resnet18", num_classes=7, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs[0].in_channels == 1 and linears[-1].out_features == 7


def test_transfer_state_dict_refuses_other_architectures():
    small, other = nn.Sequential(nn.Linear(3, 4)), nn.Sequential(nn.Linear(3, 5))
    with pytest.raises(ValueError, match="shape mismatch"):
        transfer_state_dict(small, other.state_dict())
    with pytest.raises(ValueError, match="not the same architecture"):
        transfer_state_dict(small, nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4)).state_dict())


def test_default_input_sizes_follow_the_designs():
    from course_lib.models import default_input_size

    assert default_input_size("resnet50") == 224
    assert default_input_size("inception_v3") == 299
    assert default_input_size("resnet20") == 32 and default_input_size("efficientnet_b7") == 600
    with pytest.raises(ValueError, match="registered model"):
        default_input_size("resnet19")


def test_zoo_table_counts_parameters_and_flops():
    from course_lib.models import zoo_table

    rows = {row["model"]: row for row in zoo_table(["resnet18", "resnet20", "alexnet"])}
    assert rows["resnet18"]["parameters"] == 11_689_512  # torchvision's figure
    assert rows["resnet20"]["input"] == 32 and rows["resnet18"]["family"] == "resnet"
    # torchvision publishes 1.814 GMACs for ResNet-18 and 0.714 for AlexNet at 224x224: FLOPs are twice that.
    assert rows["resnet18"]["gflops"] == pytest.approx(2 * 1.814, rel=1e-3)
    assert rows["alexnet"]["gflops"] == pytest.approx(2 * 0.714, rel=1e-3)
