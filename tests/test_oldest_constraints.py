"""The pins `make test-oldest` installs: every lower bound of pyproject.toml, nothing else.

Only the constraint generation of scripts/test_oldest.py is tested here (no index, no install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("test_oldest_script", REPO / "scripts" / "test_oldest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


oldest = load_script()

# A made-up index: what `pip index versions` would list, newest first as pip prints it.
INDEX = {
    "torch": ["2.6.0", "2.5.1", "2.5.0", "2.4.1"],
    "jupyterlab": ["5.0.0", "4.1.0", "4.0.1", "4.0.0", "4.0.0rc1", "3.6.8"],
    "nbstripout": ["0.8.0", "0.7.1", "0.6.2"],
    "pyyaml": ["6.0.1", "6.0", "5.4.1"],
    "pytest": ["8.1.0", "8.0.0", "8.0.0rc2", "7.4.4"],
    "numpy": ["2.0.0", "1.26.4", "1.26.1", "1.26.0"],
}


def versions_of(name):
    return INDEX[name]


@pytest.mark.parametrize(
    "requirement, pin",
    [
        ("torch>=2.5", "2.5"),
        ("jupyterlab>=4,<5", "4"),
        ("jupyter-book>=1.0.4,<2", "1.0.4"),
        ("nbgrader>=0.9.6,<0.10", "0.9.6"),
        ("numpy>=1.26", "1.26"),
        ("foo~=1.4.2", "1.4.2"),
        ("foo==3.1", "3.1"),
        ("foo>=1.2,>=1.5,<3", "1.5"),
    ],
)
def test_range_maps_to_its_lower_bound(requirement, pin):
    name = canonicalize_name(Requirement(requirement).name)
    assert oldest.oldest_pins([requirement]) == {name: pin}


@pytest.mark.parametrize("requirement", ["sqlalchemy<2.1", "foo", "foo!=1.0", "foo<=3,!=2.0", "foo==1.*"])
def test_ranges_without_a_lower_bound_are_left_out(requirement):
    assert oldest.oldest_pins([requirement]) == {}


@pytest.mark.parametrize(
    "requirement, pin",
    [
        ("torch>=2.5", "2.5.0"),  # the real release, not the shorthand
        ("jupyterlab>=4,<5", "4.0.0"),  # and never a pre-release
        ("nbstripout>=0.7", "0.7.1"),  # 0.7.0 was never released: the next one
        ("pyyaml>=6", "6.0"),
        ("pytest>=8", "8.0.0"),
        ("numpy>=1.26,!=1.26.0", "1.26.1"),  # exclusions are honoured
        ("numpy>1.26.0", "1.26.1"),  # an exclusive bound gives the next release
    ],
)
def test_pin_is_the_oldest_release_in_the_range(requirement, pin):
    name = canonicalize_name(Requirement(requirement).name)
    assert oldest.oldest_pins([requirement], versions_of) == {name: pin}


def test_range_no_release_satisfies_is_an_error():
    with pytest.raises(LookupError, match="torch"):
        oldest.oldest_pins(["torch>=3"], versions_of)


def test_requirement_for_another_python_is_skipped():
    assert oldest.oldest_pins(['foo>=1; python_version < "3"', "bar>=2"]) == {"bar": "2"}


def test_extras_are_dropped_from_the_pin():
    assert oldest.oldest_pins(["foo[cli]>=1.2"]) == {"foo": "1.2"}


def test_torch_range_gives_a_torch_pin():
    pins = oldest.oldest_pins(oldest.project_requirements())
    assert "torch" in pins
    assert "torch==" in oldest.constraints_text(pins)


def test_every_lower_bound_of_pyproject_is_pinned_and_nothing_else():
    requirements = oldest.project_requirements()
    pins = oldest.oldest_pins(requirements)
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "~=", "==")]
        if floors:
            assert name in pins, f"{text} has a lower bound but no pin"
            assert Version(pins[name]) == max(floors)
            assert Version(pins[name]) in req.specifier, f"the pin of {text} lies outside its range"
        else:
            assert name not in pins, f"{text} has no lower bound but is pinned"


def test_requirements_are_dependencies_and_the_dev_extra():
    requirements = oldest.project_requirements()
    names = {canonicalize_name(Requirement(r).name) for r in requirements}
    assert {"torch", "jupyterlab", "nbgrader", "pytest"} <= names


def test_constraints_file_lines_are_exact_pins():
    text = oldest.constraints_text({"torch": "2.5.0", "jupyterlab": "4.0.0"})
    assert text.splitlines() == ["jupyterlab==4.0.0", "torch==2.5.0"]
    for line in text.splitlines():
        assert str(Requirement(line).specifier).startswith("==")
