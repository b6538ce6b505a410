"""Tests of course_lib.models.inception: GoogLeNet and Inception-v3."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from course_lib.analysis import count_flops
from course_lib.models import create_model, transfer_state_dict
from course_lib.models.inception import (
    GOOGLENET_MODULES,
    GoogLeNetOutputs,
    InceptionModule,
    InceptionOutputs,
    NaiveInceptionModule,
    inception_loss,
    inception_multiplies,
)
from course_lib.analysis import weight_layer_depth
from model_helpers import meta_model, n_params


@pytest.mark.parametrize("aux_logits", [False, True])
@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_counts_equal_torchvision(name, aux_logits):
    with torch.device("meta"):
        twin = getattr(torchvision.models, name)(weights=None, aux_logits=aux_logits, init_weights=False)
    assert n_params(meta_model(name, aux_logits=aux_logits)) == n_params(twin)


# --------------------------------------------------------------------------- weight transfer from torchvision


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """He-scaled weights and non-trivial BatchNorm statistics, so the compared outputs are O(1), not ~0 or huge."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
                m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return model


@pytest.fixture(scope="module")
def torchvision_googlenet():
    return _randomize(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True), 0).eval()


@pytest.fixture(scope="module")
def torchvision_inception_v3():
    # transform_input defaults to False when weights=None, like ours.
    return _randomize(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True), 1).eval()


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    scale = theirs.abs().max().item()
    assert 1e-2 < scale < 1e4  # a meaningful comparison
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


def test_transfer_from_torchvision_googlenet(torchvision_googlenet):
    model = transfer_state_dict(create_model("googlenet", aux_logits=True), torchvision_googlenet.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _assert_close(model(x), torchvision_googlenet(x))


def test_transform_input_as_torchvision(torchvision_googlenet):
    model = create_model("googlenet", aux_logits=True, transform_input=True)
    transfer_state_dict(model, torchvision_googlenet.state_dict()).eval()
    torchvision_googlenet.transform_input = True
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    try:
        with torch.no_grad():
            _assert_close(model(x), torchvision_googlenet(x))
    finally:
        torchvision_googlenet.transform_input = False


def test_transfer_from_torchvision_inception_v3(torchvision_inception_v3):
    source = torchvision_inception_v3.state_dict()
    model = transfer_state_dict(create_model("inception_v3", aux_logits=True), source).eval()
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _assert_close(model(x), torchvision_inception_v3(x))

    # The auxiliary head sits where torchvision's does and computes the same (299x299: a 17x17 grid at Mixed_6e).
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(5))
    model.train()
    torchvision_inception_v3.train()
    try:
        with torch.no_grad():
            ours, theirs = model(x), torchvision_inception_v3(x)
    finally:
        torchvision_inception_v3.eval()
    _assert_close(ours.aux, theirs.aux_logits)


# --------------------------------------------------------------------------- auxiliary classifiers, train vs eval


def test_googlenet_train_returns_three_outputs_eval_one():
    model = create_model("googlenet", num_classes=10, aux_logits=True, small_input=True)
    x = torch.randn(2, 3, 32, 32)
    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs) and out._fields == ("logits", "aux1", "aux2")
    assert [tuple(o.shape) for o in out] == [(2, 10)] * 3
    loss = inception_loss(out, torch.tensor([1, 2]))
    loss.backward()
    assert model.aux_classifiers["inception4a"].fc2.weight.grad is not None
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)


def test_googlenet_paper_aux_pooling_needs_224():
    model = create_model("googlenet", num_classes=5, aux_logits=True).train()
    out = model(torch.randn(2, 3, 224, 224))  # 14x14 at 4a -> 5x5/3 average pool -> 4x4
    assert [tuple(o.shape) for o in out] == [(2, 5)] * 3
    with pytest.raises(ValueError, match="14x14"):
        model(torch.randn(2, 3, 96, 96))
    with torch.no_grad():  # eval mode skips the auxiliary heads: any size >= 15x15 works
        assert model.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 5)


