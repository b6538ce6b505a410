"""The training loop of the course: :func:`fit`, :func:`evaluate`, and the :class:`History` they fill.

One ``fit`` trains every model of the course, from LeNet-5 on a laptop CPU to
GoogLeNet on a GPU or several::

    history = fit(model, train_loader, optimizer=torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05),
                  epochs=10, val_loader=test_loader, callbacks=[EarlyStopping(patience=3), Checkpoint("run.pt")])
    history.plot()
    evaluate(model, test_loader).confusion

One training step
-----------------
Every batch goes through :func:`train_step`, one function to read top to bottom
(move the batch to the device, forward under autocast, the loss with the
auxiliary heads' share, ``zero_grad``, ``backward``, clip, the optimizer's step);
``fit`` adds the bookkeeping around it (epochs, metrics, schedulers, callbacks,
validation), and :func:`~course_lib.train.lr_range_test` calls the same step for
each learning rate it tries. Your own loop can call it too::

    for x, y in train_loader:
        result = train_step(model, (x, y), optimizer, device="cpu")

How it stays fast
-----------------
On CUDA, kernels run asynchronously: Python queues work and moves on, and the
GPU stays busy as long as the queue is full. Anything that reads a value back
to the host (``loss.item()``, ``float(loss)``, ``if loss.isnan():``) empties the
queue and makes the GPU idle while Python prepares the next batch. So inside a
training step ``fit`` never reads anything back: each step's loss and count of
correct predictions stay on the device (a list of 0-d tensors, which costs no
kernel at all), and are summed and read once per epoch. The progress bar reads
them at most twice a second. On CUDA ``fit`` also uses bfloat16 autocast where
the GPU supports it (float16 with a gradient scaler otherwise),
``channels_last`` memory layout, ``cudnn.benchmark`` and non-blocking copies
(which overlap the computation only from pinned memory: give your
``DataLoader`` ``pin_memory=True``). On the CPU it does none of that: there is
no queue to keep full, and CPU autocast is slower for these models.

Divergence check, and its trade-off
-----------------------------------
A NaN or infinite loss raises :class:`TrainingDiverged`. On the CPU each step's
loss is checked before ``backward`` (reading a CPU scalar costs about a
microsecond), so the error names the exact step and the weights in memory are
the last finite ones. On CUDA that check would be a sync per step, so only the
epoch's summed loss is checked, at the epoch end: the error still names the
first bad step (found among the kept per-step losses), but the weights may
already be NaN. Either way the error is raised before the epoch's callbacks run,
so a :class:`~course_lib.train.callbacks.Checkpoint` keeps the last good epoch's
file. In distributed training the per-step check is off on the CPU too: one
process stopping alone would leave the others waiting for its gradients.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR, ReduceLROnPlateau

from .._checks import check_int
from ..config import get_device, seed_everything
from ..models.inception import AUX_LOSS_WEIGHT, inception_loss
from ..modes import Modes, evaluating, modes_of, set_modes
from . import distributed as ddp
from .callbacks import Callback, Checkpoint, TrainState, load_checkpoint

__all__ = ["fit", "evaluate", "train_step", "StepResult", "NonFiniteLoss", "History", "Evaluation", "TrainingDiverged"]

#: Schedulers whose ``step()`` belongs after every batch rather than every epoch.
BATCH_SCHEDULERS = (OneCycleLR, CyclicLR)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite.

    Attributes:
        epoch: the epoch (1-based) in which it happened.
        step: the step (1-based, within the epoch) of the first non-finite loss,
            or None when this process did not see it (another rank did).
        loss: the non-finite value (a single step's loss, or the epoch's mean).
    """

    def __init__(self, epoch: int, step: int | None, loss: float, checkpoint: str | None = None):
        self.epoch, self.step, self.loss = epoch, step, loss
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch} (on another process)"
        kept = f" The last good checkpoint is kept in {checkpoint}." if checkpoint else ""
        super().__init__(
            f"training diverged: the loss became {loss} at {where}.{kept} Usual causes: "
            "a learning rate too high (try 10x smaller, or a warm-up); inputs not normalized "
            "(scale pixels to [0, 1] or standardize them); a log of zero or a division by zero in a "
            "hand-written loss (use F.cross_entropy on logits rather than log(softmax(...)))."
        )


