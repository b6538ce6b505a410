"""course_lib.models.resnet: ResNets, ResNeXt, WRN, SE/CBAM ResNets, CIFAR ResNets, plain twins, pre-activation.

The registrations' parameter counts are checked by tests/test_models_registry.py; here: counts equal
to torchvision's, the papers' rounded figures, torchvision weights transferred with equal outputs,
forward passes on small inputs, and the family's own behaviour: option-A shortcuts, plain nets,
stochastic depth, the options each builder takes.
"""

from __future__ import annotations

import re

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from course_lib.layers import CBAM, SqueezeExcitation
from course_lib.models import create_model, list_models, model_record, resnet, transfer_state_dict
from course_lib.models.resnet import BasicBlock, Bottleneck, PreActBlock, ZeroPadShortcut, drop_path_probabilities
from model_helpers import meta_model, n_params

TORCHVISION_TWINS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"]
CIFAR_NETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
CIFAR_PLAIN = ["plain20", "plain32", "plain44", "plain56", "plain110"]
IMAGENET_NETS = TORCHVISION_TWINS + ["se_resnet50", "cbam_resnet50", "plain18", "plain34", "preact_resnet18"]
BIG_NETS = ["resnet101", "resnet152", "wide_resnet50_2"]  # forwarded at 32x32 with their ImageNet stem: cheaper

# Every recorded count of the family whose source quotes a paper's rounded figure ("Table 6: 0.27M").
PAPER_FIGURES = [
    (name, count, figure)
    for name in list_models()
    if model_record(name).family == "resnet"
    for count in model_record(name).params
    for figure in re.findall(r"(\d+\.\d+)M\b", count.source)
]


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The net's blocks, input to output (block l of L is ``[l - 1]``)."""
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck, PreActBlock))]


def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_count_equals_torchvision(name):
    with torch.device("meta"):
        theirs = getattr(tvm, name)(weights=None)
    assert n_params(meta_model(name)) == n_params(theirs)


@pytest.mark.parametrize(
    "name, count, figure", PAPER_FIGURES, ids=[f"{name}-{figure}M" for name, _, figure in PAPER_FIGURES]
)
def test_recorded_count_rounds_to_the_papers_figure(name, count, figure):
    digits = len(figure.partition(".")[2])
    assert round(count.parameters / 1e6, digits) == float(figure), count.source


def test_the_cifar_nets_record_the_papers_table_6():
    quoted = {name for name, count, _ in PAPER_FIGURES if count.num_classes == 10 and "Table 6" in count.source}
    assert quoted == set(CIFAR_NETS)


@pytest.mark.parametrize("name", [*CIFAR_NETS, *CIFAR_PLAIN, "wrn_28_10"])
def test_the_cifar_nets_record_32x32_inputs(name):
    assert model_record(name).input_size == 32


def test_shortcut_options_counts():
    # Option A adds nothing, B projects at the 2 (CIFAR) or 3 (ImageNet) stage transitions, C on every block.
    def projection(c_in, c_out):  # 1x1 conv + BN
        return c_in * c_out + 2 * c_out

    a, b, c = (n_params(meta_model("resnet20", num_classes=10, shortcut=s)) for s in "ABC")
    assert a == n_params(meta_model("plain20", num_classes=10))
    assert b - a == projection(16, 32) + projection(32, 64)
    stage1, stage2 = 3 * projection(16, 16), projection(16, 32) + 2 * projection(32, 32)
    stage3 = projection(32, 64) + 2 * projection(64, 64)
    assert c - a == stage1 + stage2 + stage3
    assert n_params(meta_model("resnet34", shortcut="A")) == n_params(meta_model("plain34"))
    assert n_params(meta_model("resnet18", shortcut="A")) == n_params(meta_model("plain18"))


# ----------------------------------------------------------------------------- torchvision weights


def _randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BN distinct statistics and affine parameters, so a swapped BN would change the output."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.2, 0.2, generator=generator)
                m.running_mean.uniform_(-0.2, 0.2, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)


TRANSFERS = [("resnet18", 64), ("resnet50", 32), ("resnext50_32x4d", 32), ("wide_resnet50_2", 32)]  # (name, input size)