def test_inception_v3_train_returns_two_outputs_eval_one():
    model = create_model("inception_v3", num_classes=7, aux_logits=True, small_input=True)
    x = torch.randn(2, 3, 16, 16)  # adaptive auxiliary pooling: Mixed_6e's 7x7 grid -> 5x5
    out = model.train()(x)
    assert isinstance(out, InceptionOutputs) and out._fields == ("logits", "aux")
    assert [tuple(o.shape) for o in out] == [(2, 7)] * 2
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 7)


def test_inception_v3_aux_needs_299_without_small_input():
    model = create_model("inception_v3", num_classes=3, aux_logits=True).train()
    with pytest.raises(ValueError, match="17x17"):
        model(torch.randn(2, 3, 75, 75))


def test_no_aux_logits_gives_a_tensor_in_training():
    model = create_model("googlenet", num_classes=4, small_input=True).train()
    assert model.aux_classifiers is None
    assert isinstance(model(torch.randn(2, 3, 32, 32)), torch.Tensor)


def test_inception_loss_weights_aux_by_0_3():
    target = torch.tensor([0, 1])
    logits, aux1, aux2 = (torch.randn(2, 3) for _ in range(3))
    ce = nn.functional.cross_entropy
    expected = ce(logits, target) + 0.3 * (ce(aux1, target) + ce(aux2, target))
    torch.testing.assert_close(inception_loss(GoogLeNetOutputs(logits, aux1, aux2), target), expected)
    torch.testing.assert_close(inception_loss(logits, target), ce(logits, target))


# --------------------------------------------------------------------------- forward passes on small inputs


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("googlenet", {"small_input": True}, (2, 3, 32, 32)),
        ("googlenet", {"small_input": True, "in_channels": 1}, (2, 1, 28, 28)),
        ("googlenet", {"small_input": True, "paper": True}, (2, 3, 32, 32)),
        ("inception_v3", {}, (2, 3, 75, 75)),
        ("inception_v3", {"small_input": True}, (2, 3, 32, 32)),
    ],
)
def test_forward_small_inputs(name, options, shape):
    model = create_model(name, num_classes=10, **options).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_googlenet_structure():
    model, paper = meta_model("googlenet"), meta_model("googlenet", paper=True)
    names = list(model.features)
    assert names[:5] == ["conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
    assert [n for n in names if n.startswith("inception")] == [f"inception{k}" for k in GOOGLENET_MODULES]
    # 22 layers with weights: 3 stem convs, 9 modules two convs deep, the classifier.
    assert sum(isinstance(model.features[n], nn.Sequential) for n in names) + 2 * len(GOOGLENET_MODULES) + 1 == 22
    assert model.features["inception5b"].out_channels == model.fc.in_features == 1024
    assert model.dropout.p == 0.4
    # torchvision's quirk: a 3x3 conv in the "5x5" branch; the paper's 5x5 with paper=True (and no BatchNorm).
    assert model.features["inception3a"].branch3[1].conv.kernel_size == (3, 3)
    assert paper.features["inception3a"].branch3[1].conv.kernel_size == (5, 5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper.modules()) == 2


def test_small_input_googlenet_keeps_the_modules():
    model, full = meta_model("googlenet", small_input=True), meta_model("googlenet")
    assert "maxpool1" not in model.features and "maxpool2" not in model.features
    assert model.features["conv1"].conv.kernel_size == (3, 3) and model.features["conv1"].conv.stride == (1, 1)
    for key in GOOGLENET_MODULES:
        ours = [p.shape for p in model.features[f"inception{key}"].parameters()]
        assert ours == [p.shape for p in full.features[f"inception{key}"].parameters()]


# --------------------------------------------------------------------------- the inception module and its cost


def test_inception_module_output_channels():
    module = InceptionModule(192, 64, 96, 128, 16, 32, 32)
    assert module.out_channels == 64 + 128 + 32 + 32
    with torch.no_grad():
        assert module.eval()(torch.randn(1, 192, 28, 28)).shape == (1, 256, 28, 28)
    assert module.branch3[1].conv.kernel_size == (5, 5)  # a true 5x5 unless told otherwise


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ch1x1": 0}, "ch1x1"),
        ({"pool_proj": 2.5}, "pool_proj"),
        ({"kernel_5x5": 4}, "kernel_5x5"),
        ({"batch_norm": "yes"}, "batch_norm"),
    ],
)
def test_inception_module_validates(kwargs, match):
    args = {"in_channels": 8, "ch1x1": 4, "ch3x3red": 4, "ch3x3": 4, "ch5x5red": 4, "ch5x5": 4, "pool_proj": 4}
    with pytest.raises(ValueError, match=match):
        InceptionModule(**{**args, **kwargs})


