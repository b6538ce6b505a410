"""A data loader that keeps a small dataset on the device and augments it there.

For datasets that fit in device memory (MNIST, CIFAR-10: 50,000 x 3 x 32 x 32
float32 images are 600 MB), the fastest way to feed a GPU is not a
``DataLoader`` with worker processes that decode, augment and copy every batch,
but what the fastest CIFAR-10 trainers do (e.g. Keller Jordan's *airbench*):

1. move the whole dataset to the device **once**;
2. each epoch, draw a permutation **on the device** with a seeded
   ``torch.Generator`` that lives there;
3. cut batches by indexing the device tensors;
4. augment the **whole batch at once** with a few tensor operations (pad once,
   gather per-image crop windows, flip with ``torch.where`` on a per-image mask),
   never a Python loop over images.

Nothing crosses the PCIe bus during training except the loss you choose to log.
The same code runs on the CPU (the tests, the small-scale book), only slower.

Example::

    from course_lib.train.gpu_loader import GPULoader, RandomCropFlip

    train = GPULoader.from_split(split, train=True, batch_size=512,
                                 augment=RandomCropFlip(padding=4, flip=True),
                                 mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
    test = GPULoader.from_split(split, train=False, batch_size=1024)
    for epoch in range(epochs):
        for x, y in train:      # x: (B, C, H, W) on the device, already augmented
            ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..config import get_device

__all__ = ["GPULoader", "RandomCropFlip"]

_PADDING_MODES = ("zeros", "reflect")


class RandomCropFlip:
    """Random translation ("pad and crop back to the same size") and horizontal flip of a batch.

    The CIFAR-10 augmentation of ResNet, Wide ResNet and airbench, done on the
    whole batch at once: every image is padded by ``padding`` pixels on each
    side, a window of the original size is cut at a random offset
    ``(dy, dx)`` in ``[0, 2 * padding]^2`` (independently per image), and the
    result is mirrored left-right with probability 1/2 (independently per
    image). Labels are untouched: a shifted or mirrored digit/object keeps its class.

    Args:
        padding: pixels added on each side before cropping (``0``: no crop, only flips).
        flip: mirror each image horizontally with probability 1/2.
        padding_mode: ``"zeros"`` (black border, as ``torchvision.transforms.RandomCrop(padding=4)``)
            or ``"reflect"`` (mirror the border, as airbench; needs ``padding < H`` and ``< W``).

    Calling ``aug(x, generator)`` with ``x`` of shape (B, C, H, W) returns a new
    (B, C, H, W) tensor of the same dtype and device. Random numbers are drawn
    from ``generator`` (which must live on ``x``'s device) in a fixed order:
    ``dy``, then ``dx``, then the flip mask -- see :meth:`sample`, which
    :meth:`apply` turns into images; ``aug(x, g) == aug.apply(x, *aug.sample(len(x), g, x.device))``.
    """

    def __init__(self, padding: int = 4, flip: bool = True, padding_mode: str = "zeros"):
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(f"padding must be a non-negative int, got {padding!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding = padding
        self.flip = bool(flip)
        self.padding_mode = padding_mode

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip}, padding_mode={self.padding_mode!r})"

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw the per-image parameters: ``(dy, dx, flip)``.

        ``dy``, ``dx``: (B,) int64 offsets of the crop window inside the padded
        image, uniform in ``[0, 2 * padding]``; ``flip``: (B,) bool mask (all
        False when ``flip=False``; then no random number is drawn for it).
        """
        device = torch.device(device) if device is not None else (generator.device if generator is not None else None)
        high = 2 * self.padding + 1
        dy = torch.randint(0, high, (batch_size,), generator=generator, device=device)
        dx = torch.randint(0, high, (batch_size,), generator=generator, device=device)
        if self.flip:
            flip = torch.rand(batch_size, generator=generator, device=device) < 0.5
        else:
            flip = torch.zeros(batch_size, dtype=torch.bool, device=device)
        return dy, dx, flip

    def apply(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crop the windows at ``(dy, dx)`` of the padded batch and flip where ``flip``; vectorised.

        ``x``: (B, C, H, W); ``dy``, ``dx``: (B,) integer offsets in ``[0, 2 * padding]``;
        ``flip``: (B,) bool. Returns (B, C, H, W); ``out[i] = padded[i, :, dy[i]:dy[i]+H, dx[i]:dx[i]+W]``,
        mirrored along W where ``flip[i]``.
        """
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        b, c, h, w = x.shape
        p = self.padding
        if p > 0:
            if self.padding_mode == "reflect" and (p >= h or p >= w):
                raise ValueError(f"reflect padding needs padding < H and < W, got padding={p} for {h}x{w} images")
            mode = "constant" if self.padding_mode == "zeros" else "reflect"
            padded = F.pad(x, (p, p, p, p), mode=mode)  # (B, C, H + 2p, W + 2p), one call for the batch
            # Row indices of each image's window, (B, H), then column indices, (B, W): two gathers
            # (first along H, then along W) cut B different windows without a Python loop.
            rows = dy.to(x.device).view(b, 1) + torch.arange(h, device=x.device)
            cols = dx.to(x.device).view(b, 1) + torch.arange(w, device=x.device)
            out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * p))  # (B, C, H, W + 2p)
            out = out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))  # (B, C, H, W)
        else:
            out = x
        if self.flip:
            out = torch.where(flip.to(x.device).view(b, 1, 1, 1), out.flip(3), out)
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment the batch ``x`` (B, C, H, W) with random numbers from ``generator``."""
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        return self.apply(x, *self.sample(x.shape[0], generator, x.device))


def _as_channel_vector(value, name: str, channels: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=like.dtype).flatten().to(like.device)
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"{name} must have one value per channel ({channels}), got {t.numel()} values")
    return t.view(1, channels, *([1] * (like.ndim - 2))).contiguous()


class GPULoader:
    """Minibatches of a dataset held on the device, shuffled and augmented there.

    Args:
        x: (N, C, H, W) floating-point inputs (any (N, ...) shape works without
            ``augment``, ``mean``/``std`` or ``channels_last``). Moved to ``device`` once;
            if it already lives there, it is not copied.
        y: (N, ...) targets (usually (N,) int64 labels), moved alongside.
        batch_size: examples per batch (positive int).
        shuffle: draw a new permutation at the start of every epoch (on the device).
        drop_last: drop the last, smaller batch when ``N % batch_size != 0``.
        augment: ``None`` or a callable ``augment(x_batch, generator) -> x_batch`` applied to each
            input batch on the device, e.g. :class:`RandomCropFlip`. Labels are not passed to it.
        device: where the data lives and batches come out; ``None``: :func:`course_lib.get_device`.
        seed: seed of the loader's own ``torch.Generator`` (created on ``device``), used for the
            permutation and the augmentation; the global RNG is never touched.
        channels_last: hand out input batches in ``torch.channels_last`` memory format
            (faster convolutions with mixed precision on recent GPUs; needs 4-d inputs).
        mean, std: optional per-channel normalisation ``(x - mean) / std``, applied on the device
            **after** the augmentation (so zero padding is black in pixel space, as torchvision's
            ``RandomCrop`` followed by ``Normalize``). A scalar is used for every channel.

    Iterating yields ``(x, y)`` pairs: ``x`` (B, C, H, W) of ``x``'s dtype, ``y`` (B, ...),
    both on ``device``; ``B = batch_size`` except possibly the last batch. Each full pass
    is one epoch and covers every example exactly once (all but ``N % batch_size`` of
    them with ``drop_last``). ``len(loader)`` is the number of batches per epoch.

    Reproducibility: the same ``seed`` on the same device type gives the same epochs
    (the CPU and CUDA generators are different algorithms, so a CPU and a GPU run
    differ). :meth:`state_dict` taken between epochs and restored with
    :meth:`load_state_dict` reproduces the following epochs exactly, shuffle order and
    augmentation alike. Without ``augment`` or normalisation and with ``shuffle=False``,
    batches may be views of the stored data: do not modify them in place.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        channels_last: bool = False,
        mean: Sequence[float] | torch.Tensor | float | None = None,
        std: Sequence[float] | torch.Tensor | float | None = None,
    ):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
        if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same first dimension N, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[0] == 0:
            raise ValueError("x and y must hold at least one example")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if augment is not None and not callable(augment):
            raise ValueError(f"augment must be None or a callable (x, generator) -> x, got {augment!r}")
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together (or neither)")
        needs_images = augment is not None or mean is not None or channels_last
        if needs_images and x.ndim != 4:
            raise ValueError(
                f"x must have shape (N, C, H, W) for augment, mean/std or channels_last, got {tuple(x.shape)}"
            )
        if mean is not None and not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor for mean/std normalisation, got {x.dtype}")

        self.device = get_device() if device is None else torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.x = x.to(self.device)  # the one and only host -> device copy
        self.y = y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.channels_last = bool(channels_last)
        self.seed = seed
        self.mean = self.std = None
        if mean is not None:
            self.mean = _as_channel_vector(mean, "mean", x.shape[1], self.x)
            self.std = _as_channel_vector(std, "std", x.shape[1], self.x)
            if not bool((self.std > 0).all()):
                raise ValueError(f"std must be positive, got {std!r}")
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.epoch = 0  # number of epochs started so far

    @classmethod
    def from_split(cls, split, train: bool = True, batch_size: int = 128, **kwargs: Any) -> "GPULoader":
        """A loader over ``split.x_train/y_train`` (``train=True``) or ``split.x_test/y_test``.

        ``split`` is a :class:`course_lib.data.TensorSplit`. ``shuffle`` defaults to
        ``train`` (test batches come in a fixed order); every other keyword goes to
        :class:`GPULoader`.
        """
        kwargs.setdefault("shuffle", bool(train))
        if train:
            return cls(split.x_train, split.y_train, batch_size, **kwargs)
        return cls(split.x_test, split.y_test, batch_size, **kwargs)

    @property
    def num_examples(self) -> int:
        """N, the number of examples held."""
        return self.x.shape[0]

    def __len__(self) -> int:
        n = self.num_examples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __repr__(self) -> str:
        return (
            f"GPULoader(x={tuple(self.x.shape)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, augment={self.augment!r}, device={str(self.device)!r}, epoch={self.epoch})"
        )

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        return torch.randperm(self.num_examples, generator=self.generator, device=self.device)

    def __iter__(self):
        # The permutation is drawn when the first batch is requested, not when iter() is called,
        # so the generator state between epochs is exactly what state_dict() saves.
        return self._epoch()

    def _epoch(self):
        self.epoch += 1
        order = self._order()
        n, bs = self.num_examples, self.batch_size
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            end = min(start + bs, n)
            if order is None:
                xb, yb = self.x[start:end], self.y[start:end]
            else:
                idx = order[start:end]
                xb, yb = self.x[idx], self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            if self.mean is not None:
                xb = (xb - self.mean) / self.std
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb

    def state_dict(self) -> dict[str, Any]:
        """The loader's random state: ``{"generator": ByteTensor, "epoch": int, "seed": int, "device_type": str}``.

        Save it with a checkpoint **between epochs**; :meth:`load_state_dict` then makes the next
        epoch's order and augmentation those the original run would have drawn. (Taken mid-epoch,
        it holds the draws made so far; a resumed run then starts a fresh epoch from there.)
        """
        return {
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "seed": self.seed,
            "device_type": self.device.type,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` saved by a loader on the same device type."""
        missing = {"generator", "epoch"} - set(state)
        if missing:
            raise ValueError(f"state is missing the keys {sorted(missing)}")
        saved_type = state.get("device_type", self.device.type)
        if saved_type != self.device.type:
            raise ValueError(
                f"state was saved by a loader on {saved_type!r}, this one is on {self.device.type!r}: "
                "CPU and CUDA generators have different states"
            )
        self.generator.set_state(state["generator"].cpu())
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))
