"""Classic CNNs of course_lib.models: LeNet, AlexNet / ZFNet, VGG, Network in Network, SqueezeNet.

Big models are built on the meta device (shapes only, no memory) for counts and
shape tables; real forward passes use small inputs, and only the torchvision
twins that are cheap enough get a weight-transfer check with real numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from course_lib.models import (
    alexnet,
    create_model,
    lenet,
    list_models,
    model_record,
    nin,
    squeezenet,
    transfer_state_dict,
    vgg,
)
from model_helpers import meta_model, n_params

TWINS = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
         "squeezenet1_0", "squeezenet1_1"]  # fmt: skip
FAMILIES = {"lenet", "alexnet", "vgg", "nin", "squeezenet"}
CLASSIC = [name for name in list_models() if model_record(name).family in FAMILIES]


def leaves(model: nn.Module) -> list[str]:
    """The leaf modules as their reprs (type and hyperparameters), in registration order."""
    return [repr(m) for m in model.modules() if next(m.children(), None) is None]


def output_shapes(model: nn.Module, input_shape, types=(nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) -> list[tuple]:
    """(C, H, W) after every layer of ``types``, in forward order, from a forward pass on the meta device."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.modules() if isinstance(m, types)]  # fmt: skip
    model(torch.zeros(input_shape, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


# ---------------------------------------------------------------- structure and torchvision twins
# (every registered parameter count is checked by tests/test_models_registry.py)


def test_lenet5_parameters_layer_by_layer():
    # C1, C3, C5, F6, output of the simplified LeNet-5 (the docstring's table).
    model = lenet.lenet5(num_classes=10, in_channels=1)
    per_layer = [n_params(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert per_layer == [156, 2_416, 48_120, 10_164, 850]


@pytest.mark.parametrize("name", TWINS)
@pytest.mark.filterwarnings("ignore:for .*num_batches_tracked:UserWarning")  # BN's default counter, not on meta
def test_twin_has_torchvision_layers_in_torchvision_order(name):
    """Same leaf modules with the same hyperparameters (repr), in the same order, as torchvision's model."""
    with torch.device("meta"):
        ours, theirs = create_model(name), getattr(tvm, name)(weights=None)
    assert n_params(ours) == n_params(theirs)
    assert leaves(ours) == leaves(theirs)
    transfer_state_dict(ours, theirs.state_dict())  # count and shapes line up (meta tensors: no copy)


TRANSFER_CHECKS = [("alexnet", 64), ("vgg11_bn", 32), ("squeezenet1_0", 64), ("squeezenet1_1", 64)]


@pytest.mark.parametrize("name, size", TRANSFER_CHECKS)
def test_torchvision_weights_transfer_and_give_the_same_outputs(name, size):
    """The other twins have the same layers (test above) and share these forward functions.

    Ours starts from uninitialized memory (``to_empty``, which also skips the costly init of
    100M+ weights): only a complete transfer can make its outputs equal to torchvision's.
    """
    torch.manual_seed(0)
    theirs = getattr(tvm, name)(weights=None).eval()
    for m in theirs.modules():  # non-trivial running statistics, so that they must be transferred too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ours = meta_model(name).to_empty(device="cpu").eval()
    transfer_state_dict(ours, theirs.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CLASSIC)
def test_num_classes_and_in_channels_reach_the_model(name):
    model = meta_model(name, num_classes=7, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    last = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    assert convs[0].in_channels == 1
    assert (last.out_channels if isinstance(last, nn.Conv2d) else last.out_features) == 7


# ---------------------------------------------------------------- forward passes on small inputs

SMALL_FORWARDS = [
    ("lenet_modern", dict(in_channels=1), 28),
    ("lenet_modern", dict(in_channels=1, input_size=32), 32),
    ("alexnet", dict(small_input=True), 32),
    ("alexnet", dict(small_input=True, original=True), 32),
    ("zfnet", dict(small_input=True), 32),
    *[(name, dict(small_input=True), 32) for name in TWINS if name.startswith("vgg")],
    ("nin", {}, 32),
    ("nin", dict(in_channels=1), 28),
    ("squeezenet1_0", dict(small_input=True), 32),
    ("squeezenet1_1", dict(small_input=True), 32),
]


@pytest.mark.parametrize("name, options, size", SMALL_FORWARDS, ids=lambda v: str(v))
def test_forward_on_small_input(name, options, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **options).eval()
    x = torch.randn(2, options.get("in_channels", 3), size, size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("input_size", [28, 32])
def test_lenet5_forward(activation, pool, input_size):
    torch.manual_seed(0)
    model = lenet.lenet5(num_classes=10, in_channels=1, activation=activation, pool=pool, input_size=input_size).eval()
    x = torch.randn(2, 1, input_size, input_size)
    with torch.no_grad():
        assert model.features(x).shape == (2, 16, 5, 5)  # S4: 16 maps of 5x5 whatever the input size
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert model.features.conv1.padding == ((32 - input_size) // 2,) * 2
    acts = {type(m) for m in model.modules() if isinstance(m, (nn.Tanh, nn.Sigmoid, nn.ReLU))}
    pools = {type(m) for m in model.modules() if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d))}
    assert acts == {lenet.ACTIVATIONS[activation]} and pools == {lenet.POOLS[pool]}


def test_lenet_refuses_inputs_of_another_size():
    with pytest.raises(ValueError, match="input_size=32"):
        lenet.lenet5(num_classes=10, in_channels=1)(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="input_size=28"):
        lenet.lenet_modern(num_classes=10, in_channels=1)(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize(
    "options, argument",
    [
        (dict(activation="softplus"), "activation"),
        (dict(pool="lp"), "pool"),
        (dict(input_size=30), "input_size"),
        (dict(input_size=28.0), "input_size"),
    ],
)
def test_lenet5_rejects_bad_options(options, argument):
    with pytest.raises(ValueError, match=argument):
        lenet.lenet5(**options)


def test_lenet_modern_log_softmax_option():
    torch.manual_seed(0)
    with_log_softmax = lenet.lenet_modern(num_classes=10, in_channels=1).eval()
    plain = lenet.lenet_modern(num_classes=10, in_channels=1, log_softmax=False).eval()
    plain.load_state_dict(with_log_softmax.state_dict())  # same parameters: log-softmax has none
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 9, 3])
    with torch.no_grad():
        log_probs, logits = with_log_softmax(x), plain(x)
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(4))
    torch.testing.assert_close(log_probs, F.log_softmax(logits, dim=1))
    # The docstring's claim: cross-entropy on the log-probabilities equals cross-entropy on the logits.
    torch.testing.assert_close(F.cross_entropy(log_probs, y), F.cross_entropy(logits, y))
    torch.testing.assert_close(F.nll_loss(log_probs, y), F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="input_size"):
        lenet.lenet_modern(input_size=12)
    with pytest.raises(ValueError, match="log_softmax"):
        lenet.lenet_modern(log_softmax="yes")


# ---------------------------------------------------------------- AlexNet and ZFNet: the layer tables


def test_alexnet_paper_layer_table():
    # The lecture's table: 227x227x3 -> 55x55x96 -> pool 27 -> 27x27x256 -> pool 13 -> 13x13x384 x2 -> 13x13x256 -> 6.
    shapes = output_shapes(meta_model("alexnet", original=True), (1, 3, 227, 227))
    assert shapes == [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13),
                      (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6)]  # fmt: skip


def test_alexnet_original_has_lrn_and_two_gpu_groups():
    model = meta_model("alexnet", original=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in meta_model("alexnet").modules())


def test_lrn_constants_reproduce_the_papers_formula():
    # AlexNet Sec. 3.3: b_i = a_i / (k + alpha * sum_{|j - i| <= n/2} a_j^2)^beta, k=2, n=5, alpha=1e-4, beta=0.75.
    torch.manual_seed(0)
    a = torch.randn(2, 9, 4, 4, dtype=torch.float64) * 30  # large enough for the normalization to matter
    lrn = next(m for m in meta_model("alexnet", original=True).modules() if isinstance(m, nn.LocalResponseNorm))
    squares = F.pad(a.square(), (0, 0, 0, 0, 2, 2))  # zero maps beyond the edges
    window_sums = sum(squares[:, j : j + 9] for j in range(5))
    expected = a / (2 + 1e-4 * window_sums) ** 0.75
    torch.testing.assert_close(lrn(a), expected, atol=1e-12, rtol=0)
    assert not torch.allclose(expected, a / 2**0.75, atol=1e-3), "the test input must exercise the sum"


def test_alexnet_torchvision_layer_table():
    shapes = output_shapes(meta_model("alexnet"), (1, 3, 224, 224), types=(nn.MaxPool2d,))
    assert shapes == [(64, 27, 27), (192, 13, 13), (256, 6, 6)]


def test_zfnet_layer_table():
    # Zeiler & Fergus, Fig. 3: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6.
    shapes = output_shapes(meta_model("zfnet"), (1, 3, 224, 224))
    assert shapes == [(96, 110, 110), (96, 55, 55), (256, 26, 26), (256, 13, 13),
                      (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6)]  # fmt: skip
    first = next(m for m in meta_model("zfnet").modules() if isinstance(m, nn.Conv2d))
    assert (first.kernel_size, first.stride) == ((7, 7), (2, 2))


@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_small_input_changes_only_the_first_convolution(name):
    big, small = meta_model(name), meta_model(name, small_input=True)
    assert leaves(big)[1:] == leaves(small)[1:]
    first = small.features[0]
    assert (first.kernel_size, first.stride, first.padding) == ((3, 3), (1, 1), (1, 1))


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg16", "nin", "squeezenet1_1"])
def test_bad_dropout_and_flags_are_refused(name):
    with pytest.raises(ValueError, match="dropout"):
        meta_model(name, dropout=1.0)
    if name != "nin":
        with pytest.raises(ValueError, match="small_input"):
            meta_model(name, small_input=1)


def test_alexnet_original_flag_is_checked():
    with pytest.raises(ValueError, match="original"):
        alexnet.alexnet(original="yes")


# ---------------------------------------------------------------- VGG


@pytest.mark.parametrize(
    "config, convs, name", [("A", 8, "vgg11"), ("B", 10, "vgg13"), ("D", 13, "vgg16"), ("E", 16, "vgg19")]
)
def test_vgg_configuration_tables(config, convs, name):
    table = vgg.VGG_CONFIGS[config]
    assert sum(isinstance(item, int) for item in table) == convs
    assert table.count("M") == 5  # 224 -> 7
    assert int(name[3:]) == convs + 3  # the name counts the weight layers: convs + 3 fc
    for variant, batch_norm in ((name, False), (name + "_bn", True)):
        model = meta_model(variant)
        layers = list(model.modules())
        assert sum(isinstance(m, nn.Conv2d) for m in layers) == convs
        assert sum(isinstance(m, nn.Linear) for m in layers) == 3
        assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == (convs if batch_norm else 0)
        assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in layers if isinstance(m, nn.Conv2d))


def test_vgg16_layer_table():
    shapes = output_shapes(meta_model("vgg16"), (1, 3, 224, 224), types=(nn.MaxPool2d,))
    assert shapes == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]


