# The payment saga reference: see README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SERVICES := order_service user_service payment_service orchestrator

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(VENV)/.installed ## Create .venv and install the project with its dev tools

# Reinstalled only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run-all: install ## Start every service in the foreground (Ctrl-C stops them all)
	$(BIN)/python -m common.run_all

migrate: install ## Create and migrate every service's database
	@for s in $(SERVICES); do $(BIN)/python -m $$s migrate || exit 1; done

test: install ## Run the whole test suite (on the local PostgreSQL, or an embedded one)
	$(BIN)/pytest

chaos: install ## Chaos run: 300 sagas under faults and SIGKILLs, then check every invariant
	$(BIN)/python -m tools.chaos $(CHAOS_ARGS)

bench: install ## Benchmarks against the floor, DBOS and Temporal, as ratios (writes docs/benchmarks.md)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

purge: install ## Purge old finished sagas (PURGE_ARGS="--older-than 30d [--dry-run] [--archive F]")
	$(BIN)/python -m orchestrator purge $(PURGE_ARGS)

lint: install ## Check style (ruff)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean: ## Remove the virtualenv, caches and the embedded database's data
	rm -rf $(VENV) .data .pytest_cache .ruff_cache *.egg-info

.PHONY: help install run-all migrate test chaos bench purge lint clean