# --- History --------------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run.

    Attributes:
        epoch: epoch numbers, from 1 (a resumed run continues the numbering).
        train_loss: mean training loss of each epoch, as optimized (with the
            auxiliary classifiers' share for GoogLeNet-like models).
        train_acc: top-1 accuracy on the training batches, in [0, 1] (the
            model in training mode: with dropout, while its weights change).
        val_loss, val_acc: the same on ``val_loader`` after each epoch (empty without one).
        lr: learning rate of the first parameter group at the start of each epoch.
        time: seconds each epoch took, training and validation.
        batch_lr: learning rate of every optimizer step (shows per-batch schedules such as OneCycleLR).
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    batch_lr: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epoch)

    def state_dict(self) -> dict[str, list]:
        """The lists, as a plain dict (what a checkpoint stores)."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    def load_state_dict(self, state: dict[str, list]) -> None:
        """Replace the lists by those of a :meth:`state_dict`."""
        for f in fields(self):
            setattr(self, f.name, list(state.get(f.name, [])))

    def to_dataframe(self):
        """The per-epoch lists as a ``pandas.DataFrame`` indexed by epoch (val columns only with validation)."""
        import pandas as pd

        names = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"]
        columns = {name: getattr(self, name) for name in names if len(getattr(self, name)) == len(self)}
        return pd.DataFrame(columns, index=pd.Index(self.epoch, name="epoch"))

    def plot(self, *, figsize: tuple[float, float] = (13.0, 3.6)):
        """Loss, accuracy and learning rate against the epoch, in three panels. Returns the Figure."""
        import matplotlib.pyplot as plt

        fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=figsize)
        for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            ax.plot(self.epoch, getattr(self, f"train_{metric}"), "o-", label="train")
            if self.val_loss:
                ax.plot(self.epoch, getattr(self, f"val_{metric}"), "s-", label="validation")
            ax.set(xlabel="epoch", ylabel=label, title=label)
            ax.legend()
        if len(self.batch_lr) > len(self):  # per-step values: spread each epoch's steps over [epoch - 1, epoch)
            first, per_step = self.epoch[0] - 1, len(self) / len(self.batch_lr)
            ax_lr.plot([first + i * per_step for i in range(len(self.batch_lr))], self.batch_lr)
            ax_lr.set_xlabel("epoch (per step)")
        else:
            ax_lr.plot(self.epoch, self.lr, "o-")
            ax_lr.set_xlabel("epoch")
        ax_lr.set(ylabel="learning rate", title="learning rate")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        if not self.epoch:
            return "History(0 epochs)"
        names = ("train_loss", "train_acc", "val_loss", "val_acc")
        shown = ", ".join(f"{name}={getattr(self, name)[-1]:.4g}" for name in names if getattr(self, name))
        return f"History({len(self)} epochs, last: {shown})"


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        loss: mean loss per sample.
        top1: fraction of samples whose highest logit is the true class.
        top5: fraction whose true class is among the 5 highest logits (all of them with fewer than 5 classes).
        confusion: (C, C) int64 counts on the CPU; row = true class, column = predicted class.
        count: number of samples.
    """

    loss: float
    top1: float
    top5: float
    confusion: torch.Tensor
    count: int

    @property
    def accuracy(self) -> float:
        """Same as ``top1``."""
        return self.top1

    @property
    def per_class_accuracy(self) -> torch.Tensor:
        """(C,) recall of each class: the diagonal of ``confusion`` over its row sums (NaN for absent classes)."""
        return self.confusion.diag().double() / self.confusion.sum(1).double()


# --- one training step ----------------------------------------------------------------------------


