"""How steady a lab's reference solution is on the hidden training tests, over many submission seeds.

    python benchmarks/hidden_training_reliability.py [--lab lab08_segmentation] [--seeds 60] [--first 0] [--jobs 2]

Labs 5 (LeNet) and 8 (U-Net) have hidden tests that judge one training run of the student's ``train``, seeded
for the submission, against a threshold (accuracy, mean IoU). A fair lab needs the reference solution to pass
them for every seed, not for most. This runs the solution's answers as the sandbox's kernel would (preamble,
then the answer cells), calls the hidden tests' preamble function on the hidden case of each seed, one CPU
thread per run (the grader trains on one core) and ``--jobs`` runs at a time (2: the CI machine), and judges
the result with the lab's own judges. It prints the score per seed, the lowest, and how many seeds fail each
hidden test. Outside the sandbox: the numbers are the training's, not the grading machinery's.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the helpers that run a lab's answers as the sandbox does


def score(lab: str, value, answers) -> float:
    """What the lab's thresholds are about: accuracy for lab 5, mean IoU for lab 8."""
    if lab == "lab08_segmentation":
        from course_lib.analysis.segmentation import mean_iou
        from course_lib.grading.labs.lab08_segmentation import CLASSES

        return mean_iou(value, answers, CLASSES)
    return (value == answers).double().mean().item()


def hidden_training_tests(spec):
    """The hidden tests that train: they share one preamble function and one case per seed (``reuse=True``)."""
    tests = [test for test in spec.tests if test.hidden and test.function.startswith("train_and_")]
    if not tests:
        raise SystemExit(f"{spec.name} has no hidden training test")
    return tests


@functools.lru_cache(maxsize=None)
def solution_kernel(lab: str):
    """(spec, names): the lab's spec and the namespace its solution leaves; built once per worker process."""
    import nbformat
    from nbgrader_course import handed_in_answers, kernel_after

    from course_lib.grading.labs import get_spec

    spec = get_spec(lab)
    source = REPO / "solutions" / lab / f"{lab}.ipynb"
    return spec, kernel_after(spec.preamble, handed_in_answers(nbformat.read(source, as_version=4)))


def run_seed(lab: str, seed: int) -> tuple[int, float, dict[str, bool], float]:
    """(seed, score, {grade_id: passed}, seconds) of one hidden training run of the reference solution."""
    import torch

    torch.set_num_threads(1)
    spec, names = solution_kernel(lab)
    tests = hidden_training_tests(spec)
    (case,) = tests[0].cases(seed)
    start = time.perf_counter()
    value = names[tests[0].function](*case.args, **case.kwargs)
    seconds = time.perf_counter() - start
    passed = {test.grade_id: test.judge(case, value, None) is None for test in tests}
    return seed, score(lab, value, case.answers), passed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="lab08_segmentation", choices=["lab05_lenet", "lab08_segmentation"])
    parser.add_argument("--seeds", type=int, default=60, help="how many submission seeds")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args()

    seeds = list(range(args.first, args.first + args.seeds))
    with ProcessPoolExecutor(args.jobs) as pool:
        results = sorted(pool.map(run_seed, [args.lab] * len(seeds), seeds))
    grade_ids = list(results[0][2])
    print(f"{args.lab}: the reference solution on the hidden training case of each seed")
    print(f"{'seed':>5} {'score':>7} {'seconds':>8}  failed")
    for seed, value, passed, seconds in results:
        failed = ", ".join(g for g in grade_ids if not passed[g])
        print(f"{seed:>5} {value:>7.3f} {seconds:>8.1f}  {failed}")
    scores = [value for _, value, _, _ in results]
    print(f"\n{len(scores)} seeds: lowest {min(scores):.3f}, median {statistics.median(scores):.3f}, "
          f"slowest run {max(r[3] for r in results):.1f} s")
    for grade_id in grade_ids:
        print(f"{grade_id}: failed for {sum(not r[2][grade_id] for r in results)} of {len(results)} seeds")


if __name__ == "__main__":
    main()
