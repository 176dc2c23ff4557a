# Two commands from a fresh clone: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What was tested is what installs: every dependency pinned with its hashes (uv pip compile).
LOCK := requirements-dev.lock
LOCK_FLAGS := --generate-hashes --python-version 3.11 --quiet

.PHONY: demo test lint typecheck install lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rostersync demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# One pytest worker per core (pytest-xdist): most of a test's time is spent waiting on HTTPS, PostgreSQL,
# Redis or a child process. `make test TEST_WORKERS=0` runs serially; plain `pytest` is serial too.
TEST_WORKERS ?= auto

test: lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS)

# Refresh both locks after a change of dependencies in pyproject.toml, then run `make test`.
lock:
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o $(LOCK)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
