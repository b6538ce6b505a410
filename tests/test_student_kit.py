"""`make student-kit` (scripts/student_kit.py): what a student receives for each lab, and nothing more.

The kit is written once, by the script as `make student-kit` runs it, into a temporary folder.
The checks here read the released notebooks, solutions/ and the installed nbgrader themselves,
so that they do not share the script's mistakes. The one check that starts JupyterLab (and
runs Validate once) is marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "student_kit.py"
LABS = sorted(p.name for p in (REPO / "labs").iterdir() if (p / f"{p.name}.ipynb").is_file())
EXTRA = "student"

# nbgrader 0.9's JupyterLab plugins, as a student's JupyterLab must treat them. The instructor's
# are disabled by kit/jupyter-config/labconfig/page_config.json; assignment-list and course-list
# need nbgrader's exchange, which this course does not use (labs are handed out as files), and
# answer "The exchange directory does not exist" without it; the menu only opens those four.
INSTRUCTOR_PLUGINS = {"formgrader", "create-assignment", "course-list", "assignment-list", "menu"}
# The Validate button: it runs the notebook in a fresh kernel (the visible tests) and needs no exchange.
STUDENT_PLUGINS = {"validate-assignment"}
# nbgrader's server extensions, likewise (kit/jupyter-config/jupyter_server_config.py).
INSTRUCTOR_SERVER_EXTENSIONS = {"formgrader", "course_list", "assignment_list"}
STUDENT_SERVER_EXTENSIONS = {"validate_assignment"}

MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS", "=== BEGIN MARK SCHEME ===")
MIN_LINE = 21  # "longer than 20 characters": shorter lines (`return out`) prove nothing
# A marker on a line of its own, as in a notebook's cell; Python code may name one inside a line
# (course_lib/grading/nbgrader_plugin.py strips mark schemes with a regex).
MARKER_AT_LINE_START = re.compile(r"^\s*(###\s*BEGIN (SOLUTION|HIDDEN TESTS)|=== BEGIN MARK SCHEME ===)", re.MULTILINE)
LAB_FILES = {"README.md", "jupyter-config/jupyter_server_config.py", "jupyter-config/labconfig/page_config.json"}

pytestmark = pytest.mark.skipif(not LABS, reason="labs/ holds no released lab")


def load_script():
    spec = importlib.util.spec_from_file_location("student_kit_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kit") / "student-kit"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, (
        f"`python scripts/student_kit.py --out {out}` failed; fix what it says:\n{result.stdout}\n{result.stderr}"
    )
    return out


@pytest.fixture(scope="module")
def wheel(kit) -> Path:
    wheels = sorted(kit.glob("*.whl"))
    assert len(wheels) == 1, f"the kit must hold exactly one wheel of course_lib, it holds {[w.name for w in wheels]}"
    return wheels[0]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


# --------------------------------------------------------------------------- the wheel


def test_wheel_holds_course_lib_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info/"
    outside = [n for n in names if not n.startswith(("course_lib/", dist_info))]
    assert not outside, (f"the wheel holds files outside course_lib/: {outside[:5]}; restrict "
                         "[tool.setuptools.packages.find] in pyproject.toml to course_lib*")
    bad = [n for n in names if n.endswith((".ipynb", ".db")) or "gradebook" in n.lower()]
    assert not bad, f"the wheel ships notebooks or a gradebook: {bad[:5]}; keep them out of course_lib/"
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "course_lib").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(modules - set(names))
    assert not missing, (f"course_lib modules missing from the wheel: {missing[:5]}; are they untracked and "
                         "git-ignored? scripts/student_kit.py builds from the files git sees")


def test_wheel_declares_the_student_extra_with_the_dev_ranges(wheel):
    meta = wheel_metadata(wheel)
    assert EXTRA in (meta.get_all("Provides-Extra") or []), (
        f"the wheel has no [{EXTRA}] extra, which every lab README's install command names: add "
        f"`{EXTRA} = [...]` under [project.optional-dependencies] in pyproject.toml")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    dev = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in extras["dev"]}
    student = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in extras[EXTRA]}
    needed = {"jupyterlab", "nbgrader", "ipykernel"}
    assert needed <= set(student), (f"the [{EXTRA}] extra lacks {sorted(needed - set(student))}: JupyterLab to work, "
                                    "nbgrader for Validate, ipykernel for the kernel")
    assert set(student) <= set(dev), f"[{EXTRA}] names packages that [dev] does not: {sorted(set(student) - set(dev))}"
    differ = {n: (str(student[n]), str(dev[n])) for n in student if student[n] != dev[n]}
    assert not differ, f"give [{EXTRA}] the same version ranges as [dev] in pyproject.toml ({EXTRA}, dev): {differ}"


def installed_closure(requires_dist: list[str], extras: tuple[str, ...]) -> set[str]:
    """Distributions (canonical names) that installing a package whose metadata says ``requires_dist``,
    with ``extras``, brings in; the deeper requirements are read from this environment."""
    import importlib.metadata as md

    seen, todo = set(), [(Requirement(r), ("", *extras)) for r in requires_dist]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(req.name).requires or []
        except md.PackageNotFoundError:
            continue
        todo += [(Requirement(r), ("", *req.extras)) for r in requires]
    return seen


def notebook_imports(path: Path) -> set[str]:
    """Top-level modules that the code cells of a notebook import."""
    import ast

    names = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        code = "\n".join(line for line in source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_the_one_install_command_brings_every_module_a_lab_imports(wheel):
    """Each module a lab notebook imports comes with `pip install "course_lib-...whl[student]"`."""
    import importlib.metadata as md

    meta = wheel_metadata(wheel)
    closure = installed_closure(meta.get_all("Requires-Dist") or [], (EXTRA,))
    owners = md.packages_distributions()
    missing = {}
    for lab in LABS:
        for module in notebook_imports(REPO / "labs" / lab / f"{lab}.ipynb") - set(sys.stdlib_module_names) - {"course_lib"}:
            dists = {canonicalize_name(d) for d in owners.get(module, [])}
            if not dists & closure:
                missing.setdefault(lab, []).append(module)
    assert not missing, (f"lab notebooks import modules that the kit's install command does not bring: {missing}; "
                         f"add their packages to course_lib's dependencies or to the [{EXTRA}] extra in pyproject.toml")


# --------------------------------------------------------------------------- the lab folders


def test_kit_holds_the_wheel_and_one_folder_per_released_lab(kit, wheel):
    top = {p.name for p in kit.iterdir()}
    assert top == {wheel.name, "README.md", ".student-kit", *LABS}, (
        f"the kit's top level should be the wheel, README.md, .student-kit and one folder per lab in labs/ ({LABS}); "
        f"it is {sorted(top)}")
    for lab in LABS:
        files = {p.relative_to(kit / lab).as_posix() for p in (kit / lab).rglob("*") if p.is_file()}
        expected = LAB_FILES | {f"{lab}.ipynb"}
        assert files == expected, f"{lab}/ should hold exactly {sorted(expected)}; extra {sorted(files - expected)}, missing {sorted(expected - files)}"
        released = (REPO / "labs" / lab / f"{lab}.ipynb").read_bytes()
        assert (kit / lab / f"{lab}.ipynb").read_bytes() == released, (
            f"{lab}/{lab}.ipynb differs from labs/{lab}/{lab}.ipynb: the kit must copy the released notebook as it is")
        for name in LAB_FILES - {"README.md"}:
            template = REPO / "kit" / name
            assert (kit / lab / name).read_bytes() == template.read_bytes(), f"{lab}/{name} is not a copy of kit/{name}"


def expected_points(lab: str) -> tuple[dict[str, float], float, float]:
    """grade_id -> points of every scored cell of the released notebook; autograded and manual totals."""
    nb = json.loads((REPO / "labs" / lab / f"{lab}.ipynb").read_text())
    points, auto, manual = {}, 0.0, 0.0
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if not (meta.get("grade") or meta.get("task")):
            continue
        p = float(meta.get("points", 0))
        points[meta["grade_id"]] = p
        if meta.get("solution") or meta.get("task"):
            manual += p
        else:
            auto += p
    return points, auto, manual


CELL_ROW = re.compile(r"^\|[^|\n]*\|\s*`([^`]+)`\s*\|[^|\n]*\|\s*(\d+(?:\.\d+)?)\s*\|\s*$", re.MULTILINE)
TOTAL_ROW = re.compile(r"^\|\s*\*\*Total\*\*\s*\|\s*\*\*([\d.]+)\*\*\s*\|\s*\*\*([\d.]+)\*\*\s*\|\s*\*\*([\d.]+)\*\*\s*\|", re.MULTILINE)
PART_ROW = re.compile(r"^\|\s*([^|*`\n][^|\n]*?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*$", re.MULTILINE)


@pytest.mark.parametrize("lab", LABS)
def test_readme_points_equal_the_nbgrader_metadata(kit, lab):
    readme = (kit / lab / "README.md").read_text()
    points, auto, manual = expected_points(lab)
    assert points, f"labs/{lab}/{lab}.ipynb has no graded cell: regenerate it with `make labs`"
    listed = {gid: float(p) for gid, p in CELL_ROW.findall(readme)}
    assert listed == points, (f"{lab}/README.md lists graded cells and points {listed}, the notebook's nbgrader "
                              f"metadata says {points}; fix graded_cells() in scripts/student_kit.py")
    totals = TOTAL_ROW.findall(readme)
    assert len(totals) == 1, f"{lab}/README.md needs one '| **Total** | **auto** | **manual** | **all** |' row"
    assert tuple(map(float, totals[0])) == (auto, manual, auto + manual), (
        f"{lab}/README.md totals (autograded, by an instructor, all) are {totals[0]}, the metadata says "
        f"{(auto, manual, auto + manual)}")
    parts = PART_ROW.findall(readme)
    assert parts, f"{lab}/README.md has no points-per-part table"
    assert sum(float(a) for _, a, _, _ in parts) == auto and sum(float(m) for _, _, m, _ in parts) == manual, (
        f"{lab}/README.md: the parts' points {parts} do not add up to the totals ({auto}, {manual})")
    assert all(float(a) + float(m) == float(t) for _, a, m, t in parts), f"{lab}/README.md: a part's total is not its sum: {parts}"


@pytest.mark.parametrize("lab", LABS)
def test_readme_says_how_to_install_start_and_hand_in(kit, wheel, lab):
    readme = (kit / lab / "README.md").read_text()
    installs = re.findall(r"pip install[^\n]*", readme)
    assert len(installs) == 1, f"{lab}/README.md must name exactly one `pip install` command, it names {installs}"
    m = re.search(r'"(\.\./[^"\[]+\.whl)\[(\w+)\]"', installs[0])
    assert m, f"{lab}/README.md: the install command should be python -m pip install \"../<wheel>[{EXTRA}]\", it is {installs[0]!r}"
    assert (kit / lab / m.group(1)).resolve() == wheel.resolve() and m.group(2) == EXTRA, (
        f"{lab}/README.md installs {m.group(1)}[{m.group(2)}], the kit's wheel is ../{wheel.name}[{EXTRA}]")
    start = re.search(r"jupyter lab --config=(\S+)", readme)
    assert start and (kit / lab / start.group(1)).is_file(), f"{lab}/README.md must start JupyterLab with the kit's config file"
    budget = re.search(r'"lab solution":\s*(\d+)', (REPO / "benchmarks" / "notebook_times.py").read_text())
    for words in ("Restart Kernel and Run All Cells", "Validate", f"{lab}.ipynb", f"{budget.group(1) if budget else 60} seconds"):
        assert words in readme, f"{lab}/README.md should say {words!r} (how to hand in, the running-time budget)"
    section = next((s for s in re.split(r"(?m)^(?=## )", (REPO / "book" / "labs.md").read_text())
                    if s.startswith("## Lab") and f"labs/{lab}/" in s), "")
    if "Working time:" in " ".join(section.split()):
        assert "see your instructor" not in readme, (
            f"book/labs.md states the working time of {lab}, {lab}/README.md does not: fix working_time() in scripts/student_kit.py")


def test_readme_parts_read_defensively():
    """What the README takes from book/labs.md and from nbgrader's metadata, on made-up input."""
    script = load_script()
    labs_md = (
        "# Labs\n\nGetting it: `labs/lab01_x/lab01_x.ipynb`. Working time: not this one.\n\n"
        "(lab-1)=\n## Lab 1 - X\n\n*Goes with {doc}`chapter 2 <02_convolution>`.* Notebook: `labs/lab01_x/lab01_x.ipynb`.\n"
        "Working time: about 2 hours after {doc}`chapter 2 <02_convolution>`, most of it\non part 2. More text.\n\n"
        "## Lab 2 - Y\n\n*In preparation.*\n"
    )
    assert script.working_time(labs_md, "lab01_x") == "About 2 hours after chapter 2, most of it on part 2."
    assert script.working_time(labs_md, "lab02_y") is None, "a lab whose section states no time: 'see your instructor'"
    assert script.working_time(None, "lab01_x") is None and script.working_time("no sections", "lab09_z") is None

    def cell(kind, text, **meta):
        return {"cell_type": kind, "source": text, "metadata": {"nbgrader": meta} if meta else {}}

    nb = {"cells": [
        cell("markdown", "# Lab\n\nIntro."),
        cell("markdown", "## Part 1 - Sizes (3 points)"),
        cell("code", "def size(n):\n    raise NotImplementedError()", solution=True, grade=False, grade_id="size"),
        cell("code", "check(size)", grade=True, solution=False, points=1, grade_id="t1"),
        cell("code", "# Hidden tests: more, when graded.", grade=True, solution=False, points=1.5, grade_id="t1h"),
        cell("markdown", "## Part 2 - Why (2 points, read by an instructor)"),
        cell("markdown", "YOUR ANSWER HERE", grade=True, solution=True, points=1, grade_id="why"),
        cell("markdown", "Describe it.", task=True, grade=False, solution=False, points=1, grade_id="task"),
    ]}
    rows = [(r["part"], r["grade_id"], r["points"], r["manual"]) for r in script.graded_cells(nb)]
    assert rows == [("Part 1 - Sizes", "t1", 1, False), ("Part 1 - Sizes", "t1h", 1.5, False),
                    ("Part 2 - Why", "why", 1, True), ("Part 2 - Why", "task", 1, True)], rows
    assert "hidden" in script.graded_cells(nb)[1]["what"] and "`size`" in script.graded_cells(nb)[0]["what"]
    assert script.intro(nb, "lab01_x") == ("Lab", "Intro.")


