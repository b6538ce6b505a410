"""Callbacks of :func:`~course_lib.train.fit`: hooks that run at fixed points of training.

A callback subclasses :class:`Callback` and overrides the hooks it needs. Each
hook receives the :class:`TrainState` (model, optimizer, history, epoch, ...)
and may read it or change it, e.g. set ``state.stop_training``::

    class PrintLR(Callback):
        def on_epoch_end(self, state):
            print(state.epoch, state.history.lr[-1])

There are no per-batch hooks on purpose: a hook that looks at the loss every
step would force the GPU and the CPU to wait for each other every step (see
:mod:`course_lib.train.engine`); epoch-level hooks cost nothing measurable.

This module also holds the checkpoint file format: :func:`save_checkpoint` and
:func:`load_checkpoint`, used by :class:`Checkpoint` and ``fit(resume_from=...)``.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TrainState", "Callback", "EarlyStopping", "Checkpoint", "save_checkpoint", "load_checkpoint"]

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT = 1


@dataclass
class TrainState:
    """What a running :func:`~course_lib.train.fit` exposes to its callbacks.

    Attributes:
        model: the model being trained, without DDP / ``torch.compile`` wrappers.
        optimizer, scheduler, scaler: as ``fit`` uses them (``scheduler`` and the
            fp16 gradient ``scaler`` may be None).
        history: the :class:`~course_lib.train.History` filled so far.
        train_loader, val_loader: the loaders given to ``fit`` (``val_loader`` may be None).
        epochs: the epoch ``fit`` trains up to.
        epoch: epochs completed so far (1 in the first ``on_epoch_end``).
        callbacks: every callback of this ``fit``, in the order they run.
        device: where the model lives.
        stop_training: set it to True to end ``fit`` after the current epoch.
        is_main_process: False on the ranks > 0 of distributed training, which
            must not print nor write files.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: Any
    train_loader: Any
    epochs: int
    val_loader: Any = None
    scheduler: Any = None
    scaler: Any = None
    callbacks: list = field(default_factory=list)
    device: torch.device | None = None
    epoch: int = 0
    stop_training: bool = False
    is_main_process: bool = True

    @property
    def is_last_epoch(self) -> bool:
        """True once the epoch just completed is the last one ``fit`` will run."""
        return self.epoch >= self.epochs or self.stop_training


class Callback:
    """Base class of callbacks: every hook does nothing unless overridden.

    Hooks run in the order of ``order`` (lower first; ties keep the order given
    to ``fit``). A callback whose progress must survive a resume keeps it in
    :meth:`state_dict` / :meth:`load_state_dict`; :class:`Checkpoint` stores it.
    """

    #: Callbacks run sorted by this (stable): Checkpoint uses 100 to run after the others.
    order: int = 0

    def on_fit_start(self, state: TrainState) -> None:
        """Before the first epoch (after a resume has restored ``state``)."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Before each epoch's first batch; ``state.epoch`` still counts the completed epochs."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch's training, validation and scheduler step, once its metrics are in ``state.history``."""

    def on_fit_end(self, state: TrainState) -> None:
        """After the last epoch, or after an early stop. Not called when training raises."""

    def state_dict(self) -> dict:
        """What a checkpoint must remember of this callback (nothing, by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class EarlyStopping(Callback):
    """Stop training when a metric has not improved for ``patience`` epochs.

    Args:
        monitor: a per-epoch list of the History: ``"val_loss"``, ``"val_acc"``,
            ``"train_loss"`` or ``"train_acc"``.
        patience: epochs without improvement to tolerate before stopping.
        min_delta: an improvement smaller than this does not count.
        restore_best: at the end of ``fit``, load the weights of the best epoch
            back into the model (kept as a CPU copy, taken at each improvement).
        mode: ``"min"`` (losses), ``"max"`` (accuracies), or ``"auto"``: max when
            ``monitor`` names an accuracy.

    After ``fit``: ``best`` (the best value), ``best_epoch`` and ``stopped_epoch``
    (0 when training ran all its epochs). A NaN value never counts as an improvement.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
        mode: str = "auto",
    ):
        if monitor not in ("val_loss", "val_acc", "train_loss", "train_acc"):
            raise ValueError(f"monitor must be 'val_loss', 'val_acc', 'train_loss' or 'train_acc', got {monitor!r}")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if monitor.endswith("acc") else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.restore_best, self.mode = restore_best, mode
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.wait = 0
        self._best_weights: dict[str, torch.Tensor] | None = None

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_fit_start(self, state: TrainState) -> None:
        if self.monitor.startswith("val_") and state.val_loader is None:
            raise ValueError(
                f"EarlyStopping(monitor={self.monitor!r}) needs fit(..., val_loader=...); "
                f"without one, monitor 'train_loss' or 'train_acc'"
            )
        if state.epoch == 0:  # a fresh run forgets an earlier fit; a resumed one keeps what the checkpoint restored
            self._reset()

    def on_epoch_end(self, state: TrainState) -> None:
        value = getattr(state.history, self.monitor)[-1]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in state.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.stop_training = True
            self.stopped_epoch = state.epoch

    def on_fit_end(self, state: TrainState) -> None:
        if self.restore_best and self._best_weights is not None and self.best_epoch != state.epoch:
            state.model.load_state_dict(self._best_weights)

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "wait": self.wait,
            "best_weights": self._best_weights,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.stopped_epoch, self.wait = state["stopped_epoch"], state["wait"]
        self._best_weights = state["best_weights"]

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
            f"restore_best={self.restore_best}, mode={self.mode!r})"
        )


