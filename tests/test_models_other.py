"""Highway networks, FractalNet, U-Net and FCN (course_lib.models.highway / fractalnet / segmentation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.models import create_model
from course_lib.models.fractalnet import FractalJoin
from course_lib.models.highway import HighwayConv2d
from course_lib.models.segmentation import FixedBilinearUpsample, bilinear_kernel
from model_helpers import meta_model, n_params

# Table 1 figures of the papers, rounded there: (name, options, figure). The exact counts and their
# sources are in the registrations; this checks that our layers give what the papers printed.
ROUNDED_PAPER_COUNTS = [
    ("highway_convnet", dict(num_classes=10, in_channels=1, width=32), 151_000),  # Srivastava et al. 2015: 151 K
    ("highway_convnet", dict(num_classes=10, in_channels=1, width=16), 39_000),  # 39 K
    ("fcn", dict(num_classes=21, backbone="vgg16", skips=False), 134_000_000),  # Long et al. 2015, FCN-VGG16: 134M
]


@pytest.mark.parametrize("name, options, figure", ROUNDED_PAPER_COUNTS)
def test_counts_round_to_the_papers_figures(name, options, figure):
    assert abs(n_params(meta_model(name, **options)) - figure) <= 0.005 * figure


def _forward(model: nn.Module, shape) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.eval()(torch.randn(shape))
    assert torch.isfinite(out).all()
    return out


# ---------------------------------------------------------------------------------------------- highway


def test_highway_net_forward_on_mnist_shaped_input():
    model = create_model("highway_net", num_classes=10, in_channels=1)
    assert _forward(model, (2, 1, 28, 28)).shape == (2, 10)
    assert _forward(model, (2, 784)).shape == (2, 10)  # already flat
    assert len(model.highway) == 9  # "10 layers": one plain layer and 9 highway layers
    with pytest.raises(ValueError, match="784"):
        model(torch.randn(2, 3, 28, 28))


def test_highway_convnet_forward_on_mnist_shaped_input():
    model = create_model("highway_convnet", num_classes=10, in_channels=1, width=16)
    assert _forward(model, (2, 1, 28, 28)).shape == (2, 10)
    assert sum(isinstance(m, HighwayConv2d) for m in model.modules()) == 8  # + plain conv + classifier = 10
    with pytest.raises(ValueError, match="input_size"):
        model(torch.randn(2, 1, 32, 32))


def test_very_negative_gate_bias_makes_the_highway_stack_carry_its_input():
    # T = sigmoid(W_T x - 30) ~ 1e-13: every highway layer is the identity, so the net is the plain
    # first layer followed by the classifier.
    torch.manual_seed(0)
    model = create_model("highway_net", num_classes=10, in_channels=1, gate_bias=-30.0).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        direct = model.classifier(model.stem(x.flatten(1)))
        torch.testing.assert_close(model(x), direct, atol=1e-5, rtol=0)
        layer = HighwayConv2d(4, gate_bias=-30.0)
        z = torch.randn(2, 4, 8, 8)
        torch.testing.assert_close(layer(z), z, atol=1e-5, rtol=0)


def test_default_gate_bias_starts_the_gates_mostly_closed():
    torch.manual_seed(0)
    model = create_model("highway_net", num_classes=10, in_channels=1)  # gate_bias = -2
    with torch.no_grad():
        h = model.stem(torch.rand(64, 784))
        t = torch.sigmoid(model.highway[0].gate(h))
    assert t.mean() < 0.3  # sigmoid(-2) = 0.12 at zero input: mostly carry


@pytest.mark.parametrize("option, value", [("depth", 1), ("width", 0), ("gate_bias", "low"), ("input_size", 0)])
def test_highway_net_rejects_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        create_model("highway_net", **{option: value})


@pytest.mark.parametrize("option, value", [("width", 0), ("gate_bias", float("nan")), ("input_size", 11), ("dropout", 0.5)])
def test_highway_convnet_rejects_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        create_model("highway_convnet", **{option: value})


# ------------------------------------------------------------------------------------------- fractalnet


def _small_fractalnet(**options) -> nn.Module:
    options = {"channels": (4, 4, 4, 4, 4), "columns": 3, "dropout": 0.0, **options}
    return create_model("fractalnet", num_classes=10, **options)


def test_fractalnet_forward_on_cifar_shaped_input():
    model = create_model("fractalnet", num_classes=10, channels=(8, 16, 16), columns=3)
    assert _forward(model, (2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(2, 3, 36, 36))


def _convs_run(model: nn.Module, x: torch.Tensor, column=None) -> int:
    count = 0

    def hook(*_):
        nonlocal count
        count += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x, column=column)
    for handle in handles:
        handle.remove()
    return count


def test_fractalnet_columns_have_two_to_the_c_minus_one_convs():
    model = _small_fractalnet()  # B = 5, C = 3
    x = torch.randn(1, 3, 32, 32)
    # The deepest column is the 20-layer plain net of "FractalNet (20 layers)": 5 blocks x 2**(3 - 1).
    assert _convs_run(model, x, column=3) == 20
    assert _convs_run(model, x, column=2) == 10
    assert _convs_run(model, x, column=1) == 5
    assert _convs_run(model, x) == 5 * (2**3 - 1)  # all columns: 7 convs per block
    assert sum(isinstance(m, nn.Conv2d) for m in model.blocks[0].modules()) == 7
    four = _small_fractalnet(channels=(4,), columns=4)
    assert _convs_run(four, torch.randn(1, 3, 2, 2), column=4) == 8


def test_fractal_join_is_the_mean_of_its_inputs():
    join = FractalJoin(columns=(3, 2, 1), drop_prob=0.15).eval()
    a, b, c = torch.full((1, 2, 2, 2), 1.0), torch.full((1, 2, 2, 2), 2.0), torch.full((1, 2, 2, 2), 6.0)
    torch.testing.assert_close(join([a, b, c]), torch.full((1, 2, 2, 2), 3.0))  # (1 + 2 + 6) / 3
    join.train()
    torch.manual_seed(0)
    subset_means = {1.0, 2.0, 6.0, 1.5, 3.5, 4.0, 3.0}  # means of the non-empty subsets of {1, 2, 6}
    seen = {round(join([a, b, c]).flatten()[0].item(), 4) for _ in range(200)}
    assert seen <= subset_means  # never an empty join
    assert len(seen) > 3  # inputs are dropped in training


def test_fractal_block_joins_with_the_mean_of_its_columns():
    model = _small_fractalnet(channels=(2,), columns=2).eval()
    block = model.blocks[0]
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        shallow = block.fractal.conv(x)
        deep = block.fractal.second.conv(block.fractal.first.conv(x))  # column 2: conv(conv(x))
        torch.testing.assert_close(block(x), block.pool((deep + shallow) / 2))


def test_drop_path_acts_in_training_only():
    torch.manual_seed(0)
    model = _small_fractalnet(drop_path_local=0.5, drop_path_global=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)  # eval: deterministic
        model.train()
        train_outputs = [model(x) for _ in range(6)]
    assert any(not torch.equal(train_outputs[0], out) for out in train_outputs[1:])
    control = _small_fractalnet(drop_path_local=0.0, drop_path_global=0.0).train()
    with torch.no_grad():
        torch.testing.assert_close(control(x), control(x), atol=0, rtol=0)  # BN alone is deterministic


def test_global_drop_path_trains_one_column():
    torch.manual_seed(0)
    model = _small_fractalnet(drop_path_local=0.0, drop_path_global=1.0).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        columns = [model(x, column=c) for c in (1, 2, 3)]
        for _ in range(4):
            out = model(x)
            assert any(torch.equal(out, column) for column in columns)


BAD_FRACTALNET_OPTIONS = [
    ("columns", 0), ("channels", ()), ("dropout", (0.1,)), ("drop_path_local", 1.0), ("drop_path_global", 2),
]


@pytest.mark.parametrize("option, value", BAD_FRACTALNET_OPTIONS)
def test_fractalnet_rejects_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        create_model("fractalnet", **{option: value})


def test_fractalnet_rejects_a_column_out_of_range():
    model = _small_fractalnet()
    with pytest.raises(ValueError, match="column"):
        model(torch.randn(1, 3, 32, 32), column=4)


# ------------------------------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("size, num_classes", [((32, 32), 1), ((64, 64), 3), ((32, 64), 5), ((48, 48), 2)])
def test_unet_output_has_the_input_resolution(size, num_classes, upsample):
    model = create_model("unet", num_classes=num_classes, base_channels=4, upsample=upsample)
    assert _forward(model, (2, 3, *size)).shape == (2, num_classes, *size)


def test_unet_depth_option():
    model = create_model("unet", num_classes=2, in_channels=1, base_channels=4, depth=2)
    assert _forward(model, (2, 1, 12, 12)).shape == (2, 2, 12, 12)


@pytest.mark.parametrize("size", [30, 36])
def test_unet_rejects_sizes_not_divisible_by_two_to_the_depth(size):
    model = create_model("unet", num_classes=2, base_channels=4)
    with pytest.raises(ValueError, match=f"{size}x{size}.*16"):
        model(torch.randn(1, 3, size, size))


def test_unet_skip_connections_carry_information_past_a_dead_bottleneck():
    torch.manual_seed(0)
    model = create_model("unet", num_classes=2, base_channels=4).eval()
    with torch.no_grad():
        for p in model.downs[-1].parameters():  # the bottleneck now outputs zeros
            p.zero_()
        bottleneck = []
        model.downs[-1].register_forward_hook(lambda m, i, out: bottleneck.append(out))
        x1, x2 = torch.randn(2, 1, 3, 32, 32)
        y1, y2 = model(x1), model(x2)
    assert all(torch.count_nonzero(b) == 0 for b in bottleneck)
    assert not torch.allclose(y1, y2)  # the concatenated skips still bring the input through


@pytest.mark.parametrize(
    "option, value", [("upsample", "nearest"), ("depth", 0), ("base_channels", 0), ("batch_norm", 1)]
)
def test_unet_rejects_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        create_model("unet", **{option: value})


# --------------------------------------------------------------------------------------------------- FCN


@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize("size", [32, 64])
def test_fcn_output_has_the_input_resolution(size, skips):
    model = create_model("fcn", num_classes=4, skips=skips)
    assert _forward(model, (2, 3, size, size)).shape == (2, 4, size, size)


def test_fcn_rejects_sizes_not_divisible_by_the_stride():
    model = create_model("fcn", num_classes=4)
    with pytest.raises(ValueError, match="40x40.*16"):
        model(torch.randn(1, 3, 40, 40))


def test_fcn_skips_start_at_zero_so_fcn8s_begins_as_the_coarse_net():
    # The skip scores are zero-initialised (Long et al.) and the 2x deconvs bilinear, so the fused net
    # starts by upsampling the coarse scores, as the net without skips does (2x, 2x then 4x bilinear is
    # close to, not exactly, 16x bilinear).
    torch.manual_seed(0)
    fused = create_model("fcn", num_classes=3, skips=True).eval()
    coarse = create_model("fcn", num_classes=3, skips=False).eval()
    coarse.load_state_dict(fused.state_dict(), strict=False)  # same backbone and score layer
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = fused(x), coarse(x)
    interior = (..., slice(16, 48), slice(16, 48))  # away from the borders
    assert (a[interior] - b[interior]).abs().max() < 0.02 * b[interior].abs().max()


def test_bilinear_upsampling_kernels():
    torch.testing.assert_close(bilinear_kernel(4)[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))
    up = FixedBilinearUpsample(2, factor=4)
    assert not list(up.parameters()) and "weight" not in up.state_dict()  # fixed, not learned
    ramp = torch.arange(4.0).expand(1, 2, 4, 4)  # a linear ramp along W
    out = up(ramp)
    assert out.shape == (1, 2, 16, 16)
    interior = out[0, 0, 8, 4:12]
    torch.testing.assert_close(interior.diff(), torch.full((7,), 0.25))  # interpolates linearly
    with pytest.raises(ValueError, match="factor"):
        FixedBilinearUpsample(2, factor=3)


@pytest.mark.parametrize("option, value", [("backbone", "resnet18"), ("skips", "yes")])
def test_fcn_rejects_bad_options(option, value):
    with pytest.raises(ValueError, match=option):
        create_model("fcn", **{option: value})
