"""The processes of this machine whose command line holds a marker (read from /proc), for leftover checks."""

from __future__ import annotations

import os
from pathlib import Path


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
