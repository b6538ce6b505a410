"""Run-time settings shared by every chapter and lab: device, seeding, scale.

Two environment variables steer a whole run of the course:

``COURSE_DEVICE``
    Forces the device (``cpu``, ``cuda``, ``cuda:1``, ...). Unset: CUDA when
    PyTorch sees a GPU, else the CPU.
``COURSE_SCALE``
    ``small`` (the default, what CI executes and the rendered book shows: data
    that ships inside installed packages, a few epochs) or ``full`` (full
    datasets through torchvision, downloaded on first use, longer training).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ._checks import check_choice

__all__ = [
    "SCALES",
    "get_device",
    "get_scale",
    "is_full_scale",
    "scaled",
    "seed_everything",
    "use_book_threads",
]

SCALES = ("small", "full")


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on.

    Order of precedence: the ``prefer`` argument, the ``COURSE_DEVICE``
    environment variable, then ``cuda`` if available, else ``cpu``.
    Asking for CUDA on a machine without it raises instead of silently
    falling back, so a misconfigured GPU run is noticed.
    """
    name = prefer or os.environ.get("COURSE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name!r} was requested (argument or COURSE_DEVICE) but PyTorch sees no CUDA device"
        )
    return device


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device).

    With ``deterministic=True`` PyTorch is also asked to use deterministic
    kernels (slower on a GPU; a no-op for most CPU kernels).
    Returns a ``torch.Generator`` seeded with ``seed`` for code that wants its
    own stream (shuffles, splits) independent of the global one.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def get_scale() -> str:
    """``"small"`` or ``"full"``, from ``COURSE_SCALE`` (default ``"small"``)."""
    scale = os.environ.get("COURSE_SCALE", "small").strip().lower() or "small"
    check_choice("COURSE_SCALE", scale, SCALES)
    return scale


def is_full_scale() -> bool:
    """True when ``COURSE_SCALE=full``."""
    return get_scale() == "full"


def scaled(small, full):
    """Pick the value for the current scale: ``epochs = scaled(small=3, full=30)``."""
    return full if is_full_scale() else small


def use_book_threads() -> int:
    """Compute with as many CPU threads as the book did: one at small scale; at full scale, leave PyTorch's.

    A sum split over several threads adds its terms in another order, so trained weights, and the
    numbers a chapter prints, differ in their last digits from one thread count to another. The book
    is executed with one thread per notebook; a chapter that calls this first prints the book's
    numbers on any machine. Returns the thread count now in use.
    """
    if not is_full_scale():
        torch.set_num_threads(1)
    return torch.get_num_threads()
