# Two commands for a new user (README): `make repro` and `make test`.
# Both create the local virtual environment first if it is missing or stale.
VENV ?= .venv
PYTHON ?= python3.11
BIN := $(abspath $(VENV))/bin
# Stage commands call `python`: DVC must find the venv's first.
export PATH := $(BIN):$(PATH)
# A failing pip in a pipe (its output filtered below) fails the recipe.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# The pip-compile `make lock` runs; LOCK_WITH=<path> uses another (one outside the venv, say). Not PIP_*:
# pip reads every PIP_<OPTION> variable of its environment as an option.
LOCK_WITH ?= $(BIN)/pip-compile
# pip's notes on its configured package locations that do not hold a package (one line each): noise.
QUIET_PIP := { grep -v 'is ignored: it is neither' || true; }

.PHONY: setup lock repro test test-fast params pipeline bench ui exps
setup: $(VENV)/.installed

# Every package at the version and hash in requirements.lock (pip checks each download against its hash) ...
$(VENV)/.synced: requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off --require-hashes -r requirements.lock 2>&1 | $(QUIET_PIP)
	touch $@

# ... then the project itself, without dependencies (all of them are locked), and a check that the lock has
# what pyproject.toml asks for (a dependency added since the lock was made: run `make lock`).
$(VENV)/.installed: $(VENV)/.synced pyproject.toml
	$(BIN)/python -m pip install --quiet --progress-bar off --no-deps --no-build-isolation -e . 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip check || { echo "requirements.lock is out of date with pyproject.toml: run make lock"; exit 1; }
	$(BIN)/python -c "import beyond_gd, torch, torchvision, hydra, dvc, mlflow, pandas, seaborn"
	touch $@

# pip itself stays the venv's own (--unsafe-package pip): it runs the install, and every venv has one.
lock: $(VENV)/.synced  ## re-resolve requirements.lock from pyproject.toml (after editing a dependency), then install it
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_WITH) --quiet --extra dev --generate-hashes --strip-extras \
	    --no-allow-unsafe --unsafe-package pip --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	    --output-file requirements.lock pyproject.toml 2>&1 | $(QUIET_PIP)
	$(MAKE) setup

repro: setup        ## install, then run the whole pipeline
	dvc repro

# pytest-xdist: one worker per core, each test file on one worker (a file's module fixtures are built once),
# the files in collection order, which puts the workflows' real pipeline first (tests/conftest.py).
XDIST := -n auto --dist loadfile --no-loadscope-reorder

test: setup         ## install, then run every test (the smoke pipeline included), a worker per core
	pytest $(XDIST)

test-fast: setup    ## the tests that take seconds (no real-data stages)
	pytest $(XDIST) -m "not slow"

params: setup       ## recompose params.yaml from conf/ (as `dvc exp run` does); OVERRIDES="profile=smoke"
	python -m beyond_gd.compose $(OVERRIDES)

pipeline: setup     ## rewrite dvc.yaml, docs/stages.md and the chapter map from the declarations and registries
	python -m beyond_gd.pipeline

bench: setup        ## where the last reproduction's time went per stage, then the training loop's throughput vs the matmul peak
	beyond-gd costs
	python benchmarks/train_throughput.py

exps: setup         ## experiments side by side: one line per param or metric that differs, one column per experiment
	beyond-gd exps

ui: setup           ## the MLflow UI on http://127.0.0.1:5000 over this checkout's store, opened on a runs table
	beyond-gd ui
