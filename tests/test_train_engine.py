"""course_lib.train.engine: fit, evaluate and History.

Every model here is defined in this file (a tiny CNN on 8x8 inputs, a LeNet-like
one for the real digits, toy GoogLeNets with auxiliary heads), so these tests depend
on course_lib.models only for the auxiliary heads' loss rule (inception_loss).
Most runs use a list of (x, y) batches as the loader: ``fit`` takes any iterable.
"""

from __future__ import annotations

import math
import time
from collections import namedtuple

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported (History.plot imports it)

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402
from torch.optim import lr_scheduler  # noqa: E402

import course_lib.train as train_api  # noqa: E402
from course_lib.models import inception  # noqa: E402
from course_lib.train import (  # noqa: E402
    History, NonFiniteLoss, TrainingDiverged, evaluate, fit, lr_range_test, train_step,
)  # fmt: skip
from course_lib.train import engine, schedules  # noqa: E402
from train_helpers import NaNAt


def tiny_cnn(seed: int = 0) -> nn.Module:
    """A few hundred weights on (N, 1, 8, 8) inputs, 10 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10)
    )  # fmt: skip


def toy_batches(n: int = 64, batch_size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random 8x8 images with random labels, as a list of batches."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
    return list(zip(x.split(batch_size), y.split(batch_size)))


def train_tiny(epochs: int, **kwargs) -> tuple[nn.Module, History]:
    model = tiny_cnn()
    optimizer = kwargs.pop("optimizer", None) or torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs.setdefault("progress", False)
    history = fit(model, toy_batches(), optimizer=optimizer, epochs=epochs, device="cpu", **kwargs)
    return model, history


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- learning ------------------------------------------------------------------------------------


def test_learns_real_digits_mnist5k():
    """A LeNet-like CNN reaches >= 95% on mnist-5k's 1,000 test digits in six CPU epochs (about 4 s)."""
    from course_lib.data.datasets import load_mnist5k

    data = load_mnist5k()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    loader = data.train_loader(64, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs = 6
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=epochs * len(loader))
    start = time.perf_counter()
    history = fit(
        model, loader, optimizer=optimizer, epochs=epochs, scheduler=scheduler,
        val_loader=data.test_loader(), device="cpu", seed=0, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    result = evaluate(model, data.test_loader())
    print(f"mnist-5k: {result.top1:.3f} test accuracy after {epochs} epochs in {seconds:.1f} s")
    assert result.top1 >= 0.95
    assert history.val_acc[-1] == pytest.approx(result.top1)
    assert history.train_loss[-1] < history.train_loss[0] / 3
    assert history.epoch == list(range(1, epochs + 1))
    assert len(history.batch_lr) == epochs * len(loader)


def test_history_lists_and_dataframe():
    model, history = train_tiny(3, val_loader=toy_batches(seed=1))
    assert history.epoch == [1, 2, 3] and len(history) == 3
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"):
        assert len(getattr(history, name)) == 3, name
    assert all(0.0 <= a <= 1.0 for a in history.train_acc + history.val_acc)
    assert history.lr == [0.1, 0.1, 0.1] and len(history.batch_lr) == 3 * 4
    frame = history.to_dataframe()
    assert list(frame.index) == [1, 2, 3] and frame["val_acc"].tolist() == history.val_acc
    copy = History()
    copy.load_state_dict(history.state_dict())
    assert copy == history
    _, without_val = train_tiny(2)
    assert without_val.val_loss == [] and "val_loss" not in without_val.to_dataframe()


def test_train_metrics_are_means_over_samples():
    """With lr=0 the recorded loss/accuracy are exactly the per-sample means over all batches (uneven last batch)."""
    model = tiny_cnn()
    batches = toy_batches(n=40, batch_size=16)  # 16, 16, 8
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    history = fit(model, batches, optimizer=optimizer, epochs=1, device="cpu", progress=False)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        logits = model(x)
    assert history.train_loss[0] == pytest.approx(F.cross_entropy(logits, y).item(), abs=1e-6)
    assert history.train_acc[0] == pytest.approx((logits.argmax(1) == y).float().mean().item())


# --- learning-rate schedules -------------------------------------------------------------------------


def torch_epoch_lrs(make_scheduler, epochs: int, lr: float = 0.1, metrics=None) -> list[float]:
    """The learning rate of each epoch when a scheduler is stepped once per epoch by hand (with ``metrics[i]``)."""
    optimizer = torch.optim.SGD(tiny_cnn().parameters(), lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for epoch in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(*([metrics[epoch]] if metrics is not None else []))
    return lrs


EPOCH_SCHEDULERS = {
    # The curriculum's decay, "4% every 8 epochs", written both ways.
    "StepLR(8, 0.96)": lambda opt: lr_scheduler.StepLR(opt, step_size=8, gamma=0.96),
    "ExponentialLR(0.96 ** (1/8))": lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.96 ** (1 / 8)),
    "CosineAnnealingLR(10)": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.001),
}


