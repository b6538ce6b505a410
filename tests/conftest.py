"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest
import torch

# `make test` runs two pytest workers on a two-core machine: one torch thread per
# worker keeps them from fighting over the cores (2 workers x 2 threads ran the
# convolution tests 7x slower). Notebook kernels are separate processes, unaffected.
torch.set_num_threads(1)



def pytest_collection_modifyitems(config, items):
    """The ``cuda`` marker, handled once: where there is no CUDA device (CI), its tests skip, saying why."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked cuda); run `pytest -m cuda` on a machine with one")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


# The environment variables that steer a run of the course (course_lib/config.py, course_lib/data).
COURSE_VARIABLES = ("COURSE_DEVICE", "COURSE_SCALE", "COURSE_DATA")


@pytest.fixture
def course_env(monkeypatch):
    """``monkeypatch`` with every COURSE_* variable unset, so a test starts from the defaults
    whatever the shell that runs pytest exports (CI sets COURSE_SCALE, a GPU box COURSE_DEVICE)."""
    for name in COURSE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="session")
def book_html(tmp_path_factory, worker_id):
    """The book, built once per test session exactly as `make book` builds it; its html folder.

    Every chapter executes once, here; the tests that read the built pages
    (test_book, test_book_browser) or the executed chapters (test_chapters) share
    this build. Under pytest-xdist the workers share one build through a file
    lock in their common temporary folder: the first to ask builds, the others wait.
    """
    from book_build import build_book
    from filelock import FileLock

    if worker_id == "master":  # no xdist
        return build_book(tmp_path_factory.mktemp("book"))
    shared = tmp_path_factory.getbasetemp().parent
    out, failed = shared / "book", shared / "book-build-failed.txt"
    html = out / "_build" / "html"
    with FileLock(str(shared / "book.lock")):
        if failed.exists():
            raise AssertionError(failed.read_text())
        if not (html / "index.html").exists():
            try:
                build_book(out)
            except AssertionError as error:
                failed.write_text(str(error))  # the other workers report it instead of building again
                raise
    return html
