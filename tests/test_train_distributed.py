"""course_lib.train.distributed and fit under DistributedDataParallel.

Two CPU processes, spawned with torch.multiprocessing, form a gloo group on a
free localhost port (loopback only). Each takes half of a batch; the gradient
DDP averages, and the weights ``fit`` reaches, must equal those of one process
on the whole batch.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from course_lib.train import Checkpoint, fit
from course_lib.train import distributed as ddp

WORLD_SIZE = 2


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10)
    )  # fmt: skip


def full_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def shard(tensor: torch.Tensor, rank: int) -> torch.Tensor:
    return tensor.chunk(WORLD_SIZE)[rank]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out_dir: str) -> None:
    """One process of the group: DDP gradient on its half batch, then a short fit on its half."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE)
    )
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo0" if sys.platform == "darwin" else "lo")  # loopback only
    assert ddp.init_distributed("gloo")
    try:
        x, y = full_batch()
        model = tiny_cnn()
        wrapped = ddp.wrap_model(model, "cpu")
        F.cross_entropy(wrapped(shard(x, rank)), shard(y, rank)).backward()
        grads = [p.grad.clone() for p in model.parameters()]

        model = tiny_cnn()
        checkpoint = Checkpoint(f"{out_dir}/ckpt-rank{rank}.pt")
        history = fit(model, [(shard(x, rank), shard(y, rank))], optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
                      epochs=3, device="cpu", progress=False, callbacks=[checkpoint])  # fmt: skip
        result = {"grads": grads, "weights": model.state_dict(), "history": history.state_dict()}
        result["main"] = ddp.is_main_process()
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        ddp.destroy_distributed()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


def test_ddp_gradients_equal_single_process_on_the_full_batch(ddp_results):
    _, results = ddp_results
    model = tiny_cnn()
    x, y = full_batch()
    F.cross_entropy(model(x), y).backward()
    for rank, result in enumerate(results):
        for p, g in zip(model.parameters(), result["grads"]):
            torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=0, msg=f"rank {rank}")
    # the check can fail: one half batch alone gives another gradient
    half = tiny_cnn()
    F.cross_entropy(half(shard(x, 0)), shard(y, 0)).backward()
    assert not torch.allclose(half[0].weight.grad, model[0].weight.grad, atol=1e-6)


def test_fit_under_ddp_matches_single_process(ddp_results):
    out, results = ddp_results
    model = tiny_cnn()
    history = fit(model, [full_batch()], optimizer=torch.optim.SGD(model.parameters(), lr=0.5), epochs=3,
                  device="cpu", progress=False)  # fmt: skip
    for rank, result in enumerate(results):
        for name, value in model.state_dict().items():
            torch.testing.assert_close(result["weights"][name], value, atol=1e-6, rtol=0, msg=f"rank {rank}: {name}")
        # metrics are all-reduced: every rank reports the full batch's loss and accuracy
        assert result["history"]["train_loss"] == pytest.approx(history.train_loss, abs=1e-6)
        assert result["history"]["train_acc"] == pytest.approx(history.train_acc)
    assert [r["main"] for r in results] == [True, False]
    assert (out / "ckpt-rank0.pt").is_file() and not (out / "ckpt-rank1.pt").exists()  # only rank 0 writes


# --- helpers outside a process group ---------------------------------------------------------------


def test_helpers_without_a_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ddp.init_distributed() is False
    assert not ddp.is_distributed() and ddp.get_rank() == 0 and ddp.get_world_size() == 1 and ddp.is_main_process()
    model = tiny_cnn()
    assert ddp.wrap_model(model) is model
    value = torch.tensor([1.0, 2.0])
    assert torch.equal(ddp.all_reduce_sum(value), torch.tensor([1.0, 2.0]))


def test_unwrap_model_and_distributed_loader():
    model = tiny_cnn()

    class Wrapper(nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert ddp.unwrap_model(Wrapper(model)) is model and ddp.unwrap_model(model) is model
    dataset = TensorDataset(torch.arange(10))
    loader = ddp.distributed_loader(dataset, batch_size=4, seed=3)
    assert not ddp.is_sharded(loader)
    first = torch.cat([b[0] for b in loader])
    assert sorted(first.tolist()) == list(range(10)) and first.tolist() != list(range(10))
    sharded = DataLoader(dataset, batch_size=4, sampler=DistributedSampler(dataset, num_replicas=2, rank=0))
    assert ddp.is_sharded(sharded)
