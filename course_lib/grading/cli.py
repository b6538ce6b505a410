"""The instructor's grading commands, run in the course directory (where nbgrader_config.py is).

    python -m course_lib.grading autograde LAB [--jobs N] [--student ID ...]
    python -m course_lib.grading feedback LAB
    python -m course_lib.grading export [--to grades.csv]

``autograde`` grades every submission of a lab with nbgrader (whose Execute
step is replaced by the sandboxed grader, see nbgrader_config.py), and makes
the run safe for a whole class:

* the gradebook is copied (SQLite's online backup) to ``.grading/backups/``
  before anything is written;
* each student's folder ``submitted/<student>/<lab>/`` is graded whatever its
  notebook is called (an LMS renames ``lab01_convolution.ipynb`` to
  ``lab01_convolution (1).ipynb``): one notebook is graded under the lab's
  name, the original kept beside it in ``.course-renamed-originals/``; no notebook,
  more than one, or an unreadable one, is a recorded 0 with the reason;
* students are graded in parallel, ``--jobs`` at a time (default: one per
  core), by long-lived nbgrader workers (``_nbgrader_worker``: nbgrader and
  torch imported once per worker, not once per student); a worker that crashes
  or outlives ``--timeout`` on one student is replaced, and every student whose
  grading failed is graded once more, so a crash or a locked database costs
  that student one retry, never the run;
* answers of different students that match closely are listed (copying).

``feedback`` is nbgrader's generate_feedback, by the same workers; its pages
carry their own MathJax (``offline_math``: one file a student can open offline).

Everything the instructor needs to review lands in ``reports/<lab>/``:
``<student>.json`` per submission (verdicts, flags, problems), ``<student>.log``
(nbgrader's messages) and ``summary.csv``. ``export`` writes nbgrader's grades.csv with a ``notes``
column: why a submission scored 0 without being graded, and how many flags it has.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from .grader import answer_cells
from .nbgrader_plugin import report_path
from .scan import similar_pairs

__all__ = ["main", "normalize_submission", "backup_gradebook", "tool_env", "failure_reason"]


@dataclass
class Outcome:
    student: str
    problem: str = ""  # why the submission could not be graded (then it scores 0)
    returncode: int | None = None
    seconds: float = 0.0
    log: str = ""
    attempts: int = 0
    notes: list[str] = field(default_factory=list)


def course_config(course: Path):
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()


def database_path(course: Path) -> Path:
    url = course_config(course).CourseDirectory.get("db_url", "sqlite:///gradebook.db")
    if not url.startswith("sqlite:///"):
        raise SystemExit(f"only an SQLite gradebook is supported, got {url}")
    path = Path(url[len("sqlite:///"):])
    return path if path.is_absolute() else course / path


def backup_gradebook(database: Path, folder: Path) -> Path | None:
    """A consistent copy of the gradebook (SQLite's online backup), named by the time; None if none exists yet."""
    if not database.exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{database.stem}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.db"
    with sqlite3.connect(database) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return target


RENAMED = ".course-renamed-originals"  # where a renamed notebook's original is kept, beside it


def _remove_links(folder: Path) -> list[str]:
    """Delete every symbolic link under ``folder`` (never followed); return their names.

    nbgrader copies a submission folder into autograded/ and feedback/ following links:
    a link to the gradebook, the key or the solution would land in a student's feedback.
    """
    removed = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            removed.append(str(path.relative_to(folder)))
            path.unlink()
    return removed


def _unreadable(notebook: Path) -> str:
    """Why ``notebook`` cannot be read as a notebook (truncated, not JSON, not nbformat 4), or ""."""
    try:
        nbformat.read(notebook, as_version=4)
    except Exception as error:  # noqa: BLE001 - whatever the file holds, it is a reason, never a crash
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"the notebook could not be read ({first[:200]})"
    return ""


_GENERIC = re.compile(r"please see the (the )?above traceback|there was an error processing", re.I)


def failure_reason(log: str) -> str:
    """The line of nbgrader's log that says why grading failed: its first specific error, else its last line."""
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line and not _GENERIC.search(line)]
    exceptions = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    reason = (errors or exceptions or lines or ["no message"])[0]
    return reason[:300]


