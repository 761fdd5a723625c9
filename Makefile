# One verb per workflow. Every target creates the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint fmt bench bench-quick simulator venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Start the whole stack with embedded defaults (simulator stands in for RunPod).
run: $(STAMP)
	$(BIN)/podrelay run

## The full test suite (real HTTP, real services).
test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks; results are ratios against a baseline measured in the same run.
bench: $(STAMP)
	$(BIN)/python -m bench.client_overhead
	$(BIN)/python -m bench.submit
	$(BIN)/python -m bench.inflight

## A few minutes instead of about twenty: the same benchmarks at small scale.
bench-quick: $(STAMP)
	$(BIN)/python -m bench.client_overhead --requests 500 --rounds 1
	$(BIN)/python -m bench.submit --quick
	$(BIN)/python -m bench.inflight --quick

simulator: $(STAMP)
	$(BIN)/podrelay simulator --port 8001

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
