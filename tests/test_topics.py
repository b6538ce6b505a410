"""Every syllabus topic of a written chapter is shown by a cell tagged ``topic-Txx`` that prints or plots.

The syllabus (shared/curriculum.md, 80 topics) gives each chapter a run of
topics; a chapter notebook ``book/NN_*.ipynb`` tags the code cells that show
them. A topic counts only when its cell prints or plots something: checked on
the chapter as the book build executed it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from book_build import REPO, executed_notebook

# Chapter -> (first, last) topic number, from the syllabus.
CHAPTER_TOPICS = {
    1: (1, 4), 2: (5, 13), 3: (14, 18), 4: (19, 22), 5: (23, 26), 6: (27, 32), 7: (33, 36), 8: (37, 43),
    9: (44, 47), 10: (48, 51), 11: (52, 55), 12: (56, 59), 13: (60, 63), 14: (64, 67), 15: (68, 70),
    16: (71, 71), 17: (72, 75), 18: (76, 80),
}  # fmt: skip
TOPIC_TAG = re.compile(r"^topic-T(\d{2})$")
CHAPTERS = sorted(REPO.glob("book/[0-9][0-9]_*.ipynb"))
# What a reader sees: printed text, a table, a figure (a warning on stderr does not count).
SHOWN = {"text/plain", "text/html", "image/png", "image/svg+xml", "text/markdown", "text/latex"}


def chapter_number(path: Path) -> int:
    return int(path.name[:2])


def topic_cells(nb) -> dict[int, list[int]]:
    """Cell index -> the topic numbers its tags name (only cells with a topic tag)."""
    cells = {}
    for i, cell in enumerate(nb.cells):
        tags = [t for t in cell.metadata.get("tags", []) if t.startswith("topic")]
        if tags:
            cells[i] = tags
    return cells


def test_the_syllabus_runs_t01_to_t80_without_gaps():
    numbers = [n for first, last in CHAPTER_TOPICS.values() for n in range(first, last + 1)]
    assert numbers == list(range(1, 81))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_topic_of_the_chapter_is_tagged_and_no_other(chapter):
    nb = nbformat.read(chapter, as_version=4)
    first, last = CHAPTER_TOPICS[chapter_number(chapter)]
    tagged = set()
    for i, tags in topic_cells(nb).items():
        assert nb.cells[i].cell_type == "code", f"cell {i}: topic tags belong on code cells"
        for tag in tags:
            match = TOPIC_TAG.match(tag)
            assert match, f"cell {i}: tag {tag!r} must read topic-Txx, e.g. topic-T05"
            number = int(match.group(1))
            assert first <= number <= last, f"cell {i}: T{number:02d} is not a topic of this chapter (T{first:02d}-T{last:02d})"
            tagged.add(number)
    missing = [f"T{n:02d}" for n in range(first, last + 1) if n not in tagged]
    assert not missing, f"{chapter.name}: no cell shows {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_topic_cell_prints_or_plots(book_html, chapter):
    executed = executed_notebook(book_html, chapter)
    committed = nbformat.read(chapter, as_version=4)
    silent = []
    for i in topic_cells(committed):
        outputs = executed.cells[i].outputs
        shown = any(o.output_type == "stream" and o.name == "stdout" and o.text.strip() for o in outputs) or any(
            SHOWN & set(o.get("data", {})) for o in outputs
        )
        if not shown:
            silent.append(i)
    assert not silent, f"{chapter.name}: topic cells {silent} show nothing"
