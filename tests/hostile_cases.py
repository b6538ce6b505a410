"""Hostile (and honest-but-odd) submissions of lab 1, each with the score that is fair for it.

Used by ``tests/test_hostile_submissions.py``, which submits every case as its
own student to one throw-away course, grades them all through the real
pipeline (``python -m course_lib.grading autograde``: nbgrader with the
sandboxed grader), and then checks each case's score cell by cell, plus what
the case is about (a flag, a recorded problem, what the feedback says, files
left untouched, ...).

A case is built from the released student notebook with the instructor's
answers filled in (``solved_copy``), then changed the way the case says.
Answer code may hold placeholders that are filled in per run (:class:`Ctx`):
``@COURSE@`` (the course directory), ``@REPO@`` (this repository), ``@SITE@``
(the virtual environment's site-packages), ``@PORT@``/``@UDP@``/``@ABSTRACT@``
(the test's own listening sockets), ``@MARK@`` (a number unique to this run),
``@MARKERS@`` (where a planted file writes if the grader ever runs it),
``@HOSTIPS@`` (this machine's addresses).

A *leak probe* is written so that a leak costs points: the probing function
raises (with what it reached in the message) when it could read, write or
connect to something it must not, so the fair full score also proves the
sandbox held, and a failure says what got through.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nbgrader_course import PADDING_LINE, PADDING_TOO_WIDE, SOLUTIONS, notebook_path, solved_copy

LAB = "lab01_convolution"
REPO = Path(__file__).resolve().parents[1]

# The graded test cells of lab 1 and their points, from the instructor's notebook.
_SOURCE_META = [c.metadata.get("nbgrader", {}) for c in nbformat.read(notebook_path(SOLUTIONS, LAB), 4).cells]
POINTS: dict[str, float] = {m["grade_id"]: float(m["points"]) for m in _SOURCE_META if m.get("grade") and not m.get("solution")}
TESTS = tuple(POINTS)
TOTAL = sum(POINTS.values())

# Which test cells score which function (conv2d_* and im2col call output_size; conv2d_im2col calls im2col).
OUTPUT = ("test_output_size", "test_output_size_hidden")
LOOPS = tuple(t for t in TESTS if t.startswith("test_loops"))
IM2COL = ("test_im2col", "test_im2col_hidden")
IM2COL_CONV = tuple(t for t in TESTS if t.startswith("test_im2col_conv"))
assert set(OUTPUT + LOOPS + IM2COL + IM2COL_CONV) == set(TESTS), "lab 1's test cells changed: update hostile_cases.py"

# Strings that must never reach a student's feedback (unless the student wrote them in the submission).
SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN MARK SCHEME", "BEGIN HIDDEN TESTS", "default_rng",
                  "rng.integers", "course_lib/grading", "_sandbox_worker", "Traceback (most recent call last)")


@dataclass
class Ctx:
    """What a run gives its hostile code to aim at."""

    course: Path
    site: str
    port: int
    udp: int
    abstract: str
    mark: str
    markers: Path
    host_ips: tuple[str, ...]

    def fill(self, text: str) -> str:
        values = {
            "@COURSE@": str(self.course), "@REPO@": str(REPO), "@SITE@": self.site, "@PORT@": str(self.port),
            "@UDP@": str(self.udp), "@ABSTRACT@": self.abstract, "@MARK@": self.mark, "@MARKERS@": str(self.markers),
            "@HOSTIPS@": json.dumps(list(self.host_ips)),
        }
        for key, value in values.items():
            text = text.replace(key, value)
        return text


@dataclass
class Outcome:
    """What grading one case gave, for its checks."""

    case: Case
    course: Path
    ctx: Ctx
    results: dict  # grade_id -> (auto_score, max_score), from the gradebook
    report: dict  # reports/<lab>/<student>.json ({} when missing)
    feedback: str  # the feedback HTML ("" when none was written)
    export: dict | None  # the student's row of grades.csv
    submitted_text: str  # every file the student submitted, as text (to tell their own words from a leak)

    @property
    def flags(self) -> list[str]:
        """The report's flags, without the similarity notes (every honest case is the same solution)."""
        return [f for f in self.report.get("flags", []) if "answer (identifiers renamed)" not in f]

    @property
    def feedback_folder(self) -> Path:
        return self.course / "feedback" / self.case.student / LAB


@dataclass
class Case:
    student: str
    kind: str  # the class of the issue: sandbox, network, resources, tampering, shortcut, honest, broken
    what: str
    make: Callable  # (release_nb, source_nb, ctx) -> the notebook to submit
    lost: tuple[str, ...] = ()  # test cells that must score 0; every other test cell gets its full points
    problem: str | None = None  # not gradable: this text ("" = any) is in the report's problem and the export's notes
    after_submit: Callable[[Path, Ctx], None] | None = None  # changes the submission folder after the notebook is written
    flags: tuple[str, ...] = ()  # each of these is in some flag of the report
    unflagged: bool = False  # no flag at all (similarity notes aside)
    feedback_has: tuple[str, ...] = ()
    feedback_lacks: tuple[str, ...] = ()
    checks: tuple[Callable[[Outcome], None], ...] = ()
    defect: str | None = None  # a known defect of the grading code: the case is expected to fail until it is fixed
    slow: bool = False  # hangs on purpose (costs call timeouts)

    @property
    def score(self) -> float:
        return 0.0 if self.problem is not None else TOTAL - sum(POINTS[t] for t in self.lost)

    def expected(self) -> dict[str, float]:
        return {t: 0.0 if (self.problem is not None or t in self.lost) else POINTS[t] for t in TESTS}


# --- building submissions -----------------------------------------------------------------------------

Edit = Callable[[str], str]


def add(text: str) -> Edit:
    """Append code to the answer cell."""
    return lambda code: code.rstrip("\n") + "\n\n" + textwrap.dedent(text).strip("\n") + "\n"


def before(text: str) -> Edit:
    """Put code in front of the answer cell."""
    return lambda code: textwrap.dedent(text).strip("\n") + "\n\n" + code


def replace(text: str) -> Edit:
    return lambda code: textwrap.dedent(text).strip("\n") + "\n"


def sub(old: str, new: str) -> Edit:
    """Replace one exact piece of the instructor's answer (which must be there exactly once)."""

    def edit(code: str) -> str:
        assert code.count(old) == 1, f"the lab 1 solution no longer contains {old!r} exactly once: update hostile_cases.py"
        return code.replace(old, new)

    return edit


def chain(*edits: Edit) -> Edit:
    def edit(code: str) -> str:
        for e in edits:
            code = e(code)
        return code

    return edit


