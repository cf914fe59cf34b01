# The README's two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck pytest test-unit test-integration test-e2e bench mutate mutate-why lock clean

$(STAMP): pyproject.toml runkeys_sandbox/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "runkeys needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./runkeys_sandbox -e '.[dev]'
	@touch $@

# The demo needs the service and the stand-in, not the developer's tools (mypy, ruff, actionlint);
# a .venv that `make test` set up has them already.
$(DEMO_STAMP): pyproject.toml runkeys_sandbox/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "runkeys needs Python 3.11 or newer: set PYTHON=python3.11")'
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ] && [ $(STAMP) -nt runkeys_sandbox/pyproject.toml ]; then \
	    touch $@; exit 0; fi; \
	echo "make demo: setting up $(VENV) (1/3: a virtual environment)"; \
	$(PYTHON) -m venv $(VENV) && \
	echo "make demo: setting up $(VENV) (2/3: pip)" && \
	$(BIN)/python -m pip install --quiet --upgrade pip && \
	echo "make demo: setting up $(VENV) (3/3: runkeys, its service and the stand-in; about a minute)" && \
	$(BIN)/python -m pip install --quiet -e ./runkeys_sandbox -e . && \
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/runkeys demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Every test; then the three tiers it is made of, each alone: tests/unit (no network, no
# services, no processes: seconds), the integration tests beside it (the services on localhost,
# the app in this process) and end to end (pytest's `slow` marker: gunicorn, images, the demo).
pytest: $(STAMP)
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest --ignore=tests/unit -m "not slow"

test-e2e: $(STAMP)
	$(BIN)/pytest -m slow

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Mutation testing of the trust-critical modules (docs/mutation.md): MUTATE_GROUPS="names oidc"
# runs those groups of pyproject's [tool.runkeys.mutation] (MUTATE_JOBS=2: two side by side) and
# rewrites their committed results, docs/mutation/GROUP.json; the report reads every group's and
# fails on a surviving mutant scripts/mutation_survivors.toml does not explain.
mutate: $(STAMP)
	$(BIN)/python scripts/mutation_report.py run $(MUTATE_GROUPS)
	$(BIN)/python scripts/mutation_report.py report

# The five mutations issue 13 found surviving, applied again: each must make its named test fail.
mutate-why: $(STAMP)
	$(BIN)/python scripts/why_mutations.py

# The images' dependencies, pinned with the hashes of every file of each pinned version, resolved
# for every Python from requires-python's floor up and every platform (markers say where each
# applies): requirements/action.txt (the Dockerfile), service.txt (service.Dockerfile, the
# postgres extra), build.txt (pyproject's build-system, which builds runkeys in both). Run after
# changing dependencies in pyproject.toml; pins that still fit are kept, LOCK_ARGS=--upgrade
# takes the newest. Needs the package index.
LOCK = $(strip $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes $(LOCK_ARGS))

lock: $(STAMP)
	$(LOCK) pyproject.toml -o requirements/action.txt
	$(LOCK) pyproject.toml --extra postgres -o requirements/service.txt
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	    | $(LOCK) - -o requirements/build.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
