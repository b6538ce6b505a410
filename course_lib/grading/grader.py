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


def _judge_test(box, test: Test, seed: int, load_errors: dict[str, str]) -> tuple[Verdict, str | None]:
    """Run one test's cases: its verdict, and the timeout message when a call of the function timed out."""
    cases = list(test.cases(seed))
    for number, case in enumerate(cases, 1):
        result = box.call(test.function, *case.args, **dict(case.kwargs))
        timed_out = result.error if not result.ok and (result.error or "").startswith("timed out after") else None
        missing = not result.ok and (result.error or "").startswith("no function named")
        if missing and load_errors:
            failed = load_errors.get(test.function) or "; ".join(f"{k}: {v}" for k, v in load_errors.items())
            message = f"{test.function} is not defined because an answer cell did not load ({failed})"
        elif result.ok:
            message = test.judge(case, result.value, None)
        elif result.error and result.error.startswith("NotImplementedError"):
            # The innermost answer-cell frame names the unwritten function (a preamble helper may have called it).
            frame = re.search(r", in (\w+)", (result.traceback or [""])[-1])
            name = frame.group(1) if frame else test.function
            message = f"{name} is not written yet (it still raises NotImplementedError)"
        elif result.error and not _NOT_RAISED.match(result.error):
            message = test.judge(case, None, result.error)  # the student's function raised
        else:
            message = result.error or "the call failed"
        if message is not None:
            where = case.label if not test.hidden else f"hidden case {number} of {len(cases)}: {case.label}"
            return Verdict(test.grade_id, test.title, False, f"{where}: {message}", number,
                           list(getattr(result, "traceback", []) or [])), timed_out
    return Verdict(test.grade_id, test.title, True, f"passed ({len(cases)} cases)", len(cases)), None


def _judge_tests(box, tests: Sequence[Test], seed: int, load_errors: dict[str, str]) -> dict[str, Verdict]:
    """Every test's verdict; a hang costs the tests that hang, and the wall budget stays for the others.

    When a call of a function times out, that function's later tests wait until every other
    function's tests have run (a function that hangs everywhere must not eat the budget of the
    others); then they run, and a second timeout of the same function ends them ("not run").
    """
    verdicts: dict[str, Verdict] = {}
    hung: dict[str, str] = {}  # function -> its first timeout
    waiting: list[Test] = []
    for test in tests:
        if test.function in hung:
            waiting.append(test)
            continue
        verdicts[test.grade_id], timed_out = _judge_test(box, test, seed, load_errors)
        if timed_out:
            hung[test.function] = timed_out
    gave_up: dict[str, str] = {}
    for test in waiting:
        if test.function in gave_up:
            verdicts[test.grade_id] = Verdict(test.grade_id, test.title, False,
                                              f"not run: {test.function} has timed out twice ({gave_up[test.function]})", 0)
            continue
        verdicts[test.grade_id], timed_out = _judge_test(box, test, seed, load_errors)
        if timed_out:
            gave_up[test.function] = timed_out
    return {test.grade_id: verdicts[test.grade_id] for test in tests}  # in the lab's order


def grade_answers(cells: Sequence[tuple[str, str]], spec: LabSpec, seed: int, *, limits=None) -> SubmissionResult:
    """Grade answer cells ``[(grade_id, source)]`` against ``spec``; hidden cases drawn from ``seed``.

    ``limits`` are used as given; without them, the default :class:`Limits` raised to what the lab needs.
    """
    from .sandbox import AnswerSandbox, Limits

    start = time.perf_counter()
    result = SubmissionResult(spec.name)
    protected = spec.preamble_names()
    for name, source in cells:
        result.flags += scan_answer(name, source, spec.forbidden, protected)
        result.flags += copied_from(name, source, spec.originals)
    with AnswerSandbox(list(cells), limits=limits or spec.limits_for(Limits()), preamble=spec.preamble) as box:
        result.load_errors = {name: r.error or "failed" for name, r in box.load_errors.items()}
        result.verdicts = _judge_tests(box, spec.tests, seed, result.load_errors)
    result.seconds = time.perf_counter() - start
    return result


def grade_notebook(nb: nbformat.NotebookNode, spec: LabSpec, seed: int, *, limits=None) -> SubmissionResult:
    """:func:`grade_answers` on the answer cells of a submitted notebook."""
    return grade_answers(answer_cells(nb), spec, seed, limits=limits)