def normalize_submission(folder: Path, lab: str) -> str:
    """Make ``folder`` hold its one notebook as ``<lab>.ipynb``; return "" or why it cannot be graded.

    Symbolic links are deleted first (a notebook that is a link is no notebook). Nothing a
    submission holds can make this raise: a problem is returned as its reason.
    """
    if folder.is_symlink():
        folder.unlink()
        return "the submission folder is a symbolic link"
    try:
        links = _remove_links(folder)
        expected = folder / f"{lab}.ipynb"
        notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
        if expected.exists() and len(notebooks) == 1:
            return _unreadable(expected)
        if not notebooks:
            return "no notebook was submitted" + (f" (symbolic links removed: {', '.join(links)})" if links else "")
        if len(notebooks) > 1:
            return f"{len(notebooks)} notebooks were submitted ({', '.join(p.name for p in notebooks)}); submit exactly one"
        original = notebooks[0]
        unreadable = _unreadable(original)
        if unreadable:
            return unreadable
        kept = folder / RENAMED
        if kept.exists() and not kept.is_dir():
            kept.unlink()  # a file of the submission in the way: not the student's work
        kept.mkdir(exist_ok=True)
        shutil.copy2(original, expected)
        shutil.move(str(original), kept / original.name)
        return ""
    except OSError as error:
        return f"the submission folder could not be prepared: {error}"


def record_zero(database: Path, lab: str, student: str) -> None:
    """Give every grade of ``student``'s submission of ``lab`` 0 points, nothing left to grade by hand."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{database}") as gradebook:
        gradebook.update_or_create_student(student)
        submission = gradebook.update_or_create_submission(lab, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gradebook.db.commit()


def tool_env() -> dict[str, str]:
    """The environment for nbgrader: the programs it starts (alembic, kernels) come from this Python's venv."""
    return dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))


class Worker:
    """One ``_nbgrader_worker`` process: nbgrader imported once, then one student after another."""

    def __init__(self, course: Path, lab: str, log: Path):
        log.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "course_lib.grading._nbgrader_worker", lab], cwd=course, env=tool_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, start_new_session=True)
        self.ready = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, deadline: float) -> dict | None:
        """The worker's next result line, or None when it died or the deadline passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
            return None
        line = self.process.stdout.readline()
        try:
            return json.loads(line) if line else None
        except ValueError:
            return None

    def run(self, command: str, student: str, timeout_s: float, start_s: float = 120.0) -> tuple[int, str]:
        """(0, nbgrader's log) when ``command`` ran for ``student``; (nonzero, why) when not (a worker that
        died or outlived ``timeout_s`` is closed)."""
        if not self.ready:
            self.ready = self._read(time.monotonic() + start_s) == {"ready": True}
            if not self.ready:
                self.close()
                return -1, "the nbgrader worker did not start (see .grading/workers/)"
        try:
            self.process.stdin.write(json.dumps({"command": command, "student": student}) + "\n")
            self.process.stdin.flush()
        except OSError:
            self.close()
            return -1, "the nbgrader worker died"
        result = self._read(time.monotonic() + timeout_s)
        if result is None or result.get("student") != student:
            alive = self.alive
            self.close()
            return -1, (f"nbgrader {command} took more than {timeout_s:g} s" if alive
                        else f"the nbgrader worker died during {command}")
        return (0 if result["ok"] else 1), result["log"]

    def close(self) -> None:
        """Stop the worker and everything it started (its own session)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self._stderr):
            try:
                stream.close()
            except OSError:
                pass