@pytest.mark.parametrize("name, size", TRANSFERS)
def test_torchvision_weights_transfer(name, size):
    generator = torch.Generator().manual_seed(0)
    theirs = getattr(tvm, name)(weights=None)
    _randomize_batchnorm(theirs, generator)
    ours = transfer_state_dict(create_model(name), theirs.state_dict())
    x = torch.randn(2, 3, size, size, generator=generator)
    torch.testing.assert_close(eval_forward(ours, x), eval_forward(theirs, x), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- forward passes


@pytest.mark.parametrize("name", CIFAR_NETS + CIFAR_PLAIN + ["wrn_28_10"])
def test_cifar_forward(name):
    torch.manual_seed(0)
    out = eval_forward(create_model(name, num_classes=10), torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in IMAGENET_NETS if n not in BIG_NETS])
def test_imagenet_nets_forward_small_input(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1, small_input=True)
    x = torch.randn(2, 1, 32, 32)
    out = eval_forward(model, x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, model.num_features, 4, 4)  # 32 -> 32, 16, 8, 4


@pytest.mark.parametrize("name", BIG_NETS)
def test_big_imagenet_nets_forward_32x32(name):
    # The smallest input of the ImageNet stem (a 1x1 map reaches the head): resnet50's blocks, more of them or wider.
    torch.manual_seed(0)
    out = eval_forward(create_model(name, num_classes=10), torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_imagenet_forward_64x64():
    torch.manual_seed(0)
    model = create_model("resnet34", num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.eval().forward_features(x).shape == (2, 512, 2, 2)  # /2 conv, /2 pool, /2 x3 stages
    out = eval_forward(model, x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- structure


def test_bottleneck_stride_on_the_3x3_conv_as_torchvision():
    block = meta_model("resnet50").layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2) and block.conv2.kernel_size == (3, 3)
    assert [tuple(m.weight.shape) for m in block.shortcut] == [(512, 256, 1, 1), (512,)]  # option B: 1x1 conv + BN
    assert isinstance(meta_model("resnet50").layer1[1].shortcut, nn.Identity)  # where the shape does not change


def test_resnext_and_wide_bottlenecks():
    resnext, wide = meta_model("resnext50_32x4d").layer1[0], meta_model("wide_resnet50_2").layer1[0]
    assert resnext.conv2.groups == 32 and resnext.conv2.out_channels == 128  # 32 groups x 4 channels
    assert wide.conv2.groups == 1 and wide.conv2.out_channels == 128  # 2 x 64
    assert resnext.conv3.out_channels == wide.conv3.out_channels == 256


@pytest.mark.parametrize("name, module, spatial", [("se_resnet50", SqueezeExcitation, 0), ("cbam_resnet50", CBAM, 99)])
def test_attention_in_every_bottleneck(name, module, spatial):
    blocks = residual_blocks(meta_model(name))
    assert len(blocks) == 16 and all(isinstance(block.attention, module) for block in blocks)
    # Reduction 16 on the block's 2048 output channels: 2048 -> 128 -> 2048 with biases (+ CBAM's 7x7 conv on 2 maps).
    assert n_params(blocks[-1].attention) == 2 * 2048 * 128 + 128 + 2048 + spatial
    assert all(block.attention is None for block in residual_blocks(meta_model("resnet50")))


def test_small_input_changes_only_the_stem():
    big, small = meta_model("resnet18"), meta_model("resnet18", small_input=True)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and isinstance(small.maxpool, nn.Identity)
    big_shapes = {k: v.shape for k, v in big.state_dict().items() if k != "conv1.weight"}
    assert big_shapes == {k: v.shape for k, v in small.state_dict().items() if k != "conv1.weight"}


# ----------------------------------------------------------------------------- option A shortcuts


def test_option_a_shortcut_subsamples_and_zero_pads():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    assert n_params(shortcut) == 0
    x = torch.randn(2, 16, 9, 8)
    y = shortcut(x)
    assert y.shape == (2, 32, 5, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_cifar_resnet_uses_parameter_free_option_a():
    model = meta_model("resnet20", num_classes=10)
    shortcuts = [block.shortcut for block in residual_blocks(model)]
    assert [type(s) for s in shortcuts].count(nn.Identity) == 7
    shortcuts = [s for s in shortcuts if not isinstance(s, nn.Identity)]
    assert len(shortcuts) == 2 and all(isinstance(s, ZeroPadShortcut) for s in shortcuts)
    assert (shortcuts[0].in_channels, shortcuts[0].out_channels) == (16, 32)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


# ----------------------------------------------------------------------------- plain nets


@pytest.mark.parametrize("name", ["plain20", "plain18", "plain34"])
def test_plain_nets_have_no_shortcuts(name):
    model = meta_model(name)
    assert all(block.shortcut is None for block in residual_blocks(model))
    projections = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert not projections and not any(isinstance(m, ZeroPadShortcut) for m in model.modules())


def test_plain_net_differs_from_residual_net_with_same_weights():
    torch.manual_seed(0)
    residual = create_model("resnet20", num_classes=10)
    plain = create_model("plain20", num_classes=10)
    plain.load_state_dict(residual.state_dict())  # same keys: option A adds no parameters
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(eval_forward(plain, x), eval_forward(residual, x))
    h = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        for block in plain.layer2[0], residual.layer2[0]:
            branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(h)))))  # F(x)
            shortcut = torch.zeros_like(branch) if block.shortcut is None else block.shortcut(h)
            torch.testing.assert_close(block(h), torch.relu(branch + shortcut))
        assert isinstance(residual.layer2[0].shortcut, ZeroPadShortcut)


