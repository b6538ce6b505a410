"""Execute the book's chapters and strip what must not be committed.

    python scripts/refresh_notebooks.py [NOTEBOOK ...]
    (default: every book/*.ipynb and solutions/*/*.ipynb; `make notebooks` runs this)

Chapters (book/) are executed top to bottom, so that the cells tagged
``nbval-check-output`` hold the reference outputs nbval compares on every test
run; then every other output is stripped, with execution counts and timing
metadata, so the committed files stay small and a diff shows only real
changes. The book itself is always built from a fresh execution.

Lab sources (solutions/) are stripped of all outputs: nbgrader makes the
student versions from them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
from nbstripout import strip_output
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
CHECK_TAG = "nbval-check-output"
VOLATILE_KEYS = [
    "metadata.widgets",
    "cell.metadata.execution",
    "cell.metadata.ExecuteTime",
    "cell.metadata.collapsed",
    "cell.metadata.scrolled",
]


def mark_checked_cells(nb) -> int:
    """Keep outputs of the cells nbval checks (nbstripout's ``keep_output``), of no others."""
    checked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if CHECK_TAG in cell.metadata.get("tags", []):
            cell.metadata["keep_output"] = True
            checked += 1
        else:
            cell.metadata.pop("keep_output", None)
    return checked


def refresh(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    is_chapter = path.parent.name == "book"
    checked = mark_checked_cells(nb) if is_chapter else 0
    if is_chapter:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    # Execution counts stay: nbval refuses a reference output without one, and a top-to-bottom run numbers 1..N.
    strip_output(nb, keep_output=False, keep_count=is_chapter, keep_id=False, extra_keys=VOLATILE_KEYS)
    nbformat.write(nb, path)
    return f"{path.relative_to(REPO)}: {'executed, ' if is_chapter else ''}{checked} checked cells kept"


def main(argv: list[str]) -> None:
    paths = [Path(p).resolve() for p in argv] or sorted(REPO.glob("book/*.ipynb")) + sorted(REPO.glob("solutions/*/*.ipynb"))
    for path in tqdm(paths, desc="notebooks"):
        tqdm.write(refresh(path))


if __name__ == "__main__":
    main(sys.argv[1:])
