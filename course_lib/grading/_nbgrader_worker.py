"""One long-lived nbgrader: autogrades (or writes the feedback of) student after student in one process.

    python -m course_lib.grading._nbgrader_worker LAB      (run in the course directory)

Why: starting ``nbgrader autograde --student X`` costs 8-11 s of imports (nbgrader,
nbconvert, torch) before any grading; the grading itself takes 1 s here plus the
sandbox's few seconds. ``course_lib.grading.cli`` keeps one worker per job and
sends it student ids; a worker that crashes or stops answering is killed and
replaced, and that student is graded once more by a fresh one.

Protocol (all JSON, one object per line): stdin gets ``{"command": "autograde"
or "feedback", "student": "<student id>"}``; the
results go to the file descriptor that was stdout when the worker started,
``{"student": ..., "ok": bool, "log": "..."}``. Everything else the process
prints (nbgrader, nbconvert, warnings) is redirected to stderr, so it can never
be mistaken for a result.

Each student is graded by nbgrader's own API (``NbGraderAPI.autograde``: a new
``Autograde`` converter on the course's nbgrader_config.py, force and
create_student as ``nbgrader autograde --force`` does), so what is written to
the gradebook and to ``autograded/`` is what the command would write; feedback
likewise (``NbGraderAPI.generate_feedback``, as ``nbgrader generate_feedback``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    (lab,) = argv
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else writes to stdout lands in stderr
    sys.stdout = sys.stderr

    from nbgrader.apps.api import NbGraderAPI

    from .cli import course_config

    api = NbGraderAPI(config=course_config(Path.cwd()))
    results.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        student = request["student"]
        if request["command"] == "autograde":
            result = api.autograde(lab, student, force=True, create=True)
        elif request["command"] == "feedback":
            result = api.generate_feedback(lab, student, force=True)
        else:
            result = {"success": False, "error": f"unknown command {request['command']!r}"}
        log = result.get("log", "") + result.get("error", "")
        ok = bool(result.get("success")) and "[ERROR]" not in log
        results.write(json.dumps({"student": student, "ok": ok, "log": log[-1_000_000:]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
