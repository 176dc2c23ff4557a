# Two commands from a fresh clone: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What was tested is what installs: every dependency pinned with its hashes (uv pip compile).
LOCK := requirements-dev.lock
LOCK_FLAGS := --generate-hashes --python-version 3.11 --quiet

.PHONY: demo test lint typecheck install lock clean messages

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

# axe-core for the browser tests (tests/plugins/browser.py), pinned in package-lock.json; Chromium itself is
# Debian's package (`apt-get install chromium`, which .ci/run does when it is missing), never a download.
AXE := node_modules/axe-core/axe.min.js

$(AXE): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $(AXE)

install: $(STAMP) $(AXE)

demo: $(STAMP)
	$(BIN)/rostersync demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Four pytest workers (pytest-xdist) on this 2-core machine: most of a test's time is spent waiting on
# HTTPS, PostgreSQL, Redis or a child process (a serial run: 31 min of wall time, 9 min of CPU). Measured
# on the whole suite, quiet machine (1,326 tests): -n 2 469 s, -n 4 331 s, -n 6 387 s (the CPU saturates);
# `make test` with -n 4 and work stealing (an idle worker takes tests queued for a busy one): 337 s in all.
# `make test TEST_WORKERS=0` runs serially; plain `pytest` is serial too.
TEST_WORKERS ?= 4

test: lint typecheck $(AXE)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

# Refresh both locks after a change of dependencies in pyproject.toml, then run `make test`.
lock:
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o $(LOCK)

# The teacher pages' messages (web/, babel.cfg) -> web/locale/messages.pot, merged into each language's .po;
# translate the new entries, then `make test` (tests/unit/test_catalogues.py checks none is missing).
MESSAGES := --no-location --omit-header --sort-output --width 100
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -o web/locale/messages.pot $(MESSAGES) .
	$(BIN)/pybabel update -i web/locale/messages.pot -d web/locale --width 100 --ignore-pot-creation-date

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache node_modules test-artifacts
