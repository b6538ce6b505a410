"""Importing course_lib prints nothing.

Lab test cells import course_lib.grading, and nbgrader gives zero points to any
test cell that writes to stderr, so a warning printed at import time would
silently cost every student the points of the cell that triggers it.
"""

import subprocess
import sys

import pytest

MODULES = ["course_lib", "course_lib.grading", "course_lib.analysis", "course_lib.data", "course_lib.layers", "course_lib.viz", "course_lib.filters", "course_lib.init", "course_lib.models", "course_lib.train"]


@pytest.mark.parametrize("module", MODULES)
def test_import_writes_nothing(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "", f"importing {module} printed:\n{result.stdout}{result.stderr}"


def test_timing_writes_nothing():
    # time_function loads torch.utils.benchmark, whose import may log a CUDA_HOME warning;
    # chapters time code, so that warning must not reach the page.
    code = "import torch; from course_lib.analysis import time_function; time_function(torch.ones(2).sum, min_run_time=0.01)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"timing printed:\n{result.stderr}"