_wrappers = itertools.count(1)


def wrap(function: str, body: str) -> Edit:
    """Append a wrapper: every call of ``function`` runs ``body`` first, then the real function (wrappers nest)."""
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    real = f"_real_{function}_{next(_wrappers)}"
    return add(f"{real} = {function}\n\n\ndef {function}(*args, **kwargs):\n{body}\n"
               f"    return {real}(*args, **kwargs)\n")


# Padding one pixel too wide, everywhere (the output grows too): the judge recognises it and says so.
PAD_WRONG = sub("    n, c_in, h, w = x.shape", "    padding = padding + 1  # one pixel of margin\n    n, c_in, h, w = x.shape")
# Padding one pixel too wide in F.pad only, output size right (test_nbgrader_roundtrip's planted mistake).
PAD_SHIFTED = sub(PADDING_LINE, PADDING_TOO_WIDE)


def answers(**edits: Edit) -> Callable:
    """A make function: the instructor's answers, with ``edits[grade_id]`` applied to that answer cell."""

    def make(release, source, ctx: Ctx):
        nb = solved_copy(release, source, lambda grade_id, code: edits[grade_id](code) if grade_id in edits else code)
        for cell in nb.cells:
            cell.source = ctx.fill(cell.source)
        return nb

    return make


def then(make: Callable, change: Callable) -> Callable:
    """A make function: ``make``'s notebook, then ``change(nb, ctx)`` on it (cells, metadata)."""

    def made(release, source, ctx):
        nb = make(release, source, ctx)
        change(nb, ctx)
        return nb

    return made


def untouched(release, source, ctx):
    return nbformat.from_dict(release)


def test_cells(nb, ids=TESTS):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") in ids
            and not c.metadata["nbgrader"].get("solution")]


# --- the code that does the harm -----------------------------------------------------------------------

# Reading: a probe that records everything of the course or the host it could see.
READ_PROBE = r'''
import os as _os

def _reach(paths, exist=True):
    found = []
    for p in paths:
        try:
            if exist and _os.path.lexists(p):
                found.append("exists " + p)
            if _os.path.isdir(p):
                found.append("lists %s: %s" % (p, sorted(_os.listdir(p))[:5]))
            else:
                with open(p, "rb") as f:
                    data = f.read(64)
                found.append("read %s: %r" % (p, data))
        except Exception:
            pass
    return found
'''

INSTRUCTOR_FILES = ["@COURSE@", "@COURSE@/gradebook.db", "@COURSE@/.grading/key", "@COURSE@/.grading",
                    "@COURSE@/solutions/lab01_convolution/lab01_convolution.ipynb", "@COURSE@/solutions",
                    "@COURSE@/nbgrader_config.py", "@REPO@", "@REPO@/course_lib/grading/labs/lab01_convolution.py",
                    "@REPO@/gradebook.db"]
OTHER_STUDENT = ["@COURSE@/submitted", "@COURSE@/submitted/ref_solution/lab01_convolution/lab01_convolution.ipynb",
                 "@COURSE@/autograded", "@COURSE@/feedback", "@COURSE@/reports"]
# Host files: existence alone would show the host's file system is there (/proc entries always exist: read only).
HOST_FILES = ["/etc/passwd", "/etc/shadow", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/root", "/home",
              "/work", "/var", "/sys/class/net", "/boot", "/srv", "/mnt", "/media"]
HOST_PROC = ["/proc/1/environ", "/proc/1/root/etc/passwd", "/proc/1/cwd/gradebook.db", "/proc/self/root/etc/passwd",
             "/proc/1/fd/3", "/proc/1/fd/4", "/proc/1/fd/5", "/proc/1/fd/6", "/proc/1/fd/7"]


def leak_guard(function: str, names: str) -> Edit:
    """The function raises with what leaked, at load time or now; else it answers as the solution does."""
    return wrap(function, f'''
        _now = {names}
        if _now:
            raise RuntimeError("LEAKED " + "; ".join(_now))
    ''')


def read_case(targets: list[str], exist: bool = True) -> Edit:
    listing = json.dumps(targets)
    return chain(
        add(READ_PROBE + f"\n_TARGETS = {listing}\n_AT_LOAD = _reach(_TARGETS, {exist})\n"),
        leak_guard("output_size", "_AT_LOAD + _reach(_TARGETS, %s)" % exist),
    )


FIND_COURSE = r'''
import os as _os

def _find_course():
    """Anything in the sandbox that names the course directory, or lets us reach its gradebook."""
    found = []
    texts = {"cwd": _os.getcwd(), "home": _os.path.expanduser("~"), "environ": repr(dict(_os.environ))}
    for path in ["/proc/self/mountinfo", "/proc/1/mountinfo", "/proc/1/cmdline", "/proc/self/cmdline",
                 "/proc/1/environ", "/proc/self/environ", "/proc/self/cwd", "/proc/1/cwd"]:
        try:
            texts[path] = _os.readlink(path) if path.endswith("cwd") else open(path, "rb").read().decode(errors="replace")
        except Exception:
            pass
    for pid in _os.listdir("/proc"):
        if pid.isdigit():
            try:
                texts["cwd of " + pid] = _os.readlink("/proc/%s/cwd" % pid)
            except Exception:
                pass
    for name, text in texts.items():
        if "@COURSE@" in text or "gradebook" in text or "submitted" in text:
            found.append("%s names the course: %s" % (name, text[:200]))
    for up in range(8):
        for name in ("gradebook.db", ".grading/key", "nbgrader_config.py", "submitted"):
            path = "/".join([".."] * up + [name]) if up else name
            if _os.path.exists(path):
                found.append("reached " + path)
    import time as _time
    deadline = _time.monotonic() + 8
    # Everything the sandbox sees but the system and the libraries (/usr, the interpreter, site-packages:
    # nbgrader's own test data there has a gradebook.db); links not followed.
    system = ("/proc", "/sys", "/dev", "/usr", "/opt/site-packages", "/opt/python")
    for top, dirs, files in _os.walk("/"):
        dirs[:] = [d for d in dirs if not (top.rstrip("/") + "/" + d).startswith(system)]
        hits = [n for n in files if n in ("gradebook.db", "key", "nbgrader_config.py")] + \
               [n for n in dirs if n in ("submitted", "autograded", ".grading")]
        if hits:
            found.append("found %s in %s" % (hits, top))
        if _time.monotonic() > deadline:
            break
    return found

_AT_LOAD = _find_course()
'''

