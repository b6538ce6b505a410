"""course_lib.init: the initialisers equal torch.nn.init's, have the statistics their formulas promise,
and LSUV / init_model initialise whole models.

Each ``*_`` function draws its random numbers exactly as torch.nn.init does, so with the same
generator state the two results must be identical (tolerance 0). The statistical tests check
what the formulas mean: bounds of the uniform draws, the empirical std within 6 standard errors
of the target (the standard error of a sample std is about ``std sqrt((kurtosis - 1) / (4 n))``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from course_lib import init as CI
from course_lib.init import torchvision_init_
from course_lib.models import create_model

SHAPES = [(5, 3), (1, 7), (8, 4, 3, 3), (6, 2, 5, 1), (4, 3, 7), (2, 3, 2, 2, 2)]
DTYPES = [torch.float64, torch.float32]


def _gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _ids(shape) -> str:
    return "x".join(map(str, shape))


# --- fans and gains ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_fan_in_and_fan_out_equal_torch(shape):
    w = torch.empty(shape)
    assert CI.fan_in_and_fan_out(w) == nn.init._calculate_fan_in_and_fan_out(w)


def test_fan_of_conv_weight_by_hand():
    """(out, in/groups, kH, kW) = (16, 4, 3, 5): fan_in = 4*15, fan_out = 16*15."""
    assert CI.fan_in_and_fan_out(torch.empty(16, 4, 3, 5)) == (60, 240)


@pytest.mark.parametrize("bad", [torch.empty(5), torch.tensor(1.0), [[1.0, 2.0]]], ids=["1d", "0d", "list"])
def test_fan_needs_a_2d_tensor(bad):
    expected = r"tensor must (be a torch.Tensor|have shape \(out, in, \.\.\.\) \(at least 2 dims\))"
    with pytest.raises(ValueError, match=expected):
        CI.fan_in_and_fan_out(bad)


GAINS = [
    ("linear", None),
    ("conv1d", None),
    ("conv2d", None),
    ("conv3d", None),
    ("conv_transpose1d", None),
    ("conv_transpose2d", None),
    ("conv_transpose3d", None),
    ("sigmoid", None),
    ("tanh", None),
    ("relu", None),
    ("selu", None),
    ("leaky_relu", None),
    ("leaky_relu", 0.2),
    ("leaky_relu", 0),
    ("leaky_relu", 1),
    ("leaky_relu", math.sqrt(5)),
]


@pytest.mark.parametrize(("nonlinearity", "param"), GAINS, ids=str)
def test_calculate_gain_equals_torch(nonlinearity, param):
    assert CI.calculate_gain(nonlinearity, param) == nn.init.calculate_gain(nonlinearity, param)


def test_gain_values_by_hand():
    assert CI.calculate_gain("relu") == pytest.approx(math.sqrt(2), abs=1e-15)
    assert CI.calculate_gain("tanh") == pytest.approx(5 / 3, abs=1e-15)
    assert CI.calculate_gain("leaky_relu", 1) == pytest.approx(1.0, abs=1e-15)  # slope 1: the identity


def test_calculate_gain_rejects_bad_input():
    with pytest.raises(ValueError, match="nonlinearity.*'relu'.*got 'rleu'"):
        CI.calculate_gain("rleu")
    for param in ("0.2", True, [0.2]):
        with pytest.raises(ValueError, match="param"):
            CI.calculate_gain("leaky_relu", param)


# --- same draws as torch.nn.init --------------------------------------------------------------


def _kaiming_cases():
    return [
        pytest.param({"a": a, "mode": mode, "nonlinearity": nl}, id=f"a{a:.2f}-{mode}-{nl}")
        for a, mode, nl in [
            (0, "fan_in", "leaky_relu"),
            (math.sqrt(5), "fan_in", "leaky_relu"),
            (0.1, "fan_out", "leaky_relu"),
            (0, "fan_out", "relu"),
            (0, "fan_in", "tanh"),
            (0, "FAN_IN", "linear"),
        ]
    ]


def _init_pairs():
    """(ours, torch's, kwargs) for every initialiser that draws random numbers."""
    pairs = [
        (CI.normal_, nn.init.normal_, {"mean": 0.5, "std": 2.0}),
        (CI.xavier_uniform_, nn.init.xavier_uniform_, {}),
        (CI.xavier_uniform_, nn.init.xavier_uniform_, {"gain": 5 / 3}),
        (CI.xavier_normal_, nn.init.xavier_normal_, {"gain": math.sqrt(2)}),
        (CI.orthogonal_, nn.init.orthogonal_, {}),
        (CI.orthogonal_, nn.init.orthogonal_, {"gain": 2.0}),
    ]
    for case in _kaiming_cases():
        pairs += [(CI.kaiming_uniform_, nn.init.kaiming_uniform_, case.values[0])]
        pairs += [(CI.kaiming_normal_, nn.init.kaiming_normal_, case.values[0])]
    return [pytest.param(ours, theirs, kw, id=f"{ours.__name__}-{kw}") for ours, theirs, kw in pairs]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), _init_pairs())
