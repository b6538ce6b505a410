"""Every lab's instructor notebook and its grading specification agree, cell by cell.

The rules hold for every lab in solutions/: the graded test cells are the
specification's tests, in its order, each one locked, worth points and ending in
``LAB.run(<its grade_id>, globals())``; each autograded answer cell holds its
solution between the markers; one answer at least is written and graded by an
instructor from a mark scheme; every function a test calls has a hidden test.
"""

from __future__ import annotations

import pytest
from course_lib.grading.labs import get_spec
from nbgrader_course import LAB_NAMES, cells_of_kind, solution_notebook


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_graded_cells_are_the_specifications_tests_in_order(lab):
    nb, spec = solution_notebook(lab), get_spec(lab)
    tests = list(cells_of_kind(nb, "test"))
    assert [m["grade_id"] for m, _ in tests] == [t.grade_id for t in spec.tests]
    for meta, cell in tests:
        assert cell.source.rstrip().endswith(f'LAB.run("{meta["grade_id"]}", globals())'), meta["grade_id"]
        assert meta["locked"] and meta["points"] > 0, meta["grade_id"]


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_answers_hold_their_solutions_and_a_written_answer_has_a_mark_scheme(lab):
    nb = solution_notebook(lab)
    answers = list(cells_of_kind(nb, "answer"))
    assert answers, f"{lab} has no autograded answer cell"
    for meta, cell in answers:
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, meta["grade_id"]
    written = list(cells_of_kind(nb, "written"))
    assert written, f"{lab} has no answer graded by an instructor"
    for meta, cell in written:
        assert meta["points"] > 0 and "=== BEGIN MARK SCHEME ===" in cell.source, meta["grade_id"]

