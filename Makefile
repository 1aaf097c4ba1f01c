# Two commands for a new user (README): `make repro` and `make test`.
# Both create the local virtual environment first if it is missing or stale.
VENV ?= .venv
PYTHON ?= python3.11
BIN := $(abspath $(VENV))/bin
# Stage commands call `python`: DVC must find the venv's first.
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast params pipeline bench ui exps
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]' 2>&1 | grep -v 'is ignored: it is neither' || true
	$(BIN)/python -c "import beyond_gd, torch, torchvision, hydra, dvc, mlflow, pandas, seaborn"
	touch $@

repro: setup        ## install, then run the whole pipeline
	dvc repro

test: setup         ## install, then run every test (the smoke pipeline included)
	pytest

test-fast: setup    ## the tests that take seconds (no real-data stages)
	pytest -m "not slow"

params: setup       ## recompose params.yaml from conf/ (as `dvc exp run` does); OVERRIDES="profile=smoke"
	python -m beyond_gd.compose $(OVERRIDES)

pipeline: setup     ## rewrite dvc.yaml and docs/stages.md from the stage declarations (src/beyond_gd/stages/)
	python -m beyond_gd.pipeline

bench: setup        ## training throughput: the one loop vs the book's DataLoader loop, and vs the matmul peak
	python benchmarks/train_throughput.py

exps: setup         ## experiments side by side: only what differs between them (code and data hashes dropped)
	dvc exp show --only-changed --drop '^(src|data)/'

ui: setup           ## the MLflow UI on http://127.0.0.1:5000 over this checkout's store, opened on a runs table
	beyond-gd ui
