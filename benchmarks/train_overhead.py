"""What does course_lib.train.fit cost over a hand-written PyTorch training loop?

    python benchmarks/train_overhead.py [--repeats 5] [--threads N] [--skip-cuda]

Trains the same model on the same data with the same optimizer, one epoch at a
time, alternately with ``fit`` and with a plain loop (A B A B ...), and prints
the median ratio of their epoch times with images/s:

* CPU: a LeNet-5-like model on mnist-5k (4,000 training digits, batches of 64);
* CUDA, when present: torchvision's ResNet-18 on CIFAR-shaped random tensors,
  fed by a pinned ``DataLoader`` and, if ``course_lib.train.gpu_loader`` exists,
  by its ``GPULoader``;
* the progress bar's refresh: one step plus one read of the running loss and
  accuracy, after 100, 1,000 and 10,000 steps of an epoch (it should not grow).

The plain loop is a well-written one, not a naive one: it tracks loss and
accuracy as device tensors read once per epoch (no ``.item()`` per step) and
uses the same autocast and memory format as ``fit``, so the ratio measures the
engine's bookkeeping, not a difference in technique. Alternating the two
spreads the drift of a busy machine evenly over both.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib import seed_everything
from course_lib.data.datasets import load_mnist5k
from course_lib.train import fit


def lenet5_like() -> nn.Module:
    """LeNet-5's layout (two 5x5 convolutions, three linear layers) with ReLU and max-pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def plain_epoch(model, loader, optimizer, loss_fn, device, amp_dtype, channels_last) -> tuple[float, float]:
    """One epoch of a hand-written loop; returns (mean loss, accuracy)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in loader:
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
        seen += y.shape[0]
    return loss_sum.item() / seen, correct.item() / seen


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(name, make_model, make_loader, n_images, device, repeats, amp_dtype=None, channels_last=False) -> None:
    """Alternate fit and the plain loop for ``repeats`` epochs each (after one warm-up each) and print the result."""
    seed_everything(0)
    models = {"fit": make_model().to(device), "plain": make_model().to(device)}
    models["plain"].load_state_dict(models["fit"].state_dict())
    if channels_last:
        for m in models.values():
            m.to(memory_format=torch.channels_last)
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    loaders = {k: make_loader() for k in models}
    loss_fn = nn.CrossEntropyLoss()

    def run(kind: str) -> float:
        sync(device)
        start = time.perf_counter()
        if kind == "fit":
            fit(models[kind], loaders[kind], optimizer=optimizers[kind], epochs=1, device=device, progress=False,
                amp=amp_dtype or False, channels_last=channels_last)  # fmt: skip
        else:
            plain_epoch(models[kind], loaders[kind], optimizers[kind], loss_fn, device, amp_dtype, channels_last)
        sync(device)
        return time.perf_counter() - start

    run("fit"), run("plain")  # warm-up: allocator, cudnn autotuning, lazy imports
    times = {"fit": [], "plain": []}
    for _ in range(repeats):
        for kind in ("fit", "plain"):
            times[kind].append(run(kind))
    ratios = [f / p for f, p in zip(times["fit"], times["plain"])]
    for kind in ("plain", "fit"):
        median = statistics.median(times[kind])
        print(f"  {name:<44} {kind:<6} {median:7.3f} s/epoch  {n_images / median:9.0f} images/s")
    print(f"  {name:<44} fit / plain: median {statistics.median(ratios):.3f}x  (per repeat: "
          + ", ".join(f"{r:.3f}" for r in ratios) + ")")  # fmt: skip


def cpu_benchmark(repeats: int) -> None:
    data = load_mnist5k()
    device = torch.device("cpu")
    print(f"CPU, {torch.get_num_threads()} thread(s): LeNet-5-like on mnist-5k, batch 64, SGD+momentum")
    compare(
        "LeNet-5 / mnist-5k / DataLoader",
        lenet5_like,
        lambda: data.train_loader(64, seed=0),
        len(data.x_train),
        device,
        repeats,
    )


def gpu_loader_factory(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device):
    """A ``GPULoader`` over (x, y) if course_lib.train.gpu_loader exists, else None (with a message)."""
    try:
        from course_lib.train.gpu_loader import GPULoader
    except ImportError:
        print("  (course_lib.train.gpu_loader is not available: skipping the GPULoader comparison)")
        return None
    return lambda: GPULoader(x, y, batch_size=batch_size, shuffle=True, device=device)


def cuda_benchmark(repeats: int) -> None:
    from torchvision.models import resnet18

    device = torch.device("cuda")
    amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    n, batch_size = 10_000, 256
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    print(f"CUDA ({torch.cuda.get_device_name(device)}): ResNet-18 on {n} random 3x32x32 images, "
          f"batch {batch_size}, {amp_dtype}, channels_last")  # fmt: skip

    def make_model():
        return resnet18(num_classes=10)

    def pinned_loader():
        gen = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(x, y), batch_size, shuffle=True, generator=gen, pin_memory=True, num_workers=2)

    loaders = {"ResNet-18 / DataLoader (pinned, 2 workers)": pinned_loader}
    gpu_loader = gpu_loader_factory(x, y, batch_size, device)
    if gpu_loader is not None:
        loaders["ResNet-18 / GPULoader"] = gpu_loader
    for name, make_loader in loaders.items():
        compare(name, make_model, make_loader, n, device, repeats, amp_dtype=amp_dtype, channels_last=True)


def refresh_benchmark(reads: int = 20) -> None:
    """Milliseconds of one meter update + one running read (what a progress-bar refresh costs) late in an epoch."""
    from course_lib.train.engine import _Meter

    logits, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    loss = nn.functional.cross_entropy(logits, y)
    for steps in (100, 1_000, 10_000):
        meter = _Meter()
        for step in range(steps):
            meter.update(loss, logits, y)
            if step % 50 == 0:  # the bar reads twice a second: every 50 steps or so
                meter.running()
        start = time.perf_counter()
        for _ in range(reads):
            meter.update(loss, logits, y)
            meter.running()
        print(f"progress refresh after {steps:>6,} steps: {(time.perf_counter() - start) / reads * 1e3:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per contender (after a warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-cuda", action="store_true", help="time the CPU part only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}")
    refresh_benchmark()
    cpu_benchmark(args.repeats)
    if torch.cuda.is_available() and not args.skip_cuda:
        cuda_benchmark(args.repeats)
    elif not args.skip_cuda:
        print("no CUDA device: skipping the ResNet-18 / GPULoader part")


if __name__ == "__main__":
    main()