def test_vgg_small_input_head():
    model = meta_model("vgg16", num_classes=10, small_input=True)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512
    assert model.avgpool.output_size == (1, 1)
    assert [repr(m) for m in model.features] == [repr(m) for m in meta_model("vgg16").features]
    assert n_params(model) == 14_714_688 + 5_130  # VGG-16's convolutions + fc 512 -> 10


# ---------------------------------------------------------------- Network in Network


def test_nin_structure():
    model = meta_model("nin", num_classes=10)
    assert not any(isinstance(m, nn.Linear) for m in model.modules()), "global average pooling replaces fc layers"
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [192, 160, 96, 192, 192, 192, 192, 192, 10]
    assert [c.kernel_size[0] for c in convs] == [5, 1, 1, 5, 1, 1, 3, 1, 1]
    pools = [m for m in model.features if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert [type(p) for p in pools] == [nn.MaxPool2d, nn.AvgPool2d]
    shapes = output_shapes(model, (1, 3, 32, 32), types=(nn.Sequential,))
    assert shapes[:3] == [(96, 32, 32), (192, 16, 16), (10, 8, 8)]  # the three mlpconv blocks


def test_nin_scores_are_means_of_class_maps():
    torch.manual_seed(0)
    model = nin.nin(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model.features(x)
        torch.testing.assert_close(model(x), maps.mean(dim=(2, 3)))
    assert (maps >= 0).all(), "ReLU follows the last 1x1 conv, as in the authors' model"


def test_mlpconv_is_a_per_pixel_mlp():
    torch.manual_seed(0)
    block = nin.mlpconv(4, 1, (6, 5)).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    conv1, conv2 = block[0], block[2]
    pixels = x.permute(0, 2, 3, 1)  # (N, H, W, C): an MLP applied to each pixel's channel vector
    hidden = torch.relu(pixels @ conv1.weight.flatten(1).T + conv1.bias)
    expected = torch.relu(hidden @ conv2.weight.flatten(1).T + conv2.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- SqueezeNet


@pytest.mark.parametrize("in_channels, s, e1, e3", [(96, 16, 64, 64), (128, 32, 128, 128), (384, 64, 256, 256)])
def test_fire_module_channel_arithmetic(in_channels, s, e1, e3):
    fire = squeezenet.Fire(in_channels, s, e1, e3)
    assert fire.out_channels == e1 + e3
    assert n_params(fire) == (in_channels + 1) * s + (s + 1) * e1 + (9 * s + 1) * e3
    with torch.no_grad():
        assert fire(torch.randn(2, in_channels, 5, 5)).shape == (2, e1 + e3, 5, 5)


def test_fire_module_concatenates_expand1x1_then_expand3x3():
    torch.manual_seed(0)
    fire = squeezenet.Fire(8, 4, 3, 5).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        squeezed = torch.relu(fire.squeeze(x))
        out = fire(x)
        torch.testing.assert_close(out[:, :3], torch.relu(fire.expand1x1(squeezed)))
        torch.testing.assert_close(out[:, 3:], torch.relu(fire.expand3x3(squeezed)))


@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_squeezenet_configuration_chains_channels(version):
    fires = [item for item in squeezenet.SQUEEZENET_CONFIGS[version]["layers"] if item != "M"]
    assert len(fires) == 8  # fire2 ... fire9
    assert all(s * 8 == e1 + e3 and e1 == e3 for s, e1, e3 in fires)  # squeeze ratio 1/8, half 1x1 half 3x3
    model = meta_model(f"squeezenet{version}")
    modules = [m for m in model.features if isinstance(m, squeezenet.Fire)]
    for before, after in zip(modules, modules[1:]):
        assert after.squeeze.in_channels == before.out_channels
    assert output_shapes(model, (1, 3, 224, 224), types=(nn.MaxPool2d,))[-1][1:] == (13, 13)
    with pytest.raises(ValueError, match="version"):
        squeezenet.SqueezeNet("1_2")


# ---------------------------------------------------------------- the zoo table


def test_zoo_table_sets_the_recorded_count_of_the_same_configuration_beside_the_computed_one():
    from course_lib.models import zoo_table

    default = zoo_table(["nin"])[0]
    assert default["published"] == default["parameters"] == model_record("nin").parameters
    ten_classes = zoo_table(["nin"], num_classes=10)[0]
    assert ten_classes["published"] == ten_classes["parameters"] == 966_986  # the authors' CIFAR-10 model
    grey = zoo_table(["nin"], in_channels=1)[0]  # no count recorded for one channel
    assert grey["published"] is None
    assert grey["parameters"] == default["parameters"] - 2 * 192 * 5 * 5  # 2 channels fewer into conv 192@5x5
