"""The nbgrader round trip, as an instructor runs it, on every lab.

For each lab: the instructor's solution, submitted as a student would (answer
cells filled in), gets full marks on every autograded cell; the untouched
student version gets zero; and planted mistakes get partial marks with
feedback that names the mistake.
"""

from __future__ import annotations

import ast
import csv
import os
import re

import nbformat
import pytest
from course_lib.grading.labs import get_spec
from nbgrader_course import (
    LAB_NAMES, SOLUTIONS, Submission, answer_cells, feedback_html, grade, new_course, notebook_path, pad_off_by_one,
    planted, solved_copy, untouched,
)

pytestmark = pytest.mark.slow

# A written answer carrying a script, which every page must show escaped (lab 1's planted mistake is pad_off_by_one).
SCRIPT = '<script>document.title = "pwned"</script>'


# Lab 2's planted mistake: average pooling's gradient not divided by the window.
average_not_divided = planted("avg_pool2d_backward", "share = dout / (k * k)", "share = dout")
# Lab 3's planted mistake: inverted dropout without its rescaling by 1 / (1 - p).
dropout_not_rescaled = planted(
    "dropout_forward", "scale = 1 / (1 - p) if p < 1 else 0.0  # p = 1: every entry dropped, and no 0 / 0",
    "scale = 1.0")
# Lab 4's planted mistake: He initialization without the ReLU gain sqrt(2).
relu_gain_forgotten = planted("he_normal", "gain = math.sqrt(2.0 / (1 + negative_slope**2))", "gain = 1.0")
# Lab 5's planted mistake: C1 without its padding of 2 (the parameters are right, the forward pass fails in F5).
c1_not_padded = planted("lenet5", "self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)",
                        "self.c1 = nn.Conv2d(1, 6, kernel_size=5)")
# Lab 6's planted mistake: squeeze-and-excitation without the sigmoid on its gate.
se_without_sigmoid = planted(
    "squeeze_excitation", "s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))  # excitation: (N, C), each gate in (0, 1)",
    "s = self.fc2(F.relu(self.fc1(z)))")
# Lab 7's planted mistake: DropBlock's output not rescaled by numel / kept.
block_not_rescaled = planted("drop_block", "    return x * mask * (mask.numel() / kept), mask", "    return x * mask, mask")
# Lab 8's planted mistake: the skip connection cropped from the top-left corner instead of its centre.
crop_from_corner = planted("center_crop", "top, left = (height - h) // 2, (width - w) // 2", "top, left = 0, 0")


def script_in_written_answer(grade_id: str, code: str) -> str:
    return code + f"\n\n{SCRIPT}\n" if grade_id == "written_im2col" else code


# One submission per planted mistake: its student name -> (lab, edit of the solution).
PLANTED = {
    "padding_off_by_one": ("lab01_convolution", pad_off_by_one),
    "script_writer": ("lab01_convolution", script_in_written_answer),
    "average_not_divided": ("lab02_backprop", average_not_divided),
    "dropout_not_rescaled": ("lab03_normalization", dropout_not_rescaled),
    "relu_gain_forgotten": ("lab04_initialization", relu_gain_forgotten),
    "c1_not_padded": ("lab05_lenet", c1_not_padded),
    "se_without_sigmoid": ("lab06_modern_blocks", se_without_sigmoid),
    "block_not_rescaled": ("lab07_regularization", block_not_rescaled),
    "crop_from_corner": ("lab08_segmentation", crop_from_corner),
}


def with_mistake(edit):
    """A make function: the solution with ``edit`` applied to its answer cells."""
    return lambda release, source: solved_copy(release, source, edit)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("roundtrip"))
    submissions = [Submission("solution", lab, solved_copy) for lab in LAB_NAMES]
    submissions += [Submission("untouched", lab, untouched) for lab in LAB_NAMES]
    submissions += [Submission(student, lab, with_mistake(edit))
                    for student, (lab, edit) in PLANTED.items() if lab in LAB_NAMES]
    seconds = grade(course, submissions)
    print("\nnbgrader round trip, seconds per step:", {k: round(v, 1) for k, v in seconds.items()})
    return course, {(s.student, s.lab): s for s in submissions}


