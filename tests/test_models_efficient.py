"""DenseNet, MobileNet v1/v2 and EfficientNet B0-B7 (course_lib/models/densenet.py, mobilenet.py, efficientnet.py).

The recorded parameter counts (checked for every model by tests/test_models_registry.py) equal
torchvision's twins, multiply-adds match the papers, torchvision weights transfer with equal
outputs, the width / depth multipliers change the layers as the papers' tables say, and the
small-input variants run on 32x32 images. Big models are built on the meta device only.
The last section checks what chapter 14 measures: the separable factorisation, MobileNet v1's
Table 2 shares, torchvision's published operation counts, SqueezeNet against AlexNet.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth

from course_lib.analysis import count_flops
from course_lib.layers import DepthwiseSeparableConv2d, DropPath, make_divisible
from course_lib.models import create_model, densenet, efficientnet, mobilenet, model_record, transfer_state_dict
from model_helpers import meta_model, n_params

EFFICIENTNETS = [f"efficientnet_b{i}" for i in range(8)]
TORCHVISION_TWINS = ["densenet121", "densenet169", "mobilenet_v2", *EFFICIENTNETS]  # torchvision has no MobileNet v1


def macs(model: nn.Module, size: int) -> float:
    """Multiply-adds of one 3 x size x size image, in millions."""
    return count_flops(model, (1, 3, size, size)).macs / 1e6


# ------------------------------------------------------------------------------- sizes against references


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_parameter_count_is_torchvisions(name):
    with torch.device("meta"):
        twin = torchvision.models.get_model(name, weights=None)
    assert n_params(meta_model(name)) == n_params(twin) == model_record(name).parameters


def test_mobilenet_v1_multiply_adds_match_the_papers_tables():
    # Millions of multiply-adds, Table 6 (width multiplier alpha at 224x224) and Table 7 (input resolution).
    for alpha, mult_adds in [(1.0, 569), (0.75, 325), (0.5, 149), (0.25, 41)]:
        assert round(macs(meta_model("mobilenet_v1", width_mult=alpha), 224)) == mult_adds
    for resolution, mult_adds in [(192, 418), (160, 290), (128, 186)]:
        assert math.floor(macs(meta_model("mobilenet_v1"), resolution)) == mult_adds


@pytest.mark.parametrize(
    "name, published_mmacs, tolerance",
    [("mobilenet_v2", 300, 3), ("efficientnet_b0", 390, 5)],  # Sandler et al. Table 4; Tan & Le Table 2 (0.39B)
)
def test_multiply_adds_match_the_paper(name, published_mmacs, tolerance):
    assert abs(macs(meta_model(name), 224) - published_mmacs) <= tolerance


@pytest.mark.parametrize("name, eps", [("efficientnet_b4", 1e-5), ("efficientnet_b5", 1e-3)])
def test_efficientnet_batch_norm_settings_are_torchvisions(name, eps):
    # torchvision's B5-B7 weights come from TensorFlow (BN eps 1e-3, momentum 0.01); B0-B4 use PyTorch's defaults.
    norms = [m for m in meta_model(name).modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.device("meta"):
        theirs = [m for m in torchvision.models.get_model(name).modules() if isinstance(m, nn.BatchNorm2d)]
    assert [(m.eps, m.momentum) for m in norms] == [(m.eps, m.momentum) for m in theirs]
    assert norms[0].eps == eps


# ------------------------------------------------------------------------------------ torchvision transfer


def _randomise_running_stats(model: nn.Module) -> None:
    """Non-trivial BN buffers, so that the transfer of buffers is checked too."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v2", "efficientnet_b0"])
