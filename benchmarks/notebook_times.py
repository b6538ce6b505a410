"""How long each notebook takes to execute, against its budget, and what 18 chapters and 8 labs will cost.

    python benchmarks/notebook_times.py            # every chapter and lab solution, one at a time
    python benchmarks/notebook_times.py book/02_convolution.ipynb

Budgets (on two CPU cores, the CI machine): a chapter executes in 90 s, a lab
solution in 60 s. Each notebook runs in a fresh kernel, one at a time, so the
times do not disturb each other; run it on a quiet machine. The projection
scales the measured times to the syllabus (18 chapters, 8 labs) for the two
commands of the README:

* ``make book`` (cold): every chapter once, two at a time (book/_ext/notebook_cache.py);
* ``make test``: every chapter once (the book build) and every lab solution in
  each graded submission of the nbgrader round trip, beside the unit tests.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = {"chapter": 90.0, "lab solution": 60.0}
PLANNED = {"chapter": 18, "lab solution": 8}
WORKERS = 2  # cores of the CI machine; the book build executes one notebook per core
# Submissions the round trip grades per lab (solution, untouched, planted mistakes); each runs the lab once.
GRADED_PER_LAB = 3


def kind_of(path: Path) -> str:
    return "chapter" if path.parent.name == "book" else "lab solution"


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: book/*.ipynb and solutions/*/*.ipynb")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted(REPO.glob("book/*.ipynb")) + sorted(REPO.glob("solutions/*/*.ipynb"))

    rows = []
    print(f"{'notebook':<48} {'kind':<13} {'seconds':>8} {'budget':>7} {'share':>6}  verdict")
    for path in paths:
        kind = kind_of(path)
        seconds = execute(path)
        budget = BUDGET_S[kind]
        rows.append((kind, seconds))
        verdict = "ok" if seconds <= budget else "OVER BUDGET"
        print(f"{str(path.relative_to(REPO)):<48} {kind:<13} {seconds:8.1f} {budget:7.0f} {seconds / budget:6.0%}  {verdict}")

    print("\nProjection to the syllabus (measured mean per kind; at budget = every notebook at its limit):")
    totals = {}
    for kind in ("chapter", "lab solution"):
        measured = [s for k, s in rows if k == kind]
        mean = statistics.mean(measured) if measured else BUDGET_S[kind]
        totals[kind] = (mean, BUDGET_S[kind])
        print(f"  {PLANNED[kind]} {kind}s: mean {mean:.1f} s measured over {len(measured)}")
    for label, pick in (("measured means", 0), ("at budget", 1)):
        chapter, lab = totals["chapter"][pick], totals["lab solution"][pick]
        book = math.ceil(PLANNED["chapter"] / WORKERS) * chapter
        notebooks_in_test = PLANNED["chapter"] * chapter + PLANNED["lab solution"] * GRADED_PER_LAB * lab
        print(f"  {label:>15}: make book cold, notebook execution on {WORKERS} cores: {book / 60:5.1f} min; "
              f"make test, notebook execution: {notebooks_in_test / 60:5.1f} min of one core "
              f"({notebooks_in_test / WORKERS / 60:4.1f} min on {WORKERS})")
    over = [k for k, s in rows if s > BUDGET_S[k]]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
