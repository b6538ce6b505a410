"""course_lib.train.callbacks: hooks, EarlyStopping, Checkpoint and exact resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, TensorDataset

from course_lib.train import Callback, Checkpoint, EarlyStopping, TrainingDiverged, fit
from course_lib.train import callbacks as callbacks_module
from course_lib.train import engine
from train_helpers import NaNAt


def tiny_cnn(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """A small CNN on (N, 1, 8, 8) inputs, 10 classes, with optional dropout (to exercise the RNG)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Dropout(dropout), nn.Linear(4 * 4 * 4, 10),
    )  # fmt: skip


def toy_data(n: int = 96, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


def toy_batches(n: int = 64, batch_size: int = 16, seed: int = 0):
    x, y = toy_data(n, seed).tensors
    return list(zip(x.split(batch_size), y.split(batch_size)))


def same_history(a, b) -> bool:
    """Equal in every list but ``time`` (wall-clock seconds differ between runs)."""
    drop = lambda h: {k: v for k, v in h.state_dict().items() if k != "time"}  # noqa: E731
    return drop(a) == drop(b)


class Recorder(Callback):
    """Remembers the hooks called and the weights after each epoch."""

    def __init__(self):
        self.calls, self.weights = [], {}

    def on_fit_start(self, state):
        self.calls.append(("fit_start", state.epoch))

    def on_epoch_start(self, state):
        self.calls.append(("epoch_start", state.epoch))

    def on_epoch_end(self, state):
        self.calls.append(("epoch_end", state.epoch))
        self.weights[state.epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}

    def on_fit_end(self, state):
        self.calls.append(("fit_end", state.epoch))


def test_hooks_run_in_order():
    model, recorder = tiny_cnn(), Recorder()
    fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, callbacks=[recorder],
        device="cpu", progress=False)  # fmt: skip
    assert recorder.calls == [
        ("fit_start", 0), ("epoch_start", 0), ("epoch_end", 1), ("epoch_start", 1), ("epoch_end", 2), ("fit_end", 2),
    ]  # fmt: skip


# --- resume ----------------------------------------------------------------------------------------


def make_run(seed: int = 0):
    """Model (with dropout), optimizer, scheduler and a shuffling DataLoader, built identically each call."""
    model = tiny_cnn(seed, dropout=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    loader = DataLoader(toy_data(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return model, optimizer, scheduler, loader


def run_fit(model, optimizer, scheduler, loader, epochs, callbacks=(), **kwargs):
    return fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=epochs, val_loader=toy_batches(seed=1),
               callbacks=callbacks, seed=0, device="cpu", progress=False, **kwargs)  # fmt: skip


def test_resume_equals_uninterrupted_run(tmp_path):
    path = tmp_path / "run.pt"
    model, optimizer, scheduler, loader = make_run()
    straight = run_fit(model, optimizer, scheduler, loader, 4, [EarlyStopping("val_loss", patience=10)])

    # "Killed" after 2 epochs: then a new process builds everything again and resumes.
    first = make_run()
    run_fit(*first, 2, [EarlyStopping("val_loss", patience=10), Checkpoint(path)])
    torch.manual_seed(1234)  # whatever happened in between
    resumed_model, resumed_optimizer, resumed_scheduler, resumed_loader = make_run(seed=5)  # other init, other shuffle
    resumed_loader.generator.manual_seed(99)
    early = EarlyStopping("val_loss", patience=10)
    resumed = run_fit(resumed_model, resumed_optimizer, resumed_scheduler, resumed_loader, 4, [early, Checkpoint(path)],
                      resume_from=path)  # fmt: skip

    for (name, p), q in zip(model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(p, q), name
    state, resumed_state = optimizer.state_dict(), resumed_optimizer.state_dict()
    assert state["param_groups"] == resumed_state["param_groups"]
    for index, values in state["state"].items():
        for key, value in values.items():
            assert torch.equal(value, resumed_state["state"][index][key]), (index, key)
    assert scheduler.state_dict() == resumed_scheduler.state_dict()
    assert same_history(straight, resumed) and resumed.epoch == [1, 2, 3, 4]
    assert early.best == min(straight.val_loss)  # the callback's state came back too
    assert torch.load(path, weights_only=True)["epoch"] == 4


def test_resume_without_the_loader_generator_state_differs(tmp_path, monkeypatch):
    """The check above can fail: not restoring the shuffling generator changes the final weights."""
    path = tmp_path / "run.pt"
    model, optimizer, scheduler, loader = make_run()
    run_fit(model, optimizer, scheduler, loader, 3)
    run_fit(*make_run(), 2, [Checkpoint(path)])
    monkeypatch.setattr(callbacks_module, "_loader_generators", lambda loader: [])
    resumed = make_run()
    with pytest.warns(RuntimeWarning, match="generator"):
        run_fit(*resumed, 3, resume_from=path)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), resumed[0].parameters()))


def test_resume_with_a_gpu_loader_on_the_cpu(tmp_path):
    """course_lib's GPULoader (written alongside) shuffles with its own generator: resume restores it too."""
    gpu_loader = pytest.importorskip("course_lib.train.gpu_loader")
    path = tmp_path / "run.pt"
    x, y = toy_data().tensors

    def make():
        model = tiny_cnn(dropout=0.3)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), None, gpu_loader.GPULoader(
            x, y, 16, device="cpu", seed=0
        )

    model, *rest = make()
    run_fit(model, *rest, 3)
    run_fit(*make(), 1, [Checkpoint(path)])
    resumed = make()
    run_fit(*resumed, 3, resume_from=path)
    for p, q in zip(model.parameters(), resumed[0].parameters()):
        assert torch.equal(p, q)


