"""course_lib.analysis.depth: deep_mlp builds the stack it promises; signal_variances reports what autograd computes.

The variances of the layers' outputs and of the loss's gradient with respect to them are
compared with a forward pass written out by hand and gradients from ``retain_grad``
(float64, relative tolerance 1e-12). The statistical tests check the Xavier and He
predictions on wide random stacks, with tolerances of several standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib import init as CI
from course_lib.analysis import DEEP_MLP_ACTIVATIONS, DEPTH_LAYER_TYPES, deep_mlp, signal_variances


def _no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


# --- deep_mlp -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", list(DEEP_MLP_ACTIVATIONS))
def test_deep_mlp_layout(activation):
    model = deep_mlp(3, 16, 12, 5, activation, dtype=torch.float64)
    assert isinstance(model[0], nn.Flatten) and len(model) == 1 + 2 * 3 + 1
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 16), (16, 16), (16, 16), (16, 5)]
    assert all(m.weight.dtype == torch.float64 for m in linears)
    for block in range(1, 4):  # block l is model[2l - 1] (linear) and model[2l] (activation)
        assert isinstance(model[2 * block - 1], nn.Linear)
        assert isinstance(model[2 * block], DEEP_MLP_ACTIVATIONS[activation])
    out = model(torch.randn(7, 3, 2, 2, dtype=torch.float64))  # (N, C, H, W) with C*H*W = 12 is flattened
    assert out.shape == (7, 5)


def test_deep_mlp_activation_is_applied():
    torch.manual_seed(0)
    model = deep_mlp(1, 8, 4, 3, "relu", dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    by_hand = model[3](torch.relu(model[1](x)))
    torch.testing.assert_close(model(x), by_hand, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"depth": 0}, "depth"), ({"width": 2.5}, "width"), ({"in_features": True}, "in_features"),
     ({"num_classes": 0}, "num_classes"), ({"activation": "rleu"}, "activation.*'relu'")],
    ids=["depth", "width", "in_features", "num_classes", "activation"],
)
def test_deep_mlp_bad_arguments(kwargs, match):
    args = {"depth": 2, "width": 4, "in_features": 3, "num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        deep_mlp(**args)


# --- signal_variances equals a hand-written forward pass and autograd -----------------------------------


def _by_hand(model: nn.Sequential, x, y):
    """Outputs z_l of every linear layer (pre-activations), and dL/dz_l by retain_grad."""
    outs, h = [], x
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            h.retain_grad()
            outs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    return outs


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear"])
def test_signal_variances_equal_autograd(activation):
    torch.manual_seed(1)
    model = deep_mlp(4, 12, 6, 3, activation, dtype=torch.float64)
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2])
    rows = signal_variances(model, (x, y), nn.CrossEntropyLoss())
    assert all(p.grad is None for p in model.parameters())  # .grad untouched
    outs = _by_hand(model, x, y)
    assert [r["index"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["name"] for r in rows] == ["1", "3", "5", "7", "9"]
    assert all(r["type"] == "Linear" and r["call"] == 0 for r in rows)
    for row, z in zip(rows, outs):
        assert row["shape"] == tuple(z.shape)
        assert row["activation_mean"] == pytest.approx(z.detach().mean().item(), rel=1e-12, abs=1e-15)
        assert row["activation_var"] == pytest.approx(z.detach().var(correction=0).item(), rel=1e-12)
        assert row["gradient_var"] == pytest.approx(z.grad.var(correction=0).item(), rel=1e-12)
    assert _no_hooks(model)


class ReusedLinear(nn.Module):
    """One linear layer applied twice, and a conv layer: rows in call order, one per call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.square = nn.Linear(3, 3)

    def forward(self, x):
        h = self.conv(x).mean((2, 3))
        return self.square(torch.tanh(self.square(h)))


def test_signal_variances_reused_module_and_single_tensor_batch():
    torch.manual_seed(2)
    model = ReusedLinear().double()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    rows = signal_variances(model, x, lambda out: out.pow(2).sum())
    assert [(r["name"], r["call"], r["type"]) for r in rows] == [("conv", 0, "Conv2d"), ("square", 0, "Linear"),
                                                                  ("square", 1, "Linear")]
    assert [r["shape"] for r in rows] == [(4, 3, 5, 5), (4, 3), (4, 3)]
    # The last output is the model's output: L = sum(out^2), so dL/dout = 2 out.
    out = model(x).detach()
    assert rows[-1]["gradient_var"] == pytest.approx((2 * out).var(correction=0).item(), rel=1e-12)
    assert rows[-1]["activation_var"] == pytest.approx(out.var(correction=0).item(), rel=1e-12)
    rows = signal_variances(model, x, lambda out: out.sum(), layer_types=nn.Conv2d)
    assert [r["name"] for r in rows] == ["conv"]
    assert _no_hooks(model)


