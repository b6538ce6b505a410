"""nbgrader configuration for the course (the repository root is the course directory).

Instructor sources live in solutions/<lab>/<lab>.ipynb; `nbgrader generate_assignment`
writes the student versions to labs/<lab>/. See README.md, "For instructors".
"""

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "cnn-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# The gradebook sits beside this file; it is local instructor state, not part of the repository.
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# Lab solutions run within 60 s on two CPU cores; one cell may take a while on a slow laptop.
c.ExecutePreprocessor.timeout = 300

# Students are created in the gradebook the first time a submission of theirs is autograded.
c.Autograde.create_student = True

# Student versions keep no outputs, and every test cell is restored from the source at grading time.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
