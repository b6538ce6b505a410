"""nbgrader configuration for the course (the repository root is the course directory).

Instructor sources live in solutions/<lab>/<lab>.ipynb; `nbgrader generate_assignment`
writes the student versions to labs/<lab>/. See README.md, "For instructors".
"""

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, GetGrades, IgnorePattern, LimitOutput,
    OverwriteCells, OverwriteKernelspec, SaveAutoGrades,
)

from nbgrader.server_extensions.formgrader.handlers import template_path as nbgrader_templates

from course_lib.grading.nbgrader_plugin import GradeInSandbox, RemoveInstructorCells, RestoreCellMetadata
from course_lib.grading.offline_math import TEMPLATES, inline_mathjax

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# The gradebook sits beside this file; it is local instructor state, not part of the repository.
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# Autograde never executes a submitted notebook: GradeInSandbox (course_lib/grading/nbgrader_plugin.py)
# takes the place of nbgrader's Execute. It loads the answer cells into a sandbox, runs the lab's tests
# (course_lib/grading/labs/) there, judges every output in this process, and writes each test cell's
# verdict as its output; nbgrader then scores the cells as usual (an error output = 0 points).
c.Autograde.autograde_preprocessors = [
    GradeInSandbox, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
    CheckCellMetadata,
]
# Before that, every cell's nbgrader metadata is put back as the gradebook knows it, and a deleted test
# cell is put back (RestoreCellMetadata): what a student does to metadata cannot skip or break a test.
c.Autograde.sanitize_preprocessors = [
    RestoreCellMetadata, ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
]
c.GradeInSandbox.wall_s = 120          # one submission, all tests together
c.GradeInSandbox.call_timeout_s = 20   # one call of a student's function

# The Formgrader shows each written answer's mark scheme below it (GradeInSandbox adds it to the
# autograded notebook); feedback leaves it out.
c.GenerateFeedback.preprocessors = [RemoveInstructorCells, GetGrades, CSSHTMLHeaderPreprocessor]

# `nbgrader validate` (and the Validate button) still run the notebook in the student's kernel: the visible tests.
c.ExecutePreprocessor.timeout = 300

# Students are created in the gradebook the first time a submission of theirs is autograded.
c.Autograde.create_student = True

# Student versions keep no outputs, and every test cell is restored from the source at grading time.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Feedback pages and the Formgrader render what students wrote: nbconvert's SanitizeHTML (bleach)
# escapes its HTML, so a <script> in a submission never runs in the instructor's (or a student's) browser.
c.HTMLExporter.preprocessors = ["nbconvert.preprocessors.sanitize.SanitizeHTML"]

# Formulas in the Formgrader and in feedback render offline: the course's templates come first (their
# mathjax macro writes MathJax 3 into the page instead of loading MathJax 2 from a CDN), then nbgrader's
# own (the formgrade and feedback templates; nbgrader adds them only when this is not set).
c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), nbgrader_templates]
c.HTMLExporter.filters = {"inline_mathjax": inline_mathjax}

# `nbgrader zip_collect <lab>` takes a Canvas "Download Submissions" archive, put in
# downloaded/<lab>/archive/. Canvas names each file <name>_[late_]<user id>_<submission id>_<file name>
# (doejane_12345_678901_lab01_convolution.ipynb); the Canvas user id becomes the nbgrader student id.
# Canvas renames a resubmission (lab01_convolution-1.ipynb): `python -m course_lib.grading autograde`
# grades a student's one notebook whatever its name.
c.ZipCollectApp.collector_plugin = "nbgrader.plugins.zipcollect.FileNameCollectorPlugin"
c.FileNameCollectorPlugin.named_regexp = r"(?i).*/[^/_]+_(?:late_)?(?P<student_id>\d+)_\d+_(?P<file_id>[^/]+)$"
