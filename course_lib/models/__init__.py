"""The architecture zoo: every model of the course, built by name.

    from course_lib.models import create_model, list_models
    model = create_model("resnet18", num_classes=10, in_channels=3, small_input=True)

One file per family; each builder is registered under its name.
"""

# Importing a family registers its builders (one file per family, like torchvision's models/).
from . import (  # noqa: E402,F401
    alexnet,
    densenet,
    efficientnet,
    fractalnet,
    highway,
    inception,
    lenet,
    mobilenet,
    nin,
    resnet,
    segmentation,
    squeezenet,
    vgg,
)
from .pretrained import load_torchvision_weights, transfer_state_dict
from .registry import (
    ModelRecord,
    ParameterCount,
    create_model,
    default_input_size,
    list_models,
    model_builder,
    model_record,
    published,
    register_model,
)
from .zoo import published_top1, zoo_table  # noqa: E402

__all__ = [
    "ModelRecord",
    "ParameterCount",
    "create_model",
    "default_input_size",
    "list_models",
    "load_torchvision_weights",
    "model_builder",
    "model_record",
    "published",
    "published_top1",
    "register_model",
    "transfer_state_dict",
    "zoo_table",
]