# Writing: everything the sandbox might damage. Destructive attempts only on the throw-away course; on the
# repository and the virtual environment only a new marker file (the test removes it and fails if it appears).
TAMPER = r'''
import os as _os, shutil as _shutil

_COURSE_FILES = ["@COURSE@/gradebook.db", "@COURSE@/.grading/key", "@COURSE@/nbgrader_config.py",
                 "@COURSE@/solutions/lab01_convolution/lab01_convolution.ipynb",
                 "@COURSE@/submitted/ref_solution/lab01_convolution/lab01_convolution.ipynb",
                 "../gradebook.db", "../../gradebook.db", "../../../gradebook.db"]
_NEW_FILES = ["@COURSE@/hostile_was_here.txt", "@REPO@/course_lib/grading/hostile_was_here_@MARK@.py",
              "@SITE@/hostile_was_here_@MARK@.pth", "@COURSE@/submitted/ref_solution/lab01_convolution/torch.py",
              "/opt/site-packages/0/hostile_was_here_@MARK@.pth", "/opt/grader/hostile_was_here_@MARK@.py"]

def _tamper():
    done = []
    for p in _COURSE_FILES:
        try:
            with open(p, "ab") as f:
                f.write(b"hostile")
            done.append("appended to " + p)
        except Exception:
            pass
        try:
            _os.remove(p)
            done.append("removed " + p)
        except Exception:
            pass
    for p in _NEW_FILES:
        try:
            with open(p, "x") as f:
                f.write("# written from a student's sandbox\n")
            done.append("created " + p)
        except Exception:
            pass
    for d in ["@COURSE@/solutions", "@COURSE@/submitted/ref_solution", "@COURSE@/.grading"]:
        try:
            _shutil.rmtree(d)
            done.append("removed the folder " + d)
        except Exception:
            pass
    try:
        _os.chmod("@COURSE@/gradebook.db", 0o777)
        done.append("chmod gradebook.db")
    except Exception:
        pass
    # The sandbox's own /tmp is a tmpfs of its own: writing there is allowed (the host's /tmp must stay clean).
    try:
        with open("/tmp/hostile_was_here_@MARK@", "w") as f:
            f.write("sandbox tmp")
    except Exception:
        pass
    return done

_AT_LOAD = _tamper()
'''

IMPORT_COURSE_LIB = r'''
import sys as _sys

def _course_lib():
    found = []
    for path in ["@REPO@", "/opt/site-packages/0", "/opt/site-packages/0/course_lib/.."]:
        if path not in _sys.path:
            _sys.path.insert(0, path)
    for module in ("course_lib", "course_lib.grading.labs.lab01_convolution", "course_lib.layers.functional"):
        try:
            __import__(module)
            found.append("imported " + module)
        except Exception:
            pass
    return found

_AT_LOAD = _course_lib()
'''

NETWORK_TCP = r'''
import json as _json, socket as _socket

def _connect():
    reached = []
    for host in ["127.0.0.1", "localhost", "::1", "0.0.0.0"] + _json.loads('@HOSTIPS@'):
        try:
            with _socket.create_connection((host, @PORT@), timeout=2) as s:
                s.sendall(b"hostile submission")
            reached.append(host)
        except Exception:
            pass
    return reached

_AT_LOAD = _connect()
_CALLED = []

def _connect_once():
    if _CALLED:
        return []
    _CALLED.append(1)
    return _connect()
'''

NETWORK_DNS_UDP = r'''
import socket as _socket

def _lookups():
    found = []
    for name in ("example.com", "pypi.org", "localhost", "host.docker.internal"):
        try:
            found.append("%s -> %s" % (name, _socket.getaddrinfo(name, 80)[0][4]))
        except Exception:
            pass
    try:
        found.append("resolv.conf: " + open("/etc/resolv.conf").read()[:80])
    except Exception:
        pass
    for host in ("127.0.0.1", "8.8.8.8"):
        try:
            with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as s:
                s.sendto(b"hostile datagram", (host, @UDP@))
        except Exception:
            pass
    return found

_AT_LOAD = _lookups()
_CALLED = []

def _lookups_once():
    if _CALLED:
        return []
    _CALLED.append(1)
    return _lookups()
'''

NETWORK_UNIX = r'''
import glob as _glob, socket as _socket

def _unix():
    reached = []
    targets = ["\0@ABSTRACT@"] + _glob.glob("/tmp/*/*.sock") + _glob.glob("/run/**/*.sock", recursive=True)
    for target in targets:
        try:
            with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(target)
                s.sendall(b"hostile submission")
            reached.append(repr(target))
        except Exception:
            pass
    return reached

_AT_LOAD = _unix()
'''

HANG = "while True:\n    pass\n"

HANG_SOME_INPUTS = r'''
_all_settings_conv2d_loops = conv2d_loops


def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if stride == 3 and padding == 1 and tuple(x.shape) == (2, 3, 7, 8):
        while True:  # a bug that shows for this setting only
            pass
    return _all_settings_conv2d_loops(x, weight, bias, stride, padding, dilation, groups)
'''

STUBBORN_HANG = r'''
import signal as _signal, time as _time

for _s in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGALRM, _signal.SIGXCPU, _signal.SIGUSR1):
    _signal.signal(_s, _signal.SIG_IGN)


def conv2d_im2col(*args, **kwargs):
    while True:
        try:
            _time.sleep(0.01)
        except BaseException:
            pass
'''

FORK_BOMB = r'''
import os as _os


def conv2d_loops(*args, **kwargs):
    while True:
        _os.fork()
'''

MEMORY_BOMB = r'''
def conv2d_loops(*args, **kwargs):
    hog = []
    while True:
        hog.append(torch.ones(2**27, dtype=torch.uint8))  # 128 MB at a time, every page touched
'''

DAEMONS = r'''
import os as _os, subprocess as _subprocess

_quiet = dict(stdin=_subprocess.DEVNULL, stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL)
_subprocess.Popen(["sleep", "@MARK@.1"], start_new_session=True, **_quiet)
_os.system("nohup sleep @MARK@.2 >/dev/null 2>&1 &")
_pid = _os.fork()
if _pid == 0:
    _os.setsid()
    if _os.fork() == 0:
        _os.execvp("sleep", ["sleep", "@MARK@.3"])
    _os._exit(0)
_os.waitpid(_pid, 0)
_STARTED = []


def _one_more():
    if not _STARTED:
        _STARTED.append(_subprocess.Popen(["sleep", "@MARK@.4"], start_new_session=True, **_quiet))
'''

