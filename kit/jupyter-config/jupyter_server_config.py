# JupyterLab settings for a student of the course: nbgrader's instructor tools are switched off.
# Start JupyterLab from the lab's folder with
#
#     jupyter lab --config=jupyter-config/jupyter_server_config.py
#
# Written by `make student-kit` from kit/jupyter-config/ of the course repository
# (scripts/student_kit.py; tests/test_student_kit.py checks it against the installed nbgrader).
import os

c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

# Server side: the Formgrader (instructor grading, /formgrader) and the course and assignment
# lists (nbgrader's exchange, which this course does not use: labs are handed out as files)
# do not start. Validate (the button in the notebook's toolbar) keeps working: it runs the
# notebook in a fresh kernel, reports the visible tests that fail, and needs no exchange.
c.ServerApp.jpserver_extensions = {
    "nbgrader": False,  # the whole package at once would load the Formgrader too
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.validate_assignment": True,
}

# Browser side: JupyterLab reads labconfig/page_config.json beside this file, whose
# "disabledExtensions" hide the Nbgrader menu, the Formgrader, the "Create Assignment"
# panel and the course and assignment lists. The path does not depend on where
# JupyterLab was started.
c.LabApp.app_settings_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "labconfig")
