"""The book builds with warnings as errors, and every page of the table of contents exists.

`make book` executes every chapter while it builds. Here the chapters have
already been executed by nbval (the notebooks' tests), so the build runs with
execution off, on the outputs committed with each notebook: it checks
everything else that can break a page (MyST syntax, math, cross-references,
the table of contents, figures) without running every chapter twice.
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


@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(
        ["jupyter-book", "build", str(REPO), "--config", str(tmp_path / "_config.yml"),
         "--path-output", str(tmp_path), "-W", "--keep-going"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    for page in toc_files():
        page_html = html / f"{page}.html"
        assert page_html.exists(), f"{page}.html was not written"
        if (REPO / f"{page}.ipynb").exists():
            assert "<img" in page_html.read_text(), f"{page}.html shows no figure"