class UnusedBranch(nn.Module):
    """Computes a second linear layer whose output the loss never sees."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 4)

    def forward(self, x):
        self.unused(x)
        return self.used(x)


def test_signal_variances_gradients_the_loss_does_not_reach():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    rows = signal_variances(model, torch.randn(5, 3), lambda out: out[:, 0].sum())
    assert rows[1]["gradient_var"] == pytest.approx(0.25, rel=1e-12)  # dL/dout = (1, 0) for every example
    rows = signal_variances(model, torch.randn(5, 3), lambda out: 0 * out.sum())
    assert rows[0]["gradient_var"] == 0 and rows[1]["gradient_var"] == 0
    rows = signal_variances(UnusedBranch(), torch.randn(5, 3), lambda out: out.pow(2).sum())
    assert [r["name"] for r in rows] == ["unused", "used"]
    assert rows[0]["gradient_var"] == 0 and rows[0]["activation_var"] > 0 and rows[1]["gradient_var"] > 0


def test_default_layer_types_are_the_linear_maps():
    assert nn.Linear in DEPTH_LAYER_TYPES and nn.Conv2d in DEPTH_LAYER_TYPES and nn.ReLU not in DEPTH_LAYER_TYPES
    model = deep_mlp(2, 4, 3, 2, "relu")
    rows = signal_variances(model, torch.randn(6, 3), lambda out: out.sum(), layer_types=nn.ReLU)
    assert [r["type"] for r in rows] == ["ReLU", "ReLU"] and all(r["activation_mean"] >= 0 for r in rows)


# --- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "loss_fn", "layer_types", "match"),
    [
        ((torch.randn(2, 3), torch.zeros(2, dtype=torch.long), 1), nn.CrossEntropyLoss(), DEPTH_LAYER_TYPES, "batch"),
        ([[1.0, 2.0, 3.0]], nn.CrossEntropyLoss(), DEPTH_LAYER_TYPES, "batch"),
        (torch.randn(2, 3), "mse", DEPTH_LAYER_TYPES, "loss_fn"),
        (torch.randn(2, 3), lambda out: out, DEPTH_LAYER_TYPES, "loss_fn must return a scalar"),
        (torch.randn(2, 3), lambda out: out.sum(), nn.functional.relu, "layer_types"),
        (torch.randn(2, 3), lambda out: out.sum(), (), "layer_types"),
        (torch.randn(2, 3), lambda out: out.sum(), nn.LSTM, "no module of layer_types"),
    ],
    ids=["triple", "list", "not-callable", "not-scalar", "function", "empty", "absent"],
)
def test_signal_variances_bad_arguments(batch, loss_fn, layer_types, match):
    model = deep_mlp(1, 4, 3, 2, "tanh")
    with pytest.raises(ValueError, match=match):
        signal_variances(model, batch, loss_fn, layer_types=layer_types)
    assert _no_hooks(model)


def test_signal_variances_rejects_a_model_without_gradients():
    model = deep_mlp(1, 4, 3, 2, "tanh").requires_grad_(False)
    with pytest.raises(ValueError, match="'1'.*does not require grad"):
        signal_variances(model, torch.randn(2, 3), lambda out: out.sum())
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="model"):
        signal_variances("net", torch.randn(2, 3), lambda out: out.sum())


def test_hooks_are_removed_when_the_forward_pass_raises():
    model = deep_mlp(2, 4, 3, 2, "relu")
    with pytest.raises(RuntimeError):  # 5 features where the first layer expects 3
        signal_variances(model, torch.randn(2, 5), lambda out: out.sum())
    assert _no_hooks(model)


# --- the predictions of chapter 6, on wide random stacks ---------------------------------------------------


def _factor_per_layer(rows, key, first, last):
    """Geometric mean of row[l+1][key] / row[l][key] between rows first and last (0-based, inclusive)."""
    return (rows[last][key] / rows[first][key]) ** (1 / (last - first))


def test_xavier_halves_relu_variance_per_layer_and_he_keeps_it():
    """Square ReLU layers: Var(z_{l+1}) / Var(z_l) = n Var(W) / 2, forward and backward."""
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.arange(256) % 10
    factors = {}
    for scheme in ("xavier_normal", "kaiming_normal"):
        model = CI.init_model(deep_mlp(12, 512, 256, 10, "relu", dtype=torch.float64), scheme,
                              generator=torch.Generator().manual_seed(4))
        rows = signal_variances(model, (x, y), nn.CrossEntropyLoss())
        factors[scheme] = (_factor_per_layer(rows, "activation_var", 1, 11),
                           1 / _factor_per_layer(rows, "gradient_var", 1, 11))  # backward: from layer 12 down to 2
    assert factors["xavier_normal"][0] == pytest.approx(0.5, rel=0.05)
    assert factors["xavier_normal"][1] == pytest.approx(0.5, rel=0.05)
    assert factors["kaiming_normal"][0] == pytest.approx(1.0, rel=0.05)
    assert factors["kaiming_normal"][1] == pytest.approx(1.0, rel=0.05)


def test_small_weights_vanish_at_the_predicted_rate_and_lsuv_gives_unit_variance():
    """N(0, s^2) on a near-linear tanh stack multiplies the variance by n s^2 per layer; LSUV makes it 1."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(128, 64, generator=gen, dtype=torch.float64)
    model = CI.init_model(deep_mlp(6, 256, 64, 10, "tanh", dtype=torch.float64), "normal", generator=gen)
    rows = signal_variances(model, x, lambda out: out.sum())
    factor = _factor_per_layer(rows, "activation_var", 1, 5)  # n s^2 = 256 * 1e-4
    assert factor == pytest.approx(256e-4, rel=0.1)
    # Backward from layer 6 to layer 2: four more factors n s^2 (tanh' is close to 1 near 0).
    assert math.isclose(rows[1]["gradient_var"] / rows[5]["gradient_var"], 256e-4**4, rel_tol=0.3)
    CI.lsuv_(model, x, tol=0.01, generator=gen)
    rows = signal_variances(model, x, lambda out: out.sum())
    assert all(abs(r["activation_var"] - 1) < 0.01 for r in rows)