def test_resume_requires_the_same_setup(tmp_path):
    path = tmp_path / "run.pt"
    run_fit(*make_run(), 1, [Checkpoint(path)])
    model, optimizer, _, loader = make_run()
    with pytest.raises(ValueError, match="scheduler"):
        run_fit(model, optimizer, None, loader, 2, resume_from=path)
    with pytest.raises(FileNotFoundError):
        run_fit(*make_run(), 2, resume_from=tmp_path / "missing.pt")


def test_checkpoint_every_n_epochs_and_the_last(tmp_path, monkeypatch):
    saved = []
    real_save = callbacks_module.save_checkpoint

    def spy(path, state):
        saved.append(state.epoch)
        real_save(path, state)

    monkeypatch.setattr(callbacks_module, "save_checkpoint", spy)
    model = tiny_cnn()
    fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
        callbacks=[Checkpoint(tmp_path / "sub" / "ckpt.pt", every=2)], device="cpu", progress=False)  # fmt: skip
    assert saved == [2, 4, 5]
    ckpt = torch.load(tmp_path / "sub" / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 5 and len(ckpt["history"]["epoch"]) == 5
    for name, value in model.state_dict().items():
        assert torch.equal(ckpt["model"][name], value)
    assert not (tmp_path / "sub" / "ckpt.pt.tmp").exists()


# --- divergence keeps the last good checkpoint -----------------------------------------------------


@pytest.mark.parametrize("per_step_check", [True, False], ids=["cpu-per-step", "epoch-end"])
def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, per_step_check):
    monkeypatch.setattr(engine, "_checks_each_step", lambda device, distributed: per_step_check)
    path, recorder = tmp_path / "run.pt", Recorder()
    model = tiny_cnn()
    with pytest.raises(TrainingDiverged, match="epoch 3, step 2") as info:
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
            loss_fn=NaNAt(2 * 4 + 2), callbacks=[recorder, Checkpoint(path)], device="cpu", progress=False)  # fmt: skip
    assert str(path) in str(info.value)  # the message points at the file to go back to
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["epoch"] == 2
    for name, value in ckpt["model"].items():
        assert value.isfinite().all(), name
        assert torch.equal(value, recorder.weights[2][name])
    if not per_step_check:  # the NaN reached the weights in memory, not the file
        assert not all(p.isfinite().all() for p in model.parameters())


def test_checkpoint_never_saves_nonfinite_weights(tmp_path):
    path = tmp_path / "run.pt"
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, toy_batches(), optimizer=optimizer, epochs=1, callbacks=[Checkpoint(path)], device="cpu", progress=False)
    good = path.read_bytes()
    checkpoint = Checkpoint(path)
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    state = callbacks_module.TrainState(model=model, optimizer=optimizer, history=engine.History(),
                                        train_loader=toy_batches(), epochs=2, epoch=2)  # fmt: skip
    with pytest.warns(RuntimeWarning, match="non-finite"):
        checkpoint.on_epoch_end(state)
    assert path.read_bytes() == good and checkpoint.last_saved_epoch is None


# --- early stopping -------------------------------------------------------------------------------


class ScriptedValLoss(Callback):
    """Replaces each epoch's val_loss by the next value of a script (runs before EarlyStopping: order -1)."""

    order = -1

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, state):
        state.history.val_loss[-1] = self.values[state.epoch - 1]


def fit_scripted(values, early: EarlyStopping, epochs: int = 10):
    model, recorder = tiny_cnn(), Recorder()
    history = fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=epochs,
                  val_loader=toy_batches(seed=1), callbacks=[recorder, early, ScriptedValLoss(values)],
                  device="cpu", progress=False)  # fmt: skip
    return model, history, recorder


def test_early_stopping_stops_and_restores_the_best_weights():
    early = EarlyStopping("val_loss", patience=2)
    model, history, recorder = fit_scripted([1.0, 0.5, 0.6, 0.55, 0.4, 0.3], early)
    assert len(history) == 4 and early.stopped_epoch == 4
    assert (early.best, early.best_epoch) == (0.5, 2)
    for name, value in model.state_dict().items():
        assert torch.equal(value, recorder.weights[2][name]), name
    assert not torch.equal(recorder.weights[2]["5.weight"], recorder.weights[4]["5.weight"])


def test_early_stopping_min_delta_mode_and_no_restore():
    early = EarlyStopping("val_loss", patience=2, min_delta=0.1, restore_best=False)
    model, history, recorder = fit_scripted([1.0, 0.95, 0.92, 0.5], early)
    assert len(history) == 3 and early.best_epoch == 1  # 0.95 and 0.92 improve by less than 0.1
    assert torch.equal(model.state_dict()["5.weight"], recorder.weights[3]["5.weight"])  # not restored
    assert EarlyStopping("val_acc").mode == "max" and EarlyStopping("train_loss").mode == "min"


def test_early_stopping_runs_to_the_end_while_improving():
    early = EarlyStopping("val_loss", patience=1)
    _, history, _ = fit_scripted([5, 4, 3, 2], early, epochs=4)
    assert len(history) == 4 and early.stopped_epoch == 0 and early.best_epoch == 4


def test_early_stopping_arguments():
    model = tiny_cnn()
    with pytest.raises(ValueError, match="val_loader"):
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
            callbacks=[EarlyStopping("val_loss")], device="cpu", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="monitor"):
        EarlyStopping("val_accuracy")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
    with pytest.raises(TypeError, match="Callback"):
        fit(model, toy_batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
            callbacks=[print], device="cpu", progress=False)  # fmt: skip