@pytest.mark.parametrize("name", list(EPOCH_SCHEDULERS))
def test_epoch_schedulers_follow_torch(name):
    make, epochs = EPOCH_SCHEDULERS[name], 17
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = toy_batches(n=32, batch_size=16)
    history = fit(model, batches, optimizer=optimizer, epochs=epochs, scheduler=make(optimizer), device="cpu",
                  progress=False)  # fmt: skip
    expected = torch_epoch_lrs(make, epochs)
    assert history.lr == pytest.approx(expected, rel=1e-12)
    assert len(set(history.lr)) > 1  # the schedule did change the rate
    assert history.batch_lr == pytest.approx([lr for lr in expected for _ in batches], rel=1e-12)


def test_onecycle_is_stepped_per_batch():
    epochs, batches = 3, toy_batches(n=64, batch_size=16)
    total = epochs * len(batches)

    def make(opt):
        return lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=total)

    optimizer = torch.optim.SGD(tiny_cnn().parameters(), lr=0.1)
    reference, expected = make(optimizer), []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()

    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, batches, optimizer=optimizer, epochs=epochs, scheduler=make(optimizer), device="cpu",
                  progress=False)  # fmt: skip
    assert history.batch_lr == pytest.approx(expected, rel=1e-12)
    assert history.lr == pytest.approx(expected[:: len(batches)], rel=1e-12)


def test_scheduler_step_can_be_forced_per_batch():
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = fit(model, toy_batches(), optimizer=optimizer, epochs=2, scheduler=scheduler, scheduler_step="batch",
                  device="cpu", progress=False)  # fmt: skip
    assert history.batch_lr == pytest.approx([0.1 * 0.5**i for i in range(8)])