class StepResult(NamedTuple):
    """What :func:`train_step` hands back: tensors on the device, detached from the graph.

    Attributes:
        loss: 0-d, the loss that was optimized (with the auxiliary heads' share).
        logits: the main head's (N, C) logits (or (N, C, H, W) for dense targets), from before the update.
        target: the batch's targets, on the device.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor


class NonFiniteLoss(FloatingPointError):
    """:func:`train_step` with ``check_finite=True`` met a NaN or infinite loss, before ``backward``.

    Attributes:
        loss: the non-finite value.
    """

    def __init__(self, loss: float):
        self.loss = loss
        super().__init__(f"the loss is {loss}: no gradient was computed and the weights were not updated")


def _to_device(batch, device: torch.device | str, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` on ``device``; 4-d images in NHWC memory layout with ``channels_last``."""
    x, y = batch
    memory_format = torch.channels_last if channels_last and x.dim() == 4 else torch.preserve_format
    # non_blocking: from pinned memory the copy overlaps the previous step's kernels; a no-op on the CPU.
    return x.to(device, non_blocking=True, memory_format=memory_format), y.to(device, non_blocking=True)


def _autocast(device: torch.device | str, amp_dtype: torch.dtype | None):
    """Autocast to ``amp_dtype`` on ``device``'s type; None: leave the precision as it is."""
    if amp_dtype is None:
        return contextlib.nullcontext()  # not autocast(enabled=False), which would switch off an outer autocast
    return torch.autocast(torch.device(device).type, dtype=amp_dtype)


def _main_logits(output) -> torch.Tensor:
    """The main logits of what a model returned: the output itself, or the first of GoogLeNet-like
    ``(logits, aux1, aux2)`` (a tuple or namedtuple, returned in training mode)."""
    return output if isinstance(output, torch.Tensor) else output[0]


#: Stands in for a gradient scaler outside float16 autocast: a disabled GradScaler passes
#: the loss, the gradients and ``step`` straight through (nanoGPT's idiom).
_NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)


def train_step(
    model: nn.Module,
    batch,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str,
    loss_fn: Callable = F.cross_entropy,
    aux_weight: float = AUX_LOSS_WEIGHT,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    clip_grad_norm: float | None = None,
    check_finite: bool = False,
) -> StepResult:
    """One optimizer step on one batch: what :func:`fit` does for every batch of every epoch.

    In order: move ``batch = (x, y)`` to ``device``; run ``model(x)``, under autocast when
    ``amp_dtype`` is set; the loss, ``loss_fn(logits, y)`` plus ``aux_weight`` times each
    auxiliary head's (:func:`~course_lib.models.inception.inception_loss`); clear the
    previous gradients; ``backward``; clip the gradients' norm; the optimizer's step.
    The model's mode is left as it is (call ``model.train()`` first).

    Nothing is read back to the host (on CUDA the GPU keeps working ahead of Python),
    unless ``check_finite``: then a NaN or infinite loss raises :class:`NonFiniteLoss`
    before ``backward``, so the weights stay the last finite ones.

    Args:
        model: returns logits, or ``(logits, aux1, ...)`` in training mode.
        batch: ``(x, y)``: inputs (N, ...) and targets (class indices, or whatever ``loss_fn`` takes).
        optimizer: built on the model's parameters.
        device: where the batch goes (the model must be there already).
        loss_fn: mean-reduced ``loss_fn(logits, y)``.
        aux_weight: weight of each auxiliary head's loss (GoogLeNet's 0.3).
        amp_dtype: autocast dtype (``torch.bfloat16`` / ``torch.float16``), None for full precision.
        scaler: a ``torch.amp.GradScaler`` with float16 autocast, else None.
        channels_last: convert 4-d inputs to NHWC (a model in ``channels_last`` is faster on CUDA with them).
        clip_grad_norm: clip the total L2 norm of the optimizer's gradients to this before the step.
        check_finite: test the loss before ``backward`` (one host sync per step).

    Returns:
        :class:`StepResult` ``(loss, logits, target)``, detached, still on the device.
    """
    x, y = _to_device(batch, device, channels_last)
    with _autocast(device, amp_dtype):
        output = model(x)
        loss = inception_loss(output, y, aux_weight, criterion=loss_fn)
        logits = _main_logits(output)
    if check_finite and not math.isfinite(loss.item()):  # costs a microsecond on the CPU, a GPU stall on CUDA
        raise NonFiniteLoss(loss.item())
    scaler = _NO_SCALING if scaler is None else scaler
    optimizer.zero_grad(set_to_none=True)
    # float16: the loss is scaled up so that small gradients do not flush to zero.
    scaler.scale(loss).backward()
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, clip_grad_norm)  # no sync: the norm stays a device tensor
    # float16: the step is skipped when a gradient overflowed (the scaler reads that flag back:
    # one reason bfloat16 is preferred where the GPU has it), and the scale adapts.
    scaler.step(optimizer)
    scaler.update()
    return StepResult(loss.detach(), logits.detach(), y)


