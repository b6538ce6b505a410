"""How steady lab 8's reference solution is: its hidden mean IoU over many submission seeds.

    python benchmarks/lab08_reliability.py [--seeds 60] [--first 0] [--jobs 2]

The hidden tests of lab 8 (test_iou_hidden_70 / _80) judge one training run of the student's ``train``, seeded
for the submission. A fair lab needs the reference solution to pass them for every seed, not for most: this
trains the solution's ``UNet`` with its ``train`` on the hidden data of each seed (800 images, classes renamed),
exactly as the grader's preamble does, one CPU thread per run and ``--jobs`` runs at a time (2: the CI machine),
and prints the mean IoU per seed, the lowest, and how many runs fall below each threshold. Outside the sandbox:
the numbers are the training's, not the grading machinery's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the helpers that run a lab's answers as the sandbox does
SOURCE = REPO / "solutions" / "lab08_segmentation" / "lab08_segmentation.ipynb"


def run_seed(seed: int) -> tuple[int, float, list[float], float]:
    """(seed, mean IoU, IoU per class, seconds) of one hidden training run of the reference solution."""
    import nbformat
    import torch
    from nbgrader_course import handed_in_answers, kernel_after

    from course_lib.analysis.segmentation import iou_per_class, mean_iou
    from course_lib.grading.labs.lab08_segmentation import CLASSES, PREAMBLE, SPEC

    torch.set_num_threads(1)  # the grader trains on one core
    names = kernel_after(PREAMBLE, handed_in_answers(nbformat.read(SOURCE, as_version=4)))
    (case,) = SPEC.test("test_iou_hidden_80").cases(seed)
    start = time.perf_counter()
    predictions = names["train_and_segment"](*case.args)
    seconds = time.perf_counter() - start
    per_class = iou_per_class(predictions, case.answers, CLASSES).tolist()
    return seed, mean_iou(predictions, case.answers, CLASSES), per_class, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=60, help="how many submission seeds")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args()
    from course_lib.grading.labs.lab08_segmentation import THRESHOLDS

    seeds = range(args.first, args.first + args.seeds)
    with ProcessPoolExecutor(args.jobs) as pool:
        results = sorted(pool.map(run_seed, seeds))
    print(f"{'seed':>5} {'mean IoU':>9}  IoU per class (background, 1, 2, 3)  seconds")
    for seed, score, per_class, seconds in results:
        print(f"{seed:>5} {score:>9.3f}  {', '.join(f'{v:.2f}' for v in per_class):<36} {seconds:>7.1f}")
    scores = [score for _, score, _, _ in results]
    print(f"\n{len(scores)} seeds: lowest mean IoU {min(scores):.3f}, median {statistics.median(scores):.3f}, "
          f"slowest run {max(r[3] for r in results):.1f} s")
    for grade_id in ("test_iou_hidden_70", "test_iou_hidden_80"):
        below = sum(score < THRESHOLDS[grade_id] for score in scores)
        print(f"{grade_id}: threshold {THRESHOLDS[grade_id]:.2f}, failed by {below} of {len(scores)} seeds")


if __name__ == "__main__":
    main()
