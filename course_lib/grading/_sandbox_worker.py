"""The program that runs *inside* the answer sandbox (see :mod:`course_lib.grading.sandbox`).

It is started by bubblewrap as ``python -I -S /opt/grader/worker.py CONFIG``
(CONFIG: one JSON argument written by the grader). This file is trusted code,
but the process it becomes is not: from the first line of a student's cell on,
the student owns every object here, this module included. So everything that
must hold is settled *before* any student code runs, and is enforced by the
kernel rather than by this code:

1. close every inherited file descriptor except stdio and the two protocol pipes;
2. when the grader runs as root: leave uid 0 for the sandbox's own uid/gid
   (no supplementary groups), which also drops the two capabilities
   (CAP_SETUID, CAP_SETGID) bubblewrap kept for this step, and empty the
   inheritable set (capset); then, in every case, check that no capability is
   left and that no_new_privs is set, and refuse to go on otherwise;
3. resource limits, soft = hard so they cannot be raised again: RLIMIT_CORE 0,
   RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE; RLIMIT_AS comes with
   the ``seal`` request, after the (trusted) preamble has imported torch;
4. ``sys.path``: the standard library (``-I -S``: no site, no user site, no
   script directory, no PYTHON* variables) plus the read-only site-packages
   folders the grader bound; no .pth file is executed, so editable installs
   (course_lib) are not importable.

Protocol: frames of :mod:`wire` (loaded by path: ``course_lib`` is not
importable here). After start-up the worker sends ``{"id": 0, "ok": true,
"value": {"pid": ...}}`` (if the set-up fails, it writes why on stderr and
exits with status 70 instead), then answers each request, in order:

* ``{"id", "op": "exec", "name", "source", "kind": "preamble"|"cell"}`` - run the
  code in the one namespace (a fresh ``__main__`` module, as in a notebook);
* ``{"id", "op": "seal"}`` - apply RLIMIT_AS: the address space now mapped
  plus the memory allowance (``memory_mb``);
* ``{"id", "op": "call", "function", "args", "kwargs"}`` - call a name of the namespace.

Each reply is ``{"id", "ok", "value"}`` or ``{"id", "ok": false, "error",
"traceback"}``, written after stdout and stderr are flushed (so the grader
sees a call's output before its reply). ``traceback`` lists only frames of
the student's cells, as ``answer cell NAME, line N, in FUNCTION: CODE``.
"""

import builtins
import json
import linecache
import os
import resource
import sys
import traceback
import types

CELL_PREFIX = "<answer cell "
PREAMBLE_FILE = "<preamble>"
MAX_TRACEBACK = 6


def _close_inherited_fds(keep):
    """Close every descriptor but ``keep``: a stray directory descriptor of the host would be a way out."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _status_fields():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _clear_inheritable_capabilities():
    """capset(): leaving uid 0 empties the permitted and effective sets, not the inheritable one."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _drop_privileges(uid, gid):
    if uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
            raise RuntimeError("could not switch to the sandbox's uid and gid")
    _clear_inheritable_capabilities()
    status = _status_fields()
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        if int(status.get(key, "0"), 16) != 0:
            raise RuntimeError(f"the sandbox still holds capabilities ({key} {status[key]})")
    if status.get("NoNewPrivs") != "1":
        raise RuntimeError("no_new_privs is not set in the sandbox")


