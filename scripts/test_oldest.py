#!/usr/bin/env python3
"""`make test-oldest`: the course at the lower bound of every version range in pyproject.toml.

1. Pins every direct dependency ([project] dependencies and the [dev] extra) that has a
   lower bound to the oldest release that satisfies its range (`torch>=2.8` -> `torch==2.8.0`,
   `nbstripout>=0.7` -> `nbstripout==0.7.1` because 0.7.0 was never released). Ranges with
   no lower bound (`sqlalchemy<2.1`) are left to the resolver, and so is every indirect
   dependency.
2. Creates a fresh virtual environment, .venv-oldest, and installs `-e ".[dev]"` with those
   pins as constraints.
3. Runs in it the unit tests, one chapter executed top to bottom and one nbgrader round trip
   (the selections are the constants below), then prints the time of each phase and the
   release of each direct dependency actually installed. Exits non-zero if anything failed.

Run it with the system Python (3.10 or newer, with pip): `python3 scripts/test_oldest.py`.
Options: --reuse-venv keeps an existing .venv-oldest (pip still enforces the pins).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's own copy of tomli
    from pip._vendor import tomli as tomllib
try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare python3: pip carries its own copy of packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
VENV = REPO / ".venv-oldest"
# Inside the venv, so a fresh run starts without it and nothing else needs ignoring.
CONSTRAINTS = VENV / "oldest-constraints.txt"
# The extra installed with course_lib, whose requirements are pinned too.
EXTRA = "dev"

# What runs in the oldest environment; adjust here when the test layout changes.
# Arguments to `python -m pytest` (pyproject's [tool.pytest.ini_options] addopts still apply).
UNIT_TESTS = ["tests", "-m", "not slow", "-n", "2", "-p", "no:cacheprovider", "-q"]
# Tests to leave out here (a pytest -k expression). None: a test whose PyTorch reference is newer
# than the lower bound skips itself with the reason (lp_pool2d at p = +-inf, torch < 2.13).
DESELECT = ""
if DESELECT:
    UNIT_TESTS += ["-k", DESELECT]
# One chapter, executed top to bottom in a kernel of the oldest environment; any error fails.
CHAPTER = "book/02_convolution.ipynb"
CHAPTER_CELL_TIMEOUT_S = 600
# One nbgrader round trip: generate, submit, autograde, feedback, export.
ROUNDTRIP = ["tests/test_nbgrader_roundtrip.py", "-p", "no:cacheprovider", "-q"]

# Operators that put a floor under a range.
_FLOOR_OPERATORS = {">=", "==", "~=", "===", ">"}


# --------------------------------------------------------------------------- constraints


def lower_bound(specifier: SpecifierSet) -> tuple[Version, bool] | None:
    """The highest floor among the clauses of ``specifier``: (version, inclusive), or None.

    `>=4,<5` -> (4, True); `~=1.4.2` -> (1.4.2, True); `>1.0` -> (1.0, False); `<2.1` -> None.
    """
    best: tuple[Version, bool] | None = None
    for clause in specifier:
        if clause.operator not in _FLOOR_OPERATORS or clause.version.endswith(".*"):
            continue
        try:
            version = Version(clause.version)
        except InvalidVersion:  # `===` with an arbitrary string
            continue
        inclusive = clause.operator != ">"
        if best is None or version > best[0] or (version == best[0] and not inclusive):
            best = (version, inclusive)
    return best


def oldest_pins(
    requirements: Iterable[str],
    versions_of: Callable[[str], Iterable[str]] | None = None,
) -> dict[str, str]:
    """``{canonical name: release}`` for every requirement with a lower bound.

    With ``versions_of(name)`` (the releases an index offers) the release is the oldest
    final release that satisfies the whole range, so `>=4` gives the real `4.0.0` and a
    bound that names no release (`nbstripout>=0.7`) gives the next one (`0.7.1`).
    Without it the bound is pinned as written (`==4` still matches 4.0.0 in pip).
    Requirements whose marker excludes this interpreter are skipped.
    """
    pins: dict[str, str] = {}
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        floor = lower_bound(req.specifier)
        if floor is None:
            continue
        name = canonicalize_name(req.name)
        if versions_of is None:
            if not floor[1]:
                raise ValueError(f"{text}: an exclusive bound needs the index to find the next release")
            release = str(floor[0])
        else:
            candidates = []
            for raw in versions_of(name):
                try:
                    version = Version(raw)
                except InvalidVersion:
                    continue
                if not version.is_prerelease and version in req.specifier:
                    candidates.append((version, raw))
            if not candidates:
                raise LookupError(f"no release of {name} satisfies {text!r}")
            release = min(candidates)[1]
        if name in pins and pins[name] != release:
            raise ValueError(f"{name} is required twice with different lower bounds")
        pins[name] = release
    return pins


def project_requirements(pyproject: Path = PYPROJECT, extra: str = EXTRA) -> list[str]:
    """[project] dependencies followed by the requirements of one optional extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get(extra, []))


def constraints_text(pins: dict[str, str]) -> str:
    return "".join(f"{name}=={release}\n" for name, release in sorted(pins.items()))