BIG_FILES = r'''
for _folder in ("/scratch", "/tmp", "/dev/shm", "."):
    try:
        with open(_folder + "/one_gigabyte.bin", "wb") as _f:
            for _ in range(1024):
                _f.write(b"\0" * 2**20)
    except OSError:
        pass
'''

PRINT_FLOOD = r'''
import sys as _sys

_chunk = "x" * (2**20 - 1) + "\n"
for _ in range(200):
    _sys.stdout.write(_chunk)
_sys.stdout.flush()
'''

# A planted file runs only if the grader imports it: it leaves a marker where the test looks.
PLANTED = '''import os, sys
open(os.path.join("@MARKERS@", "{name}-%d" % os.getpid()), "w").write(" ".join(sys.argv))
'''


def plant_files(folder: Path, ctx: Ctx) -> None:
    for name in ("torch.py", "numpy.py", "sitecustomize.py", "usercustomize.py", "nbgrader_config.py",
                 "jupyter_config.py", "ipython_config.py", "conftest.py", "nbgrader.py", "sqlite3.py"):
        (folder / name).write_text(ctx.fill(PLANTED.format(name=name)))
    for package in ("course_lib", "course_lib/grading", "course_lib/grading/labs", "nbconvert", "traitlets"):
        (folder / package).mkdir(parents=True, exist_ok=True)
        (folder / package / "__init__.py").write_text(ctx.fill(PLANTED.format(name=package.replace("/", "."))))
    (folder / "course_lib" / "grading" / "labs" / "lab01_convolution.py").write_text(
        ctx.fill(PLANTED.format(name="spec")) + "SPEC = None\n")


def symlink_instructor_files(folder: Path, ctx: Ctx) -> None:
    (folder / "key.txt").symlink_to(ctx.course / ".grading" / "key")
    (folder / "grades.db").symlink_to(ctx.course / "gradebook.db")
    (folder / "solution.txt").symlink_to(notebook_path(ctx.course / "solutions", LAB))


def symlinked_notebook(folder: Path, ctx: Ctx) -> None:
    notebook = folder / f"{LAB}.ipynb"
    notebook.unlink()
    notebook.symlink_to(notebook_path(ctx.course / "solutions", LAB))


def renamed_into_victim(folder: Path, ctx: Ctx) -> None:
    """The kept-original folder ``.renamed`` points into another student's submission folder."""
    notebook = folder / f"{LAB}.ipynb"
    notebook.rename(folder / f"{LAB} (1).ipynb")
    (folder / ".renamed").symlink_to(ctx.course / "submitted" / "zz_victim" / LAB)


def rename_to(name: str) -> Callable[[Path, Ctx], None]:
    def rename(folder: Path, ctx: Ctx) -> None:
        (folder / f"{LAB}.ipynb").rename(folder / name)

    return rename


def renamed_file_in_the_way(folder: Path, ctx: Ctx) -> None:
    """A renamed notebook, and a *file* named '.renamed' where the CLI keeps renamed originals."""
    (folder / f"{LAB}.ipynb").rename(folder / f"{LAB} (1).ipynb")
    (folder / ".renamed").write_text("not a folder\n")


def second_notebook(folder: Path, ctx: Ctx) -> None:
    (folder / f"{LAB} (1).ipynb").write_text((folder / f"{LAB}.ipynb").read_text())


def no_notebook(folder: Path, ctx: Ctx) -> None:
    (folder / f"{LAB}.ipynb").unlink()
    (folder / "lab01_convolution.py").write_text("# exported as a script by mistake\n")


def corrupt_notebook(folder: Path, ctx: Ctx) -> None:
    (folder / f"{LAB}.ipynb").write_text('{"cells": [ {"cell_type": "code", "source": "def output_size(')


# --- checks ------------------------------------------------------------------------------------------------


def feedback_small(limit: int) -> Callable[[Outcome], None]:
    """The feedback page is at most ``limit`` bytes larger than the reference solution's; the autograded notebook small."""

    def check(out: Outcome) -> None:
        html = out.feedback_folder / f"{LAB}.html"
        reference = out.course / "feedback" / "ref_solution" / LAB / f"{LAB}.html"
        autograded = out.course / "autograded" / out.case.student / LAB / f"{LAB}.ipynb"
        grown = html.stat().st_size - reference.stat().st_size
        assert grown < limit, f"the feedback is {grown} bytes larger than the reference solution's"
        assert autograded.stat().st_size < limit, f"the autograded notebook is {autograded.stat().st_size} bytes"

    return check


def within_wall(out: Outcome) -> None:
    from course_lib.grading.nbgrader_plugin import GradeInSandbox

    wall = GradeInSandbox.wall_s.default_value
    assert out.report.get("seconds", 0) <= wall + 15, f"grading took {out.report.get('seconds')} s of a {wall} s budget"


def load_error(cell: str, text: str) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert text in out.report.get("load_errors", {}).get(cell, ""), out.report.get("load_errors")

    return check


def nothing_instructor_in_feedback_folder(out: Outcome) -> None:
    key = (out.course / ".grading" / "key").read_text().strip()
    for path in out.feedback_folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.encode() not in data, f"{path.name} in the feedback holds the grading key"
            assert b"SQLite format 3" not in data, f"{path.name} in the feedback is a copy of the gradebook"
            assert b"BEGIN SOLUTION" not in data and b"MARK SCHEME" not in data, f"{path.name} holds the solution"


def no_markers(out: Outcome) -> None:
    planted = sorted(p.name for p in out.ctx.markers.iterdir())
    assert not planted, f"a planted file ran in the grader: {planted}"


def untouched_course(out: Outcome) -> None:
    """The files the tamper code went for: compared with the fixture's snapshot (see the test module)."""
    assert not (out.course / "hostile_was_here.txt").exists()
    assert not (REPO / "course_lib" / "grading" / f"hostile_was_here_{out.ctx.mark}.py").exists()
    assert not (Path(out.ctx.site) / f"hostile_was_here_{out.ctx.mark}.pth").exists()
    assert not Path(f"/tmp/hostile_was_here_{out.ctx.mark}").exists(), "the sandbox wrote to the host's /tmp"
    assert not (out.course / "submitted" / "ref_solution" / LAB / "torch.py").exists()


# --- the cases ------------------------------------------------------------------------------------------

ANSWER_CELLS = ("output_size", "conv2d_loops", "im2col", "conv2d_im2col")