class SpyPlateau(lr_scheduler.ReduceLROnPlateau):
    """ReduceLROnPlateau that remembers the metric of each step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def step(self, metrics, *args, **kwargs):
        self.seen.append(float(metrics))
        super().step(metrics, *args, **kwargs)


@pytest.mark.parametrize("with_val", [True, False])
def test_plateau_is_stepped_with_val_loss_else_train_loss(with_val):
    model = tiny_cnn()
    # threshold=0.5: only a halved loss counts as progress, so the rate is halved after (almost) every epoch.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = SpyPlateau(optimizer, factor=0.5, patience=0, threshold=0.5)
    history = fit(
        model, toy_batches(), optimizer=optimizer, epochs=4, scheduler=scheduler, device="cpu", progress=False,
        val_loader=toy_batches(seed=1) if with_val else None,
    )  # fmt: skip
    assert scheduler.seen == (history.val_loss if with_val else history.train_loss)
    plateau = lambda opt: lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.5)  # noqa: E731
    expected = torch_epoch_lrs(plateau, 4, lr=0.01, metrics=scheduler.seen)
    assert history.lr == pytest.approx(expected, rel=1e-12)
    assert history.lr[-1] < history.lr[0]


def test_invalid_scheduler_step():
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="scheduler_step"):
        fit(model, toy_batches(), optimizer=optimizer, epochs=1, scheduler=lr_scheduler.StepLR(optimizer, 1),
            scheduler_step="step", device="cpu", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        fit(model, toy_batches(), optimizer=optimizer, epochs=1, scheduler=lr_scheduler.ReduceLROnPlateau(optimizer),
            scheduler_step="batch", device="cpu", progress=False)  # fmt: skip


# --- losses, clipping ------------------------------------------------------------------------------


AuxOutputs = namedtuple("AuxOutputs", ["logits", "aux"])


class TwoHeads(nn.Module):
    """A toy GoogLeNet: in training mode it returns (main, aux); in eval mode the main logits only."""

    def __init__(self, named: bool):
        super().__init__()
        torch.manual_seed(0)
        self.main, self.aux, self.named = nn.Linear(64, 10), nn.Linear(64, 10), named

    def forward(self, x):
        x = x.flatten(1)
        main = self.main(x)
        if not self.training:
            return main
        return AuxOutputs(main, self.aux(x)) if self.named else (main, self.aux(x))


@pytest.mark.parametrize("named", [False, True])
def test_aux_losses_weighted_by_0_3_and_accuracy_from_main(named):
    model, batches = TwoHeads(named), toy_batches()
    history = fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
                  device="cpu", progress=False)  # fmt: skip
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        main, aux = model.main(x.flatten(1)), model.aux(x.flatten(1))
    expected = F.cross_entropy(main, y) + 0.3 * F.cross_entropy(aux, y)
    assert history.train_loss[0] == pytest.approx(expected.item(), abs=1e-6)
    assert history.train_acc[0] == pytest.approx((main.argmax(1) == y).float().mean().item())
    assert (main.argmax(1) == y).float().mean() != (aux.argmax(1) == y).float().mean()  # the heads do differ

    history = fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1, aux_weight=1.0,
                  device="cpu", progress=False)  # fmt: skip
    expected = F.cross_entropy(main, y) + F.cross_entropy(aux, y)
    assert history.train_loss[0] == pytest.approx(expected.item(), abs=1e-6)


class AbsentHead(nn.Module):
    """A toy scripted torchvision GoogLeNet: in training mode (main, None, aux), a head left out as None."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.main, self.aux = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return (self.main(x), None, self.aux(x)) if self.training else self.main(x)


def test_fit_weights_the_heads_with_inception_loss_and_its_weight(monkeypatch):
    """GoogLeNet's rule lives once, in course_lib.models.inception: fit hands every batch's output to
    inception_loss with AUX_LOSS_WEIGHT, an absent head (None) left out."""
    assert train_api.AUX_LOSS_WEIGHT is inception.AUX_LOSS_WEIGHT
    seen = []

    def spy(output, target, aux_weight=inception.AUX_LOSS_WEIGHT, criterion=F.cross_entropy):
        seen.append((len(output), aux_weight))
        return inception.inception_loss(output, target, aux_weight, criterion)

    monkeypatch.setattr(engine, "inception_loss", spy)
    model, batches = AbsentHead(), toy_batches()
    history = fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
                  device="cpu", progress=False)  # fmt: skip
    # (main, None, aux) each step, as the model returned it, weighted 0.3: inception_loss leaves out the None.
    assert seen == [(3, inception.AUX_LOSS_WEIGHT)] * len(batches)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        main, aux = model.main(x.flatten(1)), model.aux(x.flatten(1))
    expected = F.cross_entropy(main, y) + inception.AUX_LOSS_WEIGHT * F.cross_entropy(aux, y)
    assert history.train_loss[0] == pytest.approx(expected.item(), abs=1e-6)


# --- the one training step ---------------------------------------------------------------------------