def test_torchvision_weights_transfer(name):
    torch.manual_seed(0)
    theirs = torchvision.models.get_model(name, weights=None).eval()
    _randomise_running_stats(theirs)
    ours = transfer_state_dict(create_model(name), theirs.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------- small inputs


@pytest.mark.parametrize(
    "name, in_channels, size",
    [("densenet121", 3, 32), ("mobilenet_v1", 3, 32), ("mobilenet_v2", 1, 28), ("efficientnet_b0", 3, 32)],
)
def test_small_input_forward(name, in_channels, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=in_channels, small_input=True).eval()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.stride == (1, 1) and first_conv.in_channels == in_channels
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0"])
def test_small_input_changes_only_the_stem(name):
    big, small = meta_model(name), meta_model(name, small_input=True)
    convs = [(m.in_channels, m.out_channels, m.stride) for m in big.modules() if isinstance(m, nn.Conv2d)]
    small_convs = [(m.in_channels, m.out_channels, m.stride) for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert convs[1:] == small_convs[1:] and small_convs[0][2] == (1, 1) and convs[0][2] == (2, 2)
    pools = [m for m in small.modules() if isinstance(m, nn.MaxPool2d)]
    assert not pools  # DenseNet drops its stem max-pool; the others have none


# --------------------------------------------------------------------------------- depthwise separable


def test_depthwise_separable_cost_ratio():
    # Full k x k conv: D^2 M N k^2 multiply-adds; depthwise + pointwise: D^2 M k^2 + D^2 M N.
    m, n, k, size = 32, 64, 3, 8
    full = nn.Conv2d(m, n, k, padding=1, bias=False)
    separable = mobilenet.depthwise_separable(m, n)
    cost_full = count_flops(full, (1, m, size, size)).macs
    cost_separable = count_flops(separable, (1, m, size, size)).macs  # BN and ReLU count 0
    assert cost_full == size * size * m * n * k * k
    assert cost_separable == size * size * (m * k * k + m * n)
    assert cost_separable / cost_full == pytest.approx(1 / n + 1 / k**2, rel=1e-12)


def test_depthwise_separable_is_course_libs_layer_with_torch_convs():
    torch.manual_seed(0)
    ours = mobilenet.depthwise_separable(8, 16, stride=2)
    assert isinstance(ours, DepthwiseSeparableConv2d) and isinstance(ours.depthwise[0], nn.Conv2d)
    _randomise_running_stats(ours)
    reference = DepthwiseSeparableConv2d(8, 16, 3, 2, norm_layer=nn.BatchNorm2d, activation=nn.ReLU)
    reference.load_state_dict(ours.state_dict())  # same names and shapes
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- width multipliers


def test_mobilenet_v1_width_mult_scales_every_layer():
    model = meta_model("mobilenet_v1", width_mult=0.5)
    stem = model.features[0][0]
    pointwise = [block.pointwise[0].out_channels for block in model.features[1:]]
    assert stem.out_channels == 16
    assert pointwise == [c // 2 for c, _ in mobilenet.MOBILENET_V1_BODY]
    assert model.classifier.in_features == 512
    strides = [block.depthwise[0].stride[0] for block in model.features[1:]]
    assert strides == [s for _, s in mobilenet.MOBILENET_V1_BODY]


def test_mobilenet_v2_width_mult_follows_the_table():
    model = meta_model("mobilenet_v2", width_mult=0.5)
    blocks = [m for m in model.features if isinstance(m, mobilenet.InvertedResidual)]
    expected = [make_divisible(c * 0.5) for t, c, n, s in mobilenet.MOBILENET_V2_SETTING for _ in range(n)]
    assert [b.conv.project[0].out_channels for b in blocks] == expected
    assert expected[:3] == [8, 16, 16]  # 16 * 0.5 = 8; 24 * 0.5 = 12 rounds up to 16
    assert model.features[0][0].out_channels == 16 and model.last_channels == 1280  # the last conv is not thinned
    # expansion t: the hidden width of the first stride-2 block is 6 x its input
    assert blocks[1].conv.expand[0].out_channels == 6 * blocks[0].conv.project[0].out_channels
    with torch.device("meta"):
        twin = torchvision.models.mobilenet_v2(width_mult=0.5)
    assert n_params(model) == n_params(twin)


def test_mobilenet_v2_residuals_only_where_shapes_agree():
    model = meta_model("mobilenet_v2")
    blocks = [m for m in model.features if isinstance(m, mobilenet.InvertedResidual)]
    # (t, c, n, s): the first block of each stage changes channels or stride, the repeats are residual
    expected = [i > 0 for t, c, n, s in mobilenet.MOBILENET_V2_SETTING for i in range(n)]
    assert [b.use_residual for b in blocks] == expected
    projections_are_linear = [not isinstance(b.conv.project[-1], (nn.ReLU, nn.ReLU6)) for b in blocks]
    assert all(projections_are_linear)


def test_efficientnet_b2_scales_width_and_depth_as_the_table_says():
    width, depth = efficientnet.EFFICIENTNET_SCALING["efficientnet_b2"][:2]
    model = meta_model("efficientnet_b2")
    stages = model.features[1:-1]
    table = efficientnet.EFFICIENTNET_B0_STAGES
    assert [len(stage) for stage in stages] == [math.ceil(s.repeats * depth) for s in table] == [2, 3, 3, 4, 4, 5, 2]
    outs = [stage[-1].block.project[0].out_channels for stage in stages]
    assert outs == [make_divisible(s.out_channels * width) for s in table]
    assert outs == [16, 24, 48, 88, 120, 208, 352]
    assert model.features[0][0].out_channels == 32 and model.num_features == 1408
    kernels = [stage[0].block.depthwise[0].kernel_size[0] for stage in stages]
    assert kernels == [s.kernel for s in table]


# ------------------------------------------------------------------------------------------ EfficientNet


def test_squeeze_excitation_squeezes_from_the_block_input():
    model = meta_model("efficientnet_b0")
    for stage in model.features[1:-1]:
        for block in stage:
            in_channels = block.block[0][0].in_channels
            assert block.block.se.fc1.out_channels == max(1, in_channels // 4)
            assert block.block.se.fc1.in_channels == block.block.depthwise[0].out_channels
            assert isinstance(block.block.se.act, nn.SiLU)


def test_stochastic_depth_grows_linearly_to_0_2():
    model = meta_model("efficientnet_b0")
    blocks = [block for stage in model.features[1:-1] for block in stage]
    assert len(blocks) == 16
    for i, block in enumerate(blocks):
        if block.use_residual:
            assert isinstance(block.drop_path, DropPath) and block.drop_path.p == pytest.approx(0.2 * i / 16)
        else:
            assert isinstance(block.drop_path, nn.Identity)


def test_drop_path_is_torchvisions_row_stochastic_depth():
    x = torch.randn(64, 3, 2, 2)
    torch.manual_seed(1)
    ours = DropPath(0.3).train()(x)
    torch.manual_seed(1)
    theirs = StochasticDepth(0.3, "row").train()(x)
    torch.testing.assert_close(ours, theirs)
    kept = ours.flatten(1).ne(0).all(1)
    assert 0 < kept.sum() < 64  # whole examples dropped, survivors scaled by 1 / 0.7
    torch.testing.assert_close(ours[kept], x[kept] / 0.7)


def test_compound_scaling():
    alpha, beta, gamma = 1.2, 1.1, 1.15
    assert efficientnet.compound_scaling(0) == (1.0, 1.0, 1.0)
    assert efficientnet.compound_scaling(1) == pytest.approx((alpha, beta, gamma))
    assert alpha * beta**2 * gamma**2 == pytest.approx(2, abs=0.1)  # the constraint: FLOPs ~ 2^phi
    d, w, r = efficientnet.compound_scaling(3)
    assert d * w**2 * r**2 == pytest.approx((alpha * beta**2 * gamma**2) ** 3)
    table = efficientnet.compound_scaling_table()
    assert [row["name"] for row in table] == EFFICIENTNETS and table[0]["resolution"] == 224
    b7 = table[-1]  # the released coefficients are not exactly the formula's
    assert (b7["released_depth"], b7["released_width"], b7["released_resolution"]) == (3.1, 2.0, 600)
    assert b7["depth"] == pytest.approx(3.58, abs=0.01) and b7["resolution"] == 596


def test_efficientnet_input_size_and_dropout_come_from_the_scaling_table():
    for name, scaling in efficientnet.EFFICIENTNET_SCALING.items():
        assert model_record(name).input_size == scaling.resolution
    assert meta_model("efficientnet_b5").classifier[0].p == efficientnet.EFFICIENTNET_SCALING["efficientnet_b5"].dropout
    assert meta_model("efficientnet_b5", dropout=0.1).classifier[0].p == 0.1


@pytest.mark.parametrize("phi, alpha", [(-1, 1.2), (1, 0.9), ("2", 1.2), (float("nan"), 1.2)])
def test_compound_scaling_validates(phi, alpha):
    with pytest.raises(ValueError, match="phi|alpha"):
        efficientnet.compound_scaling(phi, alpha)


# --------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "name, option, value",
    [
        ("densenet121", "small_input", "yes"),
        ("densenet121", "drop_rate", 1.0),
        ("mobilenet_v1", "width_mult", 0),
        ("mobilenet_v2", "width_mult", -0.5),
        ("mobilenet_v2", "dropout", 1.5),
        ("efficientnet_b0", "stochastic_depth_prob", -0.1),
        ("efficientnet_b0", "small_input", 1),
    ],
)
def test_options_are_validated(name, option, value):
    with pytest.raises(ValueError, match=option):
        meta_model(name, **{option: value})


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0"])
def test_unknown_options_are_refused(name):
    with pytest.raises(TypeError, match="widht_mult"):
        meta_model(name, widht_mult=0.5)


def test_num_classes_and_in_channels_reach_the_models():
    for name in ["densenet169", "mobilenet_v1", "mobilenet_v2", "efficientnet_b3"]:
        model = meta_model(name, num_classes=7, in_channels=1)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert convs[0].in_channels == 1 and linears[-1].out_features == 7


def test_densenet_blocks_grow_by_k_and_transitions_halve():
    model = meta_model("densenet121")
    channels = [m.out_channels for name, m in model.features.named_children() if name.startswith("denseblock")]
    assert channels == [64 + 6 * 32, 128 + 12 * 32, 256 + 24 * 32, 512 + 16 * 32]
    halved = [getattr(model.features, f"transition{i}").conv.out_channels for i in (1, 2, 3)]
    assert halved == [c // 2 for c in channels[:3]]
    assert len(densenet.DENSENET_BLOCKS["densenet169"]) == 4


# ----------------------------------------------------------------------------- chapter 14's measurements


@pytest.mark.parametrize("m, n, k, stride", [(8, 16, 3, 1), (5, 7, 5, 2), (16, 4, 7, 1)])
def test_depthwise_separable_is_a_standard_conv_with_a_factorised_weight(m, n, k, stride):
    # W[o, i, :, :] = P[o, i] K[i, :, :]: the separable pair is the standard conv with this constrained weight.
    torch.manual_seed(0)
    separable = DepthwiseSeparableConv2d(m, n, k, stride).double()
    depthwise, pointwise = separable.depthwise[0].weight, separable.pointwise[0].weight  # (m, 1, k, k), (n, m, 1, 1)
    weight = pointwise[:, :, 0, 0, None, None] * depthwise[None, :, 0]  # (n, m, k, k)
    x = torch.randn(2, m, 11, 11, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(separable(x), F.conv2d(x, weight, stride=stride, padding=k // 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("m, n, k, size, stride", [(3, 32, 3, 16, 1), (64, 128, 3, 14, 2), (128, 128, 5, 8, 1),
                                                   (256, 512, 7, 7, 1)])
def test_depthwise_separable_cost_ratio_for_several_shapes(m, n, k, size, stride):
    with torch.device("meta"):
        full = nn.Conv2d(m, n, k, stride, padding=k // 2, bias=False)
        separable = DepthwiseSeparableConv2d(m, n, k, stride)
    ratio = count_flops(separable, (1, m, size, size)).total / count_flops(full, (1, m, size, size)).total
    assert ratio == pytest.approx(1 / n + 1 / k**2, rel=1e-12)
    assert n_params(separable) / n_params(full) == pytest.approx(1 / n + 1 / k**2, rel=1e-12)


def test_mobilenet_v1_shares_by_layer_kind_are_the_papers_table_2():
    # Howard et al. 2017, Table 2 (percent of mult-adds, percent of weights; the paper leaves out biases and BN).
    published = {"1x1": (94.86, 74.59), "dw": (3.06, 1.06), "fc": (0.18, 24.33)}
    model = meta_model("mobilenet_v1")
    macs_by_kind, weights_by_kind = {}, {}
    rows = {row["name"]: row["macs"] for row in count_flops(model, (1, 3, 224, 224)).rows}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Linear):
                kind = "fc"
            else:
                kind = "dw" if module.groups > 1 else "1x1" if module.kernel_size == (1, 1) else "3x3"
            macs_by_kind[kind] = macs_by_kind.get(kind, 0) + rows[name]
            weights_by_kind[kind] = weights_by_kind.get(kind, 0) + module.weight.numel()
    total_macs, total_weights = sum(macs_by_kind.values()), sum(weights_by_kind.values())
    for kind, (macs_percent, weights_percent) in published.items():
        assert 100 * macs_by_kind[kind] / total_macs == pytest.approx(macs_percent, abs=0.006)
        assert 100 * weights_by_kind[kind] / total_weights == pytest.approx(weights_percent, abs=0.006)


def test_mobilenet_v1_resolution_multiplier_scales_convs_by_rho_squared_and_keeps_the_weights():
    model = meta_model("mobilenet_v1")
    convs = lambda size: sum(r["macs"] for r in count_flops(model, (1, 3, size, size)).rows if r["type"] == "Conv2d")
    at_224 = convs(224)
    for size in (160, 128):
        assert convs(size) * 224**2 == at_224 * size**2  # exactly rho^2: every map is a multiple of 7 x 7 / 224
    assert n_params(meta_model("mobilenet_v1")) == n_params(model)  # the weights do not depend on the input size


@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "squeezenet1_0", "squeezenet1_1", "efficientnet_b0", "efficientnet_b2", "efficientnet_b3"]
)
def test_mult_adds_are_torchvisions_published_ops(name):
    # torchvision's metadata labels "_ops" GFLOPS, but it holds multiply-adds (billions), at the weights' eval size.
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    size = weights.transforms().crop_size[0]  # 288 for B2, not the 260 of the scaling table
    assert round(macs(meta_model(name), size) / 1e3, 3) == weights.meta["_ops"]


def test_squeezenet_has_50_times_fewer_parameters_than_alexnet_but_not_fewer_operations():
    # Iandola et al. 2016: "AlexNet-level accuracy with 50x fewer parameters"; v1.1 (the authors' repository):
    # "2.4x less computation than SqueezeNet 1.0".
    alexnet, v10, v11 = meta_model("alexnet"), meta_model("squeezenet1_0"), meta_model("squeezenet1_1")
    assert n_params(alexnet) / n_params(v10) == pytest.approx(48.94, abs=0.01)
    assert macs(v10, 224) > macs(alexnet, 224)  # late downsampling spends operations on large maps
    assert 2.3 < macs(v10, 224) / macs(v11, 224) < 2.45


def test_efficientnet_repeats_are_rounded_up_per_stage_like_torchvisions():
    # ceil(1.1 n) for B1: every stage of B0 gains a block (16 -> 23), which is why B1 costs 1.8x B0, not 1.1 x 1.07^2.
    for name, blocks in [("efficientnet_b0", 16), ("efficientnet_b1", 23), ("efficientnet_b3", 26)]:
        ours = sum(len(stage) for stage in meta_model(name).features[1:-1])
        with torch.device("meta"):
            theirs = torchvision.models.get_model(name).features[1:-1]
        assert ours == sum(len(stage) for stage in theirs) == blocks
    assert macs(meta_model("efficientnet_b1"), 240) / macs(meta_model("efficientnet_b0"), 224) == pytest.approx(1.78, abs=0.01)