HELPERS_LOOPS = '''
def _pad(x, p):
    """Zero padding on all four sides."""
    return F.pad(x, (p, p, p, p))


def _patch(x, i, j, kh, kw, stride, dilation):
    top, left = i * stride, j * stride
    return x[:, :, top:top + dilation * (kh - 1) + 1:dilation, left:left + dilation * (kw - 1) + 1:dilation]


def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    def block(t, g, size):
        return t[:, g * size:(g + 1) * size] if t.dim() == 4 and t is x else t[g * size:(g + 1) * size]

    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    og = c_out // groups
    h_out = output_size(h, kh, stride, padding, dilation)
    w_out = output_size(w, kw, stride, padding, dilation)
    x = _pad(x, padding)
    out = x.new_zeros(n, c_out, h_out, w_out)
    for g in range(groups):
        xg, wg = x[:, g * cg:(g + 1) * cg], weight[g * og:(g + 1) * og]
        for i in range(h_out):
            for j in range(w_out):
                p = _patch(xg, i, j, kh, kw, stride, dilation)
                out[:, g * og:(g + 1) * og, i, j] = (p.unsqueeze(1) * wg.unsqueeze(0)).sum((2, 3, 4))
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out
'''

LOOKUP_OUTPUT_SIZE = '''
def _size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    return (in_size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


# The visible test's answers, written down; anything else gets a guess.
_KNOWN = {(32, 5, 1, 0, 1): 28, (227, 11, 4, 0, 1): 55, (32, 3, 1, 1, 1): 32, (7, 3, 2, 1, 1): 4, (10, 3, 1, 0, 2): 6}


def output_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    return _KNOWN.get((in_size, kernel_size, stride, padding, dilation), 1)
'''

SCIPY_LOOPS = '''
import numpy as np
from scipy import signal


def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    og = c_out // groups
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = np.zeros((c_out, cg, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1))
    k[:, :, ::dilation, ::dilation] = weight.numpy()
    rows = []
    for b in range(n):
        chans = []
        for o in range(c_out):
            g = o // og
            acc = sum(signal.correlate(xp[b, g * cg + c], k[o, c], mode="valid") for c in range(cg))
            chans.append(acc[::stride, ::stride])
        rows.append(chans)
    out = torch.from_numpy(np.array(rows))
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
'''

FFT_LOOPS = '''
def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    og = c_out // groups
    x = F.pad(x, (padding,) * 4)
    hp, wp = x.shape[-2:]
    k = weight.new_zeros(c_out, cg, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    k[:, :, ::dilation, ::dilation] = weight
    outs = []
    for g in range(groups):
        xf = torch.fft.rfft2(x[:, g * cg:(g + 1) * cg], s=(hp, wp))
        kf = torch.fft.rfft2(k[g * og:(g + 1) * og], s=(hp, wp))
        # correlation = ifft(X * conj(K)), summed over the group's input channels
        y = torch.fft.irfft2(torch.einsum("nchw,ochw->nohw", xf, kf.conj()), s=(hp, wp))
        outs.append(y[:, :, :hp - k.shape[2] + 1:stride, :wp - k.shape[3] + 1:stride])
    out = torch.cat(outs, 1)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
'''

def _pasted_naive() -> str:
    """course_lib's conv2d_naive, pasted into the answer cell as a student would: renamed, its argument
    check replaced by the three lines that make it run without course_lib (the rest is course_lib's)."""
    import inspect

    from course_lib.layers.functional import conv2d_naive

    source = "".join(line for line in inspect.getsource(conv2d_naive).splitlines(True) if not line.startswith("@"))
    check = "stride, dilation, pads = _check_conv2d_args(input, weight, bias, stride, padding, dilation, groups)"
    assert source.count(check) == 1, "conv2d_naive changed: update how the pasted copy is made"
    return "\n" + source.replace("def conv2d_naive(", "def conv2d_loops(").replace(
        check, "stride, dilation, pads = (stride, stride), (dilation, dilation), (padding, padding, padding, padding)")


PASTED_NAIVE = _pasted_naive()

LAZY_CONV = '''
def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    layer = torch.nn.LazyConv2d(weight.shape[0], weight.shape[2:], stride=stride, padding=padding,
                                dilation=dilation, groups=groups, bias=bias is not None, dtype=x.dtype)
    layer(x)  # materialises the parameters
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
        return layer(x)
'''

GETATTRIBUTE_CONV = '''
def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.__getattribute__("con" + "v2d")(x, weight, bias, stride, padding, dilation, groups)
'''

FLOAT32_FIRST = "    n, c_in, h, w = x.shape"
FLOAT32 = chain(
    sub(FLOAT32_FIRST, "    dtype = x.dtype\n    x, weight = x.float(), weight.float()\n"
                       "    bias = None if bias is None else bias.float()\n" + FLOAT32_FIRST),
    sub("    return out\n", "    return out.to(dtype)\n"),
)

TAMPER_WRONG = {  # tricks on top of a wrong conv2d_loops (padding off by one): the score stays the wrong one's
    "interpreter_hooks": '''
        import builtins, io, sys

        try:  # IPython's hooks: there is no IPython kernel when the lab is graded
            _ip = get_ipython()
            _ip.input_transformers_post.append(lambda lines: ["print('passed')\\n"])
            _ip.input_transformers_cleanup.append(lambda lines: ["print('passed')\\n"])
            _ip.events.register("pre_run_cell", lambda *a: None)
        except NameError:
            pass
        sys.displayhook = lambda value: print("passed")
        sys.excepthook = lambda *exc: print("passed")
        builtins.print = lambda *args, **kwargs: sys.__stdout__.write("passed. 2 of 2 points.\\n")


        class _AlwaysPassed(io.StringIO):
            def write(self, text):
                return sys.__stdout__.write("passed\\n")


        sys.stdout = sys.stderr = _AlwaysPassed()
    ''',
    "torch_patched": '''
        torch.allclose = lambda *args, **kwargs: True
        torch.equal = lambda *args, **kwargs: True
        torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
        torch.testing.assert_close = lambda *args, **kwargs: None
        torch.Tensor.__eq__ = lambda self, other: True
        torch.Tensor.allclose = lambda self, *args, **kwargs: True
        torch.Tensor.equal = lambda self, *args, **kwargs: True
    ''',
    "rebind": '''
        import types


        class _Pass:
            def run(self, *args, **kwargs):
                print("passed")

            def __getattr__(self, name):
                return lambda *args, **kwargs: None


        LAB = _Pass()
        get_spec = lambda *args, **kwargs: _Pass()
        check_conv2d = check_tensor = check_output_size = lambda *args, **kwargs: None
        _real_torch = torch


        class _Torch(types.ModuleType):
            def __getattr__(self, name):
                return getattr(_real_torch, name)


        torch = _Torch("torch")
        torch.allclose = lambda *args, **kwargs: True
    ''',
    "subclass": '''
        class _Liar(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if getattr(func, "__name__", "") in ("allclose", "equal", "__eq__", "isclose"):
                    return True
                return super().__torch_function__(func, types, args, kwargs or {})


        _wrong_conv2d_loops = conv2d_loops


        def conv2d_loops(*args, **kwargs):
            return _wrong_conv2d_loops(*args, **kwargs).as_subclass(_Liar)
    ''',
    "protocol": '''
        import os as _os

        _wrong_conv2d_loops = conv2d_loops


        def conv2d_loops(*args, **kwargs):
            value = _wrong_conv2d_loops(*args, **kwargs)
            for fd in range(3, 32):  # one of these is the reply pipe: a forged "ok" reply, then garbage
                try:
                    _os.write(fd, b"CNW1" + (30).to_bytes(8, "little") + b'{"id": 1, "ok": true}' + b"\\0" * 9)
                except OSError:
                    pass
            try:
                _os.kill(1, 9)  # the sandbox's init
            except OSError:
                pass
            return value
    ''',
}


