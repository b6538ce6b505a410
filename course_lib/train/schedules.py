"""Learning-rate schedules of the course's papers, and the learning-rate range test.

Every schedule is a scheduler of ``torch.optim.lr_scheduler`` (a well-kept
library: no reimplementation here), built by name with the paper's defaults:

============ ================================================ ========= ===============================
name         what                                             steps per torch class
============ ================================================ ========= ===============================
step         divide by 10 every ``step_size`` epochs          epoch     ``StepLR`` (``MultiStepLR`` with
             (AlexNet, VGG, ResNet on ImageNet: 90 epochs,              ``milestones=[...]``, ResNet on
             /10 at 30 and 60)                                          CIFAR: /10 at 50% and 75%)
exponential  ``lr * gamma**epoch``; ``every=8, gamma=0.96`` is epoch     ``ExponentialLR``; ``StepLR``
             GoogLeNet's "decrease by 4% every 8 epochs"                with ``every``
plateau      divide by 10 when the validation metric stalls   epoch     ``ReduceLROnPlateau``
             for ``patience`` epochs (AlexNet did it by hand)           (``step(metric)``)
cosine       half a cosine from ``lr`` to ``eta_min`` over    epoch     ``CosineAnnealingLR``
             the run (SGDR without restarts)
onecycle     warm up to ``max_lr``, anneal far below it       batch     ``OneCycleLR``
             (Smith's 1cycle, super-convergence)
constant     the optimizer's learning rate throughout         epoch     ``LambdaLR``
============ ================================================ ========= ===============================

:func:`make_scheduler` returns the scheduler and whether to call its
``step()`` after every epoch or after every batch; :func:`lr_sequence` and
:func:`plot_schedules` show what a schedule does without training anything;
:func:`lr_range_test` (Smith 2017, popularised by fast.ai) finds a learning rate
for a new model/data pair in one short run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import lr_scheduler

from .._checks import check_int, check_module
from ..modes import kept_modes
from .engine import train_step

__all__ = [
    "SCHEDULES",
    "make_scheduler",
    "lr_sequence",
    "plot_schedules",
    "LRRangeTestResult",
    "lr_range_test",
]

SCHEDULES = ("step", "exponential", "plateau", "cosine", "onecycle", "constant")


def _constant_factor(_epoch: int) -> float:  # module-level, so the scheduler's state_dict pickles
    return 1.0


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    **kwargs: Any,
) -> tuple[Any, str]:
    """Build a learning-rate scheduler by name: ``(scheduler, step_unit)``.

    Args:
        name: one of :data:`SCHEDULES` (see the module's table).
        optimizer: the optimizer whose learning rate(s) the scheduler drives; its current
            ``lr`` is the starting (or, for ``onecycle``, the peak) learning rate.
        epochs: length of the run in epochs (sets the defaults below; ``cosine`` and
            ``onecycle`` end exactly there).
        steps_per_epoch: batches per epoch; required by ``onecycle``, ignored otherwise.
        **kwargs: per schedule (anything else is passed on to the torch class):

            * ``step``: ``step_size`` (default ``max(1, epochs // 3)``), ``gamma`` (0.1),
              or ``milestones=[...]`` for a ``MultiStepLR``;
            * ``exponential``: ``gamma`` (default 0.96), ``every`` (default ``None``: multiply
              by ``gamma`` every epoch; an int ``k``: every ``k`` epochs, a ``StepLR(k, gamma)``);
            * ``plateau``: ``factor`` (0.1), ``patience`` (10), ``mode`` (``"min"``), ...;
            * ``cosine``: ``eta_min`` (0), ``T_max`` (default ``epochs``);
            * ``onecycle``: ``max_lr`` (default: the optimizer's current lr of each group),
              ``pct_start`` (0.3), ``div_factor`` (25), ``final_div_factor`` (1e4), ...

    Returns:
        ``(scheduler, step_unit)``: call ``scheduler.step()`` after every ``"epoch"`` or after
        every ``"batch"`` (optimizer step). ``plateau`` needs the monitored value:
        ``scheduler.step(val_loss)`` after every epoch.
    """
    if name not in SCHEDULES:
        raise ValueError(f"name must be one of {SCHEDULES}, got {name!r}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    check_int("epochs", epochs, 1)
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch, 1)

    if name == "step":
        gamma = kwargs.pop("gamma", 0.1)
        if "milestones" in kwargs:
            return lr_scheduler.MultiStepLR(optimizer, milestones=kwargs.pop("milestones"), gamma=gamma, **kwargs), "epoch"
        step_size = kwargs.pop("step_size", max(1, epochs // 3))
        check_int("step_size", step_size, 1)
        return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma, **kwargs), "epoch"
    if name == "exponential":
        gamma = kwargs.pop("gamma", 0.96)
        every = kwargs.pop("every", None)
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
        if every is None:
            return lr_scheduler.ExponentialLR(optimizer, gamma=gamma, **kwargs), "epoch"
        check_int("every", every, 1)
        return lr_scheduler.StepLR(optimizer, step_size=every, gamma=gamma, **kwargs), "epoch"
    if name == "plateau":
        kwargs.setdefault("factor", 0.1)
        return lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs), "epoch"
    if name == "cosine":
        kwargs.setdefault("T_max", epochs)
        return lr_scheduler.CosineAnnealingLR(optimizer, **kwargs), "epoch"
    if name == "onecycle":
        if steps_per_epoch is None:
            raise ValueError("the 'onecycle' schedule steps per batch: steps_per_epoch is required (batches per epoch)")
        max_lr = kwargs.pop("max_lr", [group["lr"] for group in optimizer.param_groups])
        return (
            lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch, **kwargs),
            "batch",
        )
    return lr_scheduler.LambdaLR(optimizer, _constant_factor, **kwargs), "epoch"  # constant


def lr_sequence(
    name: str,
    epochs: int,
    steps_per_epoch: int | None = None,
    base_lr: float = 0.1,
    *,
    metrics: Sequence[float] | None = None,
    **kwargs: Any,
) -> list[float]:
    """The learning rates a schedule produces, one per training step, without training.

    A throw-away SGD optimizer (momentum 0.9, one parameter, ``lr=base_lr``) is driven by
    :func:`make_scheduler` ``(name, ..., **kwargs)``, stepping as a training loop would.

    Returns:
        A list of ``epochs * steps_per_epoch`` floats: the learning rate in effect for each
        batch. ``steps_per_epoch=None`` counts one step per epoch (so the list has one entry
        per epoch); ``onecycle`` needs an explicit ``steps_per_epoch``. Epoch schedules repeat
        each epoch's rate ``steps_per_epoch`` times.
        ``plateau`` needs ``metrics``: the monitored value after each of the ``epochs`` epochs.
    """
    check_int("epochs", epochs, 1)
    if not (isinstance(base_lr, (int, float)) and base_lr > 0):
        raise ValueError(f"base_lr must be a positive number, got {base_lr!r}")
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=base_lr, momentum=0.9)
    scheduler, unit = make_scheduler(name, optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch, **kwargs)
    if name == "plateau":
        if metrics is None or len(metrics) != epochs:
            raise ValueError(f"the 'plateau' schedule needs metrics: one value per epoch ({epochs}), got {metrics!r}")
    elif metrics is not None:
        raise ValueError(f"metrics is only used by the 'plateau' schedule, not {name!r}")
    per_epoch = steps_per_epoch or 1
    lrs: list[float] = []
    for epoch in range(epochs):
        for batch in range(per_epoch):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()  # no gradient: nothing moves, but torch sees the usual call order
            last = epoch == epochs - 1 and batch == per_epoch - 1
            if unit == "batch" and not last:
                scheduler.step()
        if unit == "epoch":
            scheduler.step(metrics[epoch]) if name == "plateau" else scheduler.step()
    return lrs


def plot_schedules(
    schedules: Sequence[str] | Mapping[str, str | Mapping[str, Any]],
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    base_lr: float = 0.1,
    log_y: bool = False,
    ax=None,
):
    """Plot several schedules' learning rates against the epoch; returns the ``Figure``.

    ``schedules``: names (``["step", "cosine"]``), or a mapping from a legend label to a name
    or to the keyword arguments of :func:`lr_sequence` including ``name``::

        plot_schedules({"ResNet /10": dict(name="step", step_size=30),
                        "GoogLeNet 4%/8": dict(name="exponential", gamma=0.96, every=8),
                        "1cycle": dict(name="onecycle")}, epochs=90, steps_per_epoch=100)

    The x-axis is in epochs (fractional with ``steps_per_epoch``); ``log_y`` puts the
    learning rate on a log scale.
    """
    import matplotlib.pyplot as plt

    if isinstance(schedules, str):
        raise ValueError(f"schedules must be a sequence or mapping of schedules, not the string {schedules!r}")
    items = schedules.items() if isinstance(schedules, Mapping) else [(n, n) for n in schedules]
    if not items:
        raise ValueError("schedules must name at least one schedule")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    per_epoch = steps_per_epoch or 1
    for label, spec in items:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        spec.setdefault("base_lr", base_lr)
        lrs = lr_sequence(epochs=epochs, steps_per_epoch=steps_per_epoch, **spec)
        steps = np.arange(len(lrs) + 1) / per_epoch
        ax.step(steps, lrs + lrs[-1:], where="post", label=str(label))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlim(0, epochs)
    ax.legend()
    ax.grid(True, alpha=0.3)
    return fig


# --- learning-rate range test ---------------------------------------------------------------


@dataclass
class LRRangeTestResult:
    """What :func:`lr_range_test` measured.

    Attributes:
        lrs: the learning rate of each step taken (increasing, geometric).
        losses: the smoothed training loss after each step (``losses[i]`` at ``lrs[i]``).
        raw_losses: the unsmoothed batch losses.
        diverged: whether the run stopped early because the loss blew up (the last point
            is then the one that crossed the threshold).
        min_loss_lr: the learning rate at the lowest smoothed loss (divergent point excluded).
        steepest_lr: the learning rate where the smoothed loss falls fastest per decade of
            learning rate, looked for only up to the minimum; ``None`` when the minimum is
            among the first 3 points (no descent to measure).
        suggested_lr: ``steepest_lr``, or ``min_loss_lr / 10`` when that is ``None``.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    diverged: bool
    min_loss_lr: float
    steepest_lr: float | None
    suggested_lr: float = field(init=False)

    def __post_init__(self):
        self.suggested_lr = self.steepest_lr if self.steepest_lr is not None else self.min_loss_lr / 10

    def plot(self, ax=None, *, skip_start: int = 0, skip_end: int = 0):
        """Smoothed loss against the learning rate (log x-axis), the suggestion marked; returns the ``Figure``.

        ``skip_start``/``skip_end`` leave out points at either end (the blow-up can dwarf the rest).
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 4))
        else:
            fig = ax.figure
        end = len(self.lrs) - skip_end
        ax.plot(self.lrs[skip_start:end], self.losses[skip_start:end], label="smoothed loss")
        ax.set_xscale("log")
        ax.axvline(self.suggested_lr, color="tab:red", linestyle="--", label=f"suggested lr = {self.suggested_lr:.2g}")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        ax.set_title("learning-rate range test")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        return fig


def _suggest(lrs: list[float], losses: list[float]) -> tuple[float, float | None]:
    """(lr at the minimum smoothed loss, lr of the steepest descent before it or None)."""
    loss = np.asarray(losses, dtype=np.float64)
    i_min = int(np.nanargmin(loss))
    min_lr = lrs[i_min]
    if i_min < 2:
        return min_lr, None
    log_lr = np.log10(np.asarray(lrs[: i_min + 1]))
    slope = np.gradient(loss[: i_min + 1], log_lr)  # d loss / d log10(lr), central differences
    return min_lr, float(lrs[int(np.argmin(slope))])


def lr_range_test(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smooth: float = 0.05,
    diverge_factor: float = 4.0,
    device: torch.device | str | None = None,
) -> LRRangeTestResult:
    """Smith's learning-rate range test ("LR finder"): train briefly with a growing learning rate.

    Step ``i`` (of ``num_steps``) is one :func:`~course_lib.train.train_step` (the step
    ``fit`` takes) on one batch with
    ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``, a geometric
    sweep, and records the loss of that batch (computed before the update),
    smoothed as ``s_i = smooth * loss_i + (1 - smooth) * s_{i-1}`` (``s_0 = loss_0``).
    The loader is restarted when exhausted. The run stops early, *diverged*, when
    ``s_i > diverge_factor * min(s_0..s_i)`` or the loss is not finite (losses are
    assumed non-negative).

    Afterwards the model's ``state_dict`` (weights and buffers, e.g. BatchNorm
    statistics), its gradients and train/eval mode, and the optimizer's ``state_dict``
    (its learning rates and momentum buffers) are restored exactly, so training can start
    from where it was. The global RNG and the loader's own state (e.g. a GPULoader's
    shuffle generator) are not restored.

    Reading the curve: the loss is flat while the learning rate is too small to matter,
    falls, bottoms out and explodes. ``suggested_lr`` is where it falls fastest (the steepest
    negative slope of the smoothed loss against ``log10(lr)``, searched before the minimum):
    large, yet still clearly improving. When the minimum comes too early to measure a slope
    (within the first 3 steps), the classic fallback ``lr at the minimum / 10`` is used. Both
    are heuristics; look at ``result.plot()``.

    Args:
        model: trained in train mode; left on ``device`` if one is given.
        loader: iterable of ``(x, y)`` batches (a ``DataLoader``, a ``GPULoader``, a list).
        optimizer: an optimizer over ``model``'s parameters, or a factory called as
            ``optimizer(model.parameters())`` (e.g. ``functools.partial(torch.optim.SGD, lr=1, momentum=0.9)``).
            Every param group's ``lr`` is overwritten during the sweep.
        loss_fn: a mean-reduced ``loss_fn(logits, y)``, as in ``fit``; a model with auxiliary heads
            (``(logits, aux1, ...)`` in training mode) adds their losses weighted by
            :data:`~course_lib.models.inception.AUX_LOSS_WEIGHT`, as ``fit`` does.
        start_lr, end_lr: the sweep's range, ``0 < start_lr < end_lr``.
        num_steps: the number of batches (at least 2, fewer when the loss diverges).
        smooth: weight of the newest loss in the exponential moving average, in (0, 1]
            (1: no smoothing).
        diverge_factor: stop once the smoothed loss exceeds this many times its best (> 1).
        device: where batches (and the model) go; ``None``: the device of the model's parameters.

    Returns:
        :class:`LRRangeTestResult` with ``lrs``, ``losses``, ``suggested_lr`` and ``plot()``.
    """
    check_module("model", model)
    if not (0 < start_lr < end_lr and math.isfinite(end_lr)):
        raise ValueError(f"start_lr and end_lr must satisfy 0 < start_lr < end_lr, got {start_lr!r} and {end_lr!r}")
    check_int("num_steps", num_steps, 2)
    if not 0 < smooth <= 1:
        raise ValueError(f"smooth must lie in (0, 1], got {smooth!r}")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor!r}")

    if device is not None:
        model.to(device)
    else:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    elif callable(optimizer):
        opt = optimizer(model.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(f"optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
    else:
        raise ValueError(f"optimizer must be an Optimizer or a factory of one, got {type(optimizer).__name__}")

    model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt_state = copy.deepcopy(opt.state_dict())
    grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]

    ratio = end_lr / start_lr
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    diverged = False
    with kept_modes(model):  # every module's own mode back afterwards (a frozen BatchNorm stays frozen)
        try:
            model.train()
            batches = iter(loader)
            for i in range(num_steps):
                lr = start_lr * ratio ** (i / (num_steps - 1))
                for group in opt.param_groups:
                    group["lr"] = lr
                try:
                    batch = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    try:
                        batch = next(batches)
                    except StopIteration:
                        raise ValueError("loader yielded no batches") from None
                value = float(train_step(model, batch, opt, device=device, loss_fn=loss_fn).loss)
                lrs.append(lr)
                raw.append(value)
                smoothed.append(value if not smoothed else smooth * value + (1 - smooth) * smoothed[-1])
                if not math.isfinite(smoothed[-1]) or smoothed[-1] > diverge_factor * min(smoothed):
                    diverged = True  # the step just taken is undone with the rest below
                    break
        finally:
            model.load_state_dict(model_state)
            opt.load_state_dict(opt_state)
            for p, g in zip(model.parameters(), grads):
                p.grad = g

    usable = smoothed[:-1] if diverged and len(smoothed) > 1 else smoothed
    min_lr, steepest = _suggest(lrs[: len(usable)], usable)
    return LRRangeTestResult(lrs, smoothed, raw, diverged, min_lr, steepest)