def test_fit_and_lr_range_test_take_the_same_train_step(monkeypatch):
    """Every batch of fit and every learning rate of lr_range_test is one call of train_step."""
    assert schedules.train_step is engine.train_step
    calls = []

    def spy(model, batch, optimizer, **settings):
        calls.append(settings)
        return train_step(model, batch, optimizer, **settings)

    monkeypatch.setattr(engine, "train_step", spy)
    monkeypatch.setattr(schedules, "train_step", spy)
    model = tiny_cnn()
    fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, clip_grad_norm=1.0,
        device="cpu", progress=False)  # fmt: skip
    assert len(calls) == 2 * 4 and all(c["clip_grad_norm"] == 1.0 and c["check_finite"] for c in calls)

    calls.clear()
    model, batches = TwoHeads(named=False), toy_batches()
    result = lr_range_test(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                           start_lr=1e-6, end_lr=1e-5, num_steps=6)  # fmt: skip
    assert len(calls) == len(result.lrs) == 6
    x, y = batches[0]
    with torch.no_grad():  # the first loss of the sweep has the auxiliary head's share, as in fit
        expected = F.cross_entropy(model.main(x.flatten(1)), y) + 0.3 * F.cross_entropy(model.aux(x.flatten(1)), y)
    assert result.raw_losses[0] == pytest.approx(expected.item(), rel=1e-6)


def test_train_step_is_the_plain_pytorch_step():
    """forward, loss, zero_grad, backward, step: the same numbers as the loop written out."""
    (x, y), = toy_batches(n=16, batch_size=16)
    model, reference = tiny_cnn(), tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        result = train_step(model, (x, y), optimizer, device="cpu")
        logits = reference(x)
        loss = F.cross_entropy(logits, y)
        reference_optimizer.zero_grad()
        loss.backward()
        reference_optimizer.step()
        assert torch.equal(result.loss, loss.detach()) and torch.equal(result.logits, logits.detach())
        assert torch.equal(result.target, y) and not result.loss.requires_grad
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))


def test_train_step_checks_the_loss_before_backward():
    batch = toy_batches(n=16, batch_size=16)[0]
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLoss) as info:
        train_step(model, batch, optimizer, device="cpu", loss_fn=NaNAt(1), check_finite=True)
    assert math.isnan(info.value.loss) and "not updated" in str(info.value)
    assert all(p.grad is None and torch.equal(p, b) for p, b in zip(model.parameters(), before))
    train_step(model, batch, optimizer, device="cpu", loss_fn=NaNAt(1))  # unchecked: the NaN reaches the weights
    assert not all(p.isfinite().all() for p in model.parameters())


def test_train_step_clips_the_unscaled_gradients_with_a_float16_scaler():
    """The scaler multiplies the loss by 2**16: clipping before unscale_ would make the step 65536 times too short."""
    batch = toy_batches(n=16, batch_size=16)[0]
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu")
    train_step(model, batch, torch.optim.SGD(model.parameters(), lr=1.0), device="cpu", amp_dtype=torch.float16,
               scaler=scaler, clip_grad_norm=0.01)  # fmt: skip
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert moved == pytest.approx(0.01, rel=1e-4)
    assert scaler.get_scale() == 2.0**16  # no overflow: the step was taken, the scale kept


def test_label_smoothing_of_the_default_loss():
    model, batches = tiny_cnn(), toy_batches()
    history = fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1, label_smoothing=0.1,
                  device="cpu", progress=False)  # fmt: skip
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, label_smoothing=0.1)
    assert history.train_loss[0] == pytest.approx(expected.item(), abs=1e-6)
    assert expected.item() != pytest.approx(F.cross_entropy(model(x), y).item(), abs=1e-3)


@pytest.mark.parametrize("clip", [None, 0.01])
def test_clip_grad_norm_bounds_the_step(clip):
    model = tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    batches = toy_batches(n=16, batch_size=16)  # one step
    fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), epochs=1, clip_grad_norm=clip,
        device="cpu", progress=False)  # fmt: skip
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    if clip is None:
        assert moved > 0.1  # unclipped, the gradient of this batch is far larger than 0.01
    else:
        assert moved == pytest.approx(clip, rel=1e-4)


# --- divergence ------------------------------------------------------------------------------------