def test_same_values_as_torch_on_the_same_generator(ours, theirs, kwargs, shape, dtype):
    mine, ref = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
    out = ours(mine, generator=_gen(7), **kwargs)
    theirs(ref, generator=_gen(7), **kwargs)
    assert out is mine
    torch.testing.assert_close(mine, ref, atol=0, rtol=0)


def test_zeros_():
    w = torch.randn(4, 3, 2, 2)
    assert CI.zeros_(w) is w and w.abs().sum() == 0


@pytest.mark.parametrize(
    "fill",
    [CI.zeros_, CI.normal_, CI.xavier_uniform_, CI.xavier_normal_, CI.kaiming_uniform_, CI.kaiming_normal_,
     CI.orthogonal_],
    ids=lambda f: f.__name__,
)
def test_fills_a_parameter_in_place_without_autograd(fill):
    """A leaf that requires grad can only be filled under no_grad; the fill leaves no grad_fn behind."""
    layer = nn.Conv2d(3, 4, 3)
    weight = layer.weight
    assert fill(layer.weight) is weight and weight.grad_fn is None and weight.requires_grad
    assert layer.weight.data_ptr() == weight.data_ptr()


# --- statistics the formulas promise --------------------------------------------------------------

BIG = (128, 64, 3, 3)  # fan_in = 576, fan_out = 1152, n = 73,728 samples
KURTOSIS = {"uniform": 1.8, "normal": 3.0}


def _assert_std(w: torch.Tensor, std: float, kind: str):
    """Empirical mean and std within 6 standard errors of N(0, std^2) / U(-sqrt(3) std, sqrt(3) std)."""
    n = w.numel()
    se_std = std * math.sqrt((KURTOSIS[kind] - 1) / (4 * n))
    assert abs(w.std().item() - std) < 6 * se_std, (w.std().item(), std)
    assert abs(w.mean().item()) < 6 * std / math.sqrt(n)


@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_statistics(gain):
    fan_in, fan_out = 576, 1152
    w = CI.xavier_uniform_(torch.empty(BIG, dtype=torch.float64), gain=gain, generator=_gen(1))
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= bound and w.abs().max() > 0.999 * bound
    _assert_std(w, gain * math.sqrt(2 / (fan_in + fan_out)), "uniform")
    w = CI.xavier_normal_(torch.empty(BIG, dtype=torch.float64), gain=gain, generator=_gen(2))
    _assert_std(w, gain * math.sqrt(2 / (fan_in + fan_out)), "normal")


