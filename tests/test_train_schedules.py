"""course_lib.train.schedules: named torch schedulers, their LR sequences, plots, the LR range test."""

from __future__ import annotations

import copy
import functools
import math

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402
from torch.optim import lr_scheduler as tls  # noqa: E402

from course_lib.train.gpu_loader import GPULoader  # noqa: E402
from course_lib.train.schedules import (  # noqa: E402
    SCHEDULES,
    LRRangeTestResult,
    lr_range_test,
    lr_sequence,
    make_scheduler,
    plot_schedules,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _optimizer(lr=0.1):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)


def _torch_epoch_lrs(build, epochs, lr=0.1, metrics=None):
    """The reference: a torch scheduler built by hand, stepped once per epoch."""
    opt = _optimizer(lr)
    sched = build(opt)
    out = []
    for e in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(metrics[e]) if metrics is not None else sched.step()
    return out


# --- each schedule is its torch scheduler ---------------------------------------------------


@pytest.mark.parametrize("name, kwargs, build, epochs", [
    ("step", dict(step_size=3), lambda o: tls.StepLR(o, step_size=3, gamma=0.1), 10),
    ("step", {}, lambda o: tls.StepLR(o, step_size=30, gamma=0.1), 90),  # default: epochs // 3
    ("step", dict(milestones=[5, 8]), lambda o: tls.MultiStepLR(o, [5, 8], gamma=0.1), 10),
    ("exponential", dict(gamma=0.96, every=8), lambda o: tls.StepLR(o, step_size=8, gamma=0.96), 40),
    ("exponential", dict(gamma=0.9), lambda o: tls.ExponentialLR(o, gamma=0.9), 12),
    ("cosine", {}, lambda o: tls.CosineAnnealingLR(o, T_max=15), 15),
    ("cosine", dict(eta_min=1e-3), lambda o: tls.CosineAnnealingLR(o, T_max=15, eta_min=1e-3), 15),
    ("constant", {}, lambda o: tls.LambdaLR(o, lambda e: 1.0), 5),
])
def test_epoch_schedules_equal_the_torch_schedulers(name, kwargs, build, epochs):
    assert lr_sequence(name, epochs, base_lr=0.1, **kwargs) == _torch_epoch_lrs(build, epochs)
    scheduler, unit = make_scheduler(name, _optimizer(), epochs=epochs, **kwargs)
    assert unit == "epoch" and isinstance(scheduler, type(build(_optimizer())))


