"""The book builds, executing every chapter, with warnings as errors: what `make book` does.

The build goes to a temporary folder, so it never touches _build/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((REPO / "_toc.yml").read_text())


def toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


@pytest.mark.parametrize("page", toc_files())
def test_toc_page_exists(page):
    assert any((REPO / f"{page}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml lists {page}, which is missing"


def test_every_chapter_is_in_the_toc():
    listed = set(toc_files())
    missing = [p.name for p in REPO.glob("book/*.ipynb") if f"book/{p.stem}" not in listed]
    assert not missing, f"chapters missing from _toc.yml: {missing}"


@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(
        ["jupyter-book", "build", str(REPO), "--path-output", str(tmp_path), "-W", "--keep-going"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    for page in toc_files():
        page_html = html / f"{page}.html"
        assert page_html.exists(), f"{page}.html was not written"
        if (REPO / f"{page}.ipynb").exists():
            text = page_html.read_text()
            assert "<img" in text, f"{page}.html shows no figure"
            assert "Traceback" not in text, f"{page}.html shows an error"
