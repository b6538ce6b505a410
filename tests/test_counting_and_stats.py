"""course_lib.analysis.counting and .stats: parameter and FLOP counts against the hand formulas,
activation and gradient statistics against the same numbers computed directly, and no hooks left behind.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.analysis.counting import FlopCount, count_flops, count_parameters, parameter_table
from course_lib.analysis.shapes import output_size
from course_lib.analysis.stats import activation_stats, gradient_stats
from course_lib.analysis.stats import update_ratios


def _no_hooks(model: nn.Module) -> bool:
    return not any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in model.modules()
    )


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, bias=False), nn.Tanh()),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5),
    )


# --- parameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "groups", "bias"),
    [(3, 8, 3, 1, True), (4, 6, (3, 5), 2, False), (6, 6, 3, 6, True), (1, 1, 1, 1, False)],
    ids=str,
)
def test_count_parameters_of_a_conv(c_in, c_out, k, groups, bias):
    kh, kw = k if isinstance(k, tuple) else (k, k)
    conv = nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)
    assert count_parameters(conv) == c_out * (c_in // groups * kh * kw + bias)


def test_count_parameters_of_a_network_frozen_and_shared():
    model = _net()
    expected = 8 * (3 * 9 + 1) + 2 * 8 + 4 * 8 * 9 + 5 * (36 + 1)
    assert count_parameters(model) == expected
    for p in model[:4].parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 5 * 37
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, nn.ReLU(), shared)) == 20  # counted once


def test_count_parameters_bad_input():
    with pytest.raises(ValueError, match="model"):
        count_parameters([nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="lazy"):
        count_parameters(nn.LazyLinear(3))


def test_parameter_table_rows_shapes_and_total():
    model = _net().train()
    rows = parameter_table(model)
    assert [r["name"] for r in rows] == ["0", "1", "2", "3.0", "3.1", "4", "5"]
    assert [r["type"] for r in rows] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "Tanh", "Flatten", "Linear"]
    assert [r["parameters"] for r in rows] == [224, 16, 0, 288, 0, 0, 185]
    assert sum(r["parameters"] for r in rows) == count_parameters(model)
    assert "output_shape" not in rows[0]
    rows = parameter_table(model, (2, 3, 8, 8))
    shapes = [(2, 8, 8, 8)] * 3 + [(2, 4, 3, 3)] * 2 + [(2, 36), (2, 5)]
    assert [r["output_shape"] for r in rows] == shapes
    assert model.training and model[1].training and _no_hooks(model)


def test_parameter_table_container_with_own_parameter():
    class WithToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 4))
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.proj(x + self.token), x

    model = WithToken()
    rows = parameter_table(model, (3, 4))
    assert [(r["name"], r["parameters"]) for r in rows] == [("", 4), ("proj", 20)]
    assert rows[0]["output_shape"] == ((3, 4), (3, 4))  # a tuple output gives a tuple of shapes
    assert sum(r["parameters"] for r in rows) == count_parameters(model)


@pytest.mark.parametrize("input_shape", ["2x3", (2, 0, 8, 8), (2.0, 3, 8, 8), (), 5], ids=str)
def test_parameter_table_bad_input_shape(input_shape):
    with pytest.raises(ValueError, match="input_shape"):
        parameter_table(_net(), input_shape)


# --- FLOPs ----------------------------------------------------------------------------------------------

CONV_GRID = [
    (n, c_in, c_out, hw, k, stride, padding, groups)
    for n, (c_in, c_out, groups), hw, k, stride, padding in itertools.product(
        (1, 3), ((3, 8, 1), (4, 6, 2)), ((9, 9), (8, 13)), ((3, 3), (1, 1), (5, 3)), (1, 2), (0, 1)
    )
]


@pytest.mark.parametrize(("n", "c_in", "c_out", "hw", "k", "stride", "padding", "groups"), CONV_GRID, ids=str)
def test_conv_flops_by_hand(n, c_in, c_out, hw, k, stride, padding, groups):
    """2 C_in/g kH kW C_out H_out W_out per image: one multiply and one add per weight per output pixel."""
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups, bias=False)
    h_out = output_size(hw[0], k[0], stride, padding)
    w_out = output_size(hw[1], k[1], stride, padding)
    flops = 2 * (c_in // groups) * k[0] * k[1] * c_out * h_out * w_out * n
    result = count_flops(conv, (n, c_in, *hw))
    assert isinstance(result, FlopCount)
    assert result.total == flops and result.macs == flops // 2
    assert result.rows == [{"name": "", "type": "Conv2d", "flops": flops, "macs": flops // 2}]


@pytest.mark.parametrize(("n", "n_in", "n_out"), [(1, 4, 3), (5, 17, 9), (2, 800, 500)], ids=str)
def test_linear_flops_by_hand(n, n_in, n_out):
    assert count_flops(nn.Linear(n_in, n_out), (n, n_in)).total == 2 * n * n_in * n_out


def test_flops_per_module_of_a_network():
    model = _net().train()
    result = count_flops(model, (2, 3, 8, 8))
    expected = {"0": 2 * 3 * 9 * 8 * 64 * 2, "3.0": 2 * 8 * 9 * 4 * 9 * 2, "5": 2 * 36 * 5 * 2}
    assert {r["name"]: r["flops"] for r in result.rows} == {"0": expected["0"], "1": 0, "2": 0, "3.0": expected["3.0"],
                                                            "3.1": 0, "4": 0, "5": expected["5"]}
    assert result.total == sum(expected.values()) and result.macs == result.total // 2
    assert model.training and torch.is_grad_enabled() and _no_hooks(model)


def test_count_flops_bad_input():
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(_net(), None)
    with pytest.raises(ValueError, match="model"):
        count_flops(F.relu, (1, 3))


# --- activation statistics --------------------------------------------------------------------------------


class ReusedReLU(nn.Module):
    """One ReLU instance called after both convs, as course code often does."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.relu = nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


