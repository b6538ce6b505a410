"""environment.yml (conda) and pyproject.toml (pip) name the same packages with the same versions."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's.
CONDA_TO_PYPI = {"pytorch": "torch"}
# Not packages of the course: the interpreter, the installer, and course_lib itself.
NOT_DEPENDENCIES = {"python", "pip"}


def as_dict(requirements) -> dict[str, str]:
    out = {}
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(CONDA_TO_PYPI.get(req.name, req.name))
        out[name] = str(req.specifier)
    return out


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return as_dict(project["dependencies"] + project["optional-dependencies"]["dev"])


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    entries = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip: section
            entries += [d for d in dep["pip"] if not d.startswith("-")]
        elif Requirement(dep).name not in NOT_DEPENDENCIES:
            entries.append(dep)
    return as_dict(entries)


def test_same_packages_and_versions():
    pip, conda = pyproject_requirements(), conda_requirements()
    assert set(pip) - set(conda) == set(), "in pyproject.toml but not in environment.yml"
    assert set(conda) - set(pip) == set(), "in environment.yml but not in pyproject.toml"
    differ = {name: (pip[name], conda[name]) for name in pip if pip[name] != conda[name]}
    assert not differ, f"version ranges differ (pyproject, environment.yml): {differ}"


def test_environment_installs_course_lib():
    pip_section = next(d["pip"] for d in yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"] if isinstance(d, dict))
    assert any(entry.endswith("-e .") for entry in pip_section), "environment.yml must install course_lib (-e .)"


def test_torch_is_a_range_not_a_pin():
    # A pin such as torch==2.13.0 picks a CPU-only local wheel that torchvision cannot load.
    assert not pyproject_requirements()["torch"].startswith("=="), "install torch from PyPI by a range"
