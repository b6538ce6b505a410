"""Each chapter, executed once by the book build, prints what its committed version shows.

Cells tagged ``nbval-check-output`` keep their outputs in the repository
(`make notebooks`); the executed chapter must print the same, after the
substitutions in tests/nbval_sanitize.cfg (addresses, durations, rates), by
nbval's rules: streams merged, images and metadata not compared.
Printed numbers are compared with a tolerance that CPUs need and regressions do not
get (:func:`same_numbers`): a decimal may move by up to ``LAST_DIGIT_UNITS`` units of
its last printed digit (0.930 -> 0.929, 86.9% -> 86.7%: vector instructions add
float32 terms in another order), a float below ``ROUNDING_NOISE`` in magnitude is
rounding error whatever its value (max |Q^T Q - I| = 1.6e-15 or 8.9e-16), and
integers (counts, shapes, epochs) and all the text around the numbers must be equal.
A cell whose numbers move further from one CPU to another (a seeded but chaotic
training run) is tagged ``varies-by-cpu`` instead and is not compared;
``python scripts/cpu_sensitive_cells.py book/X.ipynb`` finds such cells.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from book_build import REPO, executed_notebook
from nbval.plugin import coalesce_streams, get_sanitize_patterns

pytestmark = pytest.mark.slow

CHAPTERS = sorted(REPO.glob("book/*.ipynb"))
CHECK_TAG = "nbval-check-output"
SANITIZE = get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text())
# What nbval does not compare (nbval's own list, with images: --nbval-lax without nbdime).
NOT_COMPARED = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}


def sanitize(text):
    if not isinstance(text, str):
        return text
    for regex, replace in SANITIZE:
        text = re.sub(regex, replace, text)
    return text


def comparable(outputs) -> dict[str, list]:
    """Outputs flattened as nbval compares them: {stream name or mime type: [sanitized values]}."""
    flat = defaultdict(list)
    for output in coalesce_streams([nbformat.from_dict(o) for o in outputs]):
        if output.output_type == "stream":
            flat[output.name].append(sanitize(output.text))
        for key, value in output.get("data", {}).items():
            if key not in NOT_COMPARED:
                flat[key].append(sanitize(value))
    return dict(flat)


# A number as printed: optional sign, digits with thousands commas, optional decimals, optional exponent.
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
LAST_DIGIT_UNITS = 3
ROUNDING_NOISE = 1e-12


def _number_matches(committed: str, now: str) -> bool:
    if committed == now:
        return True
    is_float = any(c in committed + now for c in ".eE")
    if not is_float:
        return False  # integers are counts, shapes, indices: exact
    a, b = float(committed.replace(",", "")), float(now.replace(",", ""))
    if abs(a) < ROUNDING_NOISE and abs(b) < ROUNDING_NOISE:
        return True
    mantissa = re.split("[eE]", committed)[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(re.split("[eE]", committed)[1]) if re.search("[eE]", committed) else 0
    unit = 10.0 ** (exponent - decimals)
    return abs(a - b) <= LAST_DIGIT_UNITS * unit * (1 + 1e-9)


def same_numbers(committed, now) -> bool:
    """The same text, with each printed number equal up to CPU noise (see the module docstring)."""
    if not (isinstance(committed, str) and isinstance(now, str)):
        return committed == now
    # Text around the numbers, up to whitespace (a table pads its columns to its widest number: -0.000).
    if [" ".join(t.split()) for t in NUMBER.split(committed)] != [" ".join(t.split()) for t in NUMBER.split(now)]:
        return False
    pairs = zip(NUMBER.findall(committed), NUMBER.findall(now))
    return all(_number_matches(a, b) for a, b in pairs)


def same_outputs(expected: dict[str, list], actual: dict[str, list]) -> bool:
    return expected.keys() == actual.keys() and all(
        len(expected[k]) == len(actual[k]) and all(same_numbers(a, b) for a, b in zip(expected[k], actual[k]))
        for k in expected
    )


def checked_cells(nb) -> dict[int, nbformat.NotebookNode]:
    return {i: c for i, c in enumerate(nb.cells) if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_prints_its_committed_numbers(book_html, chapter: Path):
    committed = nbformat.read(chapter, as_version=4)
    executed = executed_notebook(book_html, chapter)
    errors = [i for i, c in enumerate(executed.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{chapter.name}: cells {errors} raised an error"
    differences = []
    for index, cell in checked_cells(committed).items():
        expected, actual = comparable(cell.outputs), comparable(executed.cells[index].outputs)
        if not same_outputs(expected, actual):
            differences.append(f"cell {index} ({cell.source.splitlines()[0][:60]!r}):\n"
                               f"  committed: {expected}\n  now:       {actual}")
    assert not differences, (
        f"{chapter.name} prints other numbers than its committed version (if the change is intended, "
        "run `make notebooks` and commit):\n" + "\n".join(differences)
    )


def stdout(text: str) -> dict[str, list]:
    return comparable([nbformat.v4.new_output("stream", name="stdout", text=text)])


def test_comparison_catches_a_changed_number():
    committed = stdout("accuracy 0.91 in 1.2 s\n")
    assert same_outputs(committed, stdout("accuracy 0.91 in 3.4 s\n"))  # durations are sanitized away
    assert not same_outputs(committed, stdout("accuracy 0.86 in 1.2 s\n"))
    assert not same_outputs(committed, stdout("accuracy 0.91 in 1.2 s (seed 1)\n"))  # text around numbers
    assert not same_outputs(stdout("27,962 weights\n"), stdout("27,963 weights\n"))  # integers are exact
    assert not same_outputs(stdout("stopped after epoch 31\n"), stdout("stopped after epoch 32\n"))


@pytest.mark.parametrize(("committed", "now"), [
    ("test accuracy 86.9%, gap 13.1%", "test accuracy 86.7%, gap 13.3%"),  # float32 training, another CPU
    ("max |Q^T Q - I| = 1.6e-15", "max |Q^T Q - I| = 8.9e-16"),  # rounding error of float64 algebra
    ("max |difference|: 4.4e-16", "max |difference|: 0.0e+00"),
    ("loss 0.930", "loss 0.929"),
    ("   mean\n a  0.000\n b  1.000", "   mean\n a -0.000\n b  1.000"),  # a signed zero widens a table column
])
def test_comparison_tolerates_what_cpus_change(committed, now):
    assert same_outputs(stdout(committed), stdout(now))


@pytest.mark.parametrize(("committed", "now"), [
    ("test accuracy 86.9%", "test accuracy 86.4%"),  # 5 units of the last digit
    ("loss 0.930", "loss 0.926"),
    ("max |difference|: 4.4e-16", "max |difference|: 3.0e-06"),  # not rounding error any more
    ("ratio 1.5e+03", "ratio 2.0e+03"),
])
def test_comparison_does_not_tolerate_more(committed, now):
    assert not same_outputs(stdout(committed), stdout(now))
