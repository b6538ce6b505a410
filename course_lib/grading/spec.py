"""A lab's graded tests as specifications: inputs to send, and how to judge what comes back.

A graded test cell of a lab notebook is scored from a :class:`Test`, not from
what the cell printed. The same specification serves two places:

* in the student's JupyterLab, the test cell calls :func:`run_test`: the
  *visible* cases run right there, against the student's own function, and a
  failure says what is wrong (instant feedback, and what ``nbgrader validate``
  shows);
* at grading time, the grader (a trusted process) sends the cases to the
  student's answer cells loaded in a sandbox, receives the outputs as plain
  data, and judges them itself with the same ``judge`` function; *hidden*
  cases are drawn from a per-submission seed that the student cannot know
  (:func:`submission_seed`).

Because the verdict is computed in the grader's process from values, nothing a
submission does to its own interpreter can turn a failure into a pass.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Case", "Test", "LabSpec", "Verdict", "derived_seed", "fixed_cases", "label_derangement", "run_test",
           "submission_seed"]


@dataclass(frozen=True)
class Case:
    """One call of the student's function: ``function(*args, **kwargs)``, described for a message."""

    args: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class Test:
    """One graded test cell (``grade_id`` in the notebook's nbgrader metadata; points live there).

    ``cases(seed)`` returns the calls to make: visible tests ignore the seed,
    hidden tests draw their cases from it. ``judge(case, value, error)`` gets
    what the student's function returned for ``case`` (``error`` is None, or
    ``"TypeName: message"`` when it raised) and returns None when that is
    right, else a message for the student: one line of what is wrong,
    optionally followed by ``"\\nLikely cause: ..."``.
    """

    grade_id: str
    function: str
    title: str
    cases: Callable[[int], Sequence[Case]]
    judge: Callable[[Case, Any, str | None], str | None]
    hidden: bool = False


def fixed_cases(cases: Sequence[Case]) -> Callable[[int], Sequence[Case]]:
    """``Test.cases`` of a visible test: the same ``cases`` whatever the seed."""
    return lambda seed: cases


@dataclass(frozen=True)
class LabSpec:
    """Everything the grader needs to know about one lab."""

    name: str
    tests: Sequence[Test]
    # Trusted code run in the sandbox before the answer cells (the lab's locked setup cell, in effect).
    preamble: str = ""
    # What the lab allows and forbids, in words (the lab's rules, shown with a flag).
    rules: str = ""
    # Static scan: names and attribute paths an answer must not use (see course_lib.grading.scan).
    forbidden: Mapping[str, str] = field(default_factory=dict)
    # Functions of course_lib whose source an answer must not copy (see course_lib.grading.scan).
    originals: Sequence[Callable] = ()
    # In the student's notebook only: a context that refuses the lab's shortcuts while visible cases run,
    # so a student learns at once that a call is not allowed (the grader flags them from the source).
    guard: Callable[[], AbstractContextManager] = nullcontext
    # The least this lab needs of the sandbox (fields of course_lib.grading.sandbox.Limits), e.g. a lab whose
    # graded call trains a network needs a longer call_timeout_s than the course's default.
    limits: Mapping[str, float] = field(default_factory=dict)

    def limits_for(self, configured):
        """``configured`` (a :class:`~course_lib.grading.sandbox.Limits`) with each field this lab needs raised
        to at least :attr:`limits`; a course may grant more, never less than the lab needs."""
        from dataclasses import replace

        unknown = set(self.limits) - set(configured.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{self.name}: limits names no field of Limits: {sorted(unknown)}")
        return replace(configured, **{name: max(getattr(configured, name), value) for name, value in self.limits.items()})

    def preamble_names(self) -> frozenset[str]:
        """The names the preamble defines at its top level (helpers the grader calls, their tables), not those
        it imports: an answer may use them, and the scan flags an answer that defines or assigns them."""
        import ast

        names = set()
        for node in ast.parse(self.preamble).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        return frozenset(names)

    def run(self, grade_id: str, namespace: Mapping[str, Any]) -> None:
        """What a test cell of the lab notebook calls: ``LAB.run("test_loops_basic", globals())``."""
        run_test(self, grade_id, namespace)

    def test(self, grade_id: str) -> Test:
        for test in self.tests:
            if test.grade_id == grade_id:
                return test
        raise KeyError(f"{self.name} has no graded test {grade_id!r}; tests: {[t.grade_id for t in self.tests]}")


@dataclass
class Verdict:
    """What grading one test gave: passed or not, and the message a student reads."""

    grade_id: str
    title: str
    passed: bool
    message: str = ""
    cases_run: int = 0
    traceback: list[str] = field(default_factory=list)


def submission_seed(key: bytes, lab: str, student: str) -> int:
    """The seed of a submission's hidden cases: unpredictable without ``key``, fixed for (lab, student).

    An HMAC of the lab and the student under the instructor's key (which the
    sandbox cannot read): regrading gives the same cases, another student gets others.
    """
    digest = hmac.new(key, f"{lab}\0{student}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "little")


def derived_seed(lab: str, seed: int, purpose: str) -> int:
    """A number drawn from a submission's ``seed`` for one ``purpose`` of ``lab``; knowing one does not tell
    another (a hash), so a lab can derive its secret relabelling, its data and its training seed apart."""
    return int.from_bytes(hashlib.sha256(f"{lab}\0{purpose}\0{seed}".encode()).digest()[:8], "little")


def label_derangement(lab: str, seed: int, classes: int = 10) -> torch.Tensor:
    """The secret renaming of the classes for a submission of ``lab``: class c is called ``perm[c]``, and no
    class keeps its label (a derangement), so answers trained on the true labels score about zero."""
    rng = np.random.default_rng(derived_seed(lab, seed, "labels"))
    while True:
        perm = rng.permutation(classes)
        if not (perm == np.arange(classes)).any():
            return torch.from_numpy(perm).long()


def run_test(spec: LabSpec, grade_id: str, namespace: Mapping[str, Any]) -> None:
    """Run a test cell in the student's notebook: visible cases here and now, hidden ones announced.

    Raises ``AssertionError`` with the judge's message at the first wrong case,
    so the cell fails and names the mistake; prints one line when all pass.
    """
    test = spec.test(grade_id)
    if test.hidden:
        print(f"{test.title}: hidden tests, run with cases drawn for your submission when your lab is graded.")
        return
    function = namespace.get(test.function)
    if not callable(function):
        raise AssertionError(f"define the function {test.function} (run its cell first)")
    cases = test.cases(0)
    for case in cases:
        value, error, raised = None, None, None
        try:
            with spec.guard():
                value = function(*case.args, **dict(case.kwargs))
        except Exception as exc:  # the judge decides whether raising was right (e.g. a ValueError)
            error, raised = f"{type(exc).__name__}: {exc}", exc
        message = test.judge(case, value, error)
        if message is not None:
            # Chained to the student's exception, if any: its traceback shows the line at fault.
            raise AssertionError(f"{test.title}, {case.label}: {message}") from raised
    print(f"{test.title}: passed ({len(cases)} cases).")