def for_each_student(course: Path, lab: str, command: str, outcomes: list[Outcome], jobs: int, timeout_s: float,
                     after=None) -> None:
    """Run nbgrader's ``command`` (autograde, feedback) for every outcome's student, ``jobs`` at a time.

    Each job is a :class:`Worker`; a worker that dies or hangs is replaced. A student whose run
    failed is run once more when the others are done (a locked database, a crash of nbgrader).
    Sets each outcome's returncode, log, attempts and seconds; ``after(outcome)`` runs after each try.
    """
    workers: queue.SimpleQueue[Worker] = queue.SimpleQueue()
    started: list[Worker] = []

    def new_worker() -> Worker:
        worker = Worker(course, lab, course / ".grading" / "workers" / f"{lab}-{command}-{len(started)}.log")
        started.append(worker)
        return worker

    def run(outcome: Outcome) -> None:
        worker = workers.get()
        start = time.perf_counter()
        outcome.attempts += 1
        outcome.returncode, outcome.log = worker.run(command, outcome.student, timeout_s)
        outcome.seconds += time.perf_counter() - start
        workers.put(worker if worker.alive else new_worker())
        if after is not None:
            after(outcome)

    jobs = max(1, min(jobs, len(outcomes)))
    for _ in range(jobs if outcomes else 0):
        workers.put(new_worker())
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(run, outcomes))
        for outcome in [o for o in outcomes if o.returncode != 0]:
            run(outcome)
    finally:
        for worker in started:
            worker.close()


def autograde(course: Path, lab: str, students: list[str] | None, jobs: int, timeout_s: float) -> list[Outcome]:
    database = database_path(course)
    backup = backup_gradebook(database, course / ".grading" / "backups")
    print(f"gradebook backed up to {backup}" if backup else "no gradebook yet: nothing to back up")
    submitted = course / "submitted"
    everyone = sorted(p.name for p in submitted.iterdir() if (p / lab).is_dir()) if submitted.is_dir() else []
    outcomes = [Outcome(s) for s in (students or everyone)]
    for outcome in outcomes:
        outcome.problem = normalize_submission(submitted / outcome.student / lab, lab)

    def keep_log(outcome: Outcome) -> None:
        log = report_path(course, lab, outcome.student).with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(outcome.log)  # nbgrader's own messages, for the instructor

    gradable = [o for o in outcomes if not o.problem]
    start = time.perf_counter()
    for_each_student(course, lab, "autograde", gradable, jobs, timeout_s, after=keep_log)
    for outcome in gradable:
        if outcome.returncode != 0:
            outcome.problem = f"grading failed twice: {failure_reason(outcome.log)}"
    for outcome in outcomes:
        if outcome.problem:
            try:
                record_zero(database, lab, outcome.student)
            except Exception as error:  # noqa: BLE001 - one student's database error must not stop the others
                outcome.notes.append(f"could not record the 0: {error}")
            path = report_path(course, lab, outcome.student)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"student": outcome.student, "lab": lab, "problem": outcome.problem}, indent=1))
    elapsed = time.perf_counter() - start
    _similarity_report(course, lab, [o.student for o in gradable if not o.problem])
    _summary(course, lab, outcomes, elapsed)
    return outcomes


def _similarity_report(course: Path, lab: str, students: list[str]) -> None:
    by_cell: dict[str, dict[str, str]] = {}
    for student in students:
        path = course / "submitted" / student / lab / f"{lab}.ipynb"
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - an unreadable notebook was already reported by nbgrader
            continue
        for cell, source in answer_cells(nb):
            by_cell.setdefault(cell, {})[student] = source
    pairs = [(cell, a, b, ratio) for cell, answers in by_cell.items() for a, b, ratio in similar_pairs(answers)]
    for cell, a, b, ratio in pairs:
        for student, other in ((a, b), (b, a)):
            path = report_path(course, lab, student)
            if path.exists():
                report = json.loads(path.read_text())
                report.setdefault("flags", []).append(f"{cell}: {ratio:.0%} like {other}'s answer (identifiers renamed)")
                path.write_text(json.dumps(report, indent=1))


