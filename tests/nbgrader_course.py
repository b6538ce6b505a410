"""A throw-away nbgrader course for the tests: generate, submit, autograde, read grades.

It runs the same nbgrader commands an instructor runs (README.md, "For
instructors"), in a temporary copy of the course directory, so the real
`labs/` folder and gradebook are never touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_lib.grading.cli import tool_env

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"

# All labs: every folder of solutions/ holding a notebook named after it.
LAB_NAMES = sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").exists())

_SOLUTION_REGION = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION[ \t]*\n?", re.S | re.M)
_MARK_SCHEME = re.compile(r"^=== BEGIN MARK SCHEME ===.*?^=== END MARK SCHEME ===\n*", re.S | re.M)


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run one nbgrader command in ``course``; fail with its output when it fails."""
    # nbgrader starts `alembic` and Jupyter kernels as programs: they must come from this environment.
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=tool_env(), capture_output=True, text=True
    )
    # `nbgrader` reports some failures only in its log while exiting 0; both are checked.
    if result.returncode != 0 or "[ERROR]" in result.stderr:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def course_grading(course: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the course's grading command (`python -m course_lib.grading ...`) in ``course``."""
    result = subprocess.run([sys.executable, "-m", "course_lib.grading", *args], cwd=course, env=tool_env(),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"course_lib.grading {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


# Lab 1's solution pads with this line; the planted mistake pads one pixel too wide (output size still right).
PADDING_LINE = "x = F.pad(x, (padding, padding, padding, padding))"
PADDING_TOO_WIDE = "x = F.pad(x, (padding + 1, padding + 1, padding + 1, padding + 1))"


def planted(answer: str, right: str, wrong: str) -> Callable[[str, str], str]:
    """An edit for :func:`solved_copy`: the answer cell ``answer`` with its line ``right`` (there exactly once)
    replaced by ``wrong``; every other cell as the instructor wrote it."""

    def edit(grade_id: str, code: str) -> str:
        if grade_id != answer:
            return code
        assert code.count(right) == 1, f"the solution of {answer} no longer contains {right!r} exactly once"
        return code.replace(right, wrong)

    return edit


# Lab 1's conv2d_loops pads one pixel too wide.
pad_off_by_one = planted("conv2d_loops", PADDING_LINE, PADDING_TOO_WIDE)


def untouched(release, source):
    """A make function: the released notebook, handed in as it came."""
    return release


def notebook_path(folder: Path, lab: str) -> Path:
    return folder / lab / f"{lab}.ipynb"


def answer_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """Cells a student writes in (autograded code and manually graded answers), by grade_id."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def solution_notebook(lab: str) -> nbformat.NotebookNode:
    """The instructor's source notebook of ``lab`` (solutions/<lab>/<lab>.ipynb)."""
    return nbformat.read(notebook_path(SOLUTIONS, lab), as_version=4)


def handed_in_answers(source_nb) -> list[tuple[str, str]]:
    """The autograded answer cells of a source notebook as a student hands them in: (grade_id, code), in
    notebook order, the solution markers removed."""
    return [(c.metadata["nbgrader"]["grade_id"], _SOLUTION_REGION.sub(lambda m: m.group(1), c.source))
            for c in source_nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
            and not c.metadata["nbgrader"].get("grade")]


def kernel_after(preamble: str, answers: list[tuple[str, str]], **replaced) -> dict:
    """What the grader's sandbox holds, as the student's kernel does after the setup cell: the lab's ``preamble``,
    then the ``answers`` (grade_id, code), then ``replaced`` (name -> object, a wrong answer put in place of the
    solution's after the cells, so that the preamble's helpers call it)."""
    names: dict = {}
    exec(preamble, names)
    for grade_id, source in answers:
        exec(compile(source, f"<answer cell {grade_id}>", "exec"), names)
    names.update(replaced)
    return names


def cells_of_kind(nb, kind: str):
    """(nbgrader metadata, cell) of the cells of one kind, in order: ``"test"`` (autograded tests), ``"answer"``
    (autograded answers) or ``"written"`` (answers an instructor grades)."""
    wanted = {"test": (True, False), "answer": (False, True), "written": (True, True)}[kind]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if (bool(meta.get("grade")), bool(meta.get("solution"))) == wanted:
            yield meta, cell


def solved_copy(release_nb, source_nb, edit: Callable[[str, str], str] | None = None):
    """The student version with every answer filled in as the instructor's solution does.

    ``edit(grade_id, code)`` may change an answer on its way in (to plant a mistake).
    This mimics a student: only answer cells change; everything else stays as released.
    """
    nb = nbformat.from_dict(release_nb)
    source_answers = answer_cells(source_nb)
    for grade_id, cell in answer_cells(nb).items():
        answer = _SOLUTION_REGION.sub(lambda m: m.group(1), source_answers[grade_id].source)
        answer = _MARK_SCHEME.sub("", answer)
        cell.source = edit(grade_id, answer) if edit else answer
    return nb


@dataclass
class Submission:
    """One student's submission of one lab, and what autograding it must give."""

    student: str
    lab: str
    make: Callable  # (release_nb, source_nb) -> notebook to submit
    description: str = ""
    results: dict = field(default_factory=dict)  # filled after grading: grade_id -> (score or None, max)


def submit(course: Path, sub: Submission) -> None:
    release = nbformat.read(notebook_path(course / "labs", sub.lab), as_version=4)
    source = nbformat.read(notebook_path(course / "solutions", sub.lab), as_version=4)
    target = notebook_path(course / "submitted" / sub.student, sub.lab)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(sub.make(release, source), target)
    (target.parent / "timestamp.txt").write_text("2026-01-15 12:00:00.000000 UTC")


def new_course(root: Path) -> Path:
    """A copy of the course directory (config + instructor sources) in ``root``, labs generated."""
    course = root / "course"
    course.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", course)
    shutil.copytree(SOLUTIONS, course / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for lab in LAB_NAMES:
        nbgrader(course, "generate_assignment", lab, "--force")
    return course


def grade(course: Path, submissions: list[Submission]) -> dict[str, float]:
    """Submit, autograde (the course's parallel, sandboxed command), write feedback and export; seconds per step."""
    from nbgrader.api import Gradebook

    for sub in submissions:
        submit(course, sub)
    seconds = {}
    labs = sorted({s.lab for s in submissions})
    start = time.perf_counter()
    for lab in labs:
        course_grading(course, "autograde", lab, "--jobs", "2")
    seconds["autograde"] = time.perf_counter() - start
    start = time.perf_counter()
    for lab in labs:
        course_grading(course, "feedback", lab)
    seconds["generate_feedback"] = time.perf_counter() - start
    start = time.perf_counter()
    course_grading(course, "export", "--to", str(course / "grades.csv"))
    seconds["export"] = time.perf_counter() - start

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for sub in submissions:
            notebook = gradebook.find_submission_notebook(sub.lab, sub.lab, sub.student)
            sub.results = {g.name: (g.auto_score, g.max_score) for g in notebook.grades}
    return seconds


def feedback_html(course: Path, sub: Submission) -> str:
    return (course / "feedback" / sub.student / sub.lab / f"{sub.lab}.html").read_text()
