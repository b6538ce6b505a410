"""The book: its table of contents, the build `make book` runs, and what may never be published.

The full build (every chapter executed, warnings as errors) happens once per
test session in the ``book_html`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from book_build import REPO, build_book

sys.path.insert(0, str(REPO / "book" / "_ext"))
from notebook_cache import environment_key  # noqa: E402

TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
HASHED_NAME = re.compile(r"[0-9a-f]{32,}|\.(png|jpe?g|svg|gif)$")


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
def test_book_builds_with_figures_described_and_assets_local(book_html):
    for page in toc_files():
        page_html = book_html / f"{page}.html"
        assert page_html.exists(), f"{page}.html was not written"
        text = page_html.read_text()
        if (REPO / f"{page}.ipynb").exists():
            assert "<img" in text, f"{page}.html shows no figure"
            assert "Traceback" not in text, f"{page}.html shows an error"
        alts = re.findall(r'<img[^>]*\balt="([^"]*)"', text)
        assert len(alts) == text.count("<img"), f"{page}.html has an image without alt text"
        hashed = [alt for alt in alts if HASHED_NAME.search(alt)]
        assert not hashed, f"{page}.html: alt text is a file name: {hashed[:3]}"
        external = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"]+)"', text)
        assert not external, f"{page}.html loads {external}: the book must read offline"
        scripts = re.findall(r"<script[^>]*>.*?</script>", text, re.S)
        twice = {s[:80] for s in scripts if scripts.count(s) > 1}
        assert not twice, f"{page}.html has scripts written twice: {twice}"
        for own in ("sidebar-toggles.js", "sortable-tables.js"):  # book/_static, added by book/_ext/offline_book.py
            assert f'src="{"../" * page.count("/")}_static/{own}' in text, f"{page}.html does not load {own}"
    assert (book_html / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not served by the book"
    assert (book_html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir(), "MathJax fonts missing"


# Folders an instructor's or a tester's work leaves in the course directory, with a page in each.
STRAY = {
    ".pytest_cache/README.md": "# pytest cache directory\n",
    ".ipynb_checkpoints/intro-checkpoint.md": "# checkpoint\n",
    "book/.hidden/notes.md": "# hidden notes\n",
    "submitted/alice/lab01_convolution/notes.md": "# submitted work\n",
    "autograded/alice/lab01_convolution/notes.md": "# autograded work\n",
    "feedback/alice/lab01_convolution/notes.md": "# feedback\n",
    "downloaded/lab01_convolution/archive/notes.md": "# an LMS download\n",
    "release/lab01_convolution/notes.md": "# released\n",
    "student-kit/README.md": "# student kit\n",
}


@pytest.mark.slow
def test_stray_folders_are_not_published(tmp_path):
    """`make test` then `make book` once failed: .pytest_cache/README.md became a page (with -W, an error)."""
    course = tmp_path / "course"
    course.mkdir()
    shutil.copytree(REPO / "book", course / "book", ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(REPO / "_toc.yml", course)
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"  # this test is about which files become pages
    (course / "_config.yml").write_text(yaml.safe_dump(config))
    for name, text in STRAY.items():
        (course / name).parent.mkdir(parents=True, exist_ok=True)
        (course / name).write_text(text)
    shutil.copy(REPO / "labs" / "lab01_convolution" / "lab01_convolution.ipynb", course / "submitted" / "alice" / "lab01_convolution")
    (course / "grades.csv").write_text("student_id,assignment,score\nalice,lab01_convolution,16\n")

    html = build_book(tmp_path / "out", course)
    published = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    leaked = {p for p in published if p.split("/")[0] in {".pytest_cache", "submitted", "autograded", "feedback",
                                                           "downloaded", "release", "student-kit", ".ipynb_checkpoints"}}
    assert not leaked, f"published from grading or hidden folders: {leaked}"
    index = (html / "searchindex.js").read_text()
    for words in ("pytest cache directory", "submitted work", "autograded work", "an LMS download", "hidden notes"):
        assert words not in index.lower(), f"the search index holds {words!r}"


# --- the notebook cache (book/_ext/notebook_cache.py) --------------------------------------------


def test_environment_key_follows_sources_packages_and_settings(tmp_path, monkeypatch):
    lib = tmp_path / "mylib"
    lib.mkdir()
    (lib / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.delenv("COURSE_SCALE", raising=False)
    first = environment_key([lib])
    assert environment_key([lib]) == first, "the key must not change when nothing changed"
    (lib / "__pycache__").mkdir()
    (lib / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert environment_key([lib]) == first, "compiled files must not count"
    (lib / "__init__.py").write_text("VALUE = 2\n")
    changed = environment_key([lib])
    assert changed["sources:mylib"] != first["sources:mylib"]
    monkeypatch.setenv("COURSE_SCALE", "full")
    assert environment_key([lib])["settings"] != changed["settings"]
    assert set(first) == {"sources:mylib", "distributions", "python", "settings"}


def _tiny_book(root: Path) -> Path:
    """A book with one notebook that prints a value from a local library and counts its own executions."""
    book = root / "tiny"
    (book / "mylib").mkdir(parents=True)
    (book / "mylib" / "__init__.py").write_text("VALUE = 1\n")
    (book / "intro.md").write_text("# Tiny\n\nA book for the cache tests.\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Chapter"),
        nbformat.v4.new_code_cell(
            "import mylib, os\n"
            "with open('runs.txt', 'a') as f:\n    f.write('run\\n')\n"
            "print('VALUE IS', mylib.VALUE, 'SCALE IS', os.environ.get('COURSE_SCALE', 'small'))"
        ),
    ]
    nbformat.write(nb, book / "chapter.ipynb")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (book / "_config.yml").write_text(yaml.safe_dump({
        "title": "Tiny",
        "only_build_toc_files": True,
        "exclude_patterns": ["mylib", "runs.txt"],
        "execute": {"execute_notebooks": "cache", "timeout": 60},
        "sphinx": {
            "local_extensions": {"notebook_cache": str(REPO / "book" / "_ext")},
            "config": {"course_cache_sources": ["mylib"]},
        },
    }))
    return book


@pytest.mark.slow
def test_cached_outputs_are_never_stale(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_SCALE", raising=False)
    book = _tiny_book(tmp_path)
    out = tmp_path / "out"

    def build_and_read() -> tuple[str, int]:
        html = build_book(out, book)
        page = (html / "chapter.html").read_text()
        shown = re.search(r"VALUE IS (\d+) SCALE IS (\w+)", page)
        assert shown, "the chapter's output is missing from its page"
        return f"{shown[1]} {shown[2]}", len((book / "runs.txt").read_text().splitlines())

    assert build_and_read() == ("1 small", 1)
    assert build_and_read() == ("1 small", 1), "nothing changed: nothing may execute"
    (book / "mylib" / "__init__.py").write_text("VALUE = 2\n")  # the notebook itself is unchanged
    assert build_and_read() == ("2 small", 2), "the library changed: the page must show its new output"
    monkeypatch.setenv("COURSE_SCALE", "full")
    assert build_and_read() == ("2 full", 3), "a COURSE_* setting changed: the notebook must execute again"