def cell_ids(lab: str) -> tuple[set[str], set[str]]:
    """(autograded test cells, manually graded answer cells) of a lab, from its instructor source."""
    source = nbformat.read(notebook_path(SOLUTIONS, lab), as_version=4)
    meta = [c.metadata.get("nbgrader", {}) for c in source.cells]
    tests = {m["grade_id"] for m in meta if m.get("grade") and not m.get("solution")}
    manual = {m["grade_id"] for m in meta if m.get("grade") and m.get("solution")}
    return tests, manual


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_lab_has_the_required_parts(lab):
    tests, manual = cell_ids(lab)
    assert tests, f"{lab} has no autograded test cell"
    assert manual, f"{lab} has no manually graded written answer"
    spec = get_spec(lab)
    specified = {t.grade_id for t in spec.tests}
    assert tests == specified, (
        f"{lab}: the notebook's graded test cells and course_lib/grading/labs/{lab}.py differ: "
        f"only in the notebook {sorted(tests - specified)}, only in the specification {sorted(specified - tests)}"
    )
    assert any(t.hidden for t in spec.tests), f"{lab} has no hidden tests"


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_solution_gets_full_marks(graded, lab):
    _, subs = graded
    results = subs["solution", lab].results
    tests, manual = cell_ids(lab)
    lost = {name: results[name] for name in tests if results[name][0] != results[name][1]}
    assert not lost, f"the instructor's solution of {lab} loses points on {lost}"
    # Written answers wait for a person: autograding gives them no score.
    assert all(results[name][0] is None for name in manual)


