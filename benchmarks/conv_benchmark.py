"""Time course_lib's from-scratch convolutions against torch.nn.functional.conv2d.

    python benchmarks/conv_benchmark.py [--device cpu|cuda] [--min-run-time 0.3]

Prints one row per layer size: the median time of F.conv2d, and how many times
slower course_lib's im2col ``conv2d`` and loop-based ``conv2d_naive`` are. All
ratios of a row come from the same run, so they compare fairly even on a busy
machine. The naive version is only timed on sizes where it finishes quickly.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from tqdm import tqdm

from course_lib import get_device, seed_everything
from course_lib.analysis import compare_timings
from course_lib.layers.functional import conv2d, conv2d_naive

# (name, N, C_in, H=W, C_out, k, stride, padding, time the naive loops?)
SIZES = [
    ("LeNet conv1: 1->6, 5x5 on 28x28", 16, 1, 28, 6, 5, 1, 2, True),
    ("small 3x3: 16->32 on 32x32", 8, 16, 32, 32, 3, 1, 1, True),
    ("ResNet stage 1: 64->64 on 56x56", 4, 64, 56, 64, 3, 1, 1, False),
    ("strided 3x3: 128->256 on 28x28, s2", 4, 128, 28, 256, 3, 2, 1, False),
    ("1x1 reduction: 256->64 on 28x28", 4, 256, 28, 64, 1, 1, 0, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds of repeats per measurement")
    args = parser.parse_args()
    device = get_device(args.device)
    seed_everything(0)
    print(f"device={device}, torch {torch.__version__}, threads={torch.get_num_threads()}")
    header = f"{'layer':<38} {'F.conv2d':>10} {'im2col x':>9} {'loops x':>9}"
    rows = []
    for name, n, c_in, size, c_out, k, s, p, with_naive in tqdm(SIZES, desc="layers"):
        x = torch.randn(n, c_in, size, size, device=device)
        w = torch.randn(c_out, c_in, k, k, device=device)
        functions = {"F.conv2d": F.conv2d, "conv2d (im2col)": conv2d}
        if with_naive:
            functions["conv2d_naive (loops)"] = conv2d_naive
        timings = {r["name"]: r for r in compare_timings(functions, x, w, stride=s, padding=p, min_run_time=args.min_run_time)}
        naive = timings.get("conv2d_naive (loops)")
        rows.append(
            f"{name:<38} {1e3 * timings['F.conv2d']['seconds']:>8.2f}ms {timings['conv2d (im2col)']['ratio']:>8.1f}x "
            + (f"{naive['ratio']:>8.0f}x" if naive else f"{'-':>9}")
        )
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
