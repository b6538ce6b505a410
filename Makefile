# Two commands on a fresh machine with python3 and make:
#   make book   - create .venv, install everything, execute every chapter, write HTML to _build/html
#   make test   - the whole test suite in the same environment
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# nbgrader and Jupyter start programs of their own (alembic, kernels): they must come from the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)
LABS := $(notdir $(patsubst %/,%,$(wildcard solutions/*/)))

.PHONY: install book test labs notebooks lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is in _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Regenerate the student versions in labs/ from the instructor sources in solutions/
# (--no-db: a maintainer's regeneration leaves any gradebook alone).
labs: $(STAMP)
	for lab in $(LABS); do $(BIN)/nbgrader generate_assignment $$lab --force --no-db || exit 1; done

# After editing a chapter: execute it, keep only the outputs nbval checks, strip the rest.
notebooks: $(STAMP)
	$(BIN)/python scripts/refresh_notebooks.py

# Open the labs in JupyterLab, as a student does.
lab: $(STAMP)
	$(BIN)/jupyter lab labs/

clean:
	rm -rf _build .pytest_cache