def _expected(t: torch.Tensor) -> dict:
    t = t.detach().double()
    n = t.numel()
    mean = t.sum().item() / n
    return {
        "mean": mean,
        "std": ((t - mean).pow(2).sum().item() / n) ** 0.5,
        "zeros": (t == 0).sum().item() / n,
        "norm": t.pow(2).sum().sqrt().item(),
    }


def _assert_row(row: dict, t: torch.Tensor):
    for key, value in _expected(t).items():
        assert row[key] == pytest.approx(value, abs=1e-12, rel=1e-9), key


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_activation_stats_equal_direct_computation(dtype):
    torch.manual_seed(1)
    model = ReusedReLU().to(dtype)
    x = torch.randn(5, 2, 9, 7, dtype=dtype)
    rows = activation_stats(model, x)
    with torch.no_grad():
        c1 = model.conv1(x)
        r1 = model.relu(c1)
        c2 = model.conv2(r1)
        r2 = model.relu(c2)
        out = model.head(r2.mean((2, 3)))
    assert [(r["name"], r["call"]) for r in rows] == [("conv1", 0), ("relu", 0), ("conv2", 0), ("relu", 1), ("head", 0)]
    assert [r["shape"] for r in rows] == [tuple(t.shape) for t in (c1, r1, c2, r2, out)]
    for row, t in zip(rows, (c1, r1, c2, r2, out)):
        _assert_row(row, t)
    assert 0.2 < rows[1]["zeros"] < 0.8 and rows[0]["zeros"] == 0  # ReLU zeroes about half
    assert _no_hooks(model)


def test_activation_stats_layer_types():
    rows = activation_stats(ReusedReLU(), torch.randn(2, 2, 6, 6), layer_types=nn.ReLU)
    assert [r["type"] for r in rows] == ["ReLU", "ReLU"]
    rows = activation_stats(_net().eval(), torch.randn(2, 3, 8, 8), layer_types=(nn.BatchNorm2d, nn.Tanh))
    assert [r["name"] for r in rows] == ["1", "3.1"]


@pytest.mark.parametrize(
    ("layer_types", "match"),
    [(nn.functional.relu, "layer_types"), ((nn.ReLU, int), "layer_types"), ((), "layer_types"),
     (nn.LSTM, "no module of layer_types")],
    ids=["function", "not-module", "empty", "absent"],
)
def test_activation_stats_bad_layer_types(layer_types, match):
    with pytest.raises(ValueError, match=match):
        activation_stats(_net(), torch.randn(1, 3, 8, 8), layer_types=layer_types)


def test_hooks_are_removed_even_when_the_forward_pass_raises():
    model = _net()
    with pytest.raises(RuntimeError):  # wrong channel count: conv 0 raises inside the forward pass
        activation_stats(model, torch.randn(1, 4, 8, 8))
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="'1'.*returned tuple"):  # a hook itself raises
        activation_stats(nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 3)), torch.randn(2, 3), layer_types=(nn.LSTM,))
    model = nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 3))
    with pytest.raises(ValueError):
        activation_stats(model, torch.randn(2, 3), layer_types=(nn.Linear, nn.LSTM))
    assert _no_hooks(model)
    model = _net()
    with pytest.raises(RuntimeError):
        parameter_table(model, (1, 4, 8, 8))
    assert _no_hooks(model) and model.training


