# Two commands do everything on a fresh machine with Python 3.11+ and git:
#   make run    create .venv, install, reproduce the pipeline on the embedded flowers sample
#   make test   create .venv, install, run the test suite
#   make lint   ruff: lint and import order (CI runs it before the tests)
#   make diff BASE=main   Markdown report: params, metrics, confusion and guards against BASE
#   make push   outputs and run-cache to the DVC remote
PYTHON ?= python3
BASE   ?= main
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the environment's.
export PATH := $(BIN):$(PATH)

.PHONY: install run lint test test-all params diff push clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# REPRO_ARGS=--pull restores stages from the remote's run-cache (see `make push`).
run: install
	dvc repro $(REPRO_ARGS)

# Rules and line length: [tool.ruff] in pyproject.toml. `ruff check --fix` sorts imports.
lint: install
	ruff check .

test: install
	# Two workers, a test file each (TensorFlow graph tracing is single-threaded), handed out in the order
	# tests/conftest.py gives them (the slowest first).
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not optional" $(PYTEST_ARGS)

# Also the optional checks: queued sweep, twin deterministic trainings.
test-all: install
	python -m pytest -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Re-compose params.yaml after editing conf/ (dvc exp run does this by itself).
params: install
	python -m mcuvision.compose

# The workspace against BASE (branch, tag or commit), as CI comments it on a pull request.
# OUTPUT=report.md also writes it to a file; DIFF_ARGS=--fail-on-guard exits 1 on a guard crossed
# beyond chance (--alpha 0.05, the paired test's level, is the default).
diff: install
	python -m mcuvision.report.pr_report --base $(BASE) $(if $(OUTPUT),--output $(OUTPUT)) $(DIFF_ARGS)

# Outputs and the whole run-cache to the DVC remote (REMOTE=name, else the default one); others
# then get every stage already run anywhere with `dvc pull --run-cache && dvc repro --pull`.
push: install
	python -m mcuvision.share $(if $(REMOTE),--remote $(REMOTE))

clean:
	rm -rf $(VENV) .pytest_cache