# ----------------------------------------------------------------------------- stochastic depth


def test_drop_path_survival_probabilities_are_linear_in_depth():
    model = meta_model("resnet110", drop_path_rate=0.5)  # Huang et al.: p_L = 0.5
    drops = [block.drop_path.p for block in residual_blocks(model)]
    total = len(drops)
    assert total == 54
    survival = [1 - p for p in drops]
    assert survival == pytest.approx([1 - l / total * (1 - 0.5) for l in range(1, total + 1)])
    assert [[block.drop_path.p for block in stage] for stage in (model.layer1, model.layer2, model.layer3)] == (
        drop_path_probabilities((18, 18, 18), 0.5)
    )
    wide = meta_model("wrn_28_10", drop_path_rate=0.2)
    assert [b.drop_path.p for b in residual_blocks(wide)] == pytest.approx([0.2 * l / 12 for l in range(1, 13)])


def test_drop_path_is_identity_in_eval_and_random_in_training():
    torch.manual_seed(0)
    reference = create_model("resnet20", num_classes=10)
    dropping = create_model("resnet20", num_classes=10, drop_path_rate=0.5)
    dropping.load_state_dict(reference.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(eval_forward(dropping, x), eval_forward(reference, x), rtol=0, atol=0)
    reference.train(), dropping.train()
    with torch.no_grad():
        assert not torch.allclose(dropping(x), reference(x))


def test_plain_nets_refuse_drop_path():
    with pytest.raises(TypeError, match="drop_path_rate"):
        create_model("plain20", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="drop_path"):
        BasicBlock(16, 16, shortcut=None, drop_path=0.1)
    with pytest.raises(ValueError, match="drop_path"):
        resnet.ResNet(BasicBlock, (1, 1, 1), (16, 32, 64), shortcut=None, drop_path_rate=0.1)


# ----------------------------------------------------------------------------- pre-activation and WRN


def test_preactivation_block_order_and_wrn_widths():
    model = meta_model("wrn_28_10", num_classes=10, dropout=0.3)
    first = model.layer1[0]
    assert [name for name, _ in first.named_parameters()] == [
        "bn1.weight", "bn1.bias", "conv1.weight", "bn2.weight", "bn2.bias", "conv2.weight", "shortcut.weight"
    ]
    assert first.bn1.num_features == 16 and first.conv2.out_channels == 160
    assert isinstance(first.shortcut, nn.Conv2d)  # 1x1 projection, no BN, on the pre-activated input
    assert model.layer1[1].shortcut is None  # the identity
    assert [s[-1].conv2.out_channels for s in (model.layer1, model.layer2, model.layer3)] == [160, 320, 640]
    assert isinstance(model.layer4, nn.Identity) and len(residual_blocks(model)) == 12
    assert all(block.dropout.p == 0.3 for block in residual_blocks(model))
    assert meta_model("wrn_28_10").layer1[1].dropout.p == 0


def test_preactivation_block_adds_x_to_the_branch():
    torch.manual_seed(0)
    for block, shape in (PreActBlock(8, 8), (2, 8, 6, 6)), (PreActBlock(8, 16, stride=2), (2, 8, 6, 6)):
        block.eval()
        x = torch.randn(shape)
        with torch.no_grad():
            pre = torch.relu(block.bn1(x))
            branch = block.conv2(torch.relu(block.bn2(block.conv1(pre))))
            identity = x if block.shortcut is None else block.shortcut(pre)
            torch.testing.assert_close(block(x), branch + identity)


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("resnet18", {"shortcut": "D"}, "shortcut must be one of"),
        ("resnet50", {"drop_path_rate": 1.0}, "drop_path_rate"),
        ("resnet50", {"small_input": "yes"}, "small_input"),
        ("wrn_28_10", {"dropout": -0.1}, "dropout"),
    ],
)
def test_invalid_options_are_refused(name, options, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, **options)


