"""course_lib.train.optim: the from-scratch optimizers follow torch.optim's trajectories step for step,
AlexNet's rule equals PyTorch's SGD exactly while the learning rate is constant and not after it changes,
and the rules' textbook properties (bias correction, RMS scaling, the momentum's limit) hold."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from course_lib.train import SGD, Adam, AlexNetSGD, RMSProp, fit, lr_range_test, make_scheduler
from course_lib.train import optim as scratch

# (label, course_lib optimizer factory, torch.optim factory): every option that has a torch counterpart.
PAIRS = [
    ("sgd", lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd+wd", lambda p: SGD(p, lr=0.1, weight_decay=0.01), lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.01)),
    ("momentum", lambda p: SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("momentum+wd", lambda p: SGD(p, lr=0.05, momentum=0.8, weight_decay=0.001),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.001)),
    ("nesterov", lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("alexnet", lambda p: AlexNetSGD(p, lr=0.05),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.0005)),
    ("rmsprop", lambda p: RMSProp(p, lr=0.01), lambda p: torch.optim.RMSprop(p, lr=0.01)),
    ("rmsprop+momentum", lambda p: RMSProp(p, lr=0.01, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=0.01),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=0.01)),
    ("adam", lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    ("adam+l2", lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", lambda p: Adam(p, lr=0.01, weight_decay=0.1, decoupled=True),
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
]
IDS = [label for label, _, _ in PAIRS]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def small_cnn(seed: int = 0, dtype=torch.float64) -> nn.Module:
    """Parameters of every rank: conv weights (4-d), biases (1-d), a linear weight (2-d)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)
    ).to(dtype)  # fmt: skip


def batches(steps: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 1, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (6,), generator=g))
            for _ in range(steps)]


def trajectory(model: nn.Module, optimizer, data, scheduler=None) -> list[list[torch.Tensor]]:
    """The parameters after each step of training ``model`` on ``data``."""
    out = []
    for x, y in data:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        out.append([p.detach().clone() for p in model.parameters()])
    return out


def assert_same_trajectory(ours, theirs, tol, label=""):
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs), start=1):
        for i, (pa, pb) in enumerate(zip(a, b)):
            torch.testing.assert_close(pa, pb, **tol,
                                       msg=lambda m, s=step, i=i: f"{label} step {s}, parameter {i}: {m}")


# --- equal to torch.optim ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("label", "ours", "theirs"), PAIRS, ids=IDS)
def test_trajectory_equals_torch_optim(label, ours, theirs, dtype):
    model_a = small_cnn(dtype=dtype)
    model_b = copy.deepcopy(model_a)
    data = batches(12, dtype)
    got = trajectory(model_a, ours(model_a.parameters()), data)
    expected = trajectory(model_b, theirs(model_b.parameters()), data)
    assert_same_trajectory(got, expected, TOL[dtype], label)
    # it moved: a trajectory that stays put would also be "equal"
    assert (got[-1][0] - got[0][0]).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(), (7,), (4, 3), (2, 3, 2, 2)], ids=str)
@pytest.mark.parametrize(("label", "ours", "theirs"), PAIRS, ids=IDS)
def test_every_parameter_shape_on_a_quadratic(label, ours, theirs, shape):
    """A loss 0.5 * sum(c * theta^2) with a different curvature per entry: gradients change every step."""
    g = torch.Generator().manual_seed(1)
    start = torch.randn(shape, generator=g, dtype=torch.float64)
    curvature = torch.rand(shape, generator=g, dtype=torch.float64) * 3 + 0.1
    runs = []
    for make in (ours, theirs):
        theta = start.clone().requires_grad_()
        opt = make([theta])
        steps = []
        for _ in range(15):
            opt.zero_grad()
            (0.5 * curvature * theta**2).sum().backward()
            opt.step()
            steps.append([theta.detach().clone()])
        runs.append(steps)
    assert_same_trajectory(*runs, TOL[torch.float64], label)


def test_parameter_groups_keep_their_own_settings():
    model_a = small_cnn()
    model_b = copy.deepcopy(model_a)

    def groups(model):
        return [{"params": model[0].parameters(), "lr": 0.01, "weight_decay": 0.1}, {"params": model[4].parameters()}]

    data = batches(8)
    got = trajectory(model_a, SGD(groups(model_a), lr=0.1, momentum=0.9), data)
    expected = trajectory(model_b, torch.optim.SGD(groups(model_b), lr=0.1, momentum=0.9), data)
    assert_same_trajectory(got, expected, TOL[torch.float64])


SCHEDULED = ("momentum", "rmsprop+momentum", "adam")


