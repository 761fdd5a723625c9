# One verb per workflow. Every target creates the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint fmt bench bench-quick chaos simulator venv clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./clients/python
	@touch $(STAMP)

venv: $(STAMP)

## `podrelay dev`: migrations, then simulator (stands in for RunPod), worker with beat, API.
run: $(STAMP)
	$(BIN)/podrelay dev

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

## Chaos at full scale (500 jobs per scenario) and deeper API fuzzing; writes docs/RELIABILITY.md.
CHAOS_JOBS ?= 500
FUZZ_EXAMPLES ?= 300
CHAOS_RESULTS := data/chaos/results.json
chaos: $(STAMP)
	PODRELAY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider tests/api/test_schema_fuzz.py
	rm -f $(CHAOS_RESULTS)
	PODRELAY_CHAOS_JOBS=$(CHAOS_JOBS) PODRELAY_CHAOS_RESULTS=$(CHAOS_RESULTS) \
		$(BIN)/pytest -p no:cacheprovider -s tests/chaos; status=$$?; \
	$(BIN)/python -m tests.chaos.report $(CHAOS_RESULTS) docs/RELIABILITY.md \
		--fuzz-examples $(FUZZ_EXAMPLES) && exit $$status

## Benchmarks; results are ratios against a baseline measured in the same run. Each writes its
## JSON into data/bench/, then bench.report writes docs/BENCHMARKS.md from them (a benchmark
## that failed shows as "not run" there, and make still fails).
## $(call run_benchmarks,json dir,client_overhead args,submit and inflight args,report,
##        dispatch, fairness and failover args)
define run_benchmarks
	rm -rf $(1) && mkdir -p $(1)
	status=0; \
	$(BIN)/python -m bench.client_overhead $(2) --json $(1)/client_overhead.json || status=1; \
	$(BIN)/python -m bench.submit $(3) --json $(1)/submit.json || status=1; \
	$(BIN)/python -m bench.inflight $(3) --json $(1)/inflight.json || status=1; \
	$(BIN)/python -m bench.dispatch $(5) --json $(1)/dispatch.json || status=1; \
	$(BIN)/python -m bench.fairness $(5) --json $(1)/fairness.json || status=1; \
	$(BIN)/python -m bench.failover $(5) --json $(1)/failover.json || status=1; \
	$(BIN)/python -m bench.report $(1) $(4) && exit $$status
endef

bench: $(STAMP)
	$(call run_benchmarks,data/bench,,,docs/BENCHMARKS.md)

## A few minutes instead of about twenty: the same benchmarks at small scale (docs untouched).
bench-quick: $(STAMP)
	$(call run_benchmarks,data/bench-quick,--requests 500 --rounds 1,--quick,data/bench-quick/BENCHMARKS.md,--quick)

simulator: $(STAMP)
	$(BIN)/podrelay simulator --port 8001

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
