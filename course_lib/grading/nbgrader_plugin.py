"""nbgrader's autograde, with every graded test scored outside the student's process.

``GradeInSandbox`` takes the place of nbgrader's ``Execute`` preprocessor in
``nbgrader autograde`` (``nbgrader_config.py``). nbgrader still collects the
submission, restores the locked cells, records the scores in the gradebook,
and later renders feedback and exports grades; but the student's notebook is
never executed. Instead :func:`course_lib.grading.grader.grade_notebook` runs
the answer cells in a sandbox, and each graded test cell receives, as its
output, the grader's verdict:

* passed: one line on stdout (nbgrader gives the cell's points);
* failed: an error output whose text is the one-line message, with the
  "Likely cause" when the mistake is recognised, then at most a few lines of
  the student's own traceback (nbgrader gives 0 points).

A hidden test cell shows only a note and its verdict: the cases themselves are
never written into the notebook, so feedback cannot reveal them. Below each
written answer, the autograded notebook (what the Formgrader shows) gets that
answer's mark scheme from the lab's source; ``RemoveInstructorCells`` takes it
out again when nbgrader renders feedback. The flags of the static scan and the similarity
check, with the verdicts, go to ``reports/<lab>/<student>.json``, for the
instructor only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Int, Unicode

from .grader import SubmissionResult, grade_notebook
from .labs import get_spec
from .spec import submission_seed

__all__ = ["GradeInSandbox", "RemoveInstructorCells", "RestoreCellMetadata", "grading_key", "report_path", "HIDDEN_NOTE"]

HIDDEN_NOTE = "# Hidden tests: cases drawn for your submission when your lab is graded; the result is below."
TRACEBACK_LINES = 6
INSTRUCTOR_ONLY = "course_lib_instructor_only"  # cell metadata key of what feedback must not show
MARK_SCHEME = re.compile(r"=== BEGIN MARK SCHEME ===\n?(.*?)=== END MARK SCHEME ===", re.S)


def mark_schemes(source_notebook: Path) -> dict[str, str]:
    """{grade_id: mark scheme text} of the written answers of a lab's instructor source."""
    if not source_notebook.exists():
        return {}
    schemes = {}
    for cell in nbformat.read(source_notebook, as_version=4).cells:
        found = MARK_SCHEME.search(cell.source)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if found and grade_id:
            schemes[grade_id] = found.group(1).strip()
    return schemes


def _with_mark_schemes(cells: list, schemes: dict[str, str]) -> list:
    out = []
    for cell in cells:
        out.append(cell)
        meta = cell.metadata.get("nbgrader", {})
        scheme = schemes.get(meta.get("grade_id")) if meta.get("solution") and meta.get("grade") else None
        if scheme:
            note = nbformat.v4.new_markdown_cell(f"**Mark scheme** (instructors only: not in feedback)\n\n{scheme}")
            note.metadata[INSTRUCTOR_ONLY] = True
            out.append(note)
    return out


def grading_key(path: Path) -> bytes:
    """The instructor's secret for hidden-case seeds, created on first use (readable by its owner only)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def report_path(course: Path, lab: str, student: str) -> Path:
    return course / "reports" / lab / f"{student}.json"


def _outputs(verdict, points) -> list:
    if verdict.passed:
        text = f"{verdict.title}: {verdict.message}. {points:g} of {points:g} points.\n"
        return [nbformat.v4.new_output("stream", name="stdout", text=text)]
    lines = [f"{verdict.title}: 0 of {points:g} points.", verdict.message]
    if verdict.traceback:
        lines += ["Where your code failed:", *verdict.traceback[-TRACEBACK_LINES:]]
    return [nbformat.v4.new_output("error", ename="TestFailed", evalue=verdict.message, traceback=lines)]


class GradeInSandbox(NbGraderPreprocessor):
    """Score each graded test cell from the sandboxed grader (replaces nbgrader's Execute)."""

    wall_s = Float(120.0, help="Seconds one submission may take in all (every test of it).").tag(config=True)
    call_timeout_s = Float(20.0, help="Seconds one call of a student's function may take.").tag(config=True)
    memory_mb = Int(2048, help="Memory (address space) the answers may use on top of the preamble's (import torch), in MB.").tag(config=True)
    key_file = Unicode(".grading/key", help="The secret for hidden-case seeds, relative to the course directory.").tag(config=True)

    def preprocess(self, nb, resources):
        from .sandbox import Limits

        lab, student = resources["nbgrader"]["assignment"], resources["nbgrader"]["student"]
        course = Path.cwd()
        spec = get_spec(lab)
        seed = submission_seed(grading_key(course / self.key_file), lab, student)
        limits = spec.limits_for(Limits(wall_s=self.wall_s, call_timeout_s=self.call_timeout_s, memory_mb=self.memory_mb))
        result = grade_notebook(nb, spec, seed, limits=limits)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code":
                continue
            cell.outputs, cell.execution_count = [], None
            grade_id = meta.get("grade_id")
            if meta.get("grade") and not meta.get("solution") and grade_id in result.verdicts:
                test = spec.test(grade_id)
                if test.hidden:
                    cell.source = HIDDEN_NOTE
                cell.outputs = _outputs(result.verdicts[grade_id], float(meta.get("points", 0)))
            elif meta.get("grade") and not meta.get("solution"):
                message = f"{grade_id}: the lab's grading specification has no test for this cell"
                cell.outputs = [nbformat.v4.new_output("error", ename="GradingError", evalue=message, traceback=[message])]
        source_directory = self.config.CourseDirectory.get("source_directory", "source")
        nb.cells = _with_mark_schemes(nb.cells, mark_schemes(course / source_directory / lab / f"{lab}.ipynb"))
        self._write_report(course, lab, student, result)
        self.log.info("%s/%s: %d of %d tests passed in %.1f s, %d flag(s)", student, lab, len(result.passed()),
                      len(result.verdicts), result.seconds, len(result.flags))
        return nb, resources

    @staticmethod
    def _write_report(course: Path, lab: str, student: str, result: SubmissionResult) -> None:
        path = report_path(course, lab, student)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "student": student, "lab": lab, "seconds": round(result.seconds, 2),
            "passed": result.passed(),
            "verdicts": {k: {"passed": v.passed, "message": v.message} for k, v in result.verdicts.items()},
            "load_errors": result.load_errors,
            "flags": [str(f) for f in result.flags],
        }, indent=1))