@pytest.mark.parametrize(("label", "ours", "theirs"), [p for p in PAIRS if p[0] in SCHEDULED], ids=SCHEDULED)
def test_under_a_scheduler_like_torch(label, ours, theirs):
    """OneCycle changes the learning rate every step and cycles the momentum (or Adam's beta1)."""
    model_a = small_cnn()
    model_b = copy.deepcopy(model_a)
    data = batches(12)
    runs = []
    for model, make in ((model_a, ours), (model_b, theirs)):
        opt = make(model.parameters())
        scheduler, unit = make_scheduler("onecycle", opt, epochs=3, steps_per_epoch=4)
        assert unit == "batch"
        runs.append(trajectory(model, opt, data, scheduler))
    assert_same_trajectory(*runs, TOL[torch.float64], label)


# --- AlexNet's rule and PyTorch's SGD -------------------------------------------------------------


def test_alexnet_rule_equals_torch_sgd_while_the_learning_rate_is_constant():
    model_a = small_cnn()
    model_b = copy.deepcopy(model_a)
    data = batches(30)
    got = trajectory(model_a, AlexNetSGD(model_a.parameters(), lr=0.05), data)
    expected = trajectory(model_b, torch.optim.SGD(model_b.parameters(), lr=0.05, momentum=0.9, weight_decay=0.0005,
                                                   dampening=0), data)
    assert_same_trajectory(got, expected, TOL[torch.float64], "alexnet")


def test_alexnet_rule_differs_from_torch_sgd_once_the_learning_rate_changes():
    """A constant gradient c on one weight, 20 steps at lr a, then a / 10: the closed forms of both rules."""
    a, c, mu, n = 0.1, 2.0, 0.9, 20
    steps = {}
    for name, make in (("alexnet", lambda p: AlexNetSGD(p, lr=a, weight_decay=0.0)),
                       ("torch", lambda p: torch.optim.SGD(p, lr=a, momentum=mu))):
        theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = make([theta])
        scheduler = lr_scheduler.StepLR(opt, step_size=n, gamma=0.1)
        moves = []
        for _ in range(n + 3):
            before = theta.detach().clone()
            opt.zero_grad()
            (c * theta).sum().backward()
            opt.step()
            scheduler.step()
            moves.append((theta.detach() - before).item())
        steps[name] = moves
    built_up = c * (1 - mu**n) / (1 - mu)  # PyTorch's buffer after n steps; AlexNet's velocity is -a times it
    # identical before the change
    assert steps["alexnet"][:n] == pytest.approx(steps["torch"][:n], rel=1e-12)
    assert steps["torch"][n - 1] == pytest.approx(-a * built_up, rel=1e-12)
    # first step after it: PyTorch rescales the whole buffer by the new rate; AlexNet's velocity keeps the old one
    assert steps["torch"][n] == pytest.approx(-(a / 10) * (mu * built_up + c), rel=1e-12)
    assert steps["alexnet"][n] == pytest.approx(mu * (-a * built_up) - (a / 10) * c, rel=1e-12)
    assert steps["alexnet"][n] / steps["torch"][n] > 8  # almost 10 times longer
    assert steps["alexnet"][n + 2] == pytest.approx(
        mu**3 * (-a * built_up) - (a / 10) * c * (1 + mu + mu**2), rel=1e-12)  # the old velocity fades as mu^k


def test_torch_dampening_is_not_alexnets_rule():
    """dampening=1-mu (an exponential average instead of a sum) is a different rule: a step 10 times shorter."""
    model_a = small_cnn()
    model_b = copy.deepcopy(model_a)
    data = batches(10)
    got = trajectory(model_a, AlexNetSGD(model_a.parameters(), lr=0.05), data)
    damped = trajectory(model_b, torch.optim.SGD(model_b.parameters(), lr=0.05, momentum=0.9, weight_decay=0.0005,
                                                 dampening=0.1), data)
    assert (got[-1][0] - damped[-1][0]).abs().max() > 1e-3


# --- the rules' properties ------------------------------------------------------------------------


def one_step(optimizer_factory, gradient: torch.Tensor) -> torch.Tensor:
    """theta's change after one step from 0 on the loss sum(gradient * theta)."""
    theta = torch.zeros_like(gradient, requires_grad=True)
    opt = optimizer_factory([theta])
    (gradient * theta).sum().backward()
    opt.step()
    return theta.detach()


