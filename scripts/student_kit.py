"""Write what a student receives for each lab: `make student-kit`.

    python scripts/student_kit.py [--out DIR] [--verify-jupyterlab]
    (default DIR: student-kit/ at the repository root; it is replaced on every run)

The kit holds

- ``course_lib-<version>-py3-none-any.whl``: one wheel of ``course_lib``, built from the
  checkout's files (tracked and untracked-but-not-ignored, as git sees them) in a temporary
  copy, so the checkout gets no ``build/`` folder. It must hold ``course_lib/`` and its
  ``.dist-info`` only (no solutions, tests, labs, book, notebook or gradebook) and declare
  the ``[student]`` extra; otherwise the script fails and writes nothing.
- ``README.md``: the list of labs.
- per lab in ``labs/`` (the released student versions, never ``solutions/``), a folder
  ``<lab>/`` with
  - ``<lab>.ipynb``, a byte-for-byte copy of ``labs/<lab>/<lab>.ipynb``;
  - ``README.md``, from ``kit/README.md.in``: the notebook's intro, the points of every graded
    cell and part (nbgrader's metadata of the released notebook), the working time
    (``book/labs.md``), the solution's execution budget, the one install command, how to start
    JupyterLab and how to hand in;
  - ``jupyter-config/``, a copy of ``kit/jupyter-config/``: started with
    ``jupyter lab --config=jupyter-config/jupyter_server_config.py``, JupyterLab runs without
    nbgrader's instructor tools (Formgrader, Create Assignment, course and assignment lists)
    and keeps its Validate button.

Before the kit replaces DIR, every file in it, and every file inside the wheel, is searched
for nbgrader's solution / hidden-test / mark-scheme markers and for the lines of the hidden
tests and solutions of ``solutions/``; a hit fails the run.

``--verify-jupyterlab`` then starts JupyterLab in each lab folder with the kit's settings and
checks, over HTTP, that the instructor plugins are disabled, that ``/formgrader`` answers 404
and that Validate works (tests/test_student_kit.py does the same for one lab).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import email.parser
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIT_TEMPLATES = REPO / "kit"
DEFAULT_OUT = REPO / "student-kit"
PACKAGE = "course_lib"
STUDENT_EXTRA = "student"
# The file that marks a folder as a kit this script wrote (and may therefore replace).
MARKER = ".student-kit"
# How students start JupyterLab, from a lab's folder (kit/README.md.in says the same).
JUPYTER_CONFIG = "jupyter-config/jupyter_server_config.py"
# Fallback when benchmarks/notebook_times.py cannot be read.
DEFAULT_LAB_BUDGET_S = 60
# nbgrader's markers: none of them may reach a student.
LEAK_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "=== BEGIN MARK SCHEME ===")
# Lines shorter than this (``return out``, ``else:``) are too common to prove a leak.
MIN_LEAK_LINE = 21
# The course's folders beside course_lib/: none may be a top-level entry of the wheel. (Inside
# course_lib/ these names are ordinary subpackages, e.g. course_lib/grading/labs/.)
FORBIDDEN_TOP = {"solutions", "tests", "labs", "book", "submitted", "autograded", "feedback", "release", "kit", "scripts"}
# What the README says about some of the [student] extra's packages.
PACKAGE_NOTES = {
    "nbgrader": "nbgrader (the Validate button)",
    "pytest": "pytest",
    "jupyterlab": "JupyterLab",
    "ipykernel": "ipykernel (the notebook's Python kernel)",
    "sqlalchemy": "SQLAlchemy (for nbgrader)",
}


class KitError(RuntimeError):
    """The kit would be wrong; the message says what to fix."""


# --------------------------------------------------------------------------- the wheel


def checkout_files(repo: Path = REPO) -> list[Path]:
    """Files of the checkout as git sees them: tracked plus untracked-but-not-ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo, capture_output=True, check=True,
        ).stdout.decode()
        return [repo / name for name in out.split("\0") if name and (repo / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".venv-oldest", "_build", "__pycache__", "build", "dist", DEFAULT_OUT.name}
        return [
            p for p in repo.rglob("*")
            if p.is_file() and not any(part in skip or part.endswith(".egg-info") for part in p.relative_to(repo).parts)
        ]


def _build_requirements_met(pyproject: dict) -> bool:
    """Whether this interpreter already has the build backend, so pip can build offline."""
    from packaging.requirements import Requirement

    for text in pyproject.get("build-system", {}).get("requires", []):
        req = Requirement(text)
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        if not req.specifier.contains(version, prereleases=True):
            return False
    return True


def build_wheel(dest: Path, repo: Path = REPO) -> Path:
    """Build one wheel of course_lib into ``dest`` from a temporary copy of the checkout."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    with tempfile.TemporaryDirectory(prefix="student-kit-src-") as tmp:
        src, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
        for path in checkout_files(repo):
            target = src / path.relative_to(repo)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels)]
        if _build_requirements_met(pyproject):
            cmd.append("--no-build-isolation")
        cmd.append(str(src))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise KitError(f"building the wheel failed ({' '.join(cmd)}):\n{result.stdout}\n{result.stderr}")
        built = sorted(wheels.glob("*.whl"))
        if len(built) != 1:
            raise KitError(f"expected exactly one wheel, pip wrote {[p.name for p in built]}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built[0], dest / built[0].name))


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def wheel_problems(wheel: Path) -> list[str]:
    """Everything wrong with the wheel a student installs (empty when it is right)."""
    problems = []
    dist = wheel.name.split("-")[0]
    version = wheel.name.split("-")[1]
    allowed = (f"{PACKAGE}/", f"{dist}-{version}.dist-info/")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    if not any(n.startswith(f"{PACKAGE}/") for n in names):
        problems.append(f"the wheel holds no {PACKAGE}/ package")
    for name in names:
        top = name.split("/")[0]
        if top in FORBIDDEN_TOP:
            problems.append(f"{name}: the course's {top}/ folder must not ship to students "
                            "(check [tool.setuptools.packages.find] in pyproject.toml)")
        elif not name.startswith(allowed):
            problems.append(f"{name}: outside {PACKAGE}/ (check [tool.setuptools.packages.find] in pyproject.toml)")
        elif name.endswith(".ipynb"):
            problems.append(f"{name}: a notebook must not ship inside the wheel")
        elif "gradebook" in name.lower() or name.endswith((".db", ".sqlite")):
            problems.append(f"{name}: a gradebook / database must not ship to students")
    extras = wheel_metadata(wheel).get_all("Provides-Extra") or []
    if STUDENT_EXTRA not in extras:
        problems.append(
            f"the wheel has no [{STUDENT_EXTRA}] extra (it has {extras}): add "
            f"`{STUDENT_EXTRA} = [...]` under [project.optional-dependencies] in pyproject.toml; "
            "the README's install command relies on it"
        )
    return problems


def student_packages(wheel: Path) -> list[str]:
    """Names of the [student] extra's requirements, from the wheel's metadata."""
    from packaging.requirements import Requirement

    names = []
    for text in wheel_metadata(wheel).get_all("Requires-Dist") or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": STUDENT_EXTRA}) and not req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


# --------------------------------------------------------------------------- reading a lab


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def nbgrader_meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def intro(nb: dict, lab: str) -> tuple[str, str]:
    """The lab's title and the rest of its first markdown cell (headings moved two levels down)."""
    cells = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    cell = next((c for c in cells if nbgrader_meta(c).get("grade_id") == "intro"), cells[0] if cells else None)
    if cell is None:
        return lab, "(The notebook's first cell describes the lab.)"
    lines = source(cell).strip().splitlines()
    title = lab
    if lines and lines[0].startswith("# "):
        title, lines = lines[0][2:].strip(), lines[1:]
    body, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        body.append("##" + line if line.startswith("#") and not fenced else line)
    return title, "\n".join(body).strip()


def _number(value) -> float:
    return float(value or 0)


def fmt(points: float) -> str:
    return str(int(points)) if float(points).is_integer() else f"{points:g}"


PART_HEADING = re.compile(r"^##\s+(.+?)\s*$")
POINTS_IN_HEADING = re.compile(r"\s*\(([^)]*?\bpoints?\b[^)]*)\)\s*$")
HIDDEN_COMMENT = re.compile(r"^\s*#\s*hidden tests?\b", re.IGNORECASE | re.MULTILINE)
DEF_NAME = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def graded_cells(nb: dict) -> list[dict]:
    """Every cell nbgrader scores, in notebook order, with its part and what it grades.

    nbgrader's rules: a cell with ``grade`` and ``points`` is scored; with ``solution`` too it is
    an answer an instructor grades (code or markdown), without it an autograded test. A ``task``
    cell with points is graded by an instructor as well.
    """
    part, answer_names, rows = "Before the first part", [], []
    for cell in nb["cells"]:
        meta, text = nbgrader_meta(cell), source(cell)
        if cell["cell_type"] == "markdown" and (m := PART_HEADING.match(text.strip().splitlines()[0] if text.strip() else "")):
            part = POINTS_IN_HEADING.sub("", m.group(1))
        if meta.get("solution") and cell["cell_type"] == "code":
            answer_names = DEF_NAME.findall(text) or answer_names
        if not (meta.get("grade") or meta.get("task")):
            continue
        manual = bool(meta.get("solution") or meta.get("task"))
        if manual:
            what = "written answer" if cell["cell_type"] == "markdown" else "answer"
            what += ", read by an instructor" if not meta.get("task") else " (task), read by an instructor"
        else:
            names = ", ".join(f"`{n}`" for n in answer_names) or "your code"
            what = (f"hidden tests of {names}, run when graded" if HIDDEN_COMMENT.search(text) else f"tests of {names}")
        rows.append({
            "part": part,
            "grade_id": meta.get("grade_id", "?"),
            "points": _number(meta.get("points")),
            "manual": manual,
            "what": what,
        })
    return rows


def heading_points(nb: dict) -> dict[str, float]:
    """Points that the notebook's part headings announce, e.g. '## Part 1 - Output size (2 points)'."""
    out = {}
    for cell in nb["cells"]:
        text = source(cell).strip()
        if cell["cell_type"] != "markdown" or not text:
            continue
        m = PART_HEADING.match(text.splitlines()[0])
        if m and (p := POINTS_IN_HEADING.search(m.group(1))) and (n := re.search(r"\d+(?:\.\d+)?", p.group(1))):
            out[POINTS_IN_HEADING.sub("", m.group(1))] = float(n.group())
    return out


def strip_myst(text: str) -> str:
    """Plain text of MyST roles: {doc}`chapter 2 <02_convolution>` -> chapter 2."""
    text = re.sub(r"\{[\w:-]+\}`([^`<]*?)\s*<[^`>]*>`", r"\1", text)
    return re.sub(r"\{[\w:-]+\}`([^`]*)`", r"\1", text)


def lab_section(labs_md: str, lab: str) -> str | None:
    """The section of book/labs.md about ``lab``: a '## Lab <n> ...' section that names
    labs/<lab>/, else the one whose number is the lab's (lab01_convolution -> Lab 1)."""
    sections = [s for s in re.split(r"(?m)^(?=## )", labs_md) if re.match(r"## Lab\b", s)]
    for section in sections:
        if f"labs/{lab}/" in section:
            return section
    if m := re.match(r"lab0*(\d+)", lab):
        for section in sections:
            if re.match(rf"## Lab {m.group(1)}\b", section):
                return section
    return None


def working_time(labs_md: str | None, lab: str) -> str | None:
    """The 'Working time: ...' sentence of the lab's section in book/labs.md, if it states one."""
    section = lab_section(labs_md or "", lab)
    if not section:
        return None
    flat = strip_myst(" ".join(section.split()))
    m = re.search(r"(?:Working time|Expected (?:working )?time|Time needed)\s*:\s*(.+?\.)(?=\s|$)", flat, re.IGNORECASE)
    if not m:
        return None
    sentence = m.group(1).strip()
    return sentence[0].upper() + sentence[1:]


def lab_budget_s(repo: Path = REPO) -> int:
    """The execution budget of a lab solution, from benchmarks/notebook_times.py's BUDGET_S."""
    try:
        tree = ast.parse((repo / "benchmarks" / "notebook_times.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BUDGET_S" for t in node.targets):
                return int(ast.literal_eval(node.value)["lab solution"])
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        pass
    return DEFAULT_LAB_BUDGET_S


def course_name(repo: Path = REPO) -> str:
    try:
        line = (repo / "README.md").read_text().splitlines()[0]
        return line.lstrip("# ").strip() if line.startswith("# ") else "The course"
    except (OSError, IndexError):
        return "The course"


# --------------------------------------------------------------------------- writing the kit


def render(template: Path, **values) -> str:
    return string.Template(template.read_text()).substitute(**values)


def requires_python_text(meta: email.message.Message) -> str:
    spec = (meta.get("Requires-Python") or "").strip()
    if m := re.fullmatch(r">=\s*([\d.]+)", spec):
        return f"{m.group(1)} or newer"
    return spec or "3"


def readme_for_lab(lab: str, nb: dict, wheel: Path, labs_md: str | None, repo: Path = REPO) -> tuple[str, dict]:
    """The lab's README text, and its points (for the summary and the checks)."""
    title, intro_text = intro(nb, lab)
    cells = graded_cells(nb)
    auto = sum(c["points"] for c in cells if not c["manual"])
    manual = sum(c["points"] for c in cells if c["manual"])
    parts: dict[str, list[float]] = {}
    for c in cells:
        parts.setdefault(c["part"], [0.0, 0.0])[c["manual"]] += c["points"]
    for part, announced in heading_points(nb).items():
        if part in parts and sum(parts[part]) != announced:
            print(f"warning: {lab}: '{part}' announces {fmt(announced)} points, its graded cells hold "
                  f"{fmt(sum(parts[part]))} (nbgrader's metadata wins in the README)", file=sys.stderr)
    part_rows = [f"| {part} | {fmt(a)} | {fmt(m)} | {fmt(a + m)} |" for part, (a, m) in parts.items()]
    part_rows.append(f"| **Total** | **{fmt(auto)}** | **{fmt(manual)}** | **{fmt(auto + manual)}** |")
    cell_rows, previous = [], None
    for c in cells:
        shown = c["part"] if c["part"] != previous else ""
        previous = c["part"]
        cell_rows.append(f"| {shown} | `{c['grade_id']}` | {c['what']} | {fmt(c['points'])} |")
    summary = (f"**{fmt(auto + manual)} points** in all: **{fmt(auto)}** autograded by the tests "
               f"(visible and hidden), **{fmt(manual)}** graded by an instructor.")
    time_text = working_time(labs_md, lab) or "see your instructor."
    packages = student_packages(wheel)
    notes = [PACKAGE_NOTES.get(p.lower(), f"`{p}`") for p in packages]
    items = ["PyTorch and the other libraries `course_lib` uses", *notes]
    listed = ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]
    text = render(
        KIT_TEMPLATES / "README.md.in",
        title=title, notebook=f"{lab}.ipynb", wheel=wheel.name, intro=intro_text,
        points_summary=summary, part_rows="\n".join(part_rows), cell_rows="\n".join(cell_rows),
        working_time=time_text, budget_s=lab_budget_s(repo),
        requires_python=requires_python_text(wheel_metadata(wheel)), extra=STUDENT_EXTRA,
        student_packages=listed,
    )
    return text, {"title": title, "autograded": auto, "manual": manual, "cells": cells}


def lab_names(repo: Path = REPO) -> list[str]:
    """The released labs: labs/<lab>/<lab>.ipynb."""
    return sorted(p.name for p in (repo / "labs").iterdir() if (p / f"{p.name}.ipynb").is_file())


# --------------------------------------------------------------------------- leak checks


def _region_lines(text: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if begin in stripped:
            inside = True
        elif end in stripped:
            inside = False
        elif inside:
            lines.append(stripped)
    return lines


def secret_lines(repo: Path = REPO) -> dict[str, tuple[str, str]]:
    """Lines of solutions/ that students must never see -> (where they come from, kind).

    Kinds: ``hidden test`` (between the hidden-test markers), ``written answer`` (the text of an
    instructor's answer cell: mark scheme and model answer) and ``solution`` (between the solution
    markers of an answer cell), minus what the released notebook shows anyway. Only lines of
    MIN_LEAK_LINE characters or more: short ones prove nothing.
    """
    found: dict[str, tuple[str, str]] = {}
    for nb_path in sorted((repo / "solutions").glob("*/*.ipynb")):
        released_path = repo / "labs" / nb_path.parent.name / nb_path.name
        released = json.loads(released_path.read_text()) if released_path.exists() else {"cells": []}
        released_lines = {line.strip() for cell in released["cells"] for line in source(cell).splitlines()}
        for cell in json.loads(nb_path.read_text())["cells"]:
            text, meta = source(cell), nbgrader_meta(cell)
            origin = f"{nb_path.relative_to(repo)}, cell {meta.get('grade_id', '?')}"
            candidates = [(line, "hidden test") for line in _region_lines(text, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")]
            if cell["cell_type"] == "markdown" and meta.get("solution"):
                candidates += [(line.strip(), "written answer") for line in text.splitlines()]
            candidates += [(line, "solution") for line in _region_lines(text, "BEGIN SOLUTION", "END SOLUTION")]
            for line, kind in candidates:
                if len(line) >= MIN_LEAK_LINE and line not in released_lines and not MARKER_LINE.search(line):
                    found.setdefault(line, (origin, kind))
    return found


# A marker as nbgrader writes it: on a line of its own. Python code may name one inside a line
# (course_lib/grading strips mark schemes with a regex); a leaked region starts a line with it.
MARKER_LINE = re.compile(r"^\s*(?:###\s*(?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS)|=== (?:BEGIN|END) MARK SCHEME ===)", re.MULTILINE)


def kit_texts(kit: Path):
    """(name, text) of every file of the kit, and of every file inside its wheels."""
    for path in sorted(p for p in kit.rglob("*") if p.is_file()):
        rel = path.relative_to(kit).as_posix()
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    yield f"{rel}!{name}", zf.read(name).decode("utf-8", errors="replace")
        else:
            yield rel, path.read_bytes().decode("utf-8", errors="replace")


def metadata_body(text: str) -> str:
    """The long description of a wheel's METADATA (course_lib's is the repository's README)."""
    return text.split("\n\n", 1)[1] if "\n\n" in text else ""


def leaks(kit: Path, repo: Path = REPO) -> list[str]:
    """Markers and lines of solutions/ found in the kit (empty when there are none).

    Inside the wheel, solution lines are not searched for: course_lib is the course's reference
    implementation (its conv2d, output_size, ...), which the labs' tests refuse to let students
    call, so a lab's solution shares lines with it by design. Hidden tests, mark schemes and
    model answers are searched for everywhere. In the wheel's Python files a marker counts only
    at the start of a line (course_lib's grading code names them in its regexes).
    """
    secret = secret_lines(repo)
    problems = []
    for name, text in kit_texts(kit):
        in_wheel = "!" in name
        checked = text
        if name.endswith(".dist-info/METADATA"):
            # The description is README.md, which names the markers when it explains nbgrader.
            checked = text[: len(text) - len(metadata_body(text))]
        if in_wheel and name.endswith(".py"):
            problems += [f"{name}: a line starts with nbgrader's marker '{m.strip()}'" for m in MARKER_LINE.findall(checked)]
        else:
            problems += [f"{name}: holds nbgrader's marker '{m}'" for m in LEAK_MARKERS if m in checked]
        for line, (origin, kind) in secret.items():
            if line in text and not (in_wheel and kind == "solution"):
                problems.append(f"{name}: holds a {kind} line of {origin}: {line!r}")
    return problems


# --------------------------------------------------------------------------- JupyterLab check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, token: str, method: str = "GET", timeout: float = 120) -> tuple[int, str]:
    """(HTTP status, body) of one request to a Jupyter server, authenticated by ``token``."""
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def page_config(html: str) -> dict:
    m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.DOTALL)
    if not m:
        raise KitError("the /lab page holds no <script id=\"jupyter-config-data\">; has JupyterLab changed?")
    return json.loads(m.group(1))


@contextlib.contextmanager
def running_jupyter(folder: Path, *options: str, app: str = "jupyterlab", start_timeout: float = 180):
    """A Jupyter server (``python -m <app>``) in ``folder`` on 127.0.0.1, until the block ends: (base URL, token).

    Its programs (kernels, nbgrader's helpers) come from this Python's environment; its runtime
    files go to a temporary folder; its log is in the KitError when it does not start.
    """
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", app, *options, "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with tempfile.TemporaryDirectory(prefix="jupyter-runtime-") as runtime:
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=runtime)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        log = Path(runtime) / "jupyter.log"
        with open(log, "w") as log_file:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + start_timeout
                while True:
                    if proc.poll() is not None:
                        raise KitError(f"{app} exited with {proc.returncode}:\n{log.read_text()}")
                    try:
                        if request(f"{base}/api/status", token, timeout=5)[0] == 200:
                            break
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        raise KitError(f"{app} did not answer within {start_timeout} s:\n{log.read_text()}")
                    time.sleep(0.5)
                yield base, token
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def verify_jupyterlab(lab_dir: Path, validate: bool = True, start_timeout: float = 180) -> dict:
    """Start JupyterLab as a student does, in ``lab_dir``; report what it serves.

    Returns ``disabled`` (the page config's disabledExtensions), ``status`` (HTTP status of
    /formgrader, /courses, /assignments, /nbgrader_version) and, with ``validate``, the
    answer of Validate (POST /assignments/validate) for the lab's notebook.
    """
    import nbgrader

    with running_jupyter(lab_dir, f"--config={JUPYTER_CONFIG}", start_timeout=start_timeout) as (base, token):
        status, html = request(f"{base}/lab", token)
        if status != 200:
            raise KitError(f"/lab answered {status}")
        report = {"disabled": sorted(page_config(html).get("disabledExtensions", [])), "status": {}}
        for path in ("formgrader", "courses", "assignments?course_id=x", f"nbgrader_version?version={nbgrader.__version__}"):
            report["status"][path.split("?")[0]] = request(f"{base}/{path}", token)[0]
        if validate:
            status, body = request(f"{base}/assignments/validate?path={lab_dir.name}.ipynb", token, method="POST", timeout=300)
            report["validate"] = {"status": status, "answer": json.loads(body) if status == 200 else body}
        return report


# --------------------------------------------------------------------------- main


def write_kit(out: Path, repo: Path = REPO) -> dict:
    """Write the kit into ``out`` (replacing an earlier kit there); return a summary."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise KitError(f"{out} exists and is not a student kit (no {MARKER}); choose another --out or empty it")
    labs = lab_names(repo)
    if not labs:
        raise KitError("labs/ holds no released lab (labs/<lab>/<lab>.ipynb): run `make labs`")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        wheel = build_wheel(staging, repo)
        if problems := wheel_problems(wheel):
            raise KitError("the wheel of course_lib is not fit for students:\n  " + "\n  ".join(problems))
        labs_md_path = repo / "book" / "labs.md"
        labs_md = labs_md_path.read_text() if labs_md_path.exists() else None
        summary = {"wheel": wheel.name, "labs": {}}
        for lab in labs:
            notebook = repo / "labs" / lab / f"{lab}.ipynb"
            lab_dir = staging / lab
            lab_dir.mkdir()
            shutil.copyfile(notebook, lab_dir / notebook.name)
            text, info = readme_for_lab(lab, json.loads(notebook.read_text()), wheel, labs_md, repo)
            (lab_dir / "README.md").write_text(text)
            shutil.copytree(KIT_TEMPLATES / "jupyter-config", lab_dir / "jupyter-config",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
            summary["labs"][lab] = info
        rows = [f"| {info['title']} | `{lab}/` | {fmt(info['autograded'] + info['manual'])} |"
                for lab, info in summary["labs"].items()]
        (staging / "README.md").write_text(render(KIT_TEMPLATES / "index.md.in", course=course_name(repo),
                                                  wheel=wheel.name, lab_rows="\n".join(rows)))
        (staging / MARKER).write_text("Written by scripts/student_kit.py (make student-kit); replaced on every run.\n")
        if problems := leaks(staging, repo):
            raise KitError("the kit would show students what they must not see:\n  " + "\n  ".join(problems))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the kit (default: {DEFAULT_OUT})")
    parser.add_argument("--verify-jupyterlab", action="store_true",
                        help="then start JupyterLab in each lab folder and check that the instructor tools are off")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        summary = write_kit(args.out)
        out = args.out.resolve()
        print(f"{out}/{summary['wheel']}")
        for lab, info in summary["labs"].items():
            print(f"{out}/{lab}/: {info['title']}: {fmt(info['autograded'])} points autograded, "
                  f"{fmt(info['manual'])} by an instructor")
        if args.verify_jupyterlab:
            for lab in summary["labs"]:
                report = verify_jupyterlab(out / lab)
                bad = {k: v for k, v in report["status"].items() if (v == 200) != (k == "nbgrader_version")}
                answer = report["validate"]["answer"]
                if bad or not isinstance(answer, dict) or not answer.get("success"):
                    raise KitError(f"{lab}: JupyterLab with the kit's settings still serves instructor tools or "
                                   f"cannot validate: {report}")
                print(f"{lab}: JupyterLab disables {', '.join(report['disabled'])}; {report['status']}; Validate works")
    except KitError as err:
        print(f"student-kit: {err}", file=sys.stderr)
        return 1
    print(f"student kit written in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
