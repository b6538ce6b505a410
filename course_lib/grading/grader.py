"""Grade one submission: its answer cells in a sandbox, every verdict computed here.

The grader is the trusted side. From a submitted notebook it takes only the
*source* of the answer cells (nbgrader's autograded answer cells), scans it
(:mod:`course_lib.grading.scan`), loads it into a fresh
:class:`~course_lib.grading.sandbox.AnswerSandbox`, and for each graded test of
the lab's specification (:mod:`course_lib.grading.spec`) sends the test's cases,
receives the return values as plain data and judges them with the
specification's ``judge``, in this process. Tests are scored one by one: a
crash, a hang or a wrong answer costs the tests it touches, no others.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import nbformat

from .scan import Flag, copied_from, scan_answer
from .spec import LabSpec, Test, Verdict

__all__ = ["SubmissionResult", "answer_cells", "grade_answers", "grade_notebook"]

# What the sandbox reports when the failure is not an exception raised by the student's code.
_NOT_RAISED = re.compile(r"^(timed out|the sandbox|the submission|no function|wall time)", re.I)


@dataclass
class SubmissionResult:
    """Everything grading one notebook gave: a verdict per test, flags, and what went wrong loading it."""

    lab: str
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    flags: list[Flag] = field(default_factory=list)
    load_errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def passed(self) -> list[str]:
        return [grade_id for grade_id, v in self.verdicts.items() if v.passed]


def answer_cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(grade_id, source) of the autograded answer cells of a notebook, in notebook order."""
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            cells.append((meta.get("grade_id", f"cell {len(cells)}"), cell.source))
    return cells


def _judge_test(box, test: Test, seed: int, hung: dict[str, str], load_errors: dict[str, str]) -> Verdict:
    """Run one test's cases; ``hung`` remembers functions that timed out, so a hang is paid for once."""
    cases = list(test.cases(seed))
    if test.function in hung:
        return Verdict(test.grade_id, test.title, False,
                       f"not run: an earlier call of {test.function} {hung[test.function]}", 0)
    for number, case in enumerate(cases, 1):
        result = box.call(test.function, *case.args, **dict(case.kwargs))
        if not result.ok and (result.error or "").startswith("timed out after"):
            hung[test.function] = result.error  # the wall budget stays for the other functions' tests
        missing = not result.ok and (result.error or "").startswith("no function named")
        if missing and load_errors:
            failed = load_errors.get(test.function) or "; ".join(f"{k}: {v}" for k, v in load_errors.items())
            message = f"{test.function} is not defined because an answer cell did not load ({failed})"
        elif result.ok:
            message = test.judge(case, result.value, None)
        elif result.error and result.error.startswith("NotImplementedError"):
            message = f"{test.function} is not written yet (it still raises NotImplementedError)"
        elif result.error and not _NOT_RAISED.match(result.error):
            message = test.judge(case, None, result.error)  # the student's function raised
        else:
            message = result.error or "the call failed"
        if message is not None:
            where = case.label if not test.hidden else f"hidden case {number} of {len(cases)}: {case.label}"
            return Verdict(test.grade_id, test.title, False, f"{where}: {message}", number,
                           list(getattr(result, "traceback", []) or []))
    return Verdict(test.grade_id, test.title, True, f"passed ({len(cases)} cases)", len(cases))


def grade_answers(cells: Sequence[tuple[str, str]], spec: LabSpec, seed: int, *, limits=None) -> SubmissionResult:
    """Grade answer cells ``[(grade_id, source)]`` against ``spec``; hidden cases drawn from ``seed``."""
    from .sandbox import AnswerSandbox, Limits

    start = time.perf_counter()
    result = SubmissionResult(spec.name)
    for name, source in cells:
        result.flags += scan_answer(name, source, spec.forbidden)
        result.flags += copied_from(name, source, spec.originals)
    with AnswerSandbox(list(cells), limits=limits or Limits(), preamble=spec.preamble) as box:
        result.load_errors = {name: r.error or "failed" for name, r in box.load_errors.items()}
        hung: dict[str, str] = {}
        for test in spec.tests:
            result.verdicts[test.grade_id] = _judge_test(box, test, seed, hung, result.load_errors)
    result.seconds = time.perf_counter() - start
    return result


def grade_notebook(nb: nbformat.NotebookNode, spec: LabSpec, seed: int, *, limits=None) -> SubmissionResult:
    """:func:`grade_answers` on the answer cells of a submitted notebook."""
    return grade_answers(answer_cells(nb), spec, seed, limits=limits)