@pytest.mark.parametrize(
    "name, option",
    [
        ("resnet18", {"width": 2}),
        ("resnet20", {"small_input": True}),  # the CIFAR nets always have the small stem
        ("resnet20", {"dropout": 0.3}),
        ("plain34", {"shortcut": "B"}),
        ("wrn_28_10", {"shortcut": "A"}),
    ],
)
def test_options_a_model_does_not_take_are_refused(name, option):
    with pytest.raises(TypeError, match=next(iter(option))):
        create_model(name, **option)


def test_basic_block_has_no_groups_or_width():
    with pytest.raises(ValueError, match="groups and base_width"):
        resnet.ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), groups=32)


def test_stages_must_match_their_widths():
    with pytest.raises(ValueError, match="depths and widths"):
        resnet.ResNet(BasicBlock, (2, 2), (64, 128))
    with pytest.raises(ValueError, match="depths and widths"):
        resnet.PreActResNet((2, 2, 2), (64, 128, 256, 512))


def test_builders_validate_sizes_when_called_directly():
    with pytest.raises(ValueError, match="num_classes"):
        resnet.resnet18(num_classes=0)
    with pytest.raises(ValueError, match="in_channels"):
        resnet.resnet20(in_channels=2.5)


# ----------------------------------------------------------------------------- the CIFAR nets' width option


def cifar_count(n: int, width: int, num_classes: int, in_channels: int) -> int:
    """Closed form of a CIFAR ResNet's parameters with option A (He et al. 2016, Sec. 4.2): a 3x3 stem conv
    with `width` channels + BN, three stages of n basic blocks (two 3x3 convs + 2 BNs each) with width,
    2 width and 4 width channels, and the fc."""

    def block(c_in, c_out):
        return 9 * c_in * c_out + 9 * c_out * c_out + 2 * 2 * c_out

    total = 9 * in_channels * width + 2 * width
    c_in = width
    for c_out in (width, 2 * width, 4 * width):
        total += block(c_in, c_out) + (n - 1) * block(c_out, c_out)
        c_in = c_out
    return total + 4 * width * num_classes + num_classes


@pytest.mark.parametrize("name, n", [("resnet20", 3), ("resnet56", 9), ("plain20", 3), ("plain110", 18)])
@pytest.mark.parametrize("width", [4, 8, 16])
def test_cifar_width_option_matches_the_closed_form(name, n, width):
    assert n_params(meta_model(name, num_classes=10, width=width)) == cifar_count(n, width, 10, 3)
    assert n_params(meta_model(name, num_classes=7, in_channels=1, width=width)) == cifar_count(n, width, 7, 1)


def test_cifar_default_width_is_the_papers():
    assert cifar_count(3, 16, 10, 3) == 269_722  # He et al. 2016, Table 6: ResNet-20, 0.27M
    torch.manual_seed(0)
    default = create_model("resnet20", num_classes=10)
    torch.manual_seed(0)
    explicit = create_model("resnet20", num_classes=10, width=16)
    for (name, a), (_, b) in zip(default.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name", ["resnet32", "plain32"])
def test_narrow_cifar_net_stages_and_forward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1, width=8)
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
            model.layer3[0].conv1.out_channels] == [8, 16, 32]
    out = eval_forward(model, torch.randn(2, 1, 8, 8))  # the 8x8 digits: 8x8, 4x4, 2x2 maps
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # The residual net's stage transitions zero-pad (option A); the plain twin has no shortcut at all.
    assert any(isinstance(m, ZeroPadShortcut) for m in model.modules()) == name.startswith("resnet")


@pytest.mark.parametrize("width", [0, 2.5, True, "8"])
@pytest.mark.parametrize("name", ["resnet20", "plain56"])
def test_invalid_width_is_refused(name, width):
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        create_model(name, width=width)