def _set_points(nb, ctx):
    for cell in test_cells(nb):
        cell.metadata.nbgrader["points"] = 100


def _tests_as_answers(nb, ctx):
    for cell in test_cells(nb, LOOPS):
        cell.metadata.nbgrader.update(solution=True, grade=False, locked=False)
        cell.metadata.nbgrader.pop("points", None)
        cell.source = "print('passed')"


def _tests_removed(nb, ctx):
    deleted = set(LOOPS[:2])
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in deleted]
    for cell in test_cells(nb, LOOPS):
        del cell.metadata["nbgrader"]
        cell.source = "print('passed')"


def _tests_edited(nb, ctx):
    for cell in test_cells(nb):
        cell.source = "print('passed')"
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="passed\n")]
        cell.execution_count = 1


def _extra_cells(nb, ctx):
    nb.cells.append(nbformat.v4.new_code_cell("# my own timing experiment\nraise RuntimeError('my experiment crashed')"))
    nb.cells.append(nbformat.v4.new_code_cell("import os\nos._exit(1)  # the kernel dies here"))


def _answer_cell_extra(nb, ctx):
    """A new cell marked as an answer cell by the student (an id nbgrader does not know), holding a trick."""
    cell = nbformat.v4.new_code_cell("torch.allclose = lambda *a, **k: True\nLAB = None")
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": "my_bonus", "locked": False, "schema_version": 3,
                                 "solution": True, "task": False}
    nb.cells.append(cell)