def test_nan_loss_raises_with_epoch_step_and_causes():
    model = tiny_cnn()
    with pytest.raises(TrainingDiverged) as info:
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=3,
            loss_fn=NaNAt(4 + 3), device="cpu", progress=False)  # 4 steps per epoch: epoch 2, step 3  # fmt: skip
    error = info.value
    assert isinstance(error, RuntimeError)
    assert (error.epoch, error.step) == (2, 3) and math.isnan(error.loss)
    message = str(error)
    assert "epoch 2, step 3" in message
    for cause in ("learning rate", "normaliz", "log of zero"):
        assert cause in message
    # On the CPU the step is checked before backward: the weights are still finite.
    assert all(p.isfinite().all() for p in model.parameters())


def test_epoch_end_check_names_the_step(monkeypatch):
    """The CUDA path (no per-step check) finds the first bad step among the kept losses at the epoch end."""
    monkeypatch.setattr(engine, "_checks_each_step", lambda device, distributed: False)
    model = tiny_cnn()
    with pytest.raises(TrainingDiverged, match="epoch 2, step 3") as info:
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=3,
            loss_fn=NaNAt(4 + 3), device="cpu", progress=False)  # fmt: skip
    assert info.value.step == 3


def test_too_high_learning_rate_diverges():
    model = tiny_cnn()
    batches = [(x * 1e3, y) for x, y in toy_batches()]  # unnormalized inputs, and a huge rate
    with pytest.raises(TrainingDiverged, match="learning rate"):
        fit(model, batches, optimizer=torch.optim.SGD(model.parameters(), lr=1e6), epochs=20, device="cpu",
            progress=False)  # fmt: skip


# --- evaluate ------------------------------------------------------------------------------------