def test_multiplies_seed_example():
    # Curriculum / seed: 32 3x3 filters on a 28x28x192 input, directly or behind a 1x1 bottleneck to 16 channels.
    naive = inception_multiplies(192, 0, 0, 32, 0, 0, 0, 28, bottleneck=False)
    assert naive["total"] == 28 * 28 * 3 * 3 * 192 * 32 == 43_352_064  # "~43M"
    reduced = inception_multiplies(192, 0, 16, 32, 0, 0, 0, 28)
    assert reduced["3x3 reduce"] == 2_408_448 and reduced["3x3"] == 3_612_672
    # The seed says "~5.4M"; the sum of its own two terms is 6.0M.
    assert reduced["total"] == 6_021_120


def test_multiplies_cs231n_example():
    # 28x28x256 input; 128 1x1, 192 3x3, 96 5x5 filters; 64-channel reductions and pool projection.
    naive = inception_multiplies(256, 128, 64, 192, 64, 96, 64, 28, bottleneck=False)
    assert round(naive["total"] / 1e6) == 854
    reduced = inception_multiplies(256, 128, 64, 192, 64, 96, 64, 28)
    assert round(reduced["total"] / 1e6) == 271
    # The slide's "358M ops" counts the 3x3 conv (87M) twice.
    assert round((reduced["total"] + reduced["3x3"]) / 1e6) == 358


# GoogLeNet Table 1, "ops" column (millions of multiplies), with each module's grid at 224x224.
# (5a: the paper prints 54M; its row's widths give 51.1M.)
TABLE1_OPS = {"3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170, "5b": 71}


def test_multiplies_reproduce_googlenet_table1():
    channels, grids = 192, {"3": 28, "4": 14, "5": 7}
    for name, config in GOOGLENET_MODULES.items():
        count = inception_multiplies(channels, *config, grids[name[0]])["total"]
        if name in TABLE1_OPS:
            assert abs(count / 1e6 - TABLE1_OPS[name]) < 1, name  # the table rounds (4a: 73.6M printed as 73M)
        channels = config.ch1x1 + config.ch3x3 + config.ch5x5 + config.pool_proj
    assert round(inception_multiplies(832, *GOOGLENET_MODULES["5a"], 7)["total"] / 1e5) == 511


@pytest.mark.parametrize("kernel_5x5", [5, 3])
def test_multiplies_match_flop_counter(kernel_5x5):
    with torch.device("meta"):
        module = InceptionModule(192, *GOOGLENET_MODULES["3a"], kernel_5x5=kernel_5x5)
    expected = inception_multiplies(192, *GOOGLENET_MODULES["3a"], 28, kernel_5x5=kernel_5x5)["total"]
    assert count_flops(module, (1, 192, 28, 28)).macs == expected


@pytest.mark.parametrize("kernel_5x5", [5, 3])
def test_naive_module_multiplies_match_flop_counter(kernel_5x5):
    # Figure 2a with 3a's widths: the 3x3 and 5x5 convs read all 192 channels, the pooled input passes through.
    with torch.device("meta"):
        module = NaiveInceptionModule(192, 64, 128, 32, kernel_5x5=kernel_5x5)
    expected = inception_multiplies(192, 64, 0, 128, 0, 32, 0, 28, bottleneck=False, kernel_5x5=kernel_5x5)
    assert count_flops(module, (1, 192, 28, 28)).macs == expected["total"]
    assert expected["total"] == 28 * 28 * 192 * (64 + 128 * 3 * 3 + 32 * kernel_5x5**2)


def test_naive_module_output_passes_the_pooled_input_through():
    module = NaiveInceptionModule(6, 2, 3, 4, batch_norm=False).eval()
    x = torch.randn(2, 6, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = module(x)
    assert module.out_channels == 2 + 3 + 4 + 6 and out.shape == (2, 15, 9, 9)
    torch.testing.assert_close(out[:, 9:], nn.functional.max_pool2d(x, 3, stride=1, padding=1))
    conv5 = module.branch3.conv
    assert conv5.kernel_size == (5, 5) and conv5.in_channels == 6 and conv5.bias is not None


@pytest.mark.parametrize(("kwargs", "match"), [({"ch3x3": 0}, "ch3x3"), ({"kernel_5x5": 2}, "kernel_5x5")])
def test_naive_module_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NaiveInceptionModule(**{"in_channels": 8, "ch1x1": 4, "ch3x3": 4, "ch5x5": 4, **kwargs})


def test_multiplies_validates():
    with pytest.raises(ValueError, match="ch3x3"):
        inception_multiplies(192, 64, 96, -1, 16, 32, 32, 28)
    with pytest.raises(ValueError, match="size"):
        inception_multiplies(192, 64, 96, 128, 16, 32, 32, 0)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("googlenet", {"aux_logits": "yes"}, "aux_logits"),
        ("googlenet", {"dropout": 1.0}, "dropout"),
        ("googlenet", {"dropout_aux": -0.1}, "dropout_aux"),
        ("googlenet", {"in_channels": 1, "transform_input": True}, "transform_input"),
        ("inception_v3", {"small_input": 1}, "small_input"),
        ("inception_v3", {"paper": True}, None),
    ],
)
def test_options_are_validated(name, options, match):
    if match is None:  # an option the builder does not have
        with pytest.raises(TypeError):
            create_model(name, **options)
        return
    with pytest.raises(ValueError, match=match):
        meta_model(name, **options)


