# Two commands on a fresh machine with python3 and make:
#   make book   - create .venv, install everything, execute every chapter, write HTML to _build/html
#   make test   - the whole test suite in the same environment
# They work in any order, as often as you like; the book executes only what changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# nbgrader and Jupyter start programs of their own (alembic, kernels): they must come from the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)
LABS := $(notdir $(patsubst %/,%,$(wildcard solutions/*/)))

.PHONY: install book test test-oldest labs notebooks lab student-kit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Chapters execute in parallel (one per core) and are cached in _build/.jupyter_cache,
# keyed on their code, course_lib, the installed packages and COURSE_* (book/_ext/notebook_cache.py).
book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is in _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The unit tests, one chapter and one lab round trip in a second environment (.venv-oldest)
# holding the lowest release that pyproject.toml admits of every dependency.
test-oldest:
	$(PYTHON) scripts/test_oldest.py

# Regenerate the student versions in labs/ from the instructor sources in solutions/
# (--no-db: a maintainer's regeneration leaves any gradebook alone).
labs: $(STAMP)
	for lab in $(LABS); do $(BIN)/nbgrader generate_assignment $$lab --force --no-db || exit 1; done

# After editing a chapter: execute it, keep only the outputs the tests compare, strip the rest.
notebooks: $(STAMP)
	$(BIN)/python scripts/refresh_notebooks.py

# What a student receives, per lab: the course_lib wheel, the released notebook, a README and
# JupyterLab settings without nbgrader's instructor tools (into student-kit/).
student-kit: $(STAMP)
	$(BIN)/python scripts/student_kit.py

# Open the labs in JupyterLab, as a student does.
lab: $(STAMP)
	$(BIN)/jupyter lab labs/

clean:
	rm -rf _build .pytest_cache
