"""Generic blocks of course_lib.layers (ConvNormAct, make_divisible) against torchvision's."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models._utils import _make_divisible
from torchvision.ops.misc import Conv2dNormActivation

from course_lib.layers import ConvNormAct, make_divisible

CASES = [
    dict(kernel_size=3, stride=1),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=(1, 7), stride=1),
    dict(kernel_size=5, stride=2, dilation=2),
    dict(kernel_size=3, stride=1, groups=4),
    dict(kernel_size=1, stride=1, norm_layer=None),
    dict(kernel_size=3, stride=2, norm_layer=partial(nn.GroupNorm, 2), act_layer=nn.SiLU),
    dict(kernel_size=3, stride=1, act_layer=None),
]


@pytest.mark.parametrize("options", CASES, ids=str)
def test_conv_norm_act_is_torchvisions_block(options):
    torch.manual_seed(0)
    ours = ConvNormAct(8, 12, **options)
    theirs_options = {k: v for k, v in options.items() if k != "act_layer"}
    theirs = Conv2dNormActivation(8, 12, activation_layer=options.get("act_layer", nn.ReLU), **theirs_options)
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    # Same tensors in the same order; only the keys differ (conv/norm/act against 0/1/2).
    theirs.load_state_dict(dict(zip(theirs.state_dict(), ours.state_dict().values())))
    x = torch.randn(2, 8, 13, 11)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_conv_norm_act_names_its_children_and_defaults_the_bias():
    block = ConvNormAct(3, 4)
    assert list(dict(block.named_children())) == ["conv", "norm", "act"]
    assert block.conv.bias is None, "a norm layer's shift cancels a conv bias"
    assert ConvNormAct(3, 4, norm_layer=None).conv.bias is not None
    assert ConvNormAct(3, 4, bias=True).conv.bias is not None
    assert list(dict(ConvNormAct(3, 4, act_layer=None).named_children())) == ["conv", "norm"]


def test_conv_norm_act_passes_eps_and_keeps_odd_kernels_on_the_grid():
    assert ConvNormAct(3, 4, eps=1e-3).norm.eps == 1e-3
    assert ConvNormAct(3, 4, (1, 7)).conv.padding == (0, 3)
    assert ConvNormAct(3, 4, 3, dilation=2).conv.padding == (2, 2)
    out = ConvNormAct(3, 4, 3, stride=2)(torch.randn(1, 3, 9, 10))
    assert out.shape == (1, 4, 5, 5), "same padding gives ceil(H / stride) rows"


def test_conv_norm_act_refuses_an_uneven_same_padding_and_bad_channels():
    with pytest.raises(ValueError, match="padding explicitly"):
        ConvNormAct(3, 4, kernel_size=2)
    assert ConvNormAct(3, 4, kernel_size=2, padding=0).conv.padding == (0, 0)
    with pytest.raises(ValueError, match="out_channels"):
        ConvNormAct(3, 0)


@pytest.mark.parametrize("divisor", [1, 4, 8, 16])
def test_make_divisible_is_torchvisions_rounding(divisor):
    values = [v / 10 for v in range(1, 4000, 7)]
    assert [make_divisible(v, divisor) for v in values] == [_make_divisible(v, divisor) for v in values]
    assert make_divisible(24 * 0.5) == 16 and make_divisible(32 * 1.1) == 32 and make_divisible(40 * 1.1) == 48