# --------------------------------------------------------------------------- depth: layers with weights


@pytest.mark.parametrize(
    ("build", "input_shape", "published_depth"),
    [
        (lambda: create_model("googlenet"), (1, 3, 224, 224), 22),  # "22 layers deep when counting only layers with parameters"
        (lambda: create_model("googlenet", paper=True, aux_logits=True), (1, 3, 224, 224), 22),
        (lambda: torchvision.models.vgg16(), (1, 3, 32, 32), 16),  # 13 convs + 3 fully connected
        (lambda: torchvision.models.vgg19(), (1, 3, 32, 32), 19),
        (lambda: torchvision.models.resnet18(), (1, 3, 32, 32), 18),  # the projection shortcuts are shorter paths
        (lambda: torchvision.models.resnet50(), (1, 3, 32, 32), 50),
    ],
)
def test_weight_layer_depth_matches_published_depths(build, input_shape, published_depth):
    with torch.device("meta"):
        model = build()
    assert weight_layer_depth(model, input_shape) == published_depth


class _TwoBranches(nn.Module):
    """A 1-conv branch beside a 3-conv branch, concatenated, then a linear layer: depth 3 + 1."""

    def __init__(self):
        super().__init__()
        self.short = nn.Conv2d(2, 2, 1)
        self.long = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2),
                                  nn.Conv2d(2, 2, 3, padding=1))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.cat([self.short(x), self.long(x)], dim=1)
        return self.fc(x.mean((2, 3)))


def test_weight_layer_depth_takes_the_deepest_branch_and_restores_the_mode():
    model = _TwoBranches().train()
    assert weight_layer_depth(model, (2, 2, 5, 5)) == 4
    assert model.training
    plain = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(1))
    assert weight_layer_depth(plain.eval(), (1, 1, 8, 8)) == 1 and not plain.training
    assert weight_layer_depth(nn.Sequential(nn.ReLU()), (1, 1, 4, 4)) == 0


def test_weight_layer_depth_validates():
    with pytest.raises(ValueError, match="input_shape"):
        weight_layer_depth(nn.Conv2d(1, 1, 1), 4)

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 2))

        def forward(self, x):
            return self.w.sum(0)

    with pytest.raises(ValueError, match="depend"):
        weight_layer_depth(Constant(), (1, 2))
