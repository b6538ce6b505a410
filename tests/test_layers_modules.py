"""Modules of course_lib.layers: interchangeable with PyTorch's where a twin exists, formulas checked otherwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.layers import (
    CBAM,
    Conv2d,
    DepthwiseSeparableConv2d,
    DropBlock2d,
    DropConnectLinear,
    DropPath,
    HighwayLayer,
    LocalContrastNorm,
    Maxout,
    SelfAttention2d,
    SqueezeExcitation,
    StochasticPool2d,
)
from course_lib.layers import functional as CF

CONV_CONFIGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding="same", dilation=2, groups=2),
    dict(in_channels=6, out_channels=6, kernel_size=5, stride=(1, 2), padding=(2, 0), groups=6, bias=False),
]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_matches_nn_conv2d(config):
    torch.manual_seed(0)
    ours = Conv2d(**config).double()
    torch.manual_seed(0)
    theirs = nn.Conv2d(**config).double()
    # Same initialisation, drawn in the same order from the same generator.
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert p.shape == q.shape and torch.equal(p, q), f"{name} differs from nn.Conv2d's"
    # Interchangeable state_dicts, equal outputs and gradients.
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, config["in_channels"], 9, 10, dtype=torch.float64, requires_grad=True)
    out, ref = ours(x), theirs(x)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    (gx,) = torch.autograd.grad(out.square().sum(), x)
    (rx,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(gx, rx, atol=1e-10, rtol=0)


def test_conv2d_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups"):
        Conv2d(4, 6, 3, groups=4)


def test_depthwise_separable_parameters_and_output():
    c_in, c_out, k = 8, 16, 3
    block = DepthwiseSeparableConv2d(c_in, c_out, k).double()
    assert n_params(block) == c_in * k * k + c_in * c_out
    x = torch.randn(2, c_in, 7, 7, dtype=torch.float64)
    depthwise, pointwise = block.depthwise[0], block.pointwise[0]
    expected = F.conv2d(F.conv2d(x, depthwise.weight, padding=1, groups=c_in), pointwise.weight)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)


def test_depthwise_separable_can_use_the_from_scratch_conv():
    fast = DepthwiseSeparableConv2d(4, 8, 3).double()
    scratch = DepthwiseSeparableConv2d(4, 8, 3, conv_layer=Conv2d).double()
    assert isinstance(scratch.depthwise[0], Conv2d)
    scratch.load_state_dict(fast.state_dict())
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(scratch(x), fast(x), atol=1e-12, rtol=0)


def test_depthwise_separable_with_norm_and_activation():
    block = DepthwiseSeparableConv2d(4, 8, 3, stride=2, norm_layer=nn.BatchNorm2d, activation=nn.ReLU)
    assert [type(m) for m in block.depthwise] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert block(torch.randn(2, 4, 8, 8)).shape == (2, 8, 4, 4)


def test_maxout_module_is_the_function():
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(Maxout(3)(x), CF.maxout(x, 3, dim=1))
    assert Maxout(3)(x).shape == (2, 2, 3, 3)


def test_local_contrast_norm_module_is_the_function():
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(LocalContrastNorm(5)(x), CF.local_contrast_norm(x, 5))


@pytest.mark.parametrize(
    "module",
    [DropBlock2d(0.3, block_size=3), DropPath(0.3), StochasticPool2d(2)],
    ids=["DropBlock2d", "DropPath", "StochasticPool2d"],
)
def test_random_modules_follow_train_and_eval(module):
    torch.manual_seed(0)
    x = torch.rand(32, 4, 12, 12) + 0.1  # 32 examples: two DropPath masks coincide with chance 0.58^32
    module.train()
    assert not torch.equal(module(x), module(x)), "training mode should draw a new random mask or sample each call"
    module.eval()
    assert torch.equal(module(x), module(x)), "eval mode must be deterministic"
    if not isinstance(module, StochasticPool2d):
        assert torch.equal(module(x), x), "dropping modules are the identity in eval mode"


@pytest.mark.parametrize("cls", [DropPath, DropBlock2d])
def test_drop_modules_reject_bad_p(cls):
    with pytest.raises(ValueError, match="p"):
        cls(1.0)


def test_drop_connect_linear_eval_is_linear_and_train_drops_weights():
    torch.manual_seed(0)
    layer = DropConnectLinear(10, 4, p=0.5)
    x = torch.randn(3, 10)
    layer.eval()
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    assert not torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias))


@pytest.mark.parametrize("act_layer", [nn.ReLU, nn.SiLU])
def test_squeeze_excitation_loads_torchvision_and_counts(act_layer):
    from torchvision.ops import SqueezeExcitation as TorchvisionSE

    torch.manual_seed(0)
    c, r = 32, 4
    ours = SqueezeExcitation(c, reduction=r, act_layer=act_layer).double()
    theirs = TorchvisionSE(c, c // r, activation=act_layer).double()
    assert n_params(ours) == 2 * c * c // r + c // r + c == n_params(theirs)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, c, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)
    gate = ours.gate(x)
    assert gate.shape == (2, c, 1, 1) and bool(((gate > 0) & (gate < 1)).all())


def test_squeeze_excitation_defaults_to_relu_and_a_reduction_of_16():
    block = SqueezeExcitation(64)
    assert isinstance(block.act, nn.ReLU) and block.fc1.out_channels == 4
    assert list(block.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert SqueezeExcitation(64, squeeze_channels=6).fc1.out_channels == 6


def test_cbam_parameters_and_gates():
    c, r, k = 32, 8, 7
    block = CBAM(c, reduction=r, spatial_kernel=k)
    assert n_params(block) == (c * (c // r) + c // r) + ((c // r) * c + c) + (2 * k * k + 1)
    x = torch.randn(2, c, 9, 9)
    y = block(x)
    assert y.shape == x.shape
    # The output is the input rescaled by two gates in (0, 1): never larger in magnitude.
    assert bool((y.abs() <= x.abs() + 1e-6).all())


def test_self_attention_starts_as_identity():
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 4, 5)
    torch.testing.assert_close(block(x), x)
    assert block.last_attention.shape == (2, 20, 20)
    torch.testing.assert_close(block.last_attention.sum(-1), torch.ones(2, 20))


def test_self_attention_matches_a_loop_over_positions():
    torch.manual_seed(0)
    block = SelfAttention2d(8, reduction=2).double()
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(1, 8, 3, 3, dtype=torch.float64)
    f, g, h = (proj(x)[0].flatten(1) for proj in (block.f, block.g, block.h))  # (C', L)
    positions = f.shape[1]
    expected = torch.empty(8, positions, dtype=torch.float64)
    for j in range(positions):
        scores = torch.stack([f[:, i] @ g[:, j] for i in range(positions)])
        beta = torch.softmax(scores, dim=0)
        expected[:, j] = sum(beta[i] * h[:, i] for i in range(positions))
    expected = 0.7 * expected.view(1, 8, 3, 3) + x
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)


def test_highway_layer_formula_and_carry():
    torch.manual_seed(0)
    layer = HighwayLayer(6).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    t = torch.sigmoid(layer.gate(x))
    expected = torch.relu(layer.transform(x)) * t + x * (1 - t)
    torch.testing.assert_close(layer(x), expected)
    # A very negative gate bias closes the transform gate: the layer carries its input through.
    closed = HighwayLayer(6, gate_bias=-30.0).double()
    torch.testing.assert_close(closed(x), x, atol=1e-9, rtol=0)


def test_highway_layer_rejects_wrong_shape():
    with pytest.raises(ValueError, match="x must have shape"):
        HighwayLayer(6)(torch.randn(4, 5))
