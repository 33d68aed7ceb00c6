# The two commands of the README's Quickstart, and a few conveniences.
#   make book   builds the executed book into _build/html
#   make test   runs the whole test suite (book build and browser check included)
# Each sets up the virtual environment (.venv) first, when it is missing or stale.

VENV ?= .venv
PY := $(VENV)/bin/python
BOOK_FLAGS := --warningiserror --nitpick --keep-going

.PHONY: setup book test test-fast release validate clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

# The chapters run first, several at a time (scripts/execute_chapters.py), into the execution
# cache the build reads; a chapter that fails there is run again by the build, which reports it.
book: setup
	-$(PY) scripts/execute_chapters.py
	$(VENV)/bin/jupyter-book build . $(BOOK_FLAGS)
	@echo "Open _build/html/index.html"

# -n auto: one pytest-xdist worker per core; --dist loadfile keeps each file's tests on one
# worker, so the book build (or an autograded batch) is built once (see tests/conftest.py);
# --no-loadscope-reorder hands out the files in collection order, where conftest.py puts the
# longest (the book build) first, instead of xdist's default of the files with most tests first
# --durations=25 lists the slowest tests, to see where the half hour goes
PYTEST := $(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25

test: setup
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_sandbox.sh
	bash scripts/ensure_postgres.sh
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

release: setup
	$(VENV)/bin/llmcourse release

validate: setup
	$(VENV)/bin/llmcourse validate

clean:
	rm -rf _build .jupyter_cache
