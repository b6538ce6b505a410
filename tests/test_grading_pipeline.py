"""The pieces of the sandboxed grading pipeline that need no sandbox: seeds, specifications, scans, folders."""

from __future__ import annotations

import sqlite3

import nbformat

import pytest
import torch
import torch.nn.functional as F

from course_lib.grading.cli import RENAMED, backup_gradebook, normalize_submission
from course_lib.grading.grader import answer_cells
from course_lib.grading.labs import get_spec
from course_lib.grading.scan import copied_from, scan_answer, similar_pairs, similarity
from course_lib.grading.spec import submission_seed
from sandbox_checks import require_sandbox
from course_lib.layers import functional as CF

SPEC = get_spec("lab01_convolution")


def test_seeds_are_fixed_per_student_and_secret_without_the_key():
    key = bytes(range(32))
    assert submission_seed(key, "lab01", "alice") == submission_seed(key, "lab01", "alice")
    assert submission_seed(key, "lab01", "alice") != submission_seed(key, "lab01", "bob")
    assert submission_seed(key, "lab01", "alice") != submission_seed(bytes(32), "lab01", "alice")


def test_hidden_cases_change_with_the_seed_and_visible_ones_do_not():
    hidden, visible = SPEC.test("test_loops_hidden"), SPEC.test("test_loops_basic")
    labels = lambda test, seed: [c.label for c in test.cases(seed)]  # noqa: E731
    assert labels(hidden, 1) != labels(hidden, 2)
    assert labels(visible, 1) == labels(visible, 2)


def test_a_lab_raises_the_limits_it_needs_and_never_lowers_the_courses():
    from dataclasses import replace

    from course_lib.grading.sandbox import Limits

    lab = replace(SPEC, limits={"call_timeout_s": 90, "wall_s": 240})
    configured = Limits(wall_s=300.0, call_timeout_s=20.0, memory_mb=1024)
    granted = lab.limits_for(configured)
    assert (granted.call_timeout_s, granted.wall_s, granted.memory_mb) == (90, 300.0, 1024)
    assert SPEC.limits_for(configured) == configured  # lab 1 needs nothing beyond the course's limits
    with pytest.raises(ValueError, match="call_timeout"):
        replace(SPEC, limits={"call_timeout": 90}).limits_for(configured)


def test_get_spec_refuses_an_unknown_lab():
    with pytest.raises(ValueError, match="no grading specification"):
        get_spec("lab99_nothing")
    with pytest.raises(ValueError, match="folder name"):
        get_spec("../solutions")


def _loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)  # a shortcut, refused by the guard