def pip_index_versions(python: Path) -> Callable[[str], list[str]]:
    """``versions_of`` backed by `pip index versions`, which honours the pip configuration
    (index, find-links) and lists only releases installable on this interpreter."""

    def versions_of(name: str) -> list[str]:
        result = subprocess.run(
            [str(python), "-m", "pip", "index", "versions", name],
            capture_output=True, text=True,
        )
        for line in result.stdout.splitlines():
            if line.startswith("Available versions:"):
                return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
        raise LookupError(f"`pip index versions {name}` failed:\n{result.stdout}{result.stderr}")

    return versions_of


# --------------------------------------------------------------------------- the run


def run(cmd: list[str], env: dict[str, str], **kwargs) -> bool:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env, **kwargs).returncode == 0


def venv_env(tmp: Path) -> dict[str, str]:
    """The environment of every command: the oldest venv first on PATH (nbgrader starts
    `alembic` and kernels as programs) and a Jupyter configuration of its own, so neither
    a user's kernels nor their settings leak into the run."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = str(VENV / "bin") + os.pathsep + env.get("PATH", "")
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
        env[var] = str(tmp / sub)
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    return env


def installed_versions(python: Path, names: Iterable[str]) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    listed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(out.stdout or "[]")}
    return {name: listed.get(name, "MISSING") for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse-venv", action="store_true", help="keep an existing .venv-oldest")
    args = parser.parse_args(argv)

    python = VENV / "bin" / "python"
    timings: dict[str, float] = {}
    results: dict[str, bool] = {}
    tmp = Path(tempfile.mkdtemp(prefix="test-oldest-"))
    env = venv_env(tmp)
    requirements = project_requirements()
    names = [canonicalize_name(Requirement(r).name) for r in requirements]
    pins: dict[str, str] = {}

    start_all = start = time.perf_counter()
    ok = True
    if VENV.exists() and not args.reuse_venv:
        shutil.rmtree(VENV)
    if not python.exists():
        ok = run([sys.executable, "-m", "venv", str(VENV)], env)
    ok = ok and run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env)
    if ok:
        try:
            pins = oldest_pins(requirements, pip_index_versions(python))
        except (LookupError, ValueError) as error:
            print(f"cannot pin the lower bounds: {error}", file=sys.stderr)
            ok = False
    if ok:
        CONSTRAINTS.write_text(constraints_text(pins))
        print(f"\nConstraints ({CONSTRAINTS.relative_to(REPO)}), every lower bound of pyproject.toml:")
        print("".join(f"  {line}\n" for line in constraints_text(pins).splitlines()))
        for text in requirements:
            name, bound = canonicalize_name(Requirement(text).name), lower_bound(Requirement(text).specifier)
            if bound and Version(pins[name]) != bound[0]:
                print(f"  note: no release {bound[0]} of {name} installable here; pinned to the next, {pins[name]}")
        unbounded = sorted(set(names) - set(pins))
        if unbounded:
            print(f"  left to the resolver (no lower bound): {', '.join(unbounded)}\n")
        ok = run([str(python), "-m", "pip", "install", "--progress-bar", "off", "-c", str(CONSTRAINTS), "-e", f".[{EXTRA}]"], env)
        ok = ok and run([str(python), "-m", "pip", "check"], env)
    timings["install"] = time.perf_counter() - start
    results["install"] = ok

    if ok:
        phases = [
            ("unit tests", [str(python), "-m", "pytest", *UNIT_TESTS]),
            ("chapter", [str(python), "-m", "nbconvert", "--to", "notebook", "--execute",
                         f"--ExecutePreprocessor.timeout={CHAPTER_CELL_TIMEOUT_S}",
                         "--ExecutePreprocessor.kernel_name=python3",
                         "--output-dir", str(tmp / "executed"), CHAPTER]),
            ("round trip", [str(python), "-m", "pytest", *ROUNDTRIP]),
        ]
        for phase, cmd in phases:
            print(f"\n=== {phase} ===", flush=True)
            start = time.perf_counter()
            results[phase] = run(cmd, env)
            timings[phase] = time.perf_counter() - start
    total = time.perf_counter() - start_all

    print("\n=== test-oldest summary ===")
    for phase, seconds in timings.items():
        print(f"  {phase:<11} {'ok    ' if results[phase] else 'FAILED'} {seconds:7.0f} s")
    print(f"  {'total':<11} {'':6} {total:7.0f} s")
    if python.exists():
        print("\n  installed (direct dependencies):")
        for name, version in installed_versions(python, dict.fromkeys(names)).items():
            pin = pins.get(name)
            flag = "" if pin is None or version == "MISSING" or Version(pin) == Version(version) else "  <- NOT the pin"
            print(f"    {name:<24} {version:<14} {'(pinned ' + pin + ')' if pin else '(floating)'}{flag}")
    shutil.rmtree(tmp, ignore_errors=True)
    failed = [phase for phase, good in results.items() if not good]
    print(f"\ntest-oldest: {'FAILED: ' + ', '.join(failed) if failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