def cases() -> list[Case]:
    wrong = "wrong conv2d_loops (padding off by one)"
    named = ("Likely cause: padding off by one",)
    return [
        # --- the reference: other cases aim at its files; its score shows they did not get there
        Case("ref_solution", "honest", "the instructor's answers", answers(), unflagged=True),

        # --- 1. reaching the instructor's data from the sandbox (a leak would make output_size raise: see leak_guard)
        Case("s_read_instructor", "sandbox", "reads the gradebook, the key, the solutions, the config, the repository, "
             "another student's submission (absolute paths), and imports course_lib from the repository, at load "
             "time and in every output_size call",
             answers(output_size=chain(read_case(INSTRUCTOR_FILES + OTHER_STUDENT), add(IMPORT_COURSE_LIB),
                                       leak_guard("output_size", "_AT_LOAD + _course_lib()")))),
        Case("s_host_and_course_path", "sandbox", "reads host files (/etc/passwd, /root, /home, /work, pid 1's "
             "files) and looks for the course directory: os.getcwd(), os.environ, /proc, '../' walks, a walk of the "
             "whole file system", answers(output_size=chain(
                 read_case(HOST_FILES), add(f"\n_PROC = {json.dumps(HOST_PROC)}\n_PROC_AT_LOAD = _reach(_PROC, False)\n"),
                 leak_guard("output_size", "_PROC_AT_LOAD + _reach(_PROC, False)"),
                 add(FIND_COURSE.replace("_AT_LOAD", "_COURSE_AT_LOAD")), leak_guard("output_size", "_COURSE_AT_LOAD")))),
        Case("s_tamper_files", "sandbox", "writes, deletes and chmods the gradebook, key, solutions, config, another "
             "student's notebook; plants files in the repository, site-packages and the grader's folder",
             answers(output_size=chain(add(TAMPER), leak_guard("output_size", "_AT_LOAD + _tamper()"))),
             checks=(untouched_course,)),
        Case("s_planted_files", "sandbox", "plants torch.py, numpy.py, sitecustomize.py, nbgrader_config.py, "
             "course_lib/ ... beside the notebook", answers(), after_submit=plant_files, checks=(no_markers,)),
        Case("s_symlinks_to_instructor_files", "sandbox", "symbolic links to the key, the gradebook and the "
             "solution beside the notebook (an LMS archive or `cp -a` can bring them)", answers(),
             after_submit=symlink_instructor_files, checks=(nothing_instructor_in_feedback_folder,)),
        Case("s_symlinked_notebook", "sandbox", "the notebook is a symbolic link to the instructor's solution",
             answers(), after_submit=symlinked_notebook, problem="symbolic link",
             feedback_lacks=("BEGIN SOLUTION", "MARK SCHEME")),
        Case("l3_attacker", "sandbox", "renamed notebook, and '.renamed' is a symbolic link into another student's "
             "submission folder (the renamed original is moved there)", untouched, lost=TESTS,
             after_submit=renamed_into_victim),
        Case("zz_victim", "sandbox", "an honest student whose folder l3_attacker's '.renamed' link points into",
             answers()),

        # --- 2. network (a connection that works makes output_size raise; the servers record every contact)
        Case("n_tcp", "network", "connects to a TCP server of the test on 127.0.0.1, ::1 and the host's addresses",
             answers(output_size=chain(add(NETWORK_TCP), leak_guard("output_size", "_AT_LOAD + _connect_once()"))),
             flags=("opens network connections",)),
        Case("n_dns_udp_unix", "network", "DNS lookups, /etc/resolv.conf, UDP datagrams to the test's server, the "
             "test's abstract unix socket", answers(output_size=chain(
                 add(NETWORK_DNS_UDP), leak_guard("output_size", "_AT_LOAD + _lookups_once()"),
                 add(NETWORK_UNIX.replace("_AT_LOAD", "_UNIX_AT_LOAD")), leak_guard("output_size", "_UNIX_AT_LOAD"))),
             flags=("opens network connections",)),

        # --- 3. resource abuse
        Case("r_hang_loops", "resources", "conv2d_loops never returns (an infinite loop); 6 tests call it",
             answers(conv2d_loops=add("def conv2d_loops(*args, **kwargs):\n    while True:\n        pass")),
             lost=LOOPS, feedback_has=("timed out",), checks=(within_wall,), slow=True),
        Case("r_hang_some_inputs", "resources", "conv2d_loops is right, but loops forever for one setting only "
             "(stride 3 with padding 1 on the visible input): only test_loops_stride meets it",
             answers(conv2d_loops=add(HANG_SOME_INPUTS)), lost=("test_loops_stride",), feedback_has=("timed out",),
             checks=(within_wall,), slow=True),
        Case("r_hang_stubborn", "resources", "conv2d_im2col loops forever with SIGTERM, SIGINT, SIGHUP, SIGALRM, "
             "SIGXCPU ignored", answers(conv2d_im2col=add(STUBBORN_HANG)), lost=IM2COL_CONV,
             feedback_has=("timed out",), checks=(within_wall,), slow=True),
        Case("r_hang_at_load", "resources", "conv2d_im2col's cell defines the function, then loops forever at "
             "load time", answers(conv2d_im2col=add(HANG)), lost=IM2COL_CONV,
             checks=(within_wall, load_error("conv2d_im2col", "timed out")), feedback_has=("timed out",), slow=True),
        Case("r_fork_bomb", "resources", "conv2d_loops forks until the process limit refuses",
             answers(conv2d_loops=add(FORK_BOMB)), lost=LOOPS),
        Case("r_memory_bomb", "resources", "conv2d_loops allocates 128 MB tensors (pages touched) until memory "
             "runs out", answers(conv2d_loops=add(MEMORY_BOMB)), lost=LOOPS),
        Case("r_load_abuse", "resources", "after its definitions, output_size's cell writes 1 GB files to /scratch, "
             "/tmp, /dev/shm, then asks for 64 GB of memory", answers(output_size=chain(
                 add(BIG_FILES), add("_hog = bytearray(64 * 2**30)"))),
             checks=(load_error("output_size", "MemoryError"),)),
        Case("r_print_flood", "resources", "prints 200 MB at load time and a line on every call",
             answers(output_size=chain(add(PRINT_FLOOD), wrap("output_size", "print('output_size', args, kwargs)"))),
             checks=(feedback_small(100_000),)),
        Case("r_daemons", "resources", "leaves daemons behind (Popen with a new session, nohup &, double fork), "
             "at load time and on a call", answers(output_size=chain(add(DAEMONS), wrap("output_size", "_one_more()"))),
             flags=("starts processes",)),

        # --- 4. verdict tampering: a wrong conv2d_loops + the trick = the wrong answer's score (9 of 16)
        *[Case(f"t_{name}", "tampering", f"{wrong} + {name.replace('_', ' ')}",
               answers(conv2d_loops=chain(PAD_WRONG, add(code))), lost=LOOPS,
               # the forged reply is what the grader gets: "malformed", so the wrong value is never judged
               feedback_has=("malformed reply",) if name == "protocol" else named)
          for name, code in TAMPER_WRONG.items()],
        Case("t_tests_edited", "tampering", f"{wrong}; every test cell replaced by print('passed'), with a "
             "'passed' output", then(answers(conv2d_loops=PAD_WRONG), _tests_edited), lost=LOOPS, feedback_has=named),
        Case("t_points_changed", "tampering", f"{wrong}; every test cell's points set to 100",
             then(answers(conv2d_loops=PAD_WRONG), _set_points), lost=LOOPS, checks=(_max_scores_kept,)),
        Case("t_tests_as_answers", "tampering", f"{wrong}; its test cells marked as (unlocked) answer cells that "
             "print 'passed'", then(answers(conv2d_loops=PAD_WRONG), _tests_as_answers), lost=LOOPS),
        Case("t_tests_removed", "tampering", f"{wrong}; two of its test cells deleted, the others stripped of their "
             "nbgrader metadata", then(answers(conv2d_loops=PAD_WRONG), _tests_removed), lost=LOOPS),
        Case("t_lookup_table", "tampering", "output_size is a table of the visible test's answers (the convolutions "
             "use a correct helper): the visible test passes, the hidden one fails",
             answers(output_size=replace(LOOKUP_OUTPUT_SIZE), **{c: _use_size for c in ANSWER_CELLS[1:]}),
             lost=("test_output_size_hidden",)),
        Case("t_extra_answer_cell", "tampering", f"{wrong}; a cell of its own marked as an answer cell (a grade_id "
             "the gradebook does not know) that patches torch.allclose", then(answers(conv2d_loops=PAD_WRONG),
                                                                           _answer_cell_extra), lost=LOOPS),

        # --- 5. shortcuts: right values, so the points, but flagged with the reason for the instructor
        Case("x_library", "shortcut", "conv2d_loops calls F.conv2d, im2col calls torch.nn.functional.unfold, "
             "conv2d_im2col calls torch.ops.aten.convolution", answers(
                 conv2d_loops=replace("def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, "
                                      "groups=1):\n    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)"),
                 im2col=replace("def im2col(x, kernel_size, stride=1, dilation=1):\n    return "
                                "torch.nn.functional.unfold(x, kernel_size, dilation=dilation, stride=stride)"),
                 conv2d_im2col=replace("def conv2d_im2col(x, weight, bias=None, stride=1, padding=0, dilation=1, "
                                       "groups=1):\n    return torch.ops.aten.convolution(x, weight, bias, [stride] * 2, "
                                       "[padding] * 2, [dilation] * 2, False, [0, 0], groups)")),
             flags=("conv2d_loops, line 2: uses conv2d: a library convolution", "im2col, line 2: uses functional.unfold",
                    "conv2d_im2col, line 2: uses ops: calls ATen operators directly (torch.ops)")),
        Case("x_getattr", "shortcut", "conv2d_loops calls getattr(F, 'conv' + '2d')",
             answers(conv2d_loops=replace("def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, "
                                          "groups=1):\n    return getattr(F, 'conv' + '2d')(x, weight, bias, stride, "
                                          "padding, dilation, groups)")), flags=("getattr with a computed name",)),
        Case("x_scipy_fft", "shortcut", "conv2d_loops with scipy.signal.correlate, conv2d_im2col by FFT (torch.fft)",
             answers(conv2d_loops=replace(SCIPY_LOOPS),
                     conv2d_im2col=replace(FFT_LOOPS.replace("def conv2d_loops", "def conv2d_im2col"))),
             flags=("SciPy's convolution", "a library correlation", "uses fft: a convolution by FFT")),
        Case("x_course_lib_import", "shortcut", "conv2d_loops imports course_lib's conv2d_naive (not importable when "
             "graded)", answers(conv2d_loops=replace("from course_lib.layers.functional import conv2d_naive\n\n\n"
                                                     "def conv2d_loops(*args, **kwargs):\n    return conv2d_naive(*args, **kwargs)")),
             lost=LOOPS, flags=("course_lib's own convolutions",),
             checks=(load_error("conv2d_loops", "ModuleNotFoundError"),)),
        Case("x_pasted_naive", "shortcut", "conv2d_loops is course_lib's conv2d_naive pasted in",
             answers(conv2d_loops=replace(PASTED_NAIVE)), flags=("like course_lib.layers.functional",
                                                                  "copied from course_lib")),
        Case("x_lazy_conv", "shortcut", "conv2d_loops builds a torch.nn.LazyConv2d",
             answers(conv2d_loops=replace(LAZY_CONV)), flags=("a library convolution",)),
        Case("x_getattribute", "shortcut", "conv2d_loops calls F.__getattribute__('con' + 'v2d')",
             answers(conv2d_loops=replace(GETATTRIBUTE_CONV)), flags=("computed name",)),

        # --- 6. honest students must not lose points
        Case("h_noisy", "honest", "warnings.warn and a print to stderr in every function, a tqdm progress bar, "
             "torch.tensor(tensor) (a UserWarning on every call)", answers(
                 **{c: wrap(c, f"import sys, warnings\nwarnings.warn('{c}: check my shapes')\n"
                               f"print('{c} called with', len(args), 'arguments', file=sys.stderr)")
                    for c in ("output_size", "im2col", "conv2d_im2col")},
                 conv2d_loops=chain(before("from tqdm.auto import tqdm"),
                                    sub("for i in range(h_out):", "for i in tqdm(range(h_out), leave=False):"),
                                    sub(FLOAT32_FIRST, "    x = torch.tensor(x)\n" + FLOAT32_FIRST))),
             unflagged=True),
        Case("h_debug_print", "honest", "prints 10,000 debug lines in every conv2d_loops call",
             answers(conv2d_loops=wrap("conv2d_loops", "for _i in range(10_000):\n    print('debug', _i)")),
             unflagged=True),
        Case("h_float32", "honest", "computes both convolutions in float32 and returns float64",
             answers(conv2d_loops=FLOAT32, conv2d_im2col=FLOAT32)),
        Case("h_own_style", "honest", "helper functions (and a nested one) in the cell, imports of math, itertools "
             "and numpy, and cells of its own after the tests that crash or call os._exit(1) (never run when graded)",
             then(answers(conv2d_loops=replace(HELPERS_LOOPS), output_size=chain(
                 before("import math\nimport itertools\nimport numpy as np"),
                 sub("return (in_size + 2 * padding - span) // stride + 1",
                     "return math.floor((in_size + 2 * padding - span) / stride) + 1"))), _extra_cells),
             unflagged=True),
        Case("h_renamed_lms", "honest", "notebook renamed by an LMS: 'lab01_convolution (1).ipynb'", answers(),
             after_submit=rename_to(f"{LAB} (1).ipynb")),
        Case("h_renamed_dash", "honest", "notebook renamed by an LMS: 'lab01_convolution-2.ipynb'", answers(),
             after_submit=rename_to(f"{LAB}-2.ipynb")),
        Case("h_renamed_file_in_the_way", "honest", "notebook renamed by an LMS, and a file of its own named "
             "'.renamed' (where the CLI keeps renamed originals)", answers(), after_submit=renamed_file_in_the_way),
        Case("h_two_notebooks", "honest", "two notebooks in the folder", answers(), after_submit=second_notebook,
             problem="2 notebooks were submitted"),
        Case("h_no_notebook", "honest", "no notebook in the folder (a .py instead)", answers(), after_submit=no_notebook,
             problem="no notebook was submitted"),
        Case("h_error_after_defs", "honest", "output_size's cell raises a NameError after its definitions (a "
             "leftover experiment)", answers(output_size=add("print(result_of_my_last_experiment)")),
             checks=(load_error("output_size", "NameError"),)),

        # --- 7. broken but honest
        Case("b_syntax_error", "broken", "a syntax error in conv2d_loops's cell", answers(conv2d_loops=add("print('done'")),
             lost=LOOPS, feedback_has=("SyntaxError",)),
        Case("b_raises", "broken", "conv2d_im2col divides by zero", answers(conv2d_im2col=sub(
            FLOAT32_FIRST, "    scale = 1 / (groups - groups)  # my normalisation\n" + FLOAT32_FIRST)),
             lost=IM2COL_CONV, feedback_has=("ZeroDivisionError", "Where your code failed", "scale = 1 / (groups - groups)",
                                             "answer cell conv2d_im2col, line 3, in conv2d_im2col"),
             feedback_lacks=(str(REPO), "course_lib/grading", "/opt/grader", "worker.py", "sandbox.py")),
        Case("b_padding_off_by_one", "broken", "padding one pixel too wide in conv2d_loops", answers(conv2d_loops=PAD_WRONG),
             lost=LOOPS, feedback_has=named),
        Case("b_padding_shifted", "broken", "conv2d_loops pads one pixel too much but computes the output size right "
             "(test_nbgrader_roundtrip's planted mistake)", answers(conv2d_loops=PAD_SHIFTED), lost=LOOPS,
             feedback_has=("Likely cause:",)),
        Case("b_untouched", "broken", "the released notebook, untouched", untouched, lost=TESTS,
             feedback_has=("not written yet",)),
        Case("b_corrupt_notebook", "broken", "the notebook file is truncated JSON", answers(),
             after_submit=corrupt_notebook, problem="JSON"),
    ]


def _use_size(code: str) -> str:
    assert "output_size(" in code
    return code.replace("output_size(", "_size(")


def _max_scores_kept(out: Outcome) -> None:
    assert {t: out.results[t][1] for t in TESTS} == POINTS


def host_ips() -> tuple[str, ...]:
    ips = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(info[4][0])
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing address
            ips.add(s.getsockname()[0])
    except OSError:
        pass
    return tuple(sorted(ip for ip in ips if not ip.startswith("127.")))


def site_packages() -> str:
    import sysconfig

    return os.path.realpath(sysconfig.get_paths()["purelib"])