# --- gradient statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_gradient_stats_equal_autograd(dtype):
    torch.manual_seed(2)
    model = _net().to(dtype).train()
    x, y = torch.randn(4, 3, 8, 8, dtype=dtype), torch.tensor([0, 4, 2, 2])
    rows = gradient_stats(model, (x, y), nn.CrossEntropyLoss())
    assert all(p.grad is None for p in model.parameters())  # .grad untouched
    nn.CrossEntropyLoss()(model(x), y).backward()
    names = ["0", "1", "3.0", "5"]
    assert [r["name"] for r in rows] == names
    for row, name in zip(rows, names):
        weight = model.get_submodule(name).weight
        assert row["shape"] == tuple(weight.shape)
        _assert_row(row, weight.grad)
        assert row["weight_norm"] == pytest.approx(weight.detach().double().norm().item(), rel=1e-12)
    assert _no_hooks(model)


def test_gradient_stats_single_tensor_batch_and_unused_weight():
    model = ReusedReLU()
    model.unused = nn.Linear(2, 2)
    rows = gradient_stats(model, torch.randn(3, 2, 7, 7), lambda out: out.pow(2).mean())
    assert [r["name"] for r in rows] == ["conv1", "conv2", "head", "unused"]
    assert rows[-1]["zeros"] == 1.0 and rows[-1]["norm"] == 0.0 and rows[0]["norm"] > 0


@pytest.mark.parametrize(
    ("batch", "loss_fn", "match"),
    [
        ((torch.randn(2, 3, 8, 8), 1, 2), nn.CrossEntropyLoss(), "batch"),
        ([[1.0]], nn.CrossEntropyLoss(), "batch"),
        (torch.randn(2, 3, 8, 8), "mse", "loss_fn"),
        (torch.randn(2, 3, 8, 8), lambda out: out, "loss_fn must return a scalar"),
    ],
    ids=["triple", "list", "not-callable", "not-scalar"],
)
def test_gradient_stats_bad_arguments(batch, loss_fn, match):
    with pytest.raises(ValueError, match=match):
        gradient_stats(_net(), batch, loss_fn)


@pytest.mark.cuda
def test_cuda_stats_and_counts_equal_cpu():
    model, x = ReusedReLU().double(), torch.randn(4, 2, 9, 9, dtype=torch.float64)
    cpu = activation_stats(model, x), gradient_stats(model, x, lambda out: out.sum())
    cpu_flops = count_flops(model, (4, 2, 9, 9)).total
    model = model.cuda()
    cuda = activation_stats(model, x.cuda()), gradient_stats(model, x.cuda(), lambda out: out.sum())
    for rows_cpu, rows_cuda in zip(cpu, cuda):
        for a, b in zip(rows_cpu, rows_cuda):
            assert a.keys() == b.keys()
            for key in ("mean", "std", "zeros", "norm"):
                assert b[key] == pytest.approx(a[key], abs=1e-10, rel=1e-8)
    assert count_flops(model, (4, 2, 9, 9)).total == cpu_flops


# --- update/weight ratios -------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_update_ratios_of_plain_sgd_are_lr_times_gradient_over_weight_norm(lr):
    torch.manual_seed(3)
    model = _net().double().train()
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.tensor([1, 0, 4, 2])
    grads = gradient_stats(model, (x, y), nn.CrossEntropyLoss())
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def step():
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        optimizer.step()

    rows = update_ratios(model, step)
    assert [r["name"] for r in rows] == [g["name"] for g in grads] == ["0", "1", "3.0", "5"]
    for row, grad in zip(rows, grads):
        assert row["weight_norm"] == pytest.approx(grad["weight_norm"], rel=1e-12)
        assert row["update_norm"] == pytest.approx(lr * grad["norm"], rel=1e-9)
        assert row["ratio"] == pytest.approx(lr * grad["norm"] / grad["weight_norm"], rel=1e-9)
        assert row["shape"] == tuple(model.get_submodule(row["name"]).weight.shape)
    assert all(r["ratio"] > 0 for r in rows)


def test_update_ratios_measure_what_the_step_did():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[2].weight.requires_grad_(False)  # frozen: left out, like gradient_stats does
    with torch.no_grad():
        model[0].weight.fill_(2.0)  # norm 2 * sqrt(12)

    def shrink_by_a_tenth():
        with torch.no_grad():
            model[0].weight.mul_(0.9)
            model[0].bias.add_(100.0)  # biases are not reported

    rows = update_ratios(model, shrink_by_a_tenth)
    assert [(r["name"], r["type"]) for r in rows] == [("0", "Linear")]
    assert rows[0]["ratio"] == pytest.approx(0.1, rel=1e-6)  # float32 weights: 0.9 * 2 rounds
    assert rows[0]["weight_norm"] == pytest.approx(2 * 12**0.5, rel=1e-12)
    assert update_ratios(model, lambda: None)[0]["ratio"] == 0.0


def test_update_ratios_bad_arguments():
    with pytest.raises(ValueError, match="model"):
        update_ratios("model", lambda: None)
    with pytest.raises(ValueError, match="step"):
        update_ratios(_net(), "step")
    with pytest.raises(ValueError, match="weight"):
        update_ratios(nn.ReLU(), lambda: None)