class Checkpoint(Callback):
    """Save everything needed to resume training to ``path``, every ``every`` epochs and after the last one.

    ``fit(..., resume_from=path)`` then continues from the saved epoch and, on
    the CPU with the same seed and data, ends with exactly the weights of a run
    that was never interrupted. The file (``torch.load(path)``) is a dict:
    ``model`` (a state_dict, also loadable on its own), ``optimizer``,
    ``scheduler``, ``scaler``, ``epoch``, ``history``, ``callbacks`` and ``rng``
    (Python, NumPy, torch CPU/CUDA and the train loader's shuffling generator).

    The file is replaced atomically (written aside, then renamed), so a run
    killed while saving leaves the previous checkpoint intact, and it is never
    replaced by a model whose weights are not all finite: after a divergence it
    still holds the last good epoch. Only the main process writes.
    """

    #: After the other callbacks: sees their stop requests and saves the state they leave.
    order = 100

    def __init__(self, path: str | os.PathLike, every: int = 1):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.path = Path(path)
        self.every = every
        #: The epoch of the last file written by this callback (None before the first).
        self.last_saved_epoch: int | None = None

    def on_epoch_end(self, state: TrainState) -> None:
        due = state.epoch % self.every == 0 or state.is_last_epoch
        if not (due and state.is_main_process):
            return
        if not _all_finite(state.model):
            warnings.warn(
                f"Checkpoint: the model has non-finite weights after epoch {state.epoch}; "
                f"keeping the last good checkpoint in {self.path}",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        save_checkpoint(self.path, state)
        self.last_saved_epoch = state.epoch

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, every={self.every})"


def _all_finite(model: nn.Module) -> bool:
    """True when every floating-point parameter and buffer is finite (one host sync)."""
    flags = [t.isfinite().all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


# --- the checkpoint file --------------------------------------------------------------------------


def _loader_generators(loader) -> list[torch.Generator]:
    """The ``torch.Generator`` objects that shuffle ``loader`` (DataLoader, its samplers), each once."""
    candidates = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)]
    candidates.append(getattr(candidates[-1], "sampler", None))
    found: list[torch.Generator] = []
    for obj in candidates:
        generator = getattr(obj, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _rng_state(train_loader) -> dict:
    """Every random state that decides what the next epoch does, in types ``torch.load(weights_only=True)`` reads.

    The loader's generators are found as attributes (``DataLoader.generator``,
    its sampler's); a loader's own ``state_dict()``, if it has one, is kept as well.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        # Only when CUDA is in use: asking for its state would otherwise start a CUDA context.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "loader_generators": [g.get_state() for g in _loader_generators(train_loader)],
        # A loader with a state of its own (course_lib's GPULoader, torchdata's StatefulDataLoader) saves it too.
        "loader_state": train_loader.state_dict() if callable(getattr(train_loader, "state_dict", None)) else None,
    }


def _set_rng_state(rng: dict, train_loader) -> None:
    random.setstate(rng["python"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if rng["loader_state"] is not None and callable(getattr(train_loader, "load_state_dict", None)):
        train_loader.load_state_dict(rng["loader_state"])
    generators, states = _loader_generators(train_loader), rng["loader_generators"]
    if len(generators) != len(states):
        warnings.warn(
            f"the checkpoint holds {len(states)} shuffling generator state(s) but train_loader has "
            f"{len(generators)}: the resumed run will not shuffle as the interrupted one would have",
            RuntimeWarning,
            stacklevel=3,
        )
    for generator, state in zip(generators, states):
        generator.set_state(state)


def _callback_keys(callbacks) -> list[str]:
    """A key per callback: its class name, numbered from the second of a kind (``EarlyStopping#2``)."""
    keys, seen = [], {}
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def save_checkpoint(path: str | os.PathLike, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (see :class:`Checkpoint` for the contents)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "history": state.history.state_dict(),
        "callbacks": {key: cb.state_dict() for key, cb in zip(_callback_keys(state.callbacks), state.callbacks)},
        "rng": _rng_state(state.train_loader),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half of one


def load_checkpoint(path: str | os.PathLike, state: TrainState) -> None:
    """Restore a :func:`save_checkpoint` file into ``state`` (model, optimizer, ..., RNG) and set ``state.epoch``.

    The model, optimizer and scheduler must be built as in the saved run; the
    scheduler and scaler must be present in both or in neither.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a course_lib checkpoint of format {CHECKPOINT_FORMAT}")
    for name in ("scheduler", "scaler"):
        saved, current = ckpt[name] is not None, getattr(state, name) is not None
        if saved != current:
            raise ValueError(
                f"the checkpoint {'has' if saved else 'has no'} {name} state but this fit "
                f"{'has none' if saved else 'has one'}: resume with the same setup as the saved run"
            )
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])  # moves the state to the parameters' device
    if state.scheduler is not None:
        state.scheduler.load_state_dict(ckpt["scheduler"])
    if state.scaler is not None:
        state.scaler.load_state_dict(ckpt["scaler"])
    state.history.load_state_dict(ckpt["history"])
    for key, cb in zip(_callback_keys(state.callbacks), state.callbacks):
        if key in ckpt["callbacks"]:
            cb.load_state_dict(ckpt["callbacks"][key])
    _set_rng_state(ckpt["rng"], state.train_loader)
    state.epoch = ckpt["epoch"]
