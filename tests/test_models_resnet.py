"""course_lib.models.resnet: ResNets, ResNeXt, WRN, SE/CBAM ResNets, CIFAR ResNets, plain twins, pre-activation.

Parameter counts against torchvision (exact) and the papers (rounded), torchvision
weights transferred with equal outputs, forward passes on small inputs, and the
family's own behaviour: option-A shortcuts, plain nets, stochastic depth.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from course_lib.layers import CBAM, SqueezeExcitation
from course_lib.models import create_model, resnet, transfer_state_dict
from course_lib.models.resnet import ZeroPadShortcut, drop_path_probabilities

# Parameters of create_model(name) with its defaults (num_classes=1000, in_channels=3): exact,
# torchvision's count for its twins, computed here for the others with the paper's figure in the source
# (the CIFAR papers count a 10-class fc: see PAPER_FIGURES, where those figures are checked).
PUBLISHED = [
    ("resnet18", 11_689_512, "torchvision.models.resnet18; He et al. 2016, Table 1 (11.7M)"),
    ("resnet34", 21_797_672, "torchvision.models.resnet34; He et al. 2016, Table 1 (21.8M)"),
    ("resnet50", 25_557_032, "torchvision.models.resnet50; He et al. 2016, Table 1 (25.6M)"),
    ("resnet101", 44_549_160, "torchvision.models.resnet101; He et al. 2016, Table 1 (44.5M)"),
    ("resnet152", 60_192_808, "torchvision.models.resnet152; He et al. 2016, Table 1 (60.2M)"),
    ("resnext50_32x4d", 25_028_904, "torchvision.models.resnext50_32x4d; Xie et al. 2017, Table 1 (25.0M)"),
    ("wide_resnet50_2", 68_883_240, "torchvision.models.wide_resnet50_2; Zagoruyko & Komodakis 2016 (68.9M)"),
    (
        "se_resnet50",
        28_088_024,
        "computed: resnet50 + 2,530,992 SE parameters; 28.09M in Woo et al. 2018 (CBAM), Table 4; "
        "Hu et al. 2018 (SENet), Sec. 'Model and computational complexity': ~2.5M more than ResNet-50",
    ),
    (
        "cbam_resnet50",
        28_089_608,
        "computed: se_resnet50 + 16 blocks x 99 (7x7 spatial conv with bias); Woo et al. 2018, Table 4: 28.09M "
        "(their code: spatial conv without bias + BN, 100 per block, 28,089,624)",
    ),
    ("plain18", 11_515_688, "computed: resnet18 without its 3 projection shortcuts (= resnet18 with option A)"),
    ("plain34", 21_623_848, "computed: resnet34 without its 3 projection shortcuts (= ResNet-34 A, He et al. Table 3)"),
    (
        "preact_resnet18",
        11_687_720,
        "computed: resnet18's layout with pre-activation blocks (He et al. 2016b), no published count; "
        "small_input=True, 10 classes: 11,172,170 (kuangliu/pytorch-cifar's PreActResNet18 + a final BN)",
    ),
    ("resnet20", 334_072, "computed; 269,722 for 10 classes: He et al. 2016, Table 6 (0.27M)"),
    ("resnet32", 528_504, "computed; 464,154 for 10 classes: He et al. 2016, Table 6 (0.46M)"),
    ("resnet44", 722_936, "computed; 658,586 for 10 classes: He et al. 2016, Table 6 (0.66M)"),
    ("resnet56", 917_368, "computed; 853,018 for 10 classes: He et al. 2016, Table 6 (0.85M)"),
    ("resnet110", 1_792_312, "computed; 1,727,962 for 10 classes: He et al. 2016, Table 6 (1.7M)"),
    ("plain20", 334_072, "computed: = resnet20 (He et al. 2016, Sec. 4.2: option A, same parameters as plain)"),
    ("plain32", 528_504, "computed: = resnet32 (He et al. 2016, Sec. 4.2)"),
    ("plain44", 722_936, "computed: = resnet44 (He et al. 2016, Sec. 4.2)"),
    ("plain56", 917_368, "computed: = resnet56 (He et al. 2016, Sec. 4.2)"),
    ("plain110", 1_792_312, "computed: = resnet110 (He et al. 2016, Sec. 4.2)"),
    ("wrn_28_10", 37_113_784, "computed; 36,479,194 for 10 classes: Zagoruyko & Komodakis 2016, Table 4 (36.5M)"),
]

# The papers' rounded figures: (name, num_classes the paper counts, our exact count, published string).
# Each published figure is checked to be our count rounded to the digits it shows.
PAPER_FIGURES = [
    ("resnet20", 10, 269_722, "0.27M"),
    ("resnet32", 10, 464_154, "0.46M"),
    ("resnet44", 10, 658_586, "0.66M"),
    ("resnet56", 10, 853_018, "0.85M"),
    ("resnet110", 10, 1_727_962, "1.7M"),
    ("wrn_28_10", 10, 36_479_194, "36.5M"),
    ("se_resnet50", 1000, 28_088_024, "28.09M"),
    ("cbam_resnet50", 1000, 28_089_608, "28.09M"),
]

TORCHVISION_TWINS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"]
CIFAR_NETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
CIFAR_PLAIN = ["plain20", "plain32", "plain44", "plain56", "plain110"]
IMAGENET_NETS = TORCHVISION_TWINS + ["se_resnet50", "cbam_resnet50", "plain18", "plain34", "preact_resnet18"]
BIG_NETS = ["resnet101", "resnet152", "wide_resnet50_2"]  # forwarded at 32x32 with their ImageNet stem: cheaper


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name, expected, source", PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_parameter_count(name, expected, source):
    assert n_params(meta_model(name)) == expected, source


def test_published_covers_every_model_of_the_file():
    registered = {n for n in resnet.__all__ if n[0].islower() and n not in ("make_shortcut", "drop_path_probabilities")}
    assert registered == {row[0] for row in PUBLISHED}


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_count_equals_torchvision(name):
    with torch.device("meta"):
        theirs = getattr(tvm, name)(weights=None)
    assert n_params(meta_model(name)) == n_params(theirs)


@pytest.mark.parametrize("name, num_classes, exact, published", PAPER_FIGURES, ids=[r[0] for r in PAPER_FIGURES])
def test_count_rounds_to_the_papers_figure(name, num_classes, exact, published):
    count = n_params(meta_model(name, num_classes=num_classes))
    assert count == exact
    digits = len(published.rstrip("M").partition(".")[2])
    assert round(count / 1e6, digits) == float(published.rstrip("M"))


def test_shortcut_options_counts():
    # Option A adds nothing, B projects at the 2 (CIFAR) or 3 (ImageNet) stage transitions, C on every block.
    a, b, c = (n_params(meta_model("resnet20", num_classes=10, shortcut=s)) for s in "ABC")
    assert a == 269_722 and b == 272_474 and c > b
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # two 1x1 convs + their BN
    assert n_params(meta_model("resnet34", shortcut="A")) == n_params(meta_model("plain34"))
    assert n_params(meta_model("resnet18", shortcut="A")) == n_params(meta_model("plain18"))


def test_preact_resnet18_small_input_count():
    assert n_params(meta_model("preact_resnet18", num_classes=10, small_input=True)) == 11_172_170


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
    assert meta_model("resnet50").layer1[1].shortcut is None  # identity where the shape does not change


def test_resnext_and_wide_bottlenecks():
    resnext, wide = meta_model("resnext50_32x4d").layer1[0], meta_model("wide_resnet50_2").layer1[0]
    assert resnext.conv2.groups == 32 and resnext.conv2.out_channels == 128  # 32 groups x 4 channels
    assert wide.conv2.groups == 1 and wide.conv2.out_channels == 128  # 2 x 64
    assert resnext.conv3.out_channels == wide.conv3.out_channels == 256


@pytest.mark.parametrize("name, module, spatial", [("se_resnet50", SqueezeExcitation, 0), ("cbam_resnet50", CBAM, 99)])
def test_attention_in_every_bottleneck(name, module, spatial):
    model = meta_model(name)
    assert len(model.blocks) == 16 and all(isinstance(block.attention, module) for block in model.blocks)
    # Reduction 16 on the block's 2048 output channels: 2048 -> 128 -> 2048 with biases (+ CBAM's 7x7 conv on 2 maps).
    assert n_params(model.layer4[0].attention) == 2 * 2048 * 128 + 128 + 2048 + spatial


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
    shortcuts = [block.shortcut for block in model.blocks if block.shortcut is not None]
    assert len(shortcuts) == 2 and all(isinstance(s, ZeroPadShortcut) for s in shortcuts)
    assert (shortcuts[0].in_channels, shortcuts[0].out_channels) == (16, 32)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


# ----------------------------------------------------------------------------- plain nets


@pytest.mark.parametrize("name", ["plain20", "plain18", "plain34"])
def test_plain_nets_have_no_shortcuts(name):
    model = meta_model(name)
    assert all(block.plain and block.shortcut is None for block in model.blocks)
    projections = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert not projections and not any(isinstance(m, ZeroPadShortcut) for m in model.modules())


def test_plain_net_differs_from_residual_net_with_same_weights():
    torch.manual_seed(0)
    residual = create_model("resnet20", num_classes=10)
    plain = create_model("plain20", num_classes=10)
    plain.load_state_dict(residual.state_dict())  # same keys: option A adds no parameters
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(eval_forward(plain, x), eval_forward(residual, x))
    block, h = plain.layer2[0].eval(), torch.randn(2, 16, 8, 8)
    with torch.no_grad():  # a plain block is ReLU(F(x)), nothing added
        torch.testing.assert_close(block(h), torch.relu(block.residual_branch(h)))


# ----------------------------------------------------------------------------- stochastic depth


def test_drop_path_survival_probabilities_are_linear_in_depth():
    model = meta_model("resnet110", drop_path_rate=0.5)  # Huang et al.: p_L = 0.5
    drops = [block.drop_path.p for block in model.blocks]
    total = len(drops)
    assert total == 54
    survival = [1 - p for p in drops]
    assert survival == pytest.approx([1 - l / total * (1 - 0.5) for l in range(1, total + 1)])
    assert drops == drop_path_probabilities(total, 0.5)
    wide = meta_model("wrn_28_10", drop_path_rate=0.2)
    assert [b.drop_path.p for b in wide.blocks] == pytest.approx([0.2 * l / 12 for l in range(1, 13)])


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
    with pytest.raises(ValueError, match="drop_path_rate"):
        create_model("plain20", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="drop_path"):
        resnet.BasicBlock(16, 16, shortcut=None, drop_path=0.1)


# ----------------------------------------------------------------------------- pre-activation and WRN


def test_preactivation_block_order_and_wrn_widths():
    model = meta_model("wrn_28_10", num_classes=10, dropout=0.3)
    first = model.layer1[0]
    assert [name for name, _ in first.named_children()][:4] == ["bn1", "conv1", "bn2", "conv2"]
    assert first.bn1.num_features == 16 and first.conv2.out_channels == 160
    assert isinstance(first.shortcut, nn.Conv2d)  # 1x1 projection, no BN, on the pre-activated input
    assert [s[-1].conv2.out_channels for s in model.stages] == [160, 320, 640] and len(model.blocks) == 12
    assert all(block.dropout.p == 0.3 for block in model.blocks)
    assert meta_model("wrn_28_10").layer1[1].dropout is None


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("resnet18", {"width": 2}, "unknown option"),
        ("resnet18", {"shortcut": "D"}, "shortcut"),
        ("resnet50", {"drop_path_rate": 1.0}, "drop_path_rate"),
        ("resnet50", {"small_input": "yes"}, "small_input"),
        ("resnet20", {"small_input": False}, "small_input"),
        ("wrn_28_10", {"dropout": -0.1}, "dropout"),
        ("resnet20", {"dropout": 0.3}, "unknown option"),
        ("plain34", {"shortcut": "B"}, "unknown option"),
    ],
)
def test_invalid_options_are_refused(name, options, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, **options)


def test_builders_validate_sizes_when_called_directly():
    with pytest.raises(ValueError, match="num_classes"):
        resnet.resnet18(num_classes=0)
    with pytest.raises(ValueError, match="in_channels"):
        resnet.resnet20(in_channels=2.5)
