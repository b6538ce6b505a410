"""Fixtures shared by the unit tests of course_lib."""

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
