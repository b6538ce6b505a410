"""Data-parallel training with ``torch.distributed``: the helpers :func:`~course_lib.train.fit` uses.

One script runs on one GPU, on several, or on several CPU processes::

    torchrun --nproc_per_node=2 train.py

``torchrun`` starts one process per device and describes the group in the
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`init_distributed` joins that group (NCCL on GPUs, gloo
on the CPU) and does nothing in a plain ``python train.py``, so the same script
works both ways. ``fit`` calls it itself, then wraps the model in
``DistributedDataParallel`` (gradients averaged over the processes during
``backward``), sums its metrics over the processes, and lets only the main
process (rank 0) draw the progress bar and write checkpoints.

Each process must see a different part of the data, in the same number of
batches (or the gradient averaging waits forever for the missing ones): build
the training loader with :func:`distributed_loader`, or give your own
``DataLoader`` a ``DistributedSampler``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = [
    "init_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "local_device",
    "wrap_model",
    "unwrap_model",
    "all_reduce_sum",
    "is_sharded",
    "distributed_loader",
    "destroy_distributed",
]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank in the group (0 outside distributed training)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes in the group (1 outside distributed training)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that prints, draws progress bars and writes files."""
    return get_rank() == 0


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Does nothing and returns False when ``WORLD_SIZE`` is unset or 1 (a plain
    ``python script.py``). Returns True when the group is (already) initialised.
    ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``;
    with NCCL each process first selects the GPU ``LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)  # reads MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    return True


def destroy_distributed() -> None:
    """Leave the process group, if there is one (call it at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


def wrap_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """``DistributedDataParallel(model)`` inside a group of several processes, else ``model`` itself.

    The model must already be on ``device``. DDP copies rank 0's parameters to
    every process when it wraps, then averages the gradients during ``backward``.
    """
    if not is_distributed():
        return model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; a no-op outside distributed training."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def is_sharded(loader) -> bool:
    """True when ``loader`` gives each process its own share of the data (a ``DistributedSampler``).

    Metrics of such a loader are summed over the processes; those of a loader
    that every process reads whole are not (their sums would count each sample
    once per process).
    """
    return isinstance(getattr(loader, "sampler", None), DistributedSampler)


def distributed_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False, **kwargs
) -> DataLoader:
    """A ``DataLoader`` over this process's share of ``dataset`` (all of it outside distributed training).

    Inside a group each process reads every ``world_size``-th sample through a
    ``DistributedSampler``, reshuffled each epoch from ``seed`` (``fit`` calls
    its ``set_epoch``). Outside one it is an ordinary loader shuffled by a
    generator seeded with ``seed``. ``kwargs`` go to ``DataLoader``
    (``num_workers``, ``pin_memory``, ...).
    """
    if is_distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last, **kwargs
    )
