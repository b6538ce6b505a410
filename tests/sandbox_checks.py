"""What the tests of the answer sandbox share: whether it can run here, and the processes left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_sandbox() -> None:
    """Skip the test where bubblewrap cannot run; fail instead when COURSE_REQUIRE_SANDBOX=1 (CI)."""
    from course_lib.grading.sandbox import sandbox_available

    available, why = sandbox_available()
    if not available:
        if os.environ.get("COURSE_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"COURSE_REQUIRE_SANDBOX=1, but the answer sandbox cannot run: {why}")
        pytest.skip(why)


def processes_with(marker: str) -> list[str]:
    """``"<pid>: <command line>"`` of every running process whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue  # it ended while we looked
            if marker.encode() in cmdline:
                found.append(entry + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found
