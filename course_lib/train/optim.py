"""Optimizers from scratch: the update rules of chapter 9, each a few lines of tensor arithmetic.

Every class is a ``torch.optim.Optimizer``, so it works wherever PyTorch's do: with
:func:`~course_lib.train.fit`, :func:`~course_lib.train.make_scheduler` (a scheduler
changes ``group["lr"]`` between steps), :func:`~course_lib.train.lr_range_test`,
``state_dict()`` and checkpoints. Each ``step()`` reads the gradient ``g = p.grad`` of
every parameter ``p`` (weights ``theta``) and applies its rule, learning rate ``lr``:

=========== ========================================================== ==========================
class       update, per parameter (elementwise; ``t`` counts steps)      equals
=========== ========================================================== ==========================
SGD         ``d = g + wd theta``; ``v <- mu v + d``;                     ``torch.optim.SGD``
            ``theta <- theta - lr v``                                    (``dampening=0``)
            (Nesterov: ``theta <- theta - lr (d + mu v)``)
AlexNetSGD  ``v <- mu v - lr g - wd lr theta``; ``theta <- theta + v``   ``torch.optim.SGD`` only
            (Krizhevsky et al. 2012: ``mu = 0.9``, ``wd = 0.0005``)       while ``lr`` is constant
RMSProp     ``s <- a s + (1 - a) g^2``;                                   ``torch.optim.RMSprop``
            ``theta <- theta - lr g / (sqrt(s) + eps)``                   (not ``centered``)
            (momentum: ``b <- mu b + g / (sqrt(s) + eps)``, ``theta <- theta - lr b``)
Adam        ``m <- b1 m + (1 - b1) g``; ``s <- b2 s + (1 - b2) g^2``;    ``torch.optim.Adam``
            ``theta <- theta - lr m_hat / (sqrt(s_hat) + eps)``,          (``decoupled``:
            ``m_hat = m / (1 - b1^t)``, ``s_hat = s / (1 - b2^t)``         ``torch.optim.AdamW``)
=========== ========================================================== ==========================

``wd`` is the ``weight_decay`` argument. In SGD, RMSProp and Adam it is L2 regularization
added to the gradient (``g + wd theta``), as in PyTorch; ``Adam(decoupled=True)`` instead
shrinks the weights directly, ``theta <- theta (1 - lr wd)``, which is AdamW
(Loshchilov and Hutter 2019). The buffers start at zero (SGD's velocity at the first
``d``, which is the same thing: ``mu 0 + d``).

**AlexNet's rule and PyTorch's SGD.** With ``v = -lr b`` PyTorch's buffer ``b`` and
AlexNet's velocity ``v`` describe the same run as long as the learning rate does not
change: both give ``theta_t+1 = theta_t - lr (mu b_t-1 + g_t + wd theta_t)``. They part
when it changes. PyTorch multiplies the whole buffer (every past gradient) by the
*current* rate; AlexNet's velocity keeps each past gradient scaled by the rate of its own
step. Divide the rate by 10 and PyTorch's next step is 10 times shorter at once, while
AlexNet's velocity still carries the old, larger steps, which fade as ``mu^k`` (a third
is left after 10 steps for ``mu = 0.9``); ``tests/test_train_optim.py`` checks both facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .._checks import check_flag, check_number

__all__ = ["SGD", "AlexNetSGD", "RMSProp", "Adam"]


def _check_fraction(name: str, value) -> None:
    """``value`` is a finite number in [0, 1): a decay rate or a momentum coefficient."""
    check_number(name, value, non_negative=True)
    if value >= 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


class _ScratchOptimizer(torch.optim.Optimizer):
    """What the optimizers of this module share: the closure protocol, and the gradient of each
    parameter with L2 weight decay added (the one place where that rule is written)."""

    def __init__(self, params: Iterable, lr: float, **defaults: Any):
        check_number("lr", lr, positive=True)
        super().__init__(params, dict(lr=lr, **defaults))

    @staticmethod
    def _gradient(p: torch.Tensor, weight_decay: float) -> torch.Tensor:
        """``p.grad``, plus ``weight_decay * p`` (L2 regularization) when it is not 0; a new tensor."""
        if p.grad.is_sparse:
            raise ValueError("course_lib.train.optim handles dense gradients only; this parameter's is sparse")
        return p.grad + weight_decay * p if weight_decay else p.grad.clone()

    @staticmethod
    def _parameters_with_gradients(group: dict) -> list[torch.Tensor]:
        return [p for p in group["params"] if p.grad is not None]

    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss, if given.

        ``closure`` (optional) recomputes the loss with gradients, as for PyTorch's optimizers.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in self._parameters_with_gradients(group):
                    self._update(p, self.state[p], group)
        return loss

    def _update(self, p: torch.Tensor, state: dict, group: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(_ScratchOptimizer):
    """Stochastic gradient descent, with (heavy-ball or Nesterov) momentum and L2 weight decay.

    Per step, with ``d = g + weight_decay * theta``:

    * ``momentum = 0``: ``theta <- theta - lr d``;
    * momentum ``mu``: ``v <- mu v + d`` (``v`` starts at 0) and ``theta <- theta - lr v``;
      the step is a running, exponentially weighted sum of past gradients, so directions
      where the gradients agree build up speed (up to ``1 / (1 - mu)`` times, 10 for
      ``mu = 0.9``) and directions where they alternate cancel out;
    * ``nesterov=True``: ``theta <- theta - lr (d + mu v)``, the update evaluated as if
      the momentum step had already been taken (Sutskever et al. 2013's form).

    Equal to ``torch.optim.SGD(params, lr, momentum, weight_decay=..., nesterov=...)`` with
    its default ``dampening=0``.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        lr: learning rate, > 0.
        momentum: ``mu`` in [0, 1).
        nesterov: Nesterov's momentum (needs ``momentum > 0``).
        weight_decay: L2 coefficient, >= 0.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, *, nesterov: bool = False, weight_decay: float = 0.0):
        _check_fraction("momentum", momentum)
        check_flag("nesterov", nesterov)
        check_number("weight_decay", weight_decay, non_negative=True)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0, got momentum=0")
        super().__init__(params, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def _update(self, p, state, group):
        d = self._gradient(p, group["weight_decay"])
        mu = group["momentum"]
        if mu:
            v = mu * state["velocity"] + d if "velocity" in state else d
            state["velocity"] = v
            d = d + mu * v if group["nesterov"] else v
        p.sub_(group["lr"] * d)


class AlexNetSGD(_ScratchOptimizer):
    """The update rule of AlexNet (Krizhevsky, Sutskever and Hinton 2012), as the paper writes it::

        v     <- momentum * v - lr * g - weight_decay * lr * theta
        theta <- theta + v

    with ``momentum = 0.9`` and ``weight_decay = 0.0005`` (and ``lr = 0.01``, divided by 10
    by hand when the validation error stopped improving). The velocity ``v`` is a step
    (it holds learning rates), not a sum of gradients: this is what makes the rule differ
    from ``torch.optim.SGD(lr, momentum, weight_decay)`` when the learning rate changes
    during training, and equal to it while it does not (see the module's docstring).

    Args:
        params: parameters or parameter groups.
        lr: learning rate, > 0.
        momentum: in [0, 1).
        weight_decay: >= 0.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, *, weight_decay: float = 0.0005):
        _check_fraction("momentum", momentum)
        check_number("weight_decay", weight_decay, non_negative=True)
        super().__init__(params, lr, momentum=momentum, weight_decay=weight_decay)

    def _update(self, p, state, group):
        v = state.get("velocity", torch.zeros_like(p))
        v = group["momentum"] * v - group["lr"] * self._gradient(p, group["weight_decay"])
        state["velocity"] = v
        p.add_(v)


class RMSProp(_ScratchOptimizer):
    """RMSProp (Hinton's lecture 6e, 2012): divide the gradient by a running RMS of its recent values.

    Per step, with ``g`` the gradient (plus ``weight_decay * theta``)::

        s     <- alpha * s + (1 - alpha) * g^2            (s starts at 0)
        theta <- theta - lr * g / (sqrt(s) + eps)

    Each weight gets its own step size: about ``lr`` in units of its typical gradient, so
    weights with small gradients move as fast as weights with large ones. With
    ``momentum = mu > 0`` the scaled gradient goes through a velocity,
    ``b <- mu b + g / (sqrt(s) + eps)`` and ``theta <- theta - lr b`` (Inception v2 and v3
    used ``mu = 0.9`` and ``eps = 1.0``).

    Equal to ``torch.optim.RMSprop(params, lr, alpha, eps, weight_decay, momentum)``
    (PyTorch's ``eps`` is outside the square root, as here; TensorFlow's is inside, so its
    ``eps`` means something else). PyTorch's ``centered=True`` (divide by the running standard
    deviation instead) is not implemented.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, > 0 (PyTorch's default 0.01).
        alpha: decay of the running mean of ``g^2``, in [0, 1).
        eps: added to the RMS before dividing, > 0.
        momentum: in [0, 1).
        weight_decay: L2 coefficient, >= 0.
    """

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, *,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        _check_fraction("alpha", alpha)
        check_number("eps", eps, positive=True)
        _check_fraction("momentum", momentum)
        check_number("weight_decay", weight_decay, non_negative=True)
        super().__init__(params, lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)

    def _update(self, p, state, group):
        g = self._gradient(p, group["weight_decay"])
        alpha = group["alpha"]
        s = alpha * state.get("square_avg", torch.zeros_like(p)) + (1 - alpha) * g * g
        state["square_avg"] = s
        scaled = g / (s.sqrt() + group["eps"])
        if group["momentum"]:
            scaled = group["momentum"] * state.get("velocity", torch.zeros_like(p)) + scaled
            state["velocity"] = scaled
        p.sub_(group["lr"] * scaled)


class Adam(_ScratchOptimizer):
    """Adam (Kingma and Ba 2015): momentum on the gradient, RMSProp's scaling, and bias correction.

    Per step ``t = 1, 2, ...``, with ``g`` the gradient (plus ``weight_decay * theta``
    unless ``decoupled``)::

        m     <- beta1 * m + (1 - beta1) * g             (m, s start at 0)
        s     <- beta2 * s + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t),   s_hat = s / (1 - beta2^t)
        theta <- theta - lr * m_hat / (sqrt(s_hat) + eps)

    Both running means start at 0, so early on they are too small: after one step
    ``m = (1 - beta1) g``, a tenth of the gradient. Dividing by ``1 - beta^t`` (the total
    weight the average has given so far) corrects that; without it the first steps of
    ``s`` (``beta2 = 0.999``) would be a thousand times too small and the first updates
    far too large. ``decoupled=True`` applies the weight decay as
    ``theta <- theta (1 - lr * weight_decay)`` outside the adaptive scaling (AdamW).

    Equal to ``torch.optim.Adam(params, lr, betas, eps, weight_decay)``, and with
    ``decoupled=True`` to ``torch.optim.AdamW`` (whose default ``weight_decay`` is 0.01; here
    it is always 0 unless given).

    Args:
        params: parameters or parameter groups.
        lr: learning rate, > 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: > 0.
        weight_decay: >= 0.
        decoupled: AdamW's decoupled weight decay instead of L2 in the gradient.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, *,
                 weight_decay: float = 0.0, decoupled: bool = False):
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check_fraction("betas[0]", betas[0])
        _check_fraction("betas[1]", betas[1])
        check_number("eps", eps, positive=True)
        check_number("weight_decay", weight_decay, non_negative=True)
        check_flag("decoupled", decoupled)
        super().__init__(params, lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, decoupled=decoupled)

    def _update(self, p, state, group):
        (beta1, beta2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
        if group["decoupled"]:
            g = self._gradient(p, 0.0)
            p.mul_(1 - lr * wd)
        else:
            g = self._gradient(p, wd)
        t = state.get("step", 0) + 1
        m = beta1 * state.get("exp_avg", torch.zeros_like(p)) + (1 - beta1) * g
        s = beta2 * state.get("exp_avg_sq", torch.zeros_like(p)) + (1 - beta2) * g * g
        state.update(step=t, exp_avg=m, exp_avg_sq=s)
        m_hat = m / (1 - beta1**t)
        s_hat = s / (1 - beta2**t)
        p.sub_(lr * m_hat / (s_hat.sqrt() + group["eps"]))