# --- one pass over a loader -----------------------------------------------------------------------


def _as_classes(y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Class indices of the targets: ``y`` itself, or its argmax for soft targets (mixup, cutmix)."""
    return y.argmax(1) if y.is_floating_point() and y.shape == logits.shape else y


class _Meter:
    """Sums of loss and correct predictions over one pass, kept on the device until :meth:`read`.

    Each step only appends tensors to lists: no host sync, and no kernel for the
    loss at all. The sums are folded when they are read: only the steps since the
    last read are stacked, so the progress bar's refresh costs the same at step
    10 as at step 10,000. ``detailed`` adds top-5 counts and a confusion matrix
    (for :func:`evaluate`).
    """

    def __init__(self, detailed: bool = False):
        self.detailed = detailed
        self.losses: list[torch.Tensor] = []  # batch-mean loss of each step, 0-d
        self.sizes: list[int] = []  # samples of each step
        self.correct: list[torch.Tensor] = []  # correct top-1 predictions of each step, 0-d
        self.folded = 0  # steps already in the sums below
        self.sums: torch.Tensor | None = None  # (loss x samples, samples, correct[, top5]) of the folded steps, float64
        self.targets = 0  # predictions counted (samples, or pixels for dense targets)
        self.top5: list[torch.Tensor] = []
        self.num_classes = 0
        self.confusion: torch.Tensor | None = None  # flat (C * C,) counts, on the device

    def update(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        classes = _as_classes(y, logits)
        predicted = logits.argmax(1)
        self.losses.append(loss.detach())
        self.sizes.append(logits.shape[0])
        self.correct.append((predicted == classes).sum())
        self.targets += classes.numel()
        if self.detailed:
            self.num_classes = num_classes = logits.shape[1]
            top = logits.topk(min(5, num_classes), dim=1).indices
            self.top5.append((top == classes.unsqueeze(1)).any(1).sum())
            if self.confusion is None:
                self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=logits.device)
            # index_add_, not bincount: bincount on CUDA reads the largest index back to the host.
            flat = (classes * num_classes + predicted).flatten()
            self.confusion.index_add_(0, flat, torch.ones_like(flat))

    def first_nonfinite_step(self) -> int | None:
        """1-based step of the first non-finite loss of this pass, or None."""
        bad = (~torch.stack(self.losses).isfinite()).nonzero()
        return int(bad[0]) + 1 if len(bad) else None

    def read(self, reduce: bool = False) -> dict[str, float]:
        """``loss`` (mean per sample), ``acc`` (and ``top5``, ``count``), summed over processes if ``reduce``.

        The one place where values come back to the host: a single sync.
        """
        if not self.losses:
            raise ValueError("the loader yielded no batches")
        device = self.losses[0].device
        folded = self._fold()  # (loss x samples, samples, correct[, top5])
        targets = torch.tensor([float(self.targets)], dtype=torch.float64, device=device)
        sums = torch.cat([folded[:3], targets, folded[3:]])
        if reduce:
            ddp.all_reduce_sum(sums)
            if self.confusion is not None:
                ddp.all_reduce_sum(self.confusion)
        loss_sum, samples, correct, targets, *top5 = sums.tolist()
        values = {"loss": loss_sum / samples, "acc": correct / targets, "count": int(samples)}
        if top5:
            values["top5"] = top5[0] / targets
        return values

    def _fold(self) -> torch.Tensor:
        """The sums over every step so far; only the steps since the last call are stacked (no sync)."""
        start, self.folded = self.folded, len(self.losses)
        if start < self.folded:
            device = self.losses[0].device
            sizes = torch.tensor(self.sizes[start:], dtype=torch.float64, device=device)
            parts = [
                torch.dot(torch.stack(self.losses[start:]).double(), sizes),
                sizes.sum(),
                torch.stack(self.correct[start:]).sum().double(),
            ]
            if self.detailed:
                parts.append(torch.stack(self.top5[start:]).sum().double())
            new = torch.stack(parts)
            self.sums = new if self.sums is None else self.sums + new
        return self.sums

    def running(self) -> dict[str, str]:
        """This process's loss and accuracy so far, formatted for a progress bar (one sync)."""
        values = self.read()
        return {"loss": f"{values['loss']:.4f}", "acc": f"{values['acc']:.3f}"}


@dataclass
class _Setup:
    """How batches reach the model and its loss (as :func:`train_step` takes them), shared by fit and evaluate."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    loss_fn: Callable
    aux_weight: float = AUX_LOSS_WEIGHT


def _evaluate_pass(setup: _Setup, model: nn.Module, loader: Iterable, *, detailed: bool) -> _Meter:
    """Run ``model`` in eval mode over ``loader`` without gradients, every module's own mode back
    afterwards (a frozen BatchNorm stays frozen); the meter holds the results.

    Each batch goes through the first half of :func:`train_step`: to the device, forward, loss.
    """
    meter = _Meter(detailed)
    with evaluating(model):
        for batch in loader:
            x, y = _to_device(batch, setup.device, setup.channels_last)
            with _autocast(setup.device, setup.amp_dtype):
                output = model(x)
                loss = inception_loss(output, y, setup.aux_weight, criterion=setup.loss_fn)
            meter.update(loss, _main_logits(output), y)
    return meter


def _resolve_amp(amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (None / True / False / "bf16" / "fp16" / a dtype) on ``device``."""
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if amp is False:
        return None
    if amp is None or amp is True:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp else None  # auto: off on the CPU, where it slows these models down
    if isinstance(amp, str) and amp.lower() in names:
        return names[amp.lower()]
    if amp in (torch.bfloat16, torch.float16):
        return amp
    raise ValueError(f"amp must be None, True, False, 'bf16', 'fp16' or a half dtype, got {amp!r}")


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else get_device()


def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: Callable | None = None,
    device: torch.device | str | None = None,
    amp=False,
    channels_last: bool | None = None,
) -> Evaluation:
    """Loss, top-1 and top-5 accuracy, and confusion matrix of ``model`` on ``loader``.

    Args:
        model: a classifier returning (N, C) logits (dense (N, C, H, W) logits
            with (N, H, W) targets work too, counting pixels). Run in eval mode,
            without gradients; its training/eval mode is restored afterwards.
        loader: any iterable of ``(x, y)`` batches, ``y`` class indices (or soft
            targets of the logits' shape, compared by their argmax).
        loss_fn: a mean-reduced loss; default ``nn.CrossEntropyLoss()``.
        device: where to run (the model is moved there); default: where its parameters are.
        amp: autocast as in :func:`fit`; off by default so that numbers are exact.
        channels_last: convert 4-d inputs to channels_last; default: on CUDA.

    In distributed training the sums are taken over all processes when
    ``loader`` has a ``DistributedSampler`` (each process holds a share of the data).
    """
    if device is not None:
        device = torch.device(device)
        model.to(device)
    else:
        device = _model_device(model)
    setup = _Setup(
        device=device,
        amp_dtype=_resolve_amp(amp, device),
        channels_last=device.type == "cuda" if channels_last is None else channels_last,
        loss_fn=loss_fn or nn.CrossEntropyLoss(),
    )
    meter = _evaluate_pass(setup, model, loader, detailed=True)
    values = meter.read(reduce=ddp.is_distributed() and ddp.is_sharded(loader))
    return Evaluation(
        loss=values["loss"],
        top1=values["acc"],
        top5=values["top5"],
        confusion=meter.confusion.view(meter.num_classes, meter.num_classes).cpu(),
        count=values["count"],
    )


