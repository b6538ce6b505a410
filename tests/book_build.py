"""Build the book for the tests exactly as `make book` does, into a throw-away folder.

The build executes each chapter once (book/_ext/notebook_cache.py keeps the
executed notebooks in the build's jupyter-cache); the tests that check the
chapters' printed numbers read them from there instead of executing again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def jupyter_book(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `jupyter-book` from this environment (its kernels and tools must come from here too)."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["jupyter-book", *args], capture_output=True, text=True, env=env, cwd=cwd)


def build_book(out: Path, source: Path = REPO, *extra: str) -> Path:
    """`jupyter-book build` with warnings as errors and its output in ``out``; return the html folder."""
    result = jupyter_book("build", str(source), "--path-output", str(out), "-W", "--keep-going", *extra)
    if result.returncode != 0:
        raise AssertionError(f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return out / "_build" / "html"


def executed_notebook(html: Path, notebook: Path) -> nbformat.NotebookNode:
    """The executed version of ``notebook`` kept by the build whose html folder is ``html``."""
    from jupyter_cache import get_cache

    source = nbformat.read(notebook, as_version=4)
    cache = get_cache(str(html.parent / ".jupyter_cache"))
    _, executed = cache.merge_match_into_notebook(source)
    return executed