@pytest.mark.parametrize(
    ("kwargs", "std"),
    [
        ({}, math.sqrt(2 / 576)),  # He: Var = 2 / fan_in
        ({"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2 / 1152)),
        ({"a": math.sqrt(5)}, 1 / math.sqrt(3 * 576)),  # PyTorch's default layer init: bound 1/sqrt(fan_in)
        ({"nonlinearity": "linear"}, 1 / math.sqrt(576)),
    ],
    ids=["he", "fan_out", "torch-default", "linear"],
)
def test_kaiming_statistics(kwargs, std):
    w = CI.kaiming_uniform_(torch.empty(BIG, dtype=torch.float64), generator=_gen(3), **kwargs)
    assert w.abs().max() <= math.sqrt(3) * std and w.abs().max() > 0.999 * math.sqrt(3) * std
    _assert_std(w, std, "uniform")
    w = CI.kaiming_normal_(torch.empty(BIG, dtype=torch.float64), generator=_gen(4), **kwargs)
    _assert_std(w, std, "normal")


def test_normal_statistics():
    w = CI.normal_(torch.empty(BIG, dtype=torch.float64), std=0.01, generator=_gen(5))
    _assert_std(w, 0.01, "normal")


def test_xavier_keeps_the_forward_variance_of_a_square_layer():
    """The seed's derivation: Var(y) = n_in Var(W) Var(x); with n_in = n_out Xavier gives Var(y) = Var(x)."""
    w = CI.xavier_normal_(torch.empty(512, 512, dtype=torch.float64), generator=_gen(6))
    x = torch.randn(2048, 512, dtype=torch.float64, generator=_gen(7)) * 3.0
    ratio = (x @ w.T).var().item() / x.var().item()
    assert abs(ratio - 1) < 0.1


@pytest.mark.parametrize("shape", [(3, 10), (10, 3), (6, 6), (8, 4, 3, 3), (40, 2, 2, 2)], ids=_ids)
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain):
    w = CI.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=gain, generator=_gen(8))
    m = w.reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_orthogonal_preserves_norms():
    w = CI.orthogonal_(torch.empty(64, 64, dtype=torch.float64), generator=_gen(9))
    x = torch.randn(64, 10, dtype=torch.float64, generator=_gen(10))
    torch.testing.assert_close((w @ x).norm(dim=0), x.norm(dim=0), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: CI.kaiming_uniform_(torch.empty(3, 4), mode="fan_avg"), r"mode.*\['fan_in', 'fan_out'\].*fan_avg"),
        (lambda: CI.kaiming_normal_(torch.empty(3, 4), nonlinearity="relu6"), "nonlinearity.*'leaky_relu'"),
        (lambda: CI.xavier_uniform_(torch.empty(3)), "tensor"),
        (lambda: CI.xavier_normal_(torch.empty(3)), "tensor"),
        (lambda: CI.orthogonal_(torch.empty(3)), "tensor"),
        (lambda: CI.normal_(torch.empty(3), std=-1.0), "std"),
        (lambda: CI.zeros_("weights"), "tensor"),
    ],
    ids=["mode", "nonlinearity", "xavier-1d", "xavier-normal-1d", "orthogonal-1d", "std", "not-tensor"],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- LSUV -------------------------------------------------------------------------------------------


def _small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(16, 16, 3), nn.Tanh()),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(16 * 4 * 4, 10),
    )


def _output_variances(model, batch) -> dict:
    """Variance (population) of each conv/linear layer's output, measured independently of lsuv_."""
    variances, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hook = lambda m, a, out, name=name: variances.__setitem__(name, out.double().var(correction=0).item())  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return variances


def test_lsuv_reaches_unit_variance_layer_by_layer():
    torch.manual_seed(0)
    model = _small_net().train()
    batch = 4.0 * torch.randn(32, 3, 14, 14, generator=_gen(11)) + 1.0
    report = CI.lsuv_(model, batch, tol=0.02, generator=_gen(12))
    assert [row["layer"] for row in report] == ["0", "2", "5.0", "8"]  # forward order
    assert all(module.training for module in model.modules())  # train/eval flags restored
    measured = _output_variances(model, batch)
    for row in report:
        assert 1 <= row["iterations"] <= 3  # zero bias + homogeneous layers: one rescaling is nearly exact
        assert abs(row["variance"] - 1) < 0.02
        assert measured[row["layer"]] == pytest.approx(row["variance"], abs=1e-5)
    for name in ("0", "2", "5.0", "8"):
        assert model.get_submodule(name).bias.abs().sum() == 0
    assert not any(m._forward_hooks for m in model.modules())