# --- fit ------------------------------------------------------------------------------------------


class _ProgressBar:
    """A tqdm bar for one epoch whose loss/accuracy refresh at most every ``interval`` seconds.

    Reading the running loss syncs CUDA (see the module docstring); twice a
    second instead of every step keeps those syncs negligible.
    """

    interval = 0.5

    def __init__(self, total: int | None, desc: str):
        from tqdm.auto import tqdm  # imported here: its notebook detection may warn, and a bar is optional

        self.bar = tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True)
        self.next_refresh = time.monotonic() + self.interval

    def update(self, meter: _Meter) -> None:
        self.bar.update()
        now = time.monotonic()
        if now >= self.next_refresh:
            self.bar.set_postfix(meter.running(), refresh=False)
            self.next_refresh = now + self.interval

    def close(self, metrics: dict[str, float] | None = None) -> None:
        if metrics:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)
        self.bar.close()


class _NoProgressBar:
    """Stands in for :class:`_ProgressBar` with ``progress=False`` and on ranks > 0: costs a method call."""

    def update(self, meter: _Meter) -> None:
        pass

    def close(self, metrics: dict[str, float] | None = None) -> None:
        pass


def _checks_each_step(device: torch.device, distributed: bool) -> bool:
    """Whether to test each step's loss for NaN before ``backward`` (CPU, single process: it is free there)."""
    return device.type == "cpu" and not distributed


