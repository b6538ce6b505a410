"""An LMS download (Canvas's "Download Submissions" zip) becomes graded submissions without hand work."""

from __future__ import annotations

import csv
import zipfile

import nbformat
import pytest
from nbgrader_course import course_grading, nbgrader, new_course, notebook_path, solved_copy

pytestmark = pytest.mark.slow
LAB = "lab01_convolution"


def test_canvas_archive_is_collected_and_graded(tmp_path):
    course = new_course(tmp_path)
    release = nbformat.read(notebook_path(course / "labs", LAB), as_version=4)
    source = nbformat.read(notebook_path(course / "solutions", LAB), as_version=4)
    solved = nbformat.writes(solved_copy(release, source))
    archive = course / "downloaded" / LAB / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as zf:
        zf.writestr(f"doejane_12345_678901_{LAB}.ipynb", solved)
        zf.writestr(f"smithjohn_late_23456_789012_{LAB}-1.ipynb", solved)  # late, and renamed by Canvas
        zf.writestr("doejane_12345_678901_notes.txt", "not a notebook: ignored")
    nbgrader(course, "zip_collect", LAB)
    assert (course / "submitted" / "12345" / LAB / f"{LAB}.ipynb").exists()
    assert (course / "submitted" / "23456" / LAB / f"{LAB}-1.ipynb").exists()

    course_grading(course, "autograde", LAB, "--jobs", "2")
    course_grading(course, "export", "--to", "grades.csv")
    with open(course / "grades.csv") as f:
        scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f) if row["assignment"] == LAB}
    assert scores == {"12345": 16.0, "23456": 16.0}, "both solutions must get every autograded point"