_GRADED_FLAGS = ("grade", "solution", "locked", "task", "points")  # what decides how nbgrader grades a cell


def _loose(value):
    """A metadata value as it compares: absent = False, 1 = 1.0."""
    if value is None or isinstance(value, bool):
        return bool(value)
    return float(value) if isinstance(value, (int, float)) else value


class RestoreCellMetadata(NbGraderPreprocessor):
    """Before nbgrader sanitises a submission: its cells' nbgrader metadata as the gradebook knows it.

    A student can edit a cell's metadata. nbgrader's OverwriteCells restores a locked cell's
    source and points, but not its flags: a test cell re-marked as an answer makes it fail
    ("Inconsistent checksums") and the whole lab scores 0; a cell of the student's own with a
    grade_id the gradebook does not know makes it fail too; a test cell deleted or stripped of
    its metadata is never graded. Here, from the gradebook's record of the lab's source:

    * a cell whose grade_id the gradebook knows gets the source cell's metadata back
      (grade, solution, locked, task, points); a second cell with the same id loses it;
    * a cell with any other nbgrader metadata loses it (it is the student's own cell);
    * a graded cell missing from the submission is put back after the known cell that
      precedes it in the source (OverwriteCells then restores its source as for any other).
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook, MissingEntry

        lab, notebook_id = resources["nbgrader"]["assignment"], resources["nbgrader"]["notebook"]
        with Gradebook(resources["nbgrader"]["db_url"]) as gradebook:
            try:
                source = gradebook.find_notebook(notebook_id, lab)
            except MissingEntry:
                return nb, resources
            known = {cell.name: cell for cell in source.source_cells}
            order = [cell.name for cell in source.source_cells]
            points = {cell.name: float(cell.max_score) for cell in source.grade_cells}
            points.update({cell.name: float(cell.max_score) for cell in source.task_cells})
            solutions = {cell.name for cell in source.solution_cells}
            tasks = {cell.name for cell in source.task_cells}

            def metadata(name):
                meta = {"grade": name in points and name not in tasks, "grade_id": name,
                        "locked": bool(known[name].locked), "solution": name in solutions,
                        "task": name in tasks, "schema_version": 3}
                if name in points:
                    meta["points"] = points[name]
                return meta

            seen = set()
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader")
                if meta is None:
                    continue
                name = meta.get("grade_id") if isinstance(meta, dict) else None
                if isinstance(name, str) and name in known and name not in seen:
                    seen.add(name)
                    restored = metadata(name)
                    if any(_loose(meta.get(k)) != _loose(restored.get(k)) for k in _GRADED_FLAGS):
                        self.log.warning("cell %s: its nbgrader metadata was changed; restored", name)
                    cell.metadata["nbgrader"] = restored
                else:
                    self.log.warning("a cell with nbgrader metadata the lab does not have (%r): removed", name)
                    del cell.metadata["nbgrader"]
            # Not OverwriteCells.add_missing_cells: it inserts after the preceding *graded* cell and fails
            # (KeyError) when the source cell before a test is a locked markdown cell, as in lab 1.
            for name in points:
                if name in seen:
                    continue
                self.log.warning("graded cell %s is missing from the submission: put back", name)
                cell = (nbformat.v4.new_code_cell if known[name].cell_type == "code" else nbformat.v4.new_markdown_cell)(
                    known[name].source, metadata={"nbgrader": metadata(name), "editable": False, "deletable": False})
                earlier = set(order[:order.index(name)])
                at = max((i + 1 for i, c in enumerate(nb.cells)
                          if c.metadata.get("nbgrader", {}).get("grade_id") in earlier), default=0)
                nb.cells.insert(at, cell)
                seen.add(name)
        return nb, resources


class RemoveInstructorCells(NbGraderPreprocessor):
    """In feedback: drop what only the instructor may read (the mark schemes GradeInSandbox adds)."""

    def preprocess(self, nb, resources):
        nb.cells = [cell for cell in nb.cells if not cell.metadata.get(INSTRUCTOR_ONLY)]
        return nb, resources
