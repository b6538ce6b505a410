"""Seconds per submission: one class of lab 1 graded end to end, as an instructor runs it.

    python benchmarks/grading_class.py [--students 40] [--jobs 2] [--lab lab01_convolution]

A throw-away course (tests/nbgrader_course.py: nbgrader_config.py and solutions/
copied, the lab generated), then:

1. one submission alone (the instructor's solution): ``autograde`` wall time;
2. a class of ``--students`` submissions, graded by one ``autograde --jobs N``:
   most solve the lab, one in ten plants the padding mistake, one in ten hands
   in the released notebook untouched (a mix, so not every answer is identical);
3. ``feedback`` and ``export`` for the class.

Each step is the course's own command (``python -m course_lib.grading ...``)
timed from outside; the table gives seconds in all and per submission. Needs
bubblewrap (the answer sandbox), as grading does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the throw-away course the tests grade in

import nbgrader_course as course_tools  # noqa: E402


def padding_mistake(release, source):
    return course_tools.solved_copy(release, source, course_tools.pad_off_by_one)


def timed(course: Path, *args: str) -> float:
    start = time.perf_counter()
    course_tools.course_grading(course, *args, timeout=3600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--lab", default="lab01_convolution")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        course = course_tools.new_course(Path(tmp))
        lab = args.lab
        course_tools.submit(course, course_tools.Submission("alone", lab, course_tools.solved_copy))
        alone = timed(course, "autograde", lab, "--student", "alone", "--jobs", "1")

        makes = {0: padding_mistake, 1: course_tools.untouched}
        students = [f"student{i:03d}" for i in range(args.students)]
        for i, student in enumerate(students):
            make = makes.get(i % 10, course_tools.solved_copy)
            course_tools.submit(course, course_tools.Submission(student, lab, make))
        flags = [a for s in students for a in ("--student", s)]
        grading = timed(course, "autograde", lab, *flags, "--jobs", str(args.jobs))
        feedback = timed(course, "feedback", lab)
        export = timed(course, "export", "--to", str(course / "grades.csv"))

    n = args.students
    print(f"\n{lab}, {n} submissions, --jobs {args.jobs}, {os.cpu_count()} cores\n")
    print(f"| step | seconds | seconds per submission |\n|---|---:|---:|")
    print(f"| autograde, the solution alone (1 worker) | {alone:.1f} | {alone:.1f} |")
    print(f"| autograde, the class | {grading:.1f} | {grading / n:.2f} |")
    print(f"| feedback | {feedback:.1f} | {feedback / (n + 1):.2f} |")
    print(f"| export | {export:.1f} | {export / (n + 1):.2f} |")
    total = grading + feedback + export
    print(f"| class end to end | {total:.1f} | {total / n:.2f} |")


if __name__ == "__main__":
    main()
