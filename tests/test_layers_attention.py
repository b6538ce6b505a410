"""course_lib.layers.attention: SE, CBAM and SAGAN self-attention against their formulas, written here with
plain tensor algebra (no call of the block's own gates), in float64; gradients, argument checks, and the
recorder of attention maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.layers.attention import CBAM, SelfAttention2d, SqueezeExcitation, record_attention


def randomised(block: nn.Module, seed: int = 0) -> nn.Module:
    """The block in float64 with every parameter (gamma included) drawn from N(0, 0.5^2): no zero, no default."""
    torch.manual_seed(seed)
    block = block.double()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return block


def feature_map(n=2, c=8, h=5, w=6, seed=1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, c, h, w, dtype=torch.float64)


def as_matrix(conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution's weight as the (C_out, C_in) matrix it applies at every position."""
    return conv.weight[:, :, 0, 0]


# --- squeeze-and-excitation ----------------------------------------------------------------------


def se_reference(block: SqueezeExcitation, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, s) with z = GAP(x), s = sigmoid(W2 relu(W1 z + b1) + b2), y_c = s_c x_c."""
    z = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])  # (N, C)
    hidden = torch.clamp(z @ as_matrix(block.fc1).T + block.fc1.bias, min=0.0)
    s = 1.0 / (1.0 + torch.exp(-(hidden @ as_matrix(block.fc2).T + block.fc2.bias)))
    return x * s[:, :, None, None], s


@pytest.mark.parametrize("channels, reduction", [(8, 2), (16, 4), (32, 16), (12, 5)])
def test_se_equals_its_formula_and_counts_2c2_over_r(channels, reduction):
    block = randomised(SqueezeExcitation(channels, reduction=reduction))
    x = feature_map(c=channels)
    expected, s = se_reference(block, x)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(block.attention_maps(x)["channel"], s, atol=1e-12, rtol=0)
    hidden = channels // reduction
    assert block.fc1.out_channels == hidden
    assert sum(p.numel() for p in block.parameters()) == 2 * channels * hidden + hidden + channels


def test_se_weights_depend_on_the_example_not_on_the_position():
    block = randomised(SqueezeExcitation(8, reduction=2))
    x = feature_map()
    s = block.attention_maps(x)["channel"]
    assert not torch.allclose(s[0], s[1])  # each example gets its own weights
    # Moving the content around the map does not change the averages, hence not the weights.
    shuffled = x.flatten(2)[:, :, torch.randperm(30)].view_as(x)
    torch.testing.assert_close(block.attention_maps(shuffled)["channel"], s, atol=1e-12, rtol=0)


def test_se_gradients_match_finite_differences():
    block = randomised(SqueezeExcitation(6, reduction=2))
    x = feature_map(c=6, h=3, w=3).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,))
    block(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


# --- CBAM ------------------------------------------------------------------------------------------


def cbam_reference(block: CBAM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, M_c, M_s): M_c from the avg- and max-pooled vectors through one MLP, then M_s from a k x k conv of
    the channel-wise [mean; max] of x' = M_c x; y = M_s x'."""
    w1, b1 = as_matrix(block.mlp[0]), block.mlp[0].bias
    w2, b2 = as_matrix(block.mlp[2]), block.mlp[2].bias

    def mlp(v):
        return torch.clamp(v @ w1.T + b1, min=0.0) @ w2.T + b2

    avg, peak = x.mean(dim=(2, 3)), x.flatten(2).max(dim=2).values  # (N, C) each
    m_c = torch.sigmoid(mlp(avg) + mlp(peak))
    refined = x * m_c[:, :, None, None]
    stacked = torch.stack([refined.mean(dim=1), refined.max(dim=1).values], dim=1)  # (N, 2, H, W)
    k = block.spatial.kernel_size[0]
    m_s = torch.sigmoid(F.conv2d(stacked, block.spatial.weight, block.spatial.bias, padding=k // 2))[:, 0]
    return refined * m_s[:, None], m_c, m_s


@pytest.mark.parametrize("channels, reduction, kernel", [(8, 2, 7), (16, 4, 3), (12, 16, 5)])
def test_cbam_is_channel_then_spatial_attention(channels, reduction, kernel):
    block = randomised(CBAM(channels, reduction=reduction, spatial_kernel=kernel))
    x = feature_map(c=channels, h=7, w=9)
    expected, m_c, m_s = cbam_reference(block, x)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)
    maps = block.attention_maps(x)
    torch.testing.assert_close(maps["channel"], m_c, atol=1e-12, rtol=0)
    torch.testing.assert_close(maps["spatial"], m_s, atol=1e-12, rtol=0)
    hidden = max(1, channels // reduction)
    assert sum(p.numel() for p in block.parameters()) == 2 * channels * hidden + hidden + channels + 2 * kernel**2 + 1


def test_cbam_order_matters_and_the_mlp_is_shared():
    block = randomised(CBAM(8, reduction=2))
    x = feature_map()
    spatial_first = x * block.spatial_gate(x)
    other_order = spatial_first * block.channel_gate(spatial_first)
    assert (other_order - block(x)).abs().max() > 1e-3  # the test above would catch a swapped order
    assert len(block.mlp) == 3 and sum(isinstance(m, nn.Conv2d) for m in block.mlp) == 2  # one MLP, not two


def test_cbam_gradients_match_finite_differences():
    block = randomised(CBAM(4, reduction=2, spatial_kernel=3))
    x = feature_map(n=1, c=4, h=4, w=4).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,))