class Identity(nn.Module):
    """A 'model' whose logits are its input, to evaluate hand-made predictions."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # gives evaluate a device to read

    def forward(self, x):
        return x


def test_evaluate_top1_top5_confusion_on_a_hand_made_case():
    # 6 classes. Logits rank the classes; the true class is ranked 1st, 1st, 2nd, 3rd, 6th, 6th.
    logits = torch.tensor([
        [9.0, 1, 2, 3, 4, 5],   # true 0: top-1 right
        [1.0, 9, 2, 3, 4, 5],   # true 1: top-1 right
        [1.0, 2, 8, 9, 4, 5],   # true 2: predicted 3, in top 5
        [9.0, 8, 2, 7, 4, 5],   # true 3: predicted 0, 3rd: in top 5
        [1.0, 2, 3, 4, 0, 5],   # true 4: predicted 5, last: not in top 5
        [1.0, 2, 3, 4, 9, 0],   # true 5: predicted 4, last: not in top 5
    ])  # fmt: skip
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    batches = [(logits[:4], y[:4]), (logits[4:], y[4:])]
    result = evaluate(Identity(), batches)
    assert result.count == 6
    assert result.top1 == pytest.approx(2 / 6) and result.accuracy == result.top1
    assert result.top5 == pytest.approx(4 / 6)
    assert result.loss == pytest.approx(F.cross_entropy(logits, y).item(), abs=1e-6)
    expected = torch.zeros(6, 6, dtype=torch.int64)
    for true, predicted in [(0, 0), (1, 1), (2, 3), (3, 0), (4, 5), (5, 4)]:
        expected[true, predicted] += 1
    assert torch.equal(result.confusion, expected)
    assert result.per_class_accuracy.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_evaluate_restores_training_mode_and_counts_fewer_than_5_classes_as_top5():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Dropout(0.5))
    model.train()
    result = evaluate(model, [(torch.randn(10, 1, 8, 8), torch.randint(0, 3, (10,)))])
    assert model.training
    assert result.top5 == 1.0 and result.confusion.shape == (3, 3) and result.confusion.sum() == 10


# --- History.plot, progress bar, arguments ---------------------------------------------------------


@pytest.mark.parametrize("with_val", [True, False])
def test_history_plot_returns_labelled_figure(with_val):
    _, history = train_tiny(3, val_loader=toy_batches(seed=1) if with_val else None)
    fig = history.plot()
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["loss", "accuracy", "learning rate"]
    assert all(ax.get_xlabel().startswith("epoch") for ax in axes)
    assert len(axes[0].get_lines()) == (2 if with_val else 1)
    assert list(axes[0].get_lines()[0].get_ydata()) == history.train_loss


def test_progress_bar_shows_loss_and_accuracy(capsys):
    train_tiny(2, progress=True, val_loader=toy_batches(seed=1))
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss=" in err and "acc=" in err and "val_acc=" in err


def test_progress_false_prints_nothing(capsys):
    train_tiny(1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_rejects_an_optimizer_of_another_model_and_bad_epochs():
    model = tiny_cnn()
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, toy_batches(), optimizer=torch.optim.SGD(tiny_cnn().parameters(), lr=0.1), epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=0, progress=False)


def test_seed_makes_dropout_runs_repeatable():
    def run():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10))
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, seed=123,
            device="cpu", progress=False)  # fmt: skip
        return model[2].weight.detach().clone()

    first = run()
    torch.manual_seed(999)  # whatever the global state before, seed= resets it
    assert torch.equal(first, run())


def test_amp_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert engine._resolve_amp(None, cpu) is None and engine._resolve_amp(False, cuda) is None
    assert engine._resolve_amp(True, cpu) is torch.bfloat16
    assert engine._resolve_amp("fp16", cpu) is torch.float16
    with pytest.raises(ValueError, match="amp"):
        engine._resolve_amp("int8", cpu)


# --- CUDA ----------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_fit_on_cuda_with_amp_and_channels_last():
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = [(x.pin_memory(), y.pin_memory()) for x, y in toy_batches()]
    history = fit(model, batches, optimizer=optimizer, epochs=3, val_loader=toy_batches(seed=1), device="cuda",
                  progress=False, clip_grad_norm=1.0)  # fmt: skip
    conv = model[0].weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
    assert torch.backends.cudnn.benchmark
    assert len(history) == 3 and all(math.isfinite(v) for v in history.train_loss + history.val_loss)
    assert history.train_loss[-1] < history.train_loss[0]
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert engine._resolve_amp(None, conv.device) is expected
    result = evaluate(model, toy_batches(seed=1))
    assert result.confusion.device.type == "cpu" and result.count == 64
    # fp16 with a gradient scaler works too
    fit(model, batches, optimizer=optimizer, epochs=1, device="cuda", amp="fp16", progress=False)


def test_meter_sums_read_between_steps_equal_the_sums_over_all_steps():
    """The progress bar reads the meter every half second; each read folds in only the steps since the
    last one, and what it reports (and the final read) is the mean over every step so far."""
    from course_lib.train.engine import _Meter

    g = torch.Generator().manual_seed(0)
    meter = _Meter(detailed=True)
    losses, sizes, logits_all, targets_all = [], [], [], []
    for step in range(1, 26):
        n = 3 + step % 4
        logits, y = torch.randn(n, 7, generator=g), torch.randint(0, 7, (n,), generator=g)
        loss = torch.nn.functional.cross_entropy(logits, y)
        meter.update(loss, logits, y)
        losses.append(loss.item())
        sizes.append(n)
        logits_all.append(logits)
        targets_all.append(y)
        if step % 7 == 0 or step == 25:
            logits_cat, y_cat = torch.cat(logits_all), torch.cat(targets_all)
            expected_loss = sum(l * s for l, s in zip(losses, sizes)) / sum(sizes)
            expected_acc = (logits_cat.argmax(1) == y_cat).double().mean().item()
            running = meter.running()
            assert running == {"loss": f"{expected_loss:.4f}", "acc": f"{expected_acc:.3f}"}
    values = meter.read()
    top5 = (logits_cat.topk(5, dim=1).indices == y_cat.unsqueeze(1)).any(1).double().mean().item()
    assert values["count"] == sum(sizes)
    assert values["loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert values["acc"] == pytest.approx(expected_acc, rel=1e-12)
    assert values["top5"] == pytest.approx(top5, rel=1e-12)