def test_lsuv_starts_from_orthogonal_weights_and_stops_after_max_iters():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    batch = torch.randn(64, 20, generator=_gen(13))
    report = CI.lsuv_(model, batch, max_iters=1, generator=_gen(14))
    assert [row["iterations"] for row in report] == [1, 1]
    w = model[0].weight.detach().double()
    gram = w.T @ w  # tall (30, 20): orthogonal columns, all scaled by the same factor
    torch.testing.assert_close(gram, gram[0, 0] * torch.eye(20, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"batch": [1.0]}, "batch"), ({"tol": 0}, "tol"), ({"max_iters": 0}, "max_iters")],
    ids=["batch", "tol", "max_iters"],
)
def test_lsuv_bad_arguments(kwargs, match):
    args = {"model": nn.Linear(3, 2), "batch": torch.randn(4, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        CI.lsuv_(**args)


def test_lsuv_constant_output_raises_and_removes_hooks():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="batch"):
        CI.lsuv_(model, torch.zeros(4, 3))
    assert not model[0]._forward_hooks


# --- init_model -------------------------------------------------------------------------------------


class MyConvBlock(nn.Module):
    """A custom module the scheme must reach: class name contains 'Conv', 4-D weight."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(4, 8, 3, 3))
        self.bias = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight, self.bias)


def _net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), MyConvBlock(), nn.Flatten(),
                         nn.Linear(4 * 2 * 2, 10))


WEIGHTED = ("0", "3", "5")
REFERENCE = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "orthogonal": nn.init.orthogonal_,
    "normal": lambda w, generator: nn.init.normal_(w, 0.0, 0.01, generator=generator),
}


@pytest.mark.parametrize("scheme", list(REFERENCE))
def test_init_model_applies_the_scheme_to_every_conv_and_linear(scheme):
    model, reference = _net(), _net()
    bn_before = model[1].weight.clone()
    assert CI.init_model(model, scheme, generator=_gen(15)) is model
    gen = _gen(15)
    for name in WEIGHTED:  # same order, same generator: the same draws as torch.nn.init
        REFERENCE[scheme](reference.get_submodule(name).weight, generator=gen)
        torch.testing.assert_close(model.get_submodule(name).weight, reference.get_submodule(name).weight, atol=0, rtol=0)
        assert model.get_submodule(name).bias.abs().sum() == 0
    torch.testing.assert_close(model[1].weight, bn_before, atol=0, rtol=0)  # norm layers untouched


def test_init_model_zeros_default_and_lsuv():
    model = CI.init_model(_net(), "zeros")
    assert all(model.get_submodule(n).weight.abs().sum() == 0 for n in WEIGHTED)
    model, reference = _net(), _net()
    torch.manual_seed(3)
    CI.init_model(model, "default")
    torch.manual_seed(3)
    for name in ("0", "5"):
        reference.get_submodule(name).reset_parameters()
    for name in ("0", "5"):
        torch.testing.assert_close(model.get_submodule(name).weight, reference.get_submodule(name).weight)
        assert model.get_submodule(name).bias.abs().sum() > 0  # default keeps PyTorch's bias init
    batch = torch.randn(16, 3, 6, 6, generator=_gen(16))
    model = CI.init_model(_net(), "lsuv", generator=_gen(17), batch=batch)
    assert all(abs(v - 1) < 0.05 for v in _output_variances(model, batch).values())


def test_init_model_bad_arguments():
    with pytest.raises(ValueError, match=r"scheme.*'lsuv'.*'xavier_uniform'.*got 'xavier'"):
        CI.init_model(_net(), "xavier")
    with pytest.raises(ValueError, match="batch"):
        CI.init_model(_net(), "lsuv")
    with pytest.raises(ValueError, match="model"):
        CI.init_model("net", "zeros")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_same_values_as_torch(dtype):
    for ours, theirs, kwargs in [
        (CI.kaiming_uniform_, nn.init.kaiming_uniform_, {"a": math.sqrt(5)}),
        (CI.xavier_normal_, nn.init.xavier_normal_, {}),
        (CI.orthogonal_, nn.init.orthogonal_, {}),
    ]:
        mine = ours(torch.empty(8, 4, 3, 3, device="cuda", dtype=dtype), generator=_gen(18, "cuda"), **kwargs)
        ref = theirs(torch.empty(8, 4, 3, 3, device="cuda", dtype=dtype), generator=_gen(18, "cuda"), **kwargs)
        assert mine.is_cuda
        torch.testing.assert_close(mine, ref, atol=0 if ours is not CI.orthogonal_ else 1e-6, rtol=0)
    model = _small_net().cuda()
    batch = torch.randn(8, 3, 14, 14, device="cuda")
    assert all(abs(row["variance"] - 1) < 0.05 for row in CI.lsuv_(model, batch))


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18", "mobilenet_v2"])
def test_torchvision_init_draws_what_torchvision_draws(name):
    """Seeded, a course_lib twin built with torchvision_init_ holds torchvision's very numbers."""
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)()
    torch.manual_seed(0)
    ours = create_model(name)
    for (key, a), b in zip(theirs.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), key


def test_torchvision_init_sets_every_layer_kind():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 64, 3), nn.BatchNorm2d(64), nn.Flatten(), nn.Linear(64, 4000))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    torchvision_init_(model)
    fan_out = 64 * 3 * 3
    assert model[0].weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    assert torch.all(model[0].bias == 0) and torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)
    assert model[3].weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(model[3].bias == 0)
    default = nn.Linear(64, 10)
    before = default.weight.clone(), default.bias.clone()
    torchvision_init_(default, linear_std=None)
    assert torch.equal(default.weight, before[0]) and torch.equal(default.bias, before[1])
    with pytest.raises(ValueError, match="linear_std"):
        torchvision_init_(model, linear_std=0)