# --- SAGAN self-attention ----------------------------------------------------------------------------


def sagan_reference(block: SelfAttention2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, beta): s_ij = f(x_i)^T g(x_j), beta_{j,i} = softmax over i, o_j = sum_i beta_{j,i} h(x_i), y = gamma o + x."""
    n, c, height, width = x.shape
    positions = x.flatten(2).transpose(1, 2)  # (N, L, C): row i is x_i

    def project(conv):
        return positions @ as_matrix(conv).T + conv.bias  # (N, L, C')

    f, g, h = project(block.f), project(block.g), project(block.h)
    scores = f @ g.transpose(1, 2)  # [n, i, j] = f(x_i) . g(x_j)
    weights = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
    beta = (weights / weights.sum(dim=1, keepdim=True)).transpose(1, 2)  # [n, j, i], each row sums to 1 over i
    o = beta @ h  # (N, L, C): o_j
    return block.gamma * o.transpose(1, 2).reshape(n, c, height, width) + x, beta


@pytest.mark.parametrize("channels, reduction, size", [(8, 2, (3, 4)), (16, 8, (5, 5)), (6, 4, (2, 7))])
def test_self_attention_equals_the_sagan_formula(channels, reduction, size):
    block = randomised(SelfAttention2d(channels, reduction=reduction))
    x = feature_map(c=channels, h=size[0], w=size[1])
    expected, beta = sagan_reference(block, x)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(block.attention_maps(x)["attention"], beta, atol=1e-12, rtol=0)
    torch.testing.assert_close(block.last_attention, beta, atol=1e-12, rtol=0)
    inner = channels // reduction
    assert sum(p.numel() for p in block.parameters()) == 2 * (channels * inner + inner) + channels * channels + channels + 1


def test_self_attention_starts_with_gamma_zero_as_the_identity_and_only_gamma_learns_first():
    torch.manual_seed(0)
    block = SelfAttention2d(8, reduction=2).double()
    assert block.gamma.item() == 0.0
    x = feature_map()
    y = block(x)
    assert torch.equal(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert block.gamma.grad.abs().item() > 0  # the block's output o reaches the loss through gamma
    for name in ("f", "g", "h"):  # ... and nothing else does while gamma is 0
        assert getattr(block, name).weight.grad.abs().max().item() == 0.0


def test_self_attention_mixes_distant_positions():
    block = randomised(SelfAttention2d(4, reduction=2))
    x = feature_map(n=1, c=4, h=6, w=6)
    changed = x.clone()
    changed[0, :, 5, 5] += 3.0  # one far corner
    difference = (block(changed) - block(x))[0].abs().sum(dim=0)
    assert difference[0, 0] > 1e-6  # the opposite corner feels it: a receptive field of the whole map


def test_self_attention_gradients_match_finite_differences():
    block = randomised(SelfAttention2d(4, reduction=2))
    x = feature_map(n=1, c=4, h=3, w=3).requires_grad_(True)
    assert torch.autograd.gradcheck(block, (x,))


# --- argument checks ------------------------------------------------------------------------------------


BLOCKS = {
    "SE": lambda: SqueezeExcitation(8, reduction=2),
    "CBAM": lambda: CBAM(8, reduction=2),
    "self-attention": lambda: SelfAttention2d(8, reduction=2),
}


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize(
    "bad, expected",
    [
        (torch.randn(2, 4, 5, 5), r"x must have shape \(N, C, H, W\) with C = 8, got shape \(2, 4, 5, 5\)"),
        (torch.randn(8, 5, 5), r"x must have shape \(N, C, H, W\) with C = 8, got shape \(8, 5, 5\)"),
        ([[1.0]], r"x must be a torch.Tensor of shape \(N, C, H, W\) with C = 8, got list"),
    ],
    ids=["wrong-channels", "no-batch-axis", "not-a-tensor"],
)
def test_bad_input_is_refused_naming_x_and_the_expected_shape(kind, bad, expected):
    block = BLOCKS[kind]()
    with pytest.raises(ValueError, match=expected):
        block(bad)
    with pytest.raises(ValueError, match=expected):
        block.attention_maps(bad)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: SqueezeExcitation(0), "channels"),
        (lambda: SqueezeExcitation(8, reduction=0), "reduction"),
        (lambda: SqueezeExcitation(8, squeeze_channels=0), "squeeze_channels"),
        (lambda: CBAM(8, reduction=2.0), "reduction"),
        (lambda: CBAM(8, spatial_kernel=4), "spatial_kernel"),
        (lambda: CBAM(-1), "channels"),
        (lambda: SelfAttention2d(8, reduction=0), "reduction"),
        (lambda: SelfAttention2d(True), "channels"),
    ],
)
def test_bad_arguments_are_refused_by_name(make, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        make()


# --- record_attention --------------------------------------------------------------------------------------


def small_network() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), SqueezeExcitation(8, reduction=2), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), CBAM(8, reduction=2, spatial_kernel=3),
        SelfAttention2d(8, reduction=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    ).double()


def test_record_attention_collects_every_block_over_calls_and_leaves_the_output_alone():
    model = small_network()
    with torch.no_grad():
        model[7].gamma.fill_(0.3)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    before = model(x[:3])  # the same batch as below: a batch of 5 may round differently on some CPUs (1e-17)
    with record_attention(model) as recorder:
        during = model(x[:3])
        model(x[3:])
    torch.testing.assert_close(during, before, atol=0, rtol=0)
    maps = recorder.maps
    assert set(maps) == {"2", "6", "7"}
    assert maps["2"]["channel"].shape == (5, 8)
    assert maps["6"]["channel"].shape == (5, 8) and maps["6"]["spatial"].shape == (5, 4, 4)
    assert maps["7"]["attention"].shape == (5, 16, 16)
    # The recorded maps are the blocks' maps of the inputs they saw, in call order.
    after_se = model[2](model[1](model[0](x)))
    torch.testing.assert_close(maps["2"]["channel"], model[2].attention_maps(model[1](model[0](x)))["channel"])
    inside = model[6](model[5](model[4](model[3](after_se))))
    torch.testing.assert_close(maps["7"]["attention"], model[7].attention(inside))
    # Hooks are gone after the block: another pass records nothing more.
    model(x)
    assert recorder.maps["2"]["channel"].shape == (5, 8)
    assert not any(m._forward_hooks for m in model.modules())


def test_record_attention_refuses_a_model_without_attention_blocks():
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        record_attention("resnet50")
    with pytest.raises(ValueError, match="no SqueezeExcitation, CBAM or SelfAttention2d"):
        record_attention(nn.Sequential(nn.Conv2d(1, 2, 3)))
