"""Committed notebooks carry only what must be committed (see scripts/refresh_notebooks.py).

Chapters keep the outputs of the cells nbval checks (tagged `nbval-check-output`)
and nothing else; lab sources keep no output at all. Run `make notebooks` to fix.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(REPO.glob("book/*.ipynb"))
LAB_SOURCES = sorted(REPO.glob("solutions/*/*.ipynb"))
FIX = "run `make notebooks`"


def code_cells(path: Path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_keeps_only_checked_outputs(path):
    cells = code_cells(path)
    checked = [c for c in cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked, f"{path.name} has no cell tagged nbval-check-output: nothing of it is compared between runs"
    for c in cells:
        is_checked = c in checked
        assert "NBVAL_CHECK_OUTPUT" not in c.source, f"{path.name}: use the tag nbval-check-output, not a comment readers see"
        assert bool(c.outputs) == is_checked, f"{path.name}: outputs stored for the wrong cells: {FIX}"
        assert c.metadata.get("keep_output", False) == is_checked, f"{path.name}: keep_output out of step with tags: {FIX}"
        assert "execution" not in c.metadata, f"{path.name}: execution timestamps stored: {FIX}"


@pytest.mark.parametrize("path", LAB_SOURCES, ids=lambda p: p.name)
def test_lab_source_has_no_outputs(path):
    assert not any(c.outputs for c in code_cells(path)), f"{path.name} stores outputs: {FIX}"