@pytest.mark.parametrize("lab", LAB_NAMES)
def test_untouched_lab_scores_zero(graded, lab):
    course, subs = graded
    results = subs["untouched", lab].results
    tests, _ = cell_ids(lab)
    scored = {name: results[name] for name in tests if results[name][0] != 0}
    assert not scored, f"the untouched student version of {lab} scores on {scored}"
    feedback = feedback_html(course, subs["untouched", lab])
    unwritten = set(re.findall(r"(\w+) is not written yet", feedback))
    assert unwritten, f"the feedback of the untouched {lab} does not say what is not written yet"
    # The functions named are the student's, never a grader's helper that calls them (lab 4's draw_*).
    source = nbformat.read(notebook_path(SOLUTIONS, lab), as_version=4)
    defined = {node.name for cell in answer_cells(source).values() if cell.cell_type == "code"
               for node in ast.walk(ast.parse(cell.source)) if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert unwritten <= defined, f"{lab}'s feedback names {sorted(unwritten - defined)}, not functions of its answers"


def test_padding_mistake_gets_partial_marks_and_is_named(graded):
    course, subs = graded
    sub = subs["padding_off_by_one", "lab01_convolution"]
    tests, _ = cell_ids("lab01_convolution")
    lost = {name for name in tests if sub.results[name][0] != sub.results[name][1]}
    # Every conv2d_loops test fails (padding is wrong even for padding=0); nothing else does.
    assert lost == {name for name in tests if name.startswith("test_loops")}
    earned = sum(sub.results[name][0] for name in tests)
    possible = sum(sub.results[name][1] for name in tests)
    assert 0 < earned < possible
    assert "Likely cause: padding off by one" in feedback_html(course, sub)


def test_average_pooling_mistake_costs_its_tests_only_and_is_named(graded):
    course, subs = graded
    sub = subs["average_not_divided", "lab02_backprop"]
    tests, _ = cell_ids("lab02_backprop")
    lost = {name for name in tests if sub.results[name][0] != sub.results[name][1]}
    assert lost == {name for name in tests if name.startswith("test_avgpool")}
    assert "Likely cause: not divided by the window" in feedback_html(course, sub)


# Planted mistakes that cost exactly their own tests: (student, lab, the tests lost, the cause the feedback names).
COSTS_ITS_TESTS_ONLY = [
    ("dropout_not_rescaled", "lab03_normalization",
     {"test_dropout_train", "test_dropout_backward", "test_dropout_hidden"}, "dropout not rescaled"),
    ("relu_gain_forgotten", "lab04_initialization",
     {"test_he_normal", "test_he_options", "test_he_hidden"}, "ReLU gain forgotten"),
    ("se_without_sigmoid", "lab06_modern_blocks",
     {"test_se_forward", "test_se_hidden"}, "the excitation has no sigmoid"),
    ("block_not_rescaled", "lab07_regularization",
     {"test_drop_block_output", "test_drop_block_hidden"}, "block mask not rescaled"),
    ("crop_from_corner", "lab08_segmentation",
     {"test_center_crop", "test_center_crop_hidden"}, "skip connection cropped from the top-left corner"),
]


@pytest.mark.parametrize(("student", "lab", "lost_tests", "cause"), COSTS_ITS_TESTS_ONLY,
                         ids=[student for student, *_ in COSTS_ITS_TESTS_ONLY])
def test_a_planted_mistake_costs_its_tests_only_and_is_named(graded, student, lab, lost_tests, cause):
    course, subs = graded
    sub = subs[student, lab]
    tests, _ = cell_ids(lab)
    lost = {name for name in tests if sub.results[name][0] != sub.results[name][1]}
    assert lost == lost_tests
    assert f"Likely cause: {cause}" in feedback_html(course, sub)


def test_an_unpadded_lenet_loses_every_test_and_is_named(graded):
    """Every test of lab 5 builds a LeNet5, whose forward pass fails: all lost, and the feedback says why."""
    course, subs = graded
    sub = subs["c1_not_padded", "lab05_lenet"]
    tests, _ = cell_ids("lab05_lenet")
    assert all(sub.results[name][0] == 0 for name in tests), sub.results
    assert "C1 is not padded by 2 pixels" in feedback_html(course, sub)


def test_grades_are_exported(graded):
    course, subs = graded
    with open(course / "grades.csv") as f:
        rows = {(r["student_id"], r["assignment"]): float(r["score"]) for r in csv.DictReader(f)}
    for key, sub in subs.items():
        autograded = sum(score for score, _ in sub.results.values() if score is not None)
        assert rows[key] == pytest.approx(autograded), f"exported score of {key} differs from the gradebook"


def test_mark_scheme_is_shown_to_the_grader_not_to_the_student(graded):
    course, subs = graded
    sub = subs["solution", "lab01_convolution"]
    autograded = (course / "autograded" / sub.student / sub.lab / f"{sub.lab}.ipynb").read_text()
    assert "Full marks need both numbers" in autograded, "the Formgrader must show the mark scheme beside the answer"
    feedback = feedback_html(course, sub)
    assert "Full marks need both numbers" not in feedback and "Mark scheme" not in feedback


def test_html_written_by_a_student_is_sanitized(graded):
    course, subs = graded
    feedback = feedback_html(course, subs["script_writer", "lab01_convolution"])
    assert "pwned" in feedback, "the written answer is missing from the feedback"
    assert SCRIPT not in feedback, "a student's <script> must reach rendered pages escaped, never as a script"


@pytest.fixture(scope="module")
def laptop():
    """Headless Chromium at laptop size, with every host but 127.0.0.1 unresolvable (tests/browser.py)."""
    from browser import Browsers, find_browser

    found = find_browser()
    if isinstance(found, str):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(found)
        pytest.skip(found)
    browsers = Browsers(*found)
    yield browsers["laptop"]
    browsers.close()


def test_formgrader_shows_the_mark_scheme_escapes_student_html_and_renders_math_offline(graded, laptop):
    """The instructor's Formgrader (a real Jupyter server on 127.0.0.1): the submission page shows the
    written answer's mark scheme, the student's <script> only as text, and its formulas render offline."""
    from browser import check_page
    from nbgrader.api import Gradebook

    from test_student_kit import load_script

    kit_script = load_script()  # scripts/student_kit.py starts Jupyter servers for its own checks
    course, subs = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission_notebook("lab01_convolution", "lab01_convolution", "script_writer").id
    with kit_script.running_jupyter(course, f"--ServerApp.root_dir={course}", app="jupyter_server") as (base, token):
        page = f"{base}/formgrader/submissions/{submission}/"
        status, html = kit_script.request(page, token)
        problems = check_page(laptop, f"{page}?token={token}", base + "/", "laptop", checks=("raw_tex", "external_requests"))
    assert status == 200, html[-2000:]
    assert "Full marks need both numbers" in html, "the Formgrader must show the mark scheme beside the answer"
    assert "pwned" in html, "the written answer is missing from the Formgrader page"
    assert SCRIPT not in html, "a student's <script> must reach the Formgrader escaped, never as a script"
    assert "cdnjs" not in html and "window.MathJax" in html, "the Formgrader page must carry its own MathJax"
    assert not any(problems.values()), problems


def test_feedback_reads_offline_with_its_math(graded, laptop):
    """A student opens the feedback page without a network: formulas render, nothing else is asked for."""
    from browser import check_page, serve

    course, subs = graded
    sub = subs["solution", "lab01_convolution"]
    html = feedback_html(course, sub)
    assert "cdnjs" not in html and "window.MathJax" in html, "feedback must carry its own MathJax"
    with serve(course / "feedback") as base:
        url = f"{base}{sub.student}/{sub.lab}/{sub.lab}.html"
        problems = check_page(laptop, url, base, "laptop", checks=("raw_tex", "console_errors", "external_requests"))
    assert not any(problems.values()), problems


def test_no_false_checksum_warnings(graded):
    """nbgrader issue 1961: hidden tests inside test cells made every autograde warn that a checksum changed.
    Test cells now hold no hidden source (the cases come from the lab's specification), so nothing may warn."""
    course, subs = graded
    log = (course / "reports" / "lab01_convolution" / "solution.log").read_text()
    assert "[INFO] Sanitizing" in log and "tests passed in" in log, "nbgrader's log of the autograde is missing"
    assert "checksum" not in log.lower() and "WARNING" not in log, log[-2000:]