# --------------------------------------------------------------------------- nothing secret


def kit_files(kit: Path):
    """(name, text) of every file of the kit and of every file inside its wheel (the script's own reader)."""
    return load_script().kit_texts(kit)


def between(text: str, begin: str, end: str) -> list[str]:
    out, inside = [], False
    for line in text.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and len(line.strip()) >= MIN_LINE and not MARKER_AT_LINE_START.match(line):
            out.append(line.strip())
    return out


def solution_secrets() -> tuple[set[str], set[str]]:
    """(hidden-test and written-answer lines, solution-code lines) of solutions/, minus what labs/ shows."""
    hidden, solution = set(), set()
    for path in sorted((REPO / "solutions").glob("*/*.ipynb")):
        released = REPO / "labs" / path.parent.name / path.name
        shown = {line.strip() for c in json.loads(released.read_text())["cells"] for line in source(c).splitlines()} if released.exists() else set()
        for cell in json.loads(path.read_text())["cells"]:
            text = source(cell)
            hidden.update(between(text, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"))
            if cell["cell_type"] == "markdown" and cell["metadata"].get("nbgrader", {}).get("solution"):
                hidden.update(line.strip() for line in text.splitlines()
                              if len(line.strip()) >= MIN_LINE and "MARK SCHEME ===" not in line)
            solution.update(between(text, "BEGIN SOLUTION", "END SOLUTION"))
        hidden -= shown
        solution -= shown
    return hidden, solution


def test_no_solution_hidden_test_or_mark_scheme_reaches_the_kit(kit, wheel):
    hidden, solution = solution_secrets()
    assert hidden | solution, ("no solution, hidden-test or written-answer line found in solutions/: have nbgrader's "
                               "markers (### BEGIN SOLUTION, ### BEGIN HIDDEN TESTS) changed?")
    readme = (REPO / "README.md").read_text()
    problems = []
    for name, text in kit_files(kit):
        checked = text
        if name.endswith(".dist-info/METADATA"):
            head, _, body = text.partition("\n\n")
            assert body.strip() == readme.strip(), (
                f"{name}: the wheel's description should be README.md (`readme` in pyproject.toml), nothing else")
            checked = head  # README.md names the markers where it explains nbgrader to instructors
        if "!" in name and name.endswith(".py"):
            problems += [f"{name}: a line starts with marker {m.group(0).strip()!r}" for m in MARKER_AT_LINE_START.finditer(checked)]
        else:
            problems += [f"{name}: marker {m!r}" for m in MARKERS if m in checked]
        problems += [f"{name}: hidden test / mark scheme / model answer line {line!r}" for line in hidden if line in text]
        if "!" not in name:
            # course_lib is the course's reference implementation (the labs' tests forbid calling it),
            # so solution code may share lines with the wheel; nowhere else.
            problems += [f"{name}: solution line {line!r}" for line in solution if line in text]
    assert not problems, ("the student kit holds instructor material; build it from labs/ (make labs) and keep "
                          "solutions/ out of course_lib:\n  " + "\n  ".join(problems[:20]))


# --------------------------------------------------------------------------- no instructor tools


def installed_nbgrader_plugins() -> set[str]:
    """Plugin ids of the nbgrader labextension JupyterLab loads (from its bundled code: package.json lists none)."""
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        static = Path(base) / "@jupyter" / "nbgrader" / "static"
        if static.is_dir():
            text = "\n".join(p.read_text(errors="replace") for p in static.glob("*.js"))
            return set(re.findall(r"""["']@jupyter/nbgrader:([A-Za-z0-9_.-]+)["']""", text))
    pytest.fail("nbgrader's JupyterLab extension (@jupyter/nbgrader) is not installed: pip install -e '.[dev]'")


def installed_nbgrader_server_extensions() -> set[str]:
    from jupyter_core.paths import jupyter_config_path

    for base in jupyter_config_path():
        path = Path(base) / "jupyter_server_config.d" / "nbgrader.json"
        if path.is_file():
            names = json.loads(path.read_text())["ServerApp"]["jpserver_extensions"]
            return {n.removeprefix("nbgrader.server_extensions.") for n in names}
    pytest.fail("nbgrader's server extensions are not enabled (no jupyter_server_config.d/nbgrader.json)")


def test_plugin_lists_match_the_installed_nbgrader():
    found = installed_nbgrader_plugins()
    known = INSTRUCTOR_PLUGINS | STUDENT_PLUGINS
    assert found == known, (
        f"nbgrader's JupyterLab plugins changed: new {sorted(found - known)}, gone {sorted(known - found)}. Sort each "
        "new one into INSTRUCTOR_PLUGINS or STUDENT_PLUGINS here and update kit/jupyter-config/labconfig/page_config.json")
    found = installed_nbgrader_server_extensions()
    known = INSTRUCTOR_SERVER_EXTENSIONS | STUDENT_SERVER_EXTENSIONS
    assert found == known, (
        f"nbgrader's server extensions changed: new {sorted(found - known)}, gone {sorted(known - found)}; sort them "
        "here and in kit/jupyter-config/jupyter_server_config.py")


@pytest.mark.parametrize("lab", LABS)
def test_kit_config_disables_the_instructor_tools(kit, lab):
    from traitlets.config.loader import PyFileConfigLoader

    config_dir = kit / lab / "jupyter-config"
    page = json.loads((config_dir / "labconfig" / "page_config.json").read_text())
    disabled = {k for k, v in page.get("disabledExtensions", {}).items() if v}
    want = {f"@jupyter/nbgrader:{p}" for p in INSTRUCTOR_PLUGINS & installed_nbgrader_plugins()}
    assert disabled == want, (f"kit/jupyter-config/labconfig/page_config.json disables {sorted(disabled)}; it should "
                              f"disable exactly {sorted(want)}")
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(config_dir)).load_config()
    extensions = config.ServerApp.jpserver_extensions
    for name in INSTRUCTOR_SERVER_EXTENSIONS:
        assert extensions.get(f"nbgrader.server_extensions.{name}") is False, (
            f"kit/jupyter-config/jupyter_server_config.py must set nbgrader.server_extensions.{name}: False")
    assert extensions.get("nbgrader") is False, "the kit's server config must disable 'nbgrader' as a whole (it loads the Formgrader)"
    assert extensions.get("nbgrader.server_extensions.validate_assignment") is not False, "Validate must stay on"
    assert Path(config.LabApp.app_settings_dir) == config_dir / "labconfig", (
        "the kit's server config must point LabApp.app_settings_dir at labconfig/ beside it, or page_config.json is not read")


@pytest.mark.slow
def test_student_jupyterlab_shows_no_instructor_tools(kit):
    """JupyterLab started as the README says: instructor plugins disabled, /formgrader gone, Validate works."""
    lab = LABS[0]
    report = load_script().verify_jupyterlab(kit / lab, validate=True)
    want = {f"@jupyter/nbgrader:{p}" for p in INSTRUCTOR_PLUGINS & installed_nbgrader_plugins()}
    assert want <= set(report["disabled"]), (
        f"JupyterLab's page config disables {report['disabled']}, not {sorted(want - set(report['disabled']))}: "
        "is labconfig/page_config.json still read through LabApp.app_settings_dir?")
    assert not {f"@jupyter/nbgrader:{p}" for p in STUDENT_PLUGINS} & set(report["disabled"]), "Validate must stay on"
    assert report["status"] == {"formgrader": 404, "courses": 404, "assignments": 404, "nbgrader_version": 200}, (
        f"nbgrader's instructor endpoints should answer 404 and Validate's 200: {report['status']}; check "
        "ServerApp.jpserver_extensions in kit/jupyter-config/jupyter_server_config.py")
    answer = report["validate"]["answer"]
    assert isinstance(answer, dict) and answer.get("success") and answer["value"].get("failed"), (
        f"Validate should run the untouched notebook and list its failing tests, it answered {report['validate']}")