def _padding_off_by_one(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Stride, dilation and groups of 1 only: enough for the basic test, with one pixel too much padding."""
    kh, kw = weight.shape[-2:]
    patches = F.pad(x, (padding + 1,) * 4).unfold(2, kh, 1).unfold(3, kw, 1)  # (N, C, H_out, W_out, kH, kW)
    out = torch.einsum("nchwij,ocij->nohw", patches, weight)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def test_run_test_names_the_mistake_in_the_students_notebook():
    with pytest.raises(AssertionError, match="Likely cause: padding off by one"):
        SPEC.run("test_loops_basic", {"conv2d_loops": _padding_off_by_one})


def test_run_test_refuses_a_shortcut_while_visible_cases_run():
    with pytest.raises(AssertionError, match="ForbiddenCallError.*aten::convolution"):
        SPEC.run("test_loops_basic", {"conv2d_loops": _loops})


def test_run_test_asks_for_a_missing_function_and_announces_hidden_tests(capsys):
    with pytest.raises(AssertionError, match="define the function conv2d_loops"):
        SPEC.run("test_loops_basic", {})
    SPEC.run("test_loops_hidden", {})
    assert "hidden tests" in capsys.readouterr().out


@pytest.mark.parametrize(("source", "reason"), [
    ("y = F.conv2d(x, w)", "uses conv2d"),
    ("y = torch.nn.functional.unfold(x, 3)", "uses functional.unfold"),
    ("f = getattr(F, 'conv' + '2d')", "computed name"),
    ("f = getattr(F, 'conv2d')", "names conv2d in a string"),
    ("y = torch.ops.aten.convolution(x, w)", "calls ATen operators directly"),
    ("from scipy.signal import correlate2d", "uses scipy"),
    ("y = torch.fft.rfft2(x)", "uses fft"),
    ("import importlib\nm = importlib.import_module('torch')", "imports by a computed name"),
    ("exec('y = 1')", "runs code built at run time"),
    ("import builtins\nbuiltins.eval('1')", "runs code built at run time"),
    ("f.__code__ = g.__code__", "swaps a function's code"),
    ("from torch.utils._python_dispatch import _disable_current_modes", "dispatch"),
    ("import threading", "starts threads"),
    ("get_ipython().input_transformers_post.append(f)", "tampers with the notebook kernel"),
    ("from course_lib.layers.functional import conv2d_naive", "course_lib's own convolutions"),
    ("globals()['F'].conv2d", "reaches names indirectly"),
    ("def conv2d(x, w):\n    return x", "defines conv2d"),
    ("class Unfold:\n    pass", "defines Unfold"),
])
def test_scan_flags_shortcuts_and_tricks(source, reason):
    flags = scan_answer("conv2d_loops", source, SPEC.forbidden)
    assert any(reason in flag.reason for flag in flags), [str(f) for f in flags]


def test_scan_lets_an_honest_answer_through():
    x_unfold = "cols = x.unfold(2, 3, 1)\ny = torch.einsum('nchw,ochw->no', patch, w)\nz = F.pad(x, (1, 1, 1, 1))"
    assert scan_answer("im2col", x_unfold, SPEC.forbidden) == []
    assert scan_answer("im2col", "def im2col(x, k):\n    '''im2col of x'''\n    return x", SPEC.forbidden) == []
    # Methods that share a builtin's name are not the builtin.
    methods = "model.eval()\npattern = re.compile('x')\nfast = torch.compile(model)"
    assert scan_answer("train", methods, SPEC.forbidden) == []


def test_scan_flags_data_pasted_into_an_answer_once_per_literal():
    from course_lib.grading.scan import MAX_LITERAL_CHARS

    table = "{" + ", ".join(f"'{i:016x}': [{i % 10}, {i % 7}]" for i in range(MAX_LITERAL_CHARS // 20)) + "}"
    source = f"LABELS = {table}\nWEIGHTS = '{'A' * MAX_LITERAL_CHARS}'\nSMALL = ['{'b' * 100}'] * 3\n"
    flags = scan_answer("train", source, SPEC.forbidden)
    assert [(f.line, f.reason.split(':')[0]) for f in flags] == [
        (1, f"holds a literal of {len(table):,} characters"), (2, f"holds a literal of {MAX_LITERAL_CHARS + 2:,} characters")]
    assert scan_answer("train", f"x = '{'c' * (MAX_LITERAL_CHARS - 2)}'\n", {}) == []  # at the limit, quotes included


def test_copy_of_course_lib_is_flagged_even_renamed():
    import inspect

    source = inspect.getsource(CF.conv2d_naive).replace("input", "inp").replace("weight", "kernels")
    flags = copied_from("conv2d_loops", source, SPEC.originals)
    assert flags and "conv2d_naive" in flags[0].reason
    assert similarity(source, inspect.getsource(CF.conv2d_naive)) > 0.95


def test_similar_pairs_find_copies_between_students():
    import inspect

    body = inspect.getsource(CF.conv2d_naive)
    answers = {"alice": body, "bob": body.replace("out", "result"), "carol": inspect.getsource(CF.conv1d)}
    pairs = similar_pairs(answers)
    assert [(a, b) for a, b, _ in pairs] == [("alice", "bob")]


def test_answer_cells_are_the_autograded_answers_in_order():
    import nbformat

    nb = nbformat.read("solutions/lab01_convolution/lab01_convolution.ipynb", as_version=4)
    assert [name for name, _ in answer_cells(nb)] == ["output_size", "conv2d_loops", "im2col", "conv2d_im2col"]


@pytest.mark.parametrize(("files", "problem", "graded"), [
    (["lab01_convolution.ipynb"], "", "lab01_convolution.ipynb"),
    (["lab01_convolution (1).ipynb"], "", "lab01_convolution.ipynb"),
    (["Lab1-final.ipynb", "notes.txt"], "", "lab01_convolution.ipynb"),
    ([], "no notebook", None),
    (["a.ipynb", "b.ipynb"], "2 notebooks", None),
])
def test_one_notebook_is_graded_whatever_its_name(tmp_path, files, problem, graded):
    for name in files:
        (tmp_path / name).write_text(nbformat.writes(nbformat.v4.new_notebook()) if name.endswith(".ipynb") else "notes")
    found = normalize_submission(tmp_path, "lab01_convolution")
    assert (problem in found) if problem else found == ""
    if graded:
        assert (tmp_path / graded).exists()
        renamed = [n for n in files if n.endswith(".ipynb") and n != graded]
        assert all((tmp_path / RENAMED / n).exists() for n in renamed), "the original must be kept"


def test_symbolic_links_in_a_submission_are_removed_unfollowed(tmp_path):
    secret = tmp_path / "gradebook.db"
    secret.write_text("every student's grades")
    folder = tmp_path / "submitted" / "mallory" / "lab01_convolution"
    folder.mkdir(parents=True)
    (folder / "lab01_convolution.ipynb").symlink_to(secret)
    (folder / "grades.db").symlink_to(secret)
    assert "no notebook" in normalize_submission(folder, "lab01_convolution")
    assert not any(folder.iterdir()) and secret.read_text() == "every student's grades"


def test_a_file_in_the_way_of_the_renamed_originals_does_not_stop_grading(tmp_path):
    (tmp_path / "lab01_convolution (1).ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    (tmp_path / RENAMED).write_text("in the way")
    assert normalize_submission(tmp_path, "lab01_convolution") == ""
    assert (tmp_path / RENAMED / "lab01_convolution (1).ipynb").exists()


def test_gradebook_is_backed_up_consistently(tmp_path):
    database = tmp_path / "gradebook.db"
    with sqlite3.connect(database) as db:
        db.execute("create table grade (student text, score real)")
        db.execute("insert into grade values ('alice', 16)")
    copy = backup_gradebook(database, tmp_path / "backups")
    with sqlite3.connect(copy) as db:
        assert db.execute("select * from grade").fetchall() == [("alice", 16.0)]
    assert backup_gradebook(tmp_path / "missing.db", tmp_path / "backups") is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lab01_convolution.ipynb", "lab01_convolution (1).ipynb"])
@pytest.mark.parametrize("text", ['{"cells": [', "", "not a notebook at all"])
def test_an_unreadable_notebook_is_a_zero_with_the_reason(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    found = normalize_submission(tmp_path, "lab01_convolution")
    assert found.startswith("the notebook could not be read (") and len(found) < 300, found


def test_grading_failure_reason_is_the_specific_error_line():
    from course_lib.grading.cli import failure_reason

    log = ("[INFO] Sanitizing x.ipynb\n[ERROR] Cell 'test_loops' does not exist in the database\n"
           "[ERROR] There was an error processing assignment: /course/submitted/s/lab\n"
           "[ERROR] Please see the the above traceback for details on the specific errors on the above failures.\n")
    assert failure_reason(log) == "[ERROR] Cell 'test_loops' does not exist in the database"
    assert failure_reason("Traceback (most recent call last):\n  ...\nValueError: bad\n") == "ValueError: bad"
    assert failure_reason("") == "no message"


def test_a_hang_costs_its_own_tests_at_most_twice_and_a_broken_cell_is_named():
    """One function that never returns is timed out twice at most (once, then once more after every other
    function's tests), not once per test; a cell that does not load is named."""
    import re

    import nbformat

    from course_lib.grading.grader import grade_answers
    from course_lib.grading.sandbox import Limits

    require_sandbox()
    nb = nbformat.read("solutions/lab01_convolution/lab01_convolution.ipynb", as_version=4)
    cells = dict((n, re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n?", "", s)) for n, s in answer_cells(nb))
    cells["conv2d_loops"] = "def conv2d_loops(*args, **kwargs):\n    while True:\n        pass"
    cells["im2col"] += "\nbroken = ("
    result = grade_answers(list(cells.items()), SPEC, seed=1, limits=Limits(call_timeout_s=3, wall_s=60))
    verdicts = result.verdicts
    assert verdicts["test_output_size"].passed and verdicts["test_output_size_hidden"].passed
    loops = [v for k, v in verdicts.items() if k.startswith("test_loops")]
    assert not any(v.passed for v in loops)
    assert sum("timed out after 3 s" in v.message for v in loops) == len(loops)
    not_run = [v for v in loops if v.message.startswith("not run: conv2d_loops has timed out twice")]
    assert len(not_run) == len(loops) - 2, "the hang must be paid for twice at most"
    assert "did not load" in verdicts["test_im2col"].message and "SyntaxError" in verdicts["test_im2col"].message
    assert result.seconds < 40


def test_a_function_that_hangs_for_one_setting_keeps_its_other_tests():
    """conv2d_loops hangs for the stride test's second case only: that test is lost, the later ones
    (dilation, groups, hidden) run after the other functions' tests and pass."""
    import re

    import nbformat

    from course_lib.grading.grader import grade_answers
    from course_lib.grading.sandbox import Limits

    require_sandbox()
    nb = nbformat.read("solutions/lab01_convolution/lab01_convolution.ipynb", as_version=4)
    cells = dict((n, re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n?", "", s)) for n, s in answer_cells(nb))
    cells["conv2d_loops"] += (
        "\n_right = conv2d_loops\n"
        "def conv2d_loops(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):\n"
        "    while stride == 3 and padding == 1 and tuple(x.shape) == (2, 3, 7, 8):\n"
        "        pass\n"
        "    return _right(x, weight, bias, stride, padding, dilation, groups)\n")
    result = grade_answers(list(cells.items()), SPEC, seed=1, limits=Limits(call_timeout_s=3, wall_s=60))
    failed = sorted(k for k, v in result.verdicts.items() if not v.passed)
    assert failed == ["test_loops_stride"], {k: result.verdicts[k].message for k in failed}
    assert "timed out after 3 s" in result.verdicts["test_loops_stride"].message


def test_every_student_whose_grading_fails_twice_gets_a_zero_with_the_reason(tmp_path, monkeypatch, capsys):
    """The CLI's bookkeeping around nbgrader (workers replaced by a stand-in): a failure is retried once,
    a worker that dies is replaced, and each student failing twice - not only the last - is a recorded 0."""
    from course_lib.grading import cli

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.db_url = 'sqlite:///gradebook.db'\n")
    for student in ("ann", "bob", "cem", "dia"):
        folder = tmp_path / "submitted" / student / "lab01_convolution"
        folder.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(), folder / "lab01_convolution.ipynb")
    tries: dict[str, int] = {}
    started = []

    class StandIn:
        def __init__(self, course, lab, log):
            started.append(self)
            self.alive = True

        def run(self, command, student, timeout_s):
            tries[student] = tries.get(student, 0) + 1
            if student == "cem" and tries[student] == 1:
                self.alive = False  # the worker dies; the retry (by a fresh one) succeeds
                return -1, "the nbgrader worker died during autograde"
            if student in ("bob", "dia"):
                return 1, (f"[INFO] Sanitizing\n[ERROR] nbgrader could not grade {student}\n"
                           "[ERROR] Please see the the above traceback for details on the specific errors.\n")
            return 0, "[INFO] graded"

        def close(self):
            pass

    zeros = []
    monkeypatch.setattr(cli, "Worker", StandIn)
    monkeypatch.setattr(cli, "record_zero", lambda database, lab, student: zeros.append(student))
    outcomes = {o.student: o for o in cli.autograde(tmp_path, "lab01_convolution", None, jobs=2, timeout_s=5)}
    assert tries == {"ann": 1, "bob": 2, "cem": 2, "dia": 2}
    assert len(started) == 3, "two workers, and one in place of the worker that died"
    assert {s: o.problem for s, o in outcomes.items()} == {
        "ann": "", "cem": "",
        "bob": "grading failed twice: [ERROR] nbgrader could not grade bob",
        "dia": "grading failed twice: [ERROR] nbgrader could not grade dia",
    }
    assert sorted(zeros) == ["bob", "dia"]
    assert (tmp_path / "reports" / "lab01_convolution" / "bob.log").read_text().startswith("[INFO] Sanitizing")


def test_label_derangement_renames_every_class_secretly_per_lab_and_submission():
    from course_lib.grading.spec import derived_seed, label_derangement

    perms = {(lab, seed): label_derangement(lab, seed) for lab in ("lab05_lenet", "lab07_regularization")
             for seed in range(40)}
    for perm in perms.values():
        assert sorted(perm.tolist()) == list(range(10)) and not (perm == torch.arange(10)).any()
    assert torch.equal(label_derangement("lab05_lenet", 3), perms["lab05_lenet", 3])  # fixed for a submission
    assert len({tuple(p.tolist()) for p in perms.values()}) > 70  # and different across labs and seeds
    assert derived_seed("lab05_lenet", 3, "labels") != derived_seed("lab05_lenet", 3, "training")
    assert len(label_derangement("lab05_lenet", 3, classes=3)) == 3


def test_scan_flags_an_answer_that_redefines_a_helper_of_the_setup_cell_but_not_one_that_uses_it():
    spec = get_spec("lab04_initialization")
    protected = spec.preamble_names()
    assert {"draw_xavier_uniform", "run_lsuv", "ACTIVATIONS"} <= protected and "torch" not in protected
    hostile = {
        "def draw_xavier_uniform(*args):\n    return []": "redefines draw_xavier_uniform",
        "ACTIVATIONS = {}": "redefines ACTIVATIONS",
        "from math import sqrt as run_lsuv": "redefines run_lsuv",
        "for draw_orthogonal in range(3):\n    pass": "redefines draw_orthogonal",
    }
    for source, reason in hostile.items():
        flags = scan_answer("fans", source, spec.forbidden, protected)
        assert any(reason in f.reason for f in flags), (source, [str(f) for f in flags])
    honest = "def lsuv(layers, x, activation):\n    phi = ACTIVATIONS[activation]\n    return phi(x)"
    assert scan_answer("lsuv", honest, spec.forbidden, protected) == []