def _summary(course: Path, lab: str, outcomes: list[Outcome], elapsed: float) -> None:
    rows = []
    for outcome in outcomes:
        path = report_path(course, lab, outcome.student)
        report = json.loads(path.read_text()) if path.exists() else {}
        rows.append({
            "student": outcome.student,
            "tests passed": f"{len(report.get('passed', []))}/{len(report.get('verdicts', {}))}" if "verdicts" in report else "-",
            "problem": outcome.problem,
            "flags": " | ".join(report.get("flags", [])),
            "seconds": f"{outcome.seconds:.1f}",
        })
    folder = course / "reports" / lab
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["student"])
        writer.writeheader()
        writer.writerows(rows)
    graded = sum(1 for o in outcomes if not o.problem)
    print(f"{lab}: {graded} graded, {len(outcomes) - graded} not gradable, in {elapsed:.1f} s "
          f"({elapsed / max(1, len(outcomes)):.1f} s per submission)")
    for row in rows:
        if row["problem"] or row["flags"]:
            print(f"  {row['student']}: {row['problem'] or ''} {row['flags']}".rstrip())
    print(f"report: {folder / 'summary.csv'}")


def feedback(course: Path, lab: str, jobs: int, timeout_s: float) -> int:
    """nbgrader's generate_feedback for every autograded student (``jobs`` at a time). The pages carry
    their own MathJax (:mod:`course_lib.grading.offline_math`, set up in nbgrader_config.py)."""
    autograded = course / "autograded"
    students = sorted(p.name for p in autograded.iterdir() if (p / lab).is_dir()) if autograded.is_dir() else []
    outcomes = [Outcome(s) for s in students]
    for_each_student(course, lab, "feedback", outcomes, jobs, timeout_s)
    failed = [o for o in outcomes if o.returncode != 0]
    for outcome in failed:
        print(f"  {outcome.student}: no feedback: {failure_reason(outcome.log)}", file=sys.stderr)
    pages = sorted((course / "feedback").glob(f"*/{lab}/*.html"))
    print(f"{lab}: {len(pages)} feedback page(s)")
    return 1 if failed else 0


def export(course: Path, to: Path) -> None:
    """nbgrader's CSV export (its CsvExportPlugin, run in this process), plus a ``notes`` column from the reports."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    exporter = CsvExportPlugin(config=course_config(course))
    exporter.to = str(to)
    with Gradebook(f"sqlite:///{database_path(course)}") as gradebook:
        exporter.export(gradebook)
    with open(to, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        path = report_path(course, row["assignment"], row["student_id"])
        report = json.loads(path.read_text()) if path.exists() else {}
        notes = [report["problem"]] if report.get("problem") else []
        if report.get("flags"):
            notes.append(f"{len(report['flags'])} flag(s) to review in reports/{row['assignment']}/{row['student_id']}.json")
        row["notes"] = "; ".join(notes)
    with open(to, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["notes"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("autograde", help="grade every submission of a lab, in parallel, safely")
    grade.add_argument("lab")
    grade.add_argument("--student", action="append", help="only this student (repeatable)")
    grade.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="submissions graded at once")
    grade.add_argument("--timeout", type=float, default=300.0, help="seconds one nbgrader process may take")
    feedback_parser = commands.add_parser("feedback", help="nbgrader's feedback pages, readable offline")
    feedback_parser.add_argument("lab")
    feedback_parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="students at once")
    feedback_parser.add_argument("--timeout", type=float, default=300.0, help="seconds one student's page may take")
    exporting = commands.add_parser("export", help="grades.csv with a notes column")
    exporting.add_argument("--to", type=Path, default=Path("grades.csv"))
    parser.add_argument("--course", type=Path, default=Path.cwd(), help="the course directory (default: here)")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    if not (course / "nbgrader_config.py").exists():
        parser.error(f"{course} is not a course directory (no nbgrader_config.py)")
    if args.command == "autograde":
        outcomes = autograde(course, args.lab, args.student, args.jobs, args.timeout)
        return 0 if all(o.returncode in (0, None) or o.problem for o in outcomes) else 1
    if args.command == "feedback":
        return feedback(course, args.lab, args.jobs, args.timeout)
    export(course, args.to if args.to.is_absolute() else course / args.to)
    return 0
