"""course_lib.train.transfer: freezing (BatchNorm included), new heads, layer-wise learning rates, features."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from course_lib.train import fit, train_step
from course_lib.train.transfer import (
    eval_frozen_batchnorm,
    extract_features,
    find_head,
    freeze,
    freeze_summary,
    layerwise_param_groups,
    replace_head,
    unfreeze,
)


def small_net(seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    """conv-BN-ReLU-pool, conv-BN-ReLU-pool, flatten-linear-BN-ReLU, linear head: (N, 1, 8, 8) -> (N, 3)."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)),
        conv2=nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)),
        fc=nn.Sequential(nn.Flatten(), nn.Linear(6 * 2 * 2, 5), nn.BatchNorm1d(5), nn.ReLU()),
        head=nn.Linear(5, 3),
    )).to(dtype)


def batch(n: int = 8, seed: int = 1, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=generator, dtype=dtype), torch.randint(0, 3, (n,), generator=generator)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (running statistics included), cloned."""
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- freeze / unfreeze ------------------------------------------------------------------------------


def test_freeze_stops_gradients_and_puts_only_batchnorm_in_eval_mode():
    model = small_net().train()
    dropout = nn.Dropout(0.5)
    model.conv1.append(dropout)
    assert freeze(model.conv1) is model.conv1
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert all(p.requires_grad for name, p in model.named_parameters() if not name.startswith("conv1"))
    assert not model.conv1[1].training, "the frozen BatchNorm runs on its running statistics"
    assert dropout.training and model.conv1.training and model.conv2[1].training, "other modules keep their mode"
    x, y = batch()
    nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is None for p in model.conv1.parameters())
    assert all(p.grad is not None for p in model.conv2.parameters())


def test_freeze_without_batchnorm_eval_leaves_batchnorm_training():
    model = small_net().train()
    freeze(model, batchnorm_eval=False)
    assert not any(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("batchnorm_eval", [True, False])
def test_an_optimizer_step_leaves_frozen_weights_and_running_statistics_alone_only_with_batchnorm_eval(batchnorm_eval):
    model = small_net().train()
    body = nn.ModuleList([model.conv1, model.conv2, model.fc])
    freeze(body, batchnorm_eval=batchnorm_eval)
    body_before, head_before = snapshot(body), snapshot(model.head)
    # An optimizer over every parameter, as people often build it: frozen ones get no gradient, so no update.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for seed in range(3):
        train_step(model, batch(seed=seed), optimizer, device="cpu")
    assert not same(snapshot(model.head), head_before), "the head trained"
    weights = {k for k in body_before if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(body.state_dict()[k], body_before[k]) for k in weights), "frozen weights moved"
    assert same(snapshot(body), body_before) == batchnorm_eval, (
        "running statistics must stay fixed exactly when the BatchNorms are frozen in eval mode"
    )


def test_fit_keeps_the_frozen_batchnorm_in_eval_mode():
    model = small_net().train()
    freeze(model.conv1)
    before = snapshot(model.conv1)
    x, y = batch(16)
    fit(model, [(x[:8], y[:8]), (x[8:], y[8:])], optimizer=torch.optim.Adam(model.parameters(), 1e-2),
        epochs=2, val_loader=[(x, y)], progress=False, device="cpu")
    assert same(snapshot(model.conv1), before)
    assert not model.conv1[1].training and model.conv2[1].training


def test_unfreeze_restores_gradients_and_batchnorm_training():
    model = small_net().train()
    freeze(model)
    unfreeze(model.conv2)
    assert all(p.requires_grad for p in model.conv2.parameters())
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert model.conv2[1].training and not model.conv1[1].training
    unfreeze(model.conv1, batchnorm_train=False)
    assert all(p.requires_grad for p in model.conv1.parameters()) and not model.conv1[1].training


def test_eval_frozen_batchnorm_undoes_model_train_for_frozen_layers_only():
    model = small_net()
    freeze(model.conv1)
    freeze(model.fc)
    model.train()  # what a hand-written loop does every epoch: wakes every BatchNorm up
    assert model.conv1[1].training
    names = eval_frozen_batchnorm(model)
    assert names == ["conv1.1", "fc.2"]
    assert not model.conv1[1].training and not model.fc[2].training and model.conv2[1].training
    unaffine = nn.Sequential(nn.BatchNorm2d(3, affine=False)).train()
    assert eval_frozen_batchnorm(unaffine) == [] and unaffine[0].training


def test_freeze_summary_counts_parameters_and_batchnorm_modes():
    model = small_net().train()
    freeze(model.conv1)
    model.conv2[1].eval()  # a BatchNorm frozen by hand, its weights still trainable
    rows = {row["block"]: row for row in freeze_summary(model)}
    assert list(rows) == ["conv1", "conv2", "fc", "head"]
    for name in rows:
        params = list(getattr(model, name).parameters())
        assert rows[name]["parameters"] == sum(p.numel() for p in params)
        assert rows[name]["trainable"] == sum(p.numel() for p in params if p.requires_grad)
    assert rows["conv1"]["trainable"] == 0 < rows["conv1"]["parameters"]
    assert [rows[n]["batchnorm"] for n in rows] == ["eval", "eval", "train", "-"]
    model.conv2.append(nn.BatchNorm2d(6))
    assert {row["block"]: row["batchnorm"] for row in freeze_summary(model)}["conv2"] == "mixed"


@pytest.mark.parametrize("call", [freeze, unfreeze, eval_frozen_batchnorm, freeze_summary, find_head])
def test_module_functions_refuse_a_non_module(call):
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        call(torch.zeros(3))


def test_flags_must_be_bools():
    with pytest.raises(ValueError, match="batchnorm_eval must be a bool"):
        freeze(small_net(), batchnorm_eval=1)
    with pytest.raises(ValueError, match="batchnorm_train must be a bool"):
        unfreeze(small_net(), batchnorm_train="no")


# --- layer-wise learning rates ----------------------------------------------------------------------


@pytest.mark.parametrize("base_lr, decay", [(1e-2, 0.5), (0.3, 0.1), (1e-3, 1.0)])
def test_layerwise_learning_rates_shrink_by_decay_per_block_going_down(base_lr, decay):
    model = small_net()
    groups = layerwise_param_groups(model, base_lr, decay)
    assert [g["name"] for g in groups] == ["conv1", "conv2", "fc", "head"]
    for depth_from_top, group in enumerate(reversed(groups)):
        assert group["lr"] == pytest.approx(base_lr * decay**depth_from_top, rel=1e-12)
        assert [id(p) for p in group["params"]] == [id(p) for p in getattr(model, group["name"]).parameters()]
    optimizer = torch.optim.SGD(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in groups]
    assert [g["name"] for g in optimizer.param_groups] == ["conv1", "conv2", "fc", "head"]


def test_each_group_steps_with_its_own_learning_rate():
    model = small_net(dtype=torch.float64).eval()  # eval: BatchNorm as a fixed affine map, the step is exact
    groups = layerwise_param_groups(model, 0.1, 0.5)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    optimizer = torch.optim.SGD(groups)  # plain SGD: update = -lr * grad
    train_step(model, batch(dtype=torch.float64), optimizer, device="cpu")
    for group in optimizer.param_groups:
        for p in group["params"]:
            torch.testing.assert_close(p.detach(), before[id(p)] - group["lr"] * p.grad, rtol=0, atol=1e-15)


def test_layerwise_groups_skip_frozen_parameters_and_count_every_listed_block():
    model = small_net()
    freeze(model.conv1)
    blocks = [model.conv1, model.conv2, nn.ReLU(), model.fc, model.head]  # the ReLU holds nothing but counts a step
    groups = layerwise_param_groups(blocks, 1.0, 0.5)
    assert [(g["name"], g["lr"]) for g in groups] == [("1", 0.125), ("3", 0.5), ("4", 1.0)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    grouped = [p for g in groups for p in g["params"]]
    assert sorted(map(id, grouped)) == sorted(map(id, trainable))


def test_layerwise_groups_refuse_bad_arguments():
    model = small_net()
    for decay in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="decay"):
            layerwise_param_groups(model, 1e-3, decay)
    for base_lr in (0, -1e-3, float("inf"), "1e-3"):
        with pytest.raises(ValueError, match="base_lr"):
            layerwise_param_groups(model, base_lr, 0.5)
    for blocks in ([], "conv1", [model.conv1, "head"], nn.Linear(3, 3)):
        with pytest.raises(ValueError, match="blocks"):
            layerwise_param_groups(blocks, 1e-3, 0.5)
    with pytest.raises(ValueError, match="also belongs"):
        layerwise_param_groups([model.conv1, model, model.head], 1e-3, 0.5)


# --- heads --------------------------------------------------------------------------------------------


def test_replace_head_puts_a_fresh_trainable_linear_layer_in_place():
    model = small_net(dtype=torch.float64)
    freeze(model)
    old = model.head
    new = replace_head(model, 7)
    assert model.head is new and new is not old
    assert (new.in_features, new.out_features, new.weight.dtype) == (5, 7, torch.float64)
    assert new.weight.requires_grad and new.bias.requires_grad
    x, _ = batch(dtype=torch.float64)
    assert model.eval()(x).shape == (8, 7)


def test_replace_head_by_name_inside_a_sequential_classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 4, bias=False)))
    assert find_head(model) == "1.2"
    new = replace_head(model, 2, head="1.0")
    assert model[1][0] is new and (new.in_features, new.out_features) == (64, 2)
    new_last = replace_head(model, 6)
    assert model[1][2] is new_last and new_last.bias is None and new_last.in_features == 10


def test_replace_head_refuses_bad_arguments():
    model = small_net()
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        replace_head(model, 0)
    with pytest.raises(ValueError, match="did you mean 'head'"):
        replace_head(model, 3, head="haed")
    with pytest.raises(ValueError, match="must be an nn.Linear, it is a Sequential"):
        replace_head(model, 3, head="conv1")
    with pytest.raises(ValueError, match="no nn.Linear"):
        replace_head(nn.Sequential(nn.Conv2d(1, 2, 3)), 3)


def test_replace_head_of_a_zoo_resnet():
    from course_lib.models import create_model

    with torch.device("meta"):
        model = create_model("resnet18")
    assert find_head(model) == "fc"
    new = replace_head(model, 10)
    assert model.fc is new and (new.in_features, new.out_features) == (512, 10) and new.weight.is_meta


# --- features -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_extract_features_is_the_input_of_the_head_or_a_layer_output(batch_size):
    model = small_net(dtype=torch.float64).train()
    modes = [m.training for m in model.modules()]
    x, _ = batch(7, dtype=torch.float64)
    with torch.no_grad():
        model.eval()
        maps = model.conv2(model.conv1(x))
        penultimate = model.fc(maps)
        model.train()
    torch.testing.assert_close(extract_features(model, x, batch_size=batch_size), penultimate, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(extract_features(model, x, layer="conv2", batch_size=batch_size), maps.flatten(1),
                               rtol=1e-12, atol=1e-12)
    unflat = extract_features(model, x, layer="conv2", batch_size=batch_size, flatten=False)
    assert unflat.shape == (7, 6, 2, 2)
    assert [m.training for m in model.modules()] == modes, "every module's mode is restored"
    assert not extract_features(model, x).requires_grad


def test_extract_features_of_a_nested_layer_in_a_frozen_model():
    model = small_net()
    freeze(model)
    x, _ = batch(5)
    feats = extract_features(model, x, layer="conv1.2")
    assert feats.shape == (5, 4 * 8 * 8) and (feats >= 0).all()  # after the ReLU


def test_extract_features_refuses_bad_arguments():
    model = small_net()
    x, _ = batch()
    with pytest.raises(ValueError, match="did you mean 'conv1'"):
        extract_features(model, x, layer="conv_1")
    with pytest.raises(ValueError, match="x must be a torch.Tensor"):
        extract_features(model, x.numpy())
    with pytest.raises(ValueError, match="at least one input"):
        extract_features(model, x[:0])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        extract_features(model, x, batch_size=0)
    with pytest.raises(ValueError, match="was not called"):
        extract_features(_WithSpareLayer(), x, layer="spare")


class _WithSpareLayer(nn.Module):
    """A registered layer that forward never calls."""

    def __init__(self):
        super().__init__()
        self.body, self.spare = small_net(), nn.Linear(2, 2)

    def forward(self, x):
        return self.body(x)