def _scheduler_step(scheduler, requested: str | None) -> str | None:
    """``"epoch"`` or ``"batch"``: when ``scheduler.step()`` runs (None without a scheduler)."""
    if scheduler is None:
        return None
    step = requested or ("batch" if isinstance(scheduler, BATCH_SCHEDULERS) else "epoch")
    if step not in ("epoch", "batch"):
        raise ValueError(f"scheduler_step must be 'epoch', 'batch' or None (auto), got {requested!r}")
    if step == "batch" and isinstance(scheduler, ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau watches a per-epoch loss: use scheduler_step='epoch'")
    return step


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


@dataclass
class _Trainer:
    """Everything ``fit`` resolved once, and the epoch it runs again and again."""

    setup: _Setup
    state: TrainState
    step_model: nn.Module  # what the step calls: the model, possibly inside DDP
    train_modes: Modes  # each module's flag while training (a BatchNorm frozen with bn.eval() stays frozen)
    scheduler_step: str | None
    clip_grad_norm: float | None
    check_each_step: bool
    distributed: bool
    progress: bool

    def progress_bar(self, epoch: int):
        loader = self.state.train_loader
        if not (self.progress and self.state.is_main_process):
            return _NoProgressBar()
        total = len(loader) if hasattr(loader, "__len__") else None
        return _ProgressBar(total, f"epoch {epoch}/{self.state.epochs}")

    def train_epoch(self, epoch: int, bar) -> _Meter:
        """One pass over the training loader, one :func:`train_step` per batch; returns its meter (not read yet)."""
        state, setup, optimizer = self.state, self.setup, self.state.optimizer
        batch_scheduler = state.scheduler if self.scheduler_step == "batch" else None
        set_modes(self.train_modes)  # not model.train(): that would wake a frozen BatchNorm up
        meter = _Meter()
        for step, batch in enumerate(state.train_loader, start=1):
            state.history.batch_lr.append(_lr(optimizer))  # the rate this step uses
            try:
                result = train_step(
                    self.step_model, batch, optimizer, device=setup.device, loss_fn=setup.loss_fn,
                    aux_weight=setup.aux_weight, amp_dtype=setup.amp_dtype, scaler=state.scaler,
                    channels_last=setup.channels_last, clip_grad_norm=self.clip_grad_norm,
                    check_finite=self.check_each_step,
                )
            except NonFiniteLoss as error:
                raise TrainingDiverged(epoch, step, error.loss, self._last_checkpoint()) from None
            if batch_scheduler is not None:
                batch_scheduler.step()
            meter.update(result.loss, result.logits, result.target)
            bar.update(meter)
        return meter

    def step_epoch_scheduler(self, train_loss: float, val_loss: float | None) -> None:
        scheduler = self.state.scheduler
        if self.scheduler_step != "epoch":
            return
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(val_loss if val_loss is not None else train_loss)
        else:
            scheduler.step()

    def _last_checkpoint(self) -> str | None:
        saved = [cb for cb in self.state.callbacks if isinstance(cb, Checkpoint) and cb.path.is_file()]
        return str(saved[-1].path) if saved else None

    def run_epoch(self, epoch: int) -> None:
        """Train one epoch, check for divergence, validate, step the scheduler, and record it all in the History."""
        sampler = getattr(self.state.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler: a new shuffle each epoch
        bar = self.progress_bar(epoch)
        try:
            metrics = self._run_epoch(epoch, bar)
        except BaseException:
            bar.close()
            raise
        bar.close(metrics)

    def _run_epoch(self, epoch: int, bar) -> dict[str, float]:
        state = self.state
        lr, start = _lr(state.optimizer), time.perf_counter()
        meter = self.train_epoch(epoch, bar)
        train = meter.read(reduce=self.distributed)
        if not math.isfinite(train["loss"]):
            raise TrainingDiverged(epoch, meter.first_nonfinite_step(), train["loss"], self._last_checkpoint())
        metrics = {"loss": train["loss"], "acc": train["acc"]}
        if state.val_loader is not None:
            # The plain model, not DDP's wrapper: no gradients to average, and ranks may hold different batch counts.
            val = _evaluate_pass(self.setup, state.model, state.val_loader, detailed=False)
            val = val.read(reduce=self.distributed and ddp.is_sharded(state.val_loader))
            metrics.update(val_loss=val["loss"], val_acc=val["acc"])
        self.step_epoch_scheduler(metrics["loss"], metrics.get("val_loss"))
        self._record(epoch, metrics, lr, time.perf_counter() - start)
        return metrics

    def _record(self, epoch: int, metrics: dict[str, float], lr: float, seconds: float) -> None:
        history = self.state.history
        history.epoch.append(epoch)
        history.train_loss.append(metrics["loss"])
        history.train_acc.append(metrics["acc"])
        if "val_loss" in metrics:
            history.val_loss.append(metrics["val_loss"])
            history.val_acc.append(metrics["val_acc"])
        history.lr.append(lr)
        history.time.append(seconds)


def _sorted_callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
    return sorted(callbacks, key=lambda cb: cb.order)


def _check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Catch the classic mistake of an optimizer built for another model (which would train nothing)."""
    model_params = {id(p) for p in model.parameters()}
    if not any(id(p) in model_params for group in optimizer.param_groups for p in group["params"]):
        raise ValueError("the optimizer holds none of the model's parameters: build it from model.parameters()")


def fit(
    model: nn.Module,
    train_loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    loss_fn: Callable | None = None,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    scheduler=None,
    scheduler_step: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    amp=None,
    channels_last: bool | None = None,
    clip_grad_norm: float | None = None,
    label_smoothing: float = 0.0,
    aux_weight: float = AUX_LOSS_WEIGHT,
    seed: int | None = None,
    resume_from: str | None = None,
    compile: bool = False,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its :class:`History`.

    Every batch goes through :func:`train_step`; ``fit`` resolves the settings once,
    then keeps the epochs, metrics, schedulers, callbacks and validation around it.

    Args:
        model: a classifier returning logits; in training mode it may return a
            tuple/namedtuple ``(logits, aux1, aux2, ...)`` (GoogLeNet): the loss is then
            ``loss(logits) + aux_weight * sum(loss(aux))`` (:func:`~course_lib.models.inception.inception_loss`)
            and accuracy uses ``logits`` only.
            It is moved to ``device`` (parameters keep their identity, so the
            optimizer built before stays valid). It trains with the modes it is handed
            over with: a module frozen with ``.eval()`` (a BatchNorm in transfer
            learning) stays in eval mode; a model in eval mode as a whole trains as a whole.
        train_loader: any iterable of ``(x, y)`` tensor batches: a ``DataLoader``,
            a list of tuples, ... Re-iterated every epoch.
        optimizer: built on ``model.parameters()``. Weight decay belongs here:
            ``AdamW(params, lr, weight_decay=0.05)`` or ``SGD(..., weight_decay=5e-4)``.
        epochs: the epoch to train up to (with ``resume_from``: in total, counting the saved ones).
        loss_fn: a mean-reduced ``loss_fn(logits, y)``; default
            ``nn.CrossEntropyLoss(label_smoothing=label_smoothing)``.
        val_loader: evaluated after every epoch (model in eval mode, no gradients).
        device: default :func:`course_lib.get_device` (``COURSE_DEVICE``, else CUDA if present).
        scheduler: a learning-rate scheduler of ``optimizer``.
        scheduler_step: ``"epoch"`` or ``"batch"``; default: ``"batch"`` for OneCycleLR and
            CyclicLR, ``"epoch"`` otherwise. ReduceLROnPlateau is stepped with the
            validation loss, or with the training loss when there is no ``val_loader``.
        callbacks: :class:`~course_lib.train.callbacks.Callback` objects
            (``EarlyStopping``, ``Checkpoint``, your own).
        progress: draw a tqdm bar per epoch with live loss and accuracy (main process only).
        amp: autocast dtype: None = auto (bfloat16 on CUDA where supported, float16 with
            a gradient scaler otherwise; off on the CPU), False = off, True = on
            (bfloat16 on the CPU), or ``"bf16"`` / ``"fp16"``.
        channels_last: NHWC memory layout for model and inputs; default: on CUDA.
        clip_grad_norm: clip the gradients' total L2 norm to this before each step.
        label_smoothing: for the default loss only.
        aux_weight: weight of each auxiliary loss; default
            :data:`~course_lib.models.inception.AUX_LOSS_WEIGHT` (0.3, the GoogLeNet paper's).
        seed: call :func:`course_lib.seed_everything` (plus the rank, in distributed
            training) first. It seeds dropout and a loader without its own
            generator, not the weights: seed before building the model for those.
        resume_from: a :class:`~course_lib.train.callbacks.Checkpoint` file: restore
            model, optimizer, scheduler, History, callbacks and random states, and
            continue after its epoch. Build everything as for the saved run.
        compile: compile the model with ``torch.compile`` (in place) first.

    Returns:
        The :class:`History` (of the whole run, when resumed).

    Raises:
        TrainingDiverged: the loss became NaN or infinite (see the module docstring).

    Under ``torchrun`` (``WORLD_SIZE`` > 1, or an initialised process group) the
    model is wrapped in ``DistributedDataParallel``, metrics are summed over the
    processes, and only rank 0 draws progress and writes checkpoints; see
    :mod:`course_lib.train.distributed`. On CUDA, ``fit`` sets
    ``torch.backends.cudnn.benchmark`` (unless deterministic algorithms are on).
    """
    check_int("epochs", epochs, 1)
    if clip_grad_norm is not None and clip_grad_norm <= 0:
        raise ValueError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
    _check_optimizer(model, optimizer)
    step_mode = _scheduler_step(scheduler, scheduler_step)
    distributed = ddp.init_distributed() and ddp.is_distributed()
    if seed is not None:
        seed_everything(seed + ddp.get_rank())

    device = get_device(str(device)) if device is not None else get_device()
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # DDP needs an explicit index
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True  # picks the fastest conv kernels for the (fixed) input shapes
    amp_dtype = _resolve_amp(amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    state = TrainState(
        model=model,
        optimizer=optimizer,
        history=History(),
        train_loader=train_loader,
        val_loader=val_loader,
        epochs=epochs,
        scheduler=scheduler,
        scaler=scaler,
        callbacks=_sorted_callbacks(callbacks),
        device=device,
        is_main_process=ddp.is_main_process(),
    )
    if resume_from is not None:
        load_checkpoint(resume_from, state)
    if compile:
        model.compile()  # in place: state_dict keys stay unprefixed, and evaluation uses the compiled forward too
    if not model.training:
        model.train()  # a model handed over in eval mode trains as a whole; one in train mode as it is set up
    step_model = ddp.wrap_model(model, device) if distributed else model
    trainer = _Trainer(
        setup=_Setup(
            device=device,
            amp_dtype=amp_dtype,
            channels_last=channels_last,
            loss_fn=loss_fn or nn.CrossEntropyLoss(label_smoothing=label_smoothing),
            aux_weight=aux_weight,
        ),
        state=state,
        step_model=step_model,
        train_modes=modes_of(step_model),
        scheduler_step=step_mode,
        clip_grad_norm=clip_grad_norm,
        check_each_step=_checks_each_step(device, distributed),
        distributed=distributed,
        progress=progress,
    )

    for cb in state.callbacks:
        cb.on_fit_start(state)
    for epoch in range(state.epoch + 1, epochs + 1):
        for cb in state.callbacks:
            cb.on_epoch_start(state)
        trainer.run_epoch(epoch)
        state.epoch = epoch
        for cb in state.callbacks:
            cb.on_epoch_end(state)
        if state.stop_training:
            break
    for cb in state.callbacks:
        cb.on_fit_end(state)
    return state.history
