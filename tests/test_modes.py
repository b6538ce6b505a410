"""course_lib.modes: running a model "for a moment" in eval mode gives every module its own mode back.

Transfer learning (chapter 16) freezes BatchNorm with ``bn.eval()`` while the rest of the model
trains. ``model.train(was_training)`` - what evaluate and tta_predict did - sets every submodule,
so it woke the frozen BatchNorm up; each function that runs the model in another mode is checked here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.analysis import count_flops, parameter_table
from course_lib.init import lsuv_
from course_lib.modes import evaluating, kept_modes
from course_lib.train import evaluate, lr_range_test, tta_predict


def frozen_bn_model() -> nn.Sequential:
    """A model in training mode whose BatchNorm is frozen (eval mode), the transfer-learning set-up."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    model.train()
    model[1].eval()
    return model


def modes(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


IMAGES = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 1, 2, 0])
LOADER = [(IMAGES, LABELS)]

RUNS = {
    "evaluate": lambda model: evaluate(model, LOADER),
    "tta_predict": lambda model: tta_predict(model, IMAGES, mode="flip"),
    "lr_range_test": lambda model: lr_range_test(model, LOADER, lambda p: torch.optim.SGD(p, lr=0.1),
                                                 nn.CrossEntropyLoss(), num_steps=3),
    "lsuv_": lambda model: lsuv_(model, IMAGES),
    "parameter_table": lambda model: parameter_table(model, (1, 3, 8, 8)),
    "count_flops": lambda model: count_flops(model, (1, 3, 8, 8)),
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_a_frozen_batchnorm_stays_frozen(run):
    model = frozen_bn_model()
    before = modes(model)
    assert before[0] and not before[2], "the set-up: the model trains, its BatchNorm is frozen"
    run(model)
    assert modes(model) == before


def test_evaluating_is_eval_mode_without_autograd_then_every_flag_back():
    model = frozen_bn_model()
    before = modes(model)
    with evaluating(model):
        assert not any(modes(model))
        out = model(IMAGES)
        assert not out.requires_grad
        assert not torch.is_grad_enabled()
    assert modes(model) == before and torch.is_grad_enabled()


def test_kept_modes_restores_after_an_error():
    model = frozen_bn_model()
    before = modes(model)
    with pytest.raises(RuntimeError, match="boom"), kept_modes(model):
        model.train()
        raise RuntimeError("boom")
    assert modes(model) == before


def test_fit_trains_around_a_frozen_batchnorm():
    """fit switched the whole model to train mode every epoch, so a frozen BatchNorm moved its running
    statistics; now every epoch trains with the modes the model was handed over with."""
    from course_lib.train import fit

    model = frozen_bn_model()
    bn = model[1]
    seen = []
    bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    running_mean = bn.running_mean.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, LOADER * 2, optimizer=optimizer, epochs=2, val_loader=LOADER, progress=False)
    assert seen and not any(seen), "the frozen BatchNorm ran in training mode"
    assert torch.equal(bn.running_mean, running_mean)
    assert model.training and model[3].training, "the rest of the model trained"


def test_fit_trains_a_model_handed_over_in_eval_mode_as_a_whole():
    from course_lib.train import fit

    model = frozen_bn_model().eval()
    bn = model[1]
    seen = []
    bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    fit(model, LOADER, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, progress=False)
    assert seen == [True] and all(modes(model))