def test_closed_forms_of_the_papers_schedules():
    # ResNet: /10 every 30 of 90 epochs
    assert np.allclose(lr_sequence("step", 90, step_size=30), [0.1 * 0.1 ** (e // 30) for e in range(90)], rtol=1e-12)
    # GoogLeNet: "decreasing the learning rate by 4% every 8 epochs"
    lrs = lr_sequence("exponential", 40, gamma=0.96, every=8, base_lr=0.05)
    assert np.allclose(lrs, [0.05 * 0.96 ** (e // 8) for e in range(40)], rtol=1e-12)
    # cosine: half a cosine from base_lr to 0 over the run
    lrs = lr_sequence("cosine", 20)
    assert np.allclose(lrs, [0.05 * (1 + math.cos(math.pi * e / 20)) for e in range(20)], rtol=1e-9, atol=1e-12)


def test_plateau_divides_by_ten_after_patience_epochs_without_improvement():
    metrics = [5, 4, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    got = lr_sequence("plateau", 12, metrics=metrics, patience=2)
    expected = _torch_epoch_lrs(lambda o: tls.ReduceLROnPlateau(o, factor=0.1, patience=2), 12, metrics=metrics)
    assert got == expected
    # best 3 at epoch 2; epochs 3, 4, 5 do not improve (3 > patience bad epochs): /10 from epoch 6;
    # 2 at epoch 7 is a new best; epochs 8, 9, 10 do not improve: /10 again from epoch 11
    assert np.allclose(got, [0.1] * 6 + [0.01] * 5 + [0.001], rtol=1e-12)
    scheduler, unit = make_scheduler("plateau", _optimizer(), epochs=12)
    assert unit == "epoch" and isinstance(scheduler, tls.ReduceLROnPlateau) and scheduler.factor == 0.1


def test_onecycle_steps_per_batch_and_equals_torch():
    got = lr_sequence("onecycle", 3, steps_per_epoch=5, base_lr=0.2, pct_start=0.2)  # peak at step 0.2 * 15 - 1 = 2
    opt = _optimizer(0.2)
    sched = tls.OneCycleLR(opt, max_lr=0.2, epochs=3, steps_per_epoch=5, pct_start=0.2)
    expected = []
    for _ in range(15):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert got == expected
    assert got[2] == max(got) == pytest.approx(0.2, rel=1e-12) and got[0] == pytest.approx(0.2 / 25, rel=1e-12)
    assert got[-1] == pytest.approx(0.2 / 25 / 1e4, rel=1e-9)  # ends div_factor * final_div_factor below the peak
    scheduler, unit = make_scheduler("onecycle", _optimizer(), epochs=3, steps_per_epoch=5)
    assert unit == "batch" and isinstance(scheduler, tls.OneCycleLR) and scheduler.total_steps == 15


def test_epoch_schedules_repeat_their_rate_over_the_batches_of_an_epoch():
    per_epoch = lr_sequence("step", 6, step_size=2)
    per_batch = lr_sequence("step", 6, steps_per_epoch=4, step_size=2)
    assert per_batch == [lr for lr in per_epoch for _ in range(4)]


def test_onecycle_without_steps_per_epoch_raises_naming_it():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_scheduler("onecycle", _optimizer(), epochs=3)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lr_sequence("onecycle", 3)


@pytest.mark.parametrize("call, match", [
    (lambda: make_scheduler("linear", _optimizer(), epochs=3), "name must be one of"),
    (lambda: make_scheduler("step", _optimizer(), epochs=0), "epochs"),
    (lambda: make_scheduler("step", "sgd", epochs=3), "optimizer"),
    (lambda: make_scheduler("step", _optimizer(), epochs=3, steps_per_epoch=0), "steps_per_epoch"),
    (lambda: make_scheduler("step", _optimizer(), epochs=3, step_size=0), "step_size"),
    (lambda: make_scheduler("exponential", _optimizer(), epochs=3, every=0), "every"),
    (lambda: make_scheduler("exponential", _optimizer(), epochs=3, gamma=1.5), "gamma"),
    (lambda: lr_sequence("plateau", 4), "metrics"),
    (lambda: lr_sequence("plateau", 4, metrics=[1, 2]), "metrics"),
    (lambda: lr_sequence("cosine", 4, metrics=[1, 2, 3, 4]), "metrics"),
    (lambda: lr_sequence("cosine", 4, base_lr=0), "base_lr"),
])
def test_schedule_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_every_schedule_has_a_sequence_and_its_scheduler_checkpoints():
    for name in SCHEDULES:
        kwargs = {"metrics": [1.0] * 4} if name == "plateau" else {}
        assert len(lr_sequence(name, 4, steps_per_epoch=3, **kwargs)) == 12
        scheduler, _ = make_scheduler(name, _optimizer(), epochs=4, steps_per_epoch=3)
        torch.save(scheduler.state_dict(), __import__("io").BytesIO())  # picklable, e.g. no lambdas


def test_plot_schedules_draws_one_line_per_schedule():
    fig = plot_schedules(
        {"step": dict(name="step", step_size=3), "GoogLeNet": dict(name="exponential", every=2), "1cycle": "onecycle"},
        epochs=9, steps_per_epoch=4, log_y=True,
    )
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["step", "GoogLeNet", "1cycle"]
    assert ax.get_yscale() == "log" and ax.get_xlim() == (0, 9)
    fig = plot_schedules(["cosine", "constant"], epochs=5)
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="schedules"):
        plot_schedules("cosine", epochs=5)


# --- LR range test --------------------------------------------------------------------------


def _regression(seed=0, n=512, d=10):
    """y = x w + noise with standard normal x: a least-squares problem whose MSE Hessian is ~2 I."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return GPULoader(x, y, 32, device="cpu", seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_range_test_on_linear_regression(seed):
    """Where the suggestion must lie for least squares, from the theory of gradient descent.

    The loss of one batch, mean((x w - y)^2), has Hessian 2 X^T X / 32; with 10 standard normal
    features and 32 rows its largest eigenvalue is about 2 (1 + sqrt(10/32))^2 ~ 5, so SGD is
    unstable above lr ~ 2 / 5 = 0.4 and the error grows ~|1 - 2 lr|^2-fold per step beyond 1:
    a good learning rate is below 1. Below 1e-3 the ~10 steps of one sweep decade move the
    weights by less than 1% of the way (each step removes ~2 lr of the error), so the loss
    cannot fall steeply there. Hence 1e-3 < suggested_lr < 1.
    """
    loader = _regression(seed)
    torch.manual_seed(seed)
    model = nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    result = lr_range_test(model, loader, opt, nn.MSELoss(), num_steps=100)
    assert isinstance(result, LRRangeTestResult)
    lrs = np.array(result.lrs)
    assert lrs[0] == pytest.approx(1e-7, rel=1e-12)
    assert np.all(np.diff(lrs) > 0)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (10 / 1e-7) ** (1 / 99), rtol=1e-9)  # geometric
    assert result.diverged and len(lrs) < 100 and lrs[-1] > 0.1  # stopped early, past the stable range
    assert result.losses[-1] > 4 * min(result.losses[:-1])
    assert len(result.losses) == len(result.raw_losses) == len(lrs)
    assert min(result.raw_losses) < 0.1 * result.raw_losses[0]  # the model really trained in between
    assert 1e-3 < result.suggested_lr < 1
    assert result.steepest_lr == result.suggested_lr and result.suggested_lr < result.min_loss_lr


def test_range_test_restores_model_optimizer_grads_and_mode():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(256, 4, generator=g), torch.randint(0, 3, (256,), generator=g)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    nn.CrossEntropyLoss()(model(x[:16]), y[:16]).backward()
    opt.step()  # some momentum state to restore, and gradients left in .grad
    model.eval()
    weights = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]

    result = lr_range_test(model, GPULoader(x, y, 16, device="cpu"), opt, nn.CrossEntropyLoss(), num_steps=30)
    assert len(result.lrs) > 1
    for key, value in model.state_dict().items():  # weights and BatchNorm statistics alike
        assert torch.equal(value, weights[key]), key
    after = opt.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]  # the learning rate is 0.05 again
    for key, state in opt_state["state"].items():
        assert torch.equal(after["state"][key]["momentum_buffer"], state["momentum_buffer"])
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert not model.training


def test_range_test_with_a_factory_and_no_divergence():
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    before = copy.deepcopy(model.state_dict())
    factory = functools.partial(torch.optim.SGD, lr=1.0, momentum=0.9)
    result = lr_range_test(model, _regression(), factory, nn.MSELoss(), start_lr=1e-5, end_lr=1e-3, num_steps=20)
    assert not result.diverged and len(result.lrs) == 20
    assert result.lrs[-1] == pytest.approx(1e-3, rel=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    fig = result.plot()
    assert isinstance(fig, Figure) and fig.axes[0].get_xscale() == "log"


def test_suggestion_falls_back_to_min_loss_over_ten():
    result = LRRangeTestResult([1e-3, 1e-2, 1e-1], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], False, 1e-3, None)
    assert result.suggested_lr == pytest.approx(1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(start_lr=1.0, end_lr=0.1), "start_lr"),
    (dict(start_lr=0.0), "start_lr"),
    (dict(num_steps=1), "num_steps"),
    (dict(smooth=0.0), "smooth"),
    (dict(diverge_factor=1.0), "diverge_factor"),
])
def test_range_test_argument_errors(kwargs, match):
    model = nn.Linear(10, 1)
    with pytest.raises(ValueError, match=match):
        lr_range_test(model, _regression(), torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), **kwargs)
    with pytest.raises(ValueError, match="optimizer"):
        lr_range_test(model, _regression(), "sgd", nn.MSELoss())
    with pytest.raises(ValueError, match="no batches"):
        lr_range_test(model, [], torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss())
