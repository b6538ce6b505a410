"""Hostile submissions of lab 1 through the real grading pipeline: every score fair, no hang, nothing lost.

One throw-away course; every case of ``tests/hostile_cases.py`` is one student;
all are graded by one ``python -m course_lib.grading autograde --jobs 2`` (nbgrader
with the sandboxed grader and the course's own limits from nbgrader_config.py),
then feedback and the export, exactly as an instructor runs them
(``nbgrader_course.grade``). Then:

* each case gets, on every autograded test cell, the score that is fair for it
  (the gradebook's), and what the case is about holds: the flag and its reason,
  the recorded problem, what the feedback says and does not say, ...;
* the run as a whole: every student has a row in the export, the gradebook was
  backed up first and is intact, the course's files are unchanged, no process of
  a sandbox survives, nothing reached the test's own TCP/UDP/unix servers, no
  planted file ran, no feedback holds the solution, the hidden tests' source or
  an instructor's path, and each submission stayed within the grading budget.

A case whose fair result the grading code does not give yet may be marked
with its ``defect``: it runs as ``xfail(strict=True)``, so it turns red once the
defect is fixed and the mark gets removed. (None is marked today.)

Cost: two nbgrader workers (``--jobs 2``), each grading one student after
another; a student takes ~5 s of a worker (~4 s in the sandbox, most of it
importing torch), so ~2.5 s per submission on 2 cores, plus ~15 s to start the
workers. Four cases hang on purpose and cost call timeouts of 20 s each
(a function that hangs everywhere is given up after its second).
The fixture prints the CLI's summary line (seconds per submission). While
working on a few cases, ``HOSTILE_CASES=b_,t_rebind`` (student ids or their
prefixes) grades only those.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import nbgrader_course
from hostile_cases import (
    LAB, REPO, SECRET_MARKERS, TESTS, Case, Ctx, Outcome, cases, host_ips, site_packages,
)
from course_lib.grading.labs import get_spec
from nbgrader_course import Submission, grade, new_course
from sandbox_checks import processes_with, require_sandbox

pytestmark = pytest.mark.slow

CASES = cases()
assert len({c.student for c in CASES}) == len(CASES), "two cases share a student id"
# While working on one case: HOSTILE_CASES=ref_solution,b_ (student ids or their prefixes) grades only those.
if os.environ.get("HOSTILE_CASES"):
    _wanted = tuple(os.environ["HOSTILE_CASES"].split(","))
    CASES = [c for c in CASES if c.student.startswith(_wanted) or c.student == "ref_solution"]
# The course's grading key, written before grading (so the test can tell it was neither read nor changed);
# fixed, so that every run draws the same hidden cases for each student.
KEY_HEX = hashlib.sha256(b"hostile submissions of lab 1").hexdigest()


# --- the test's own servers: whatever connects is recorded ---------------------------------------------


class Listeners:
    """A TCP server on every address, a UDP socket and an abstract unix socket; they record every contact."""

    def __init__(self, mark: str):
        self.contacts: list[str] = []
        self.tcp = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True) \
            if socket.has_dualstack_ipv6() else socket.create_server(("0.0.0.0", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", 0))
        self.abstract = f"hostile-{mark}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract)
        self.unix.listen()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._accept, args=(s, kind), daemon=True)
                        for s, kind in ((self.tcp, "tcp"), (self.unix, "unix"))]
        self.threads.append(threading.Thread(target=self._receive, daemon=True))
        for s in (self.tcp, self.udp, self.unix):
            s.settimeout(0.5)
        for t in self.threads:
            t.start()

    @property
    def port(self) -> int:
        return self.tcp.getsockname()[1]

    @property
    def udp_port(self) -> int:
        return self.udp.getsockname()[1]

    def _accept(self, server, kind):
        while not self.stopped.is_set():
            try:
                connection, address = server.accept()
            except (TimeoutError, OSError):
                continue
            self.contacts.append(f"{kind} connection from {address!r}")
            connection.close()

    def _receive(self):
        while not self.stopped.is_set():
            try:
                data, address = self.udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            self.contacts.append(f"udp datagram {data[:40]!r} from {address!r}")

    def close(self):
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=5)
        for s in (self.tcp, self.udp, self.unix):
            s.close()


# --- what the run gives --------------------------------------------------------------------------------


@dataclass
class Run:
    course: Path
    ctx: Ctx
    cases: list[Case]
    outcomes: dict[str, Outcome]
    cli: list[str]  # stdout of every course_lib.grading command
    seconds: dict[str, float]
    before: dict[str, str]  # sha256 of the course's files before grading
    submitted: dict[str, str]  # sha256 of each submitted notebook, right after it was submitted
    contacts: list[str]
    survivors: list[str]
    wall: float = 0.0
    rows: dict[str, dict] = field(default_factory=dict)

    def summary_line(self) -> str:
        lines = [line for out in self.cli for line in out.splitlines() if "per submission" in line]
        return lines[-1] if lines else "(no summary line)"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def course_files(course: Path) -> dict[str, str]:
    """Hashes of what no submission may change: instructor sources, the released lab, the config, the key."""
    paths = [course / "nbgrader_config.py", course / ".grading" / "key"]
    paths += sorted(p for folder in ("solutions", "labs") for p in (course / folder).rglob("*") if p.is_file())
    return {str(p.relative_to(course)): sha256(p) for p in paths}


def submitted_text(folder: Path) -> str:
    texts = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file() and not path.is_symlink() and not any(p.is_symlink() for p in path.parents):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    require_sandbox()
    root = tmp_path_factory.mktemp("hostile")
    course = new_course(root)
    (course / ".grading").mkdir()
    descriptor = os.open(course / ".grading" / "key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(KEY_HEX)
    markers = root / "markers"
    markers.mkdir()
    mark = f"{7_000_000 + uuid.uuid4().int % 1_000_000}"
    listeners = Listeners(mark)
    ctx = Ctx(course, site_packages(), listeners.port, listeners.udp_port, listeners.abstract, mark, markers, host_ips())

    all_cases = list(CASES)
    by_student = {c.student: c for c in all_cases}
    submissions = [Submission(c.student, LAB, functools.partial(lambda r, s, c: c.make(r, s, ctx), c=c), c.what)
                   for c in all_cases]

    # The case's changes to its folder (renames, extra files, links) go in right after its notebook is written;
    # the CLI's output is kept (its summary line), and its timeout raised: this run grades ~50 submissions.
    submitted: dict[str, str] = {}
    cli: list[str] = []
    original_submit, original_grading = nbgrader_course.submit, nbgrader_course.course_grading

    def submit(course_dir, sub):
        original_submit(course_dir, sub)
        folder = course_dir / "submitted" / sub.student / sub.lab
        submitted[sub.student] = sha256(folder / f"{LAB}.ipynb")
        case = by_student[sub.student]
        if case.after_submit is not None:
            case.after_submit(folder, ctx)

    def course_grading(course_dir, *args, timeout: float = 3600):
        result = original_grading(course_dir, *args, timeout=timeout)
        cli.append(result.stdout)
        return result

    before = course_files(course)
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nbgrader_course, "submit", submit)
        patch.setattr(nbgrader_course, "course_grading", course_grading)
        try:
            seconds = grade(course, submissions)
        finally:
            listeners.close()
    wall = time.perf_counter() - start
    time.sleep(1)  # a killed sandbox's processes are gone at once; give the kernel a moment anyway
    survivors = processes_with(f"sleep {mark}")

    with open(course / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == LAB}
    outcomes = {}
    for sub in submissions:
        case = by_student[sub.student]
        report_file = course / "reports" / LAB / f"{sub.student}.json"
        html = course / "feedback" / sub.student / LAB / f"{LAB}.html"
        outcomes[sub.student] = Outcome(
            case, course, ctx, sub.results, json.loads(report_file.read_text()) if report_file.exists() else {},
            html.read_text() if html.exists() else "", rows.get(sub.student),
            submitted_text(course / "submitted" / sub.student / LAB))
    result = Run(course, ctx, all_cases, outcomes, cli, seconds, before, submitted, list(listeners.contacts),
                 survivors, wall, rows)
    print(f"\nhostile submissions: {len(all_cases)} cases, {wall:.0f} s in all; steps "
          f"{ {k: round(v, 1) for k, v in seconds.items()} }\n{result.summary_line()}")
    return result


# --- one test per case -------------------------------------------------------------------------------------


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.defect)] if case.defect else []
    return pytest.param(case, id=case.student, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case_is_graded_fairly(run, case):
    check_case(run.outcomes[case.student])


def check_case(out: Outcome) -> None:
    case = out.case
    scores = {t: out.results[t][0] for t in TESTS}
    report = out.report
    context = (f"{case.student} ({case.what}): verdicts {json.dumps(report.get('verdicts'), indent=1)[:3000]}\n"
               f"load errors {report.get('load_errors')}\nproblem {report.get('problem')!r}")
    assert scores == case.expected(), f"scores differ from the fair ones for {context}"
    assert out.export is not None, f"{case.student} has no row in grades.csv"
    assert float(out.export["score"]) == pytest.approx(case.score), f"exported score of {case.student}"
    notes = out.export.get("notes", "")
    if case.problem is not None:
        assert report.get("problem") and case.problem in report["problem"], context
        assert report["problem"] in notes, f"the export's notes do not say why: {notes!r}"
    else:
        assert not report.get("problem"), context
        assert report.get("verdicts"), f"no verdicts: {context}"
        assert out.feedback, f"{case.student} has no feedback"
    for reason in case.flags:
        assert any(reason in flag for flag in out.flags), f"no flag says {reason!r}: {out.flags}"
    if case.flags:
        assert "flag(s) to review" in notes, notes
    if case.unflagged:
        assert not out.flags, f"an honest answer is flagged: {out.flags}"
    for text in case.feedback_has:
        assert text in out.feedback, f"the feedback does not say {text!r}; verdicts: {context}"
    for text in case.feedback_lacks:
        assert text not in out.feedback, f"the feedback shows {text!r}"
    for check in case.checks:
        check(out)


# --- the run as a whole -------------------------------------------------------------------------------------


def test_every_student_is_in_the_export_with_the_gradebooks_score(run):
    missing = [c.student for c in run.cases if c.student not in run.rows]
    assert not missing, f"no row in grades.csv for {missing}"
    for case in run.cases:
        autograded = sum(score or 0 for score, _ in run.outcomes[case.student].results.values())
        assert float(run.rows[case.student]["score"]) == pytest.approx(autograded), case.student
    assert len(run.rows) == len(run.cases)


def test_the_gradebook_was_backed_up_first_and_is_intact(run):
    backups = sorted((run.course / ".grading" / "backups").glob("*.db"))
    assert backups, "no gradebook backup in .grading/backups/"
    with sqlite3.connect(backups[0]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # The backup was taken before grading: the course's assignment is there, no student yet.
        assert db.execute("SELECT count(*) FROM assignment").fetchone()[0] >= 1
        assert db.execute("SELECT count(*) FROM student").fetchone()[0] == 0
    with sqlite3.connect(run.course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        students = {row[0] for row in db.execute("SELECT id FROM student")}
    assert students == {c.student for c in run.cases}


def test_the_course_files_are_unchanged(run):
    after = course_files(run.course)
    changed = {path for path in run.before if after.get(path) != run.before[path]}
    assert not changed, f"changed by grading: {sorted(changed)}"
    assert set(after) == set(run.before), f"new files: {sorted(set(after) - set(run.before))}"
    reference = run.course / "submitted" / "ref_solution" / LAB / f"{LAB}.ipynb"
    assert sha256(reference) == run.submitted["ref_solution"], "another student's submission was changed"
    assert sorted(p.name for p in reference.parent.iterdir()) == [f"{LAB}.ipynb", "timestamp.txt"]
    assert (run.course / ".grading" / "key").read_text() == KEY_HEX
    assert oct((run.course / ".grading" / "key").stat().st_mode & 0o777) == "0o600"
    strays = [p for p in (REPO / "course_lib").rglob("hostile_was_here*")] + \
             [p for p in Path(run.ctx.site).glob("hostile_was_here*")] + list(Path("/tmp").glob("hostile_was_here*"))
    assert not strays, f"the sandbox wrote outside itself: {strays}"


def test_no_process_of_a_sandbox_survives(run):
    assert not run.survivors, f"left running after grading: {run.survivors}"
    assert not processes_with(f"sleep {run.ctx.mark}")


def test_nothing_reached_the_tests_servers(run):
    assert not run.contacts, f"a sandbox reached the host: {run.contacts}"


def test_no_planted_file_ran(run):
    assert not list(run.ctx.markers.iterdir()), sorted(p.name for p in run.ctx.markers.iterdir())


def test_no_feedback_shows_solutions_hidden_tests_or_instructor_paths(run):
    """Every feedback page (cases with a known defect aside: their own test says what leaks)."""
    secrets = (*SECRET_MARKERS, str(run.course), str(REPO))
    leaks = {}
    for case in run.cases:
        out = run.outcomes[case.student]
        if case.defect or not out.feedback:
            continue
        shown = [s for s in secrets if s in out.feedback and s not in out.submitted_text]
        if shown:
            leaks[case.student] = shown
    assert not leaks, f"feedback shows what it must not: {leaks}"
    graded = [c.student for c in run.cases if c.problem is None and not c.defect]
    assert all(run.outcomes[s].feedback for s in graded), [s for s in graded if not run.outcomes[s].feedback]


def test_hidden_cells_show_no_hidden_source(run):
    """A hidden test cell's source (LAB.run("test_..._hidden", ...)) is replaced by a note in the feedback."""
    from course_lib.grading.nbgrader_plugin import HIDDEN_NOTE

    html = run.outcomes["ref_solution"].feedback
    hidden = [t.grade_id for t in get_spec(LAB).tests if t.hidden]
    for grade_id in hidden:  # the id itself names the cell in nbgrader's headings; quoted, it would be source
        assert f"&quot;{grade_id}&quot;" not in html and f"&#34;{grade_id}&#34;" not in html, grade_id
    assert html.count(HIDDEN_NOTE) == len(hidden)


def test_grading_stays_within_its_budget(run):
    """Each submission's sandbox time is within the course's wall_s; the summary line is printed."""
    from course_lib.grading.nbgrader_plugin import GradeInSandbox

    wall = GradeInSandbox.wall_s.default_value
    with open(run.course / "reports" / LAB / "summary.csv", newline="") as f:
        summary = {r["student"]: r for r in csv.DictReader(f)}
    assert set(summary) == {c.student for c in run.cases}
    over = {}
    for case in run.cases:
        seconds = run.outcomes[case.student].report.get("seconds", 0)
        # The sandbox's time (report) within wall_s; the whole nbgrader process (summary, retries included)
        # within the CLI's own timeout for one process (300 s), so the run never waited on a hung process.
        if seconds > wall + 15 or float(summary[case.student]["seconds"]) > 300:
            over[case.student] = (seconds, summary[case.student]["seconds"])
    print(f"\n{run.summary_line()}")
    slowest = sorted(summary.values(), key=lambda r: -float(r["seconds"]))[:6]
    print("slowest:", [(r["student"], r["seconds"]) for r in slowest])
    assert not over, f"over the budget of {wall} s (sandbox s, nbgrader process s): {over}"
