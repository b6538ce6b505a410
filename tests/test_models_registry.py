"""The model registry: lookup, validation, and that every registered model is checked somewhere.

Each family's test file (tests/test_models_*.py) holds a table
``PUBLISHED = [(name, expected_parameters, source), ...]``; this file makes
sure every name in ``list_models()`` appears in exactly one of them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib.models import create_model, list_models, model_builder, register_model, transfer_state_dict

TESTS = Path(__file__).resolve().parent


def published_tables() -> dict[str, list[tuple]]:
    tables = {}
    for path in sorted(TESTS.glob("test_models_*.py")):
        if path.name == Path(__file__).name:
            continue
        spec = importlib.util.spec_from_file_location(f"_published_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tables[path.name] = module.PUBLISHED
    return tables


def test_every_registered_model_has_a_published_count():
    covered: dict[str, list[str]] = {}
    for file, table in published_tables().items():
        for name, expected, source in table:
            assert isinstance(expected, int) and expected > 0 and source, f"{file}: bad row for {name}"
            covered.setdefault(name, []).append(file)
    missing = [name for name in list_models() if name not in covered]
    assert not missing, f"models without a parameter-count test: {missing}"
    twice = {name: files for name, files in covered.items() if len(files) > 1}
    assert not twice, f"models counted in several tables: {twice}"
    unknown = [name for name in covered if name not in list_models()]
    assert not unknown, f"tables name models that are not registered: {unknown}"


def test_list_models_filters_by_pattern():
    assert "resnet18" in list_models("resnet*")
    assert all(name.startswith("vgg") for name in list_models("vgg*"))
    assert list_models() == sorted(list_models())


def test_unknown_model_is_refused_with_suggestions():
    with pytest.raises(ValueError, match="name must be a registered model"):
        create_model("resnet19")


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
