"""Each chapter, executed once by the book build, prints what its committed version shows.

Cells tagged ``nbval-check-output`` keep their outputs in the repository
(`make notebooks`); the executed chapter must print the same, after the
substitutions in tests/nbval_sanitize.cfg (addresses, durations, rates), by
nbval's rules: streams merged, images and metadata not compared.
A cell whose numbers change in their last digits from one CPU to another (a seeded
but chaotic float32 training run) is tagged ``varies-by-cpu`` instead and is not
compared; ``python scripts/cpu_sensitive_cells.py book/X.ipynb`` finds such cells.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from book_build import REPO, executed_notebook
from nbval.plugin import coalesce_streams, get_sanitize_patterns

pytestmark = pytest.mark.slow

CHAPTERS = sorted(REPO.glob("book/*.ipynb"))
CHECK_TAG = "nbval-check-output"
SANITIZE = get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text())
# What nbval does not compare (nbval's own list, with images: --nbval-lax without nbdime).
NOT_COMPARED = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}


def sanitize(text):
    if not isinstance(text, str):
        return text
    for regex, replace in SANITIZE:
        text = re.sub(regex, replace, text)
    return text


def comparable(outputs) -> dict[str, list]:
    """Outputs flattened as nbval compares them: {stream name or mime type: [sanitized values]}."""
    flat = defaultdict(list)
    for output in coalesce_streams([nbformat.from_dict(o) for o in outputs]):
        if output.output_type == "stream":
            flat[output.name].append(sanitize(output.text))
        for key, value in output.get("data", {}).items():
            if key not in NOT_COMPARED:
                flat[key].append(sanitize(value))
    return dict(flat)


def checked_cells(nb) -> dict[int, nbformat.NotebookNode]:
    return {i: c for i, c in enumerate(nb.cells) if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_prints_its_committed_numbers(book_html, chapter: Path):
    committed = nbformat.read(chapter, as_version=4)
    executed = executed_notebook(book_html, chapter)
    errors = [i for i, c in enumerate(executed.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{chapter.name}: cells {errors} raised an error"
    differences = []
    for index, cell in checked_cells(committed).items():
        expected, actual = comparable(cell.outputs), comparable(executed.cells[index].outputs)
        if expected != actual:
            differences.append(f"cell {index} ({cell.source.splitlines()[0][:60]!r}):\n"
                               f"  committed: {expected}\n  now:       {actual}")
    assert not differences, (
        f"{chapter.name} prints other numbers than its committed version (if the change is intended, "
        "run `make notebooks` and commit):\n" + "\n".join(differences)
    )


def test_comparison_catches_a_changed_number():
    committed = [nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.91 in 1.2 s\n")]
    same_but_slower = [nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.91 in 3.4 s\n")]
    changed = [nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.92 in 1.2 s\n")]
    assert comparable(committed) == comparable(same_but_slower)
    assert comparable(committed) != comparable(changed)