def _set_limits(limits):
    def limit(resource_id, value):
        resource.setrlimit(resource_id, (value, value))

    limit(resource.RLIMIT_CORE, 0)
    # SIGXCPU at the soft limit, SIGKILL one second later even if SIGXCPU is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    limit(resource.RLIMIT_FSIZE, limits["file_size"])
    limit(resource.RLIMIT_NPROC, limits["processes"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit(resource.RLIMIT_NOFILE, min(1024, hard if hard != resource.RLIM_INFINITY else 1024))


def _address_space():
    return int(_status_fields()["VmSize"].split()[0]) * 1024


def _load_wire(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_sandbox_wire", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _first_line(text, limit=500):
    text = text.strip()
    return text.splitlines()[0][:limit] if text else ""


def _describe(error):
    """One line: ``ZeroDivisionError: division by zero``."""
    name = type(error).__name__
    if isinstance(error, SyntaxError) and isinstance(error.filename, str) and error.filename.startswith(CELL_PREFIX):
        return f"{name}: {error.msg} ({error.filename[1:-1]}, line {error.lineno})"
    try:
        text = _first_line(str(error))
    except BaseException:  # a hostile __str__ - this is the student's own process anyway
        text = "(the exception's message could not be read)"
    return f"{name}: {text}" if text else name


def _student_frames(error):
    """The traceback lines that point into the student's cells, innermost last."""
    lines = []
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith(CELL_PREFIX) and frame.filename.endswith(">"):
            code = (frame.line or "").strip()
            where = f"{frame.filename[1:-1]}, line {frame.lineno}, in {frame.name}"
            lines.append(f"{where}: {code}" if code else where)
    if isinstance(error, SyntaxError) and isinstance(error.filename, str) and error.filename.startswith(CELL_PREFIX):
        code = (error.text or "").strip()
        where = f"{error.filename[1:-1]}, line {error.lineno}"
        lines.append(f"{where}: {code}" if code else where)
    return lines[-MAX_TRACEBACK:]


class Worker:
    def __init__(self, config, wire):
        self.config = config
        self.wire = wire
        self.requests = config["in"]
        self.replies = config["out"]
        self.max_bytes = config["max_bytes"]
        # A fresh __main__, as in a notebook kernel: `import __main__` and pickling by
        # reference see the student's namespace, not this file.
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        self.namespace = main.__dict__
        self.pid = os.getpid()
        # A process the student's code forks must never take part in the protocol: it could read the
        # next request or answer one (and a fork bomb's children would). Its copies of the pipes are
        # closed at the fork, and if it ever returns into this loop it exits (see serve).
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self):
        for fd in (self.requests, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass

    def send(self, message):
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            self.wire.write_frame(self.replies, message, max_bytes=self.max_bytes)
        except self.wire.WireError as error:  # the value cannot travel: say so instead
            try:  # again, for a message that names the culprit as the student sees it
                self.wire.encode_parts(message.get("value"), max_bytes=self.max_bytes, name="the return value")
            except self.wire.WireError as named:
                error = named
            self.wire.write_frame(
                self.replies,
                {
                    "id": message["id"],
                    "ok": False,
                    "error": f"the grader cannot receive what your code returned: {error}"[:1000],
                    "traceback": [],
                },
                max_bytes=self.max_bytes,
            )

    def failure(self, request_id, error):
        return {"id": request_id, "ok": False, "error": _describe(error), "traceback": _student_frames(error)}

    def run_code(self, request_id, name, source, kind):
        filename = PREAMBLE_FILE if kind == "preamble" else f"{CELL_PREFIX}{name}>"
        # linecache: tracebacks and inspect.getsource see the cell's text.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), self.namespace)
        except BaseException as error:  # SystemExit and KeyboardInterrupt too: a cell must not end the worker
            return self.failure(request_id, error)
        return {"id": request_id, "ok": True, "value": None}

    def call(self, request_id, function, args, kwargs):
        if type(function) is not str or function not in self.namespace:
            return {
                "id": request_id,
                "ok": False,
                "error": f"no function named {function!r}: no answer cell defines it",
                "traceback": [],
            }
        target = self.namespace[function]
        if not callable(target):
            return {
                "id": request_id,
                "ok": False,
                "error": f"no function named {function!r}: the answer cells made it a {type(target).__name__} object",
                "traceback": [],
            }
        try:
            value = target(*args, **kwargs)
        except BaseException as error:
            return self.failure(request_id, error)
        return {"id": request_id, "ok": True, "value": value}

    def seal(self, request_id):
        limit = _address_space() + self.config["memory"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        return {"id": request_id, "ok": True, "value": {"address_space_limit": limit}}

    def serve(self):
        while True:
            try:
                request = self.wire.read_frame(self.requests, self.max_bytes)
            except self.wire.WireEOF:
                os._exit(0)
            op, request_id = request["op"], request["id"]
            if op == "exec":
                reply = self.run_code(request_id, request["name"], request["source"], request["kind"])
            elif op == "call":
                reply = self.call(request_id, request["function"], request["args"], request["kwargs"])
            elif op == "seal":
                reply = self.seal(request_id)
            else:
                reply = {"id": request_id, "ok": False, "error": f"unknown request {op!r}", "traceback": []}
            if os.getpid() != self.pid:  # a child the student's code forked, returning from the call
                os._exit(0)
            self.send(reply)


def main():
    config = json.loads(sys.argv[1])
    sys.argv = [""]
    _close_inherited_fds({0, 1, 2, config["in"], config["out"]})
    try:
        _drop_privileges(config.get("uid"), config.get("gid"))
        _set_limits(config)
        wire = _load_wire(config["wire"])
    except BaseException as error:  # no student code has run: report on stderr, the grader shows it
        sys.stderr.write(f"the sandbox could not be set up: {type(error).__name__}: {error}\n")
        sys.stderr.flush()
        os._exit(70)
    sys.dont_write_bytecode = True
    sys.path.extend(config["sites"])
    # Line buffering: what a call printed before it hung or crashed still reaches the grader.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    worker = Worker(config, wire)
    worker.send({"id": 0, "ok": True, "value": {"pid": os.getpid()}})
    worker.serve()


if __name__ == "__main__":
    main()
