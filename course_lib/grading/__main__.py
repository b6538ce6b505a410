"""``python -m course_lib.grading``: the instructor's grading commands (see course_lib.grading.cli)."""

import sys

from .cli import main

sys.exit(main())