def test_adam_bias_correction_makes_the_first_step_lr_per_weight():
    g = torch.tensor([1e-4, -3.0, 250.0, -0.02], dtype=torch.float64)
    move = one_step(lambda p: Adam(p, lr=0.01), g)
    # m_hat = g and s_hat = g^2 after one step, so the update is -lr * sign(g) whatever |g|
    torch.testing.assert_close(move, -0.01 * g.sign(), rtol=1e-3, atol=0)
    # with a constant gradient m_hat = g and s_hat = g^2 at every step t, not only the first: lr per step
    theta = torch.zeros_like(g, requires_grad=True)
    opt = Adam([theta], lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        (g * theta).sum().backward()
        opt.step()
    torch.testing.assert_close(theta.detach(), -0.05 * g.sign(), rtol=1e-3, atol=0)


def test_rmsprop_first_step_is_lr_over_sqrt_one_minus_alpha():
    g = torch.tensor([1e-3, -5.0, 40.0], dtype=torch.float64)
    move = one_step(lambda p: RMSProp(p, lr=0.01, alpha=0.99), g)
    torch.testing.assert_close(move, -0.01 / 0.01**0.5 * g.sign(), rtol=1e-4, atol=0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_multiplies_a_constant_gradient_by_one_over_one_minus_mu(nesterov):
    theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = SGD([theta], lr=0.01, momentum=0.9, nesterov=nesterov)
    for _ in range(300):
        before = theta.detach().clone()
        opt.zero_grad()
        (3.0 * theta).sum().backward()
        opt.step()
    # heavy ball: lr * g / (1 - mu); Nesterov steps by lr * (g + mu * v) with v -> g / (1 - mu): the same limit
    assert (theta.detach() - before).item() == pytest.approx(-0.01 * 3.0 / (1 - 0.9), rel=1e-9)


def test_closure_parameters_without_gradient_and_state_dict():
    model = small_cnn()
    model[4].bias.requires_grad_(False)
    opt = Adam(model.parameters(), lr=0.01)
    x, y = batches(1)[0]

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0
    assert model[4].bias not in opt.state and opt.state[model[0].weight]["step"] == 1
    # a checkpoint's state_dict resumes the same trajectory
    data = batches(6, seed=3)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    first = trajectory(model, opt, data)
    model.load_state_dict(saved_model)
    again = Adam(model.parameters(), lr=0.5)
    again.load_state_dict(saved_opt)
    assert again.param_groups[0]["lr"] == 0.01
    assert_same_trajectory(trajectory(model, again, data), first, dict(rtol=0, atol=0))


def test_fit_and_lr_range_test_accept_them():
    model_a = small_cnn(dtype=torch.float32)
    model_b = copy.deepcopy(model_a)
    data = batches(5, torch.float32)
    h_a = fit(model_a, data, optimizer=Adam(model_a.parameters(), lr=0.01), epochs=3, device="cpu", progress=False)
    h_b = fit(model_b, data, optimizer=torch.optim.Adam(model_b.parameters(), lr=0.01), epochs=3, device="cpu",
              progress=False)
    assert h_a.train_loss == pytest.approx(h_b.train_loss, rel=1e-5)
    assert h_a.train_loss[-1] < h_a.train_loss[0]
    before = copy.deepcopy(model_a.state_dict())
    result = lr_range_test(model_a, data, functools.partial(SGD, lr=1.0, momentum=0.9), F.cross_entropy,
                           start_lr=1e-4, end_lr=1.0, num_steps=10)
    assert len(result.lrs) >= 2
    for name, value in model_a.state_dict().items():
        assert torch.equal(value, before[name]), name


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: SGD(p, lr=0), "lr"),
    (lambda p: SGD(p, lr=-0.1), "lr"),
    (lambda p: SGD(p, lr=0.1, momentum=1.0), "momentum"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov="yes"), "nesterov"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (lambda p: AlexNetSGD(p, momentum=-0.1), "momentum"),
    (lambda p: RMSProp(p, alpha=1.0), "alpha"),
    (lambda p: RMSProp(p, eps=0.0), "eps"),
    (lambda p: Adam(p, betas=(0.9,)), "betas"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda p: Adam(p, lr=float("nan")), "lr"),
    (lambda p: Adam(p, decoupled=1), "decoupled"),
])
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.zeros(2, requires_grad=True)])


def test_sparse_gradients_are_refused():
    embedding = nn.Embedding(5, 3, sparse=True)
    opt = SGD(embedding.parameters(), lr=0.1)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()


def test_module_exports():
    assert set(scratch.__all__) == {"SGD", "AlexNetSGD", "RMSProp", "Adam"}
    assert all(issubclass(getattr(scratch, name), torch.optim.Optimizer) for name in scratch.__all__)


@pytest.mark.cuda
@pytest.mark.parametrize(("label", "ours", "theirs"), PAIRS, ids=IDS)
def test_trajectory_equals_torch_optim_on_cuda(label, ours, theirs):
    """The same rules on the GPU (PyTorch's CUDA optimizers take their foreach path there)."""
    model_a = small_cnn().cuda()
    model_b = copy.deepcopy(model_a)
    data = [(x.cuda(), y.cuda()) for x, y in batches(12)]
    got = trajectory(model_a, ours(model_a.parameters()), data)
    expected = trajectory(model_b, theirs(model_b.parameters()), data)
    assert_same_trajectory(got, expected, TOL[torch.float64], label)
