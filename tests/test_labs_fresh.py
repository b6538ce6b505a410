"""labs/ is exactly what `nbgrader generate_assignment` makes from solutions/ (never edited by hand)."""

from __future__ import annotations

import nbformat
import pytest
from nbgrader_course import LAB_NAMES, LABS, new_course, notebook_path

pytestmark = pytest.mark.slow


def comparable(nb) -> list[tuple]:
    """What a student sees and nbgrader checks: cell type, source and nbgrader metadata (ids vary)."""
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    return new_course(tmp_path_factory.mktemp("fresh")) / "labs"


def test_every_lab_is_released():
    assert LAB_NAMES, "solutions/ holds no lab"
    released = sorted(p.name for p in LABS.iterdir() if p.is_dir())
    assert released == LAB_NAMES, "labs/ and solutions/ hold different labs: run `make labs`"


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_lab_is_not_stale(regenerated, lab):
    committed = nbformat.read(notebook_path(LABS, lab), as_version=4)
    fresh = nbformat.read(notebook_path(regenerated, lab), as_version=4)
    assert comparable(committed) == comparable(fresh), (
        f"labs/{lab} differs from what nbgrader generates from solutions/{lab}: run `make labs` and commit labs/"
    )
    # A student version must not leak the instructor's answers or hidden tests.
    text = notebook_path(LABS, lab).read_text()
    for secret in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "=== BEGIN MARK SCHEME ==="):
        assert secret not in text, f"labs/{lab} contains {secret!r}"
