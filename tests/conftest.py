"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest
import torch

# `make test` runs two pytest workers on a two-core machine: one torch thread per
# worker keeps them from fighting over the cores (2 workers x 2 threads ran the
# convolution tests 7x slower). Notebook kernels are separate processes, unaffected.
torch.set_num_threads(1)

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
def book_html(tmp_path_factory):
    """The book, built once per test session exactly as `make book` builds it; its html folder.

    Every chapter executes once, here; the tests that read the built pages
    (test_book, test_book_browser) or the executed chapters (test_chapters) share
    this build. Those tests live in modules marked ``slow``.
    """
    from book_build import build_book

    return build_book(tmp_path_factory.mktemp("book"))


# Modules that read the one build of the book: they must run in the same pytest-xdist
# worker, or each worker would build (and execute) the book again.
BOOK_MODULES = {"test_book", "test_chapters", "test_book_browser"}


def pytest_collection_modifyitems(config, items):
    """`make test` distributes with --dist loadgroup: one group per module (module-scoped
    fixtures such as a graded nbgrader course are built once), one group for the book."""
    for item in items:
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group("book" if module in BOOK_MODULES else module))
