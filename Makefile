# The payment saga reference: see README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SERVICES := order_service user_service payment_service concert_service data_platform orchestrator
# Run by `make deploy-check`, which `make test` runs first: the rest of the suite leaves them out.
DEPLOY_TESTS := $(wildcard tests/unit/test_deploy*.py)

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

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

migrate: install ## Create and migrate the database of every process
	@for s in $(SERVICES); do $(BIN)/python -m $$s migrate || exit 1; done

test: install browser promtool pgbouncer deploy-check ## Run the whole test suite (on the local PostgreSQL, or an embedded one)
	$(BIN)/pytest $(addprefix --ignore=,$(DEPLOY_TESTS))
	$(MAKE) --no-print-directory test-pgbouncer

# The payment saga's tests again, every process reaching its database through PgBouncer in
# transaction mode (tests/e2e/conftest.py), on databases of their own.
PGBOUNCER_TESTS := tests/e2e/test_pgbouncer.py tests/e2e/test_payment_saga.py tests/e2e/test_refunds.py
test-pgbouncer: install pgbouncer ## Run the payment saga tests through PgBouncer (transaction mode)
	TEST_THROUGH_PGBOUNCER=1 TEST_DB_PREFIX=$${TEST_DB_PREFIX:-saga_test}_pgb $(BIN)/pytest $(PGBOUNCER_TESTS)

# The admin page test drives Debian's Chromium (Playwright cannot download a browser here).
browser: ## Install Debian's chromium for the admin page test, if it is missing
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make: installing Debian's chromium (the admin page test drives it)"; \
	    apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	  else \
	    echo "make: the admin page test needs Debian's chromium: run 'sudo apt-get install -y chromium'" >&2; \
	    exit 1; \
	  fi; }

# The alert rules' tests run promtool (tests/unit/test_observability_config.py).
promtool: ## Install Debian's prometheus (promtool) for the alert rules' tests, if it is missing
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make: installing Debian's prometheus (the alert rules' tests run its promtool)"; \
	    apt-get update -q >/dev/null && apt-get install -y -q prometheus >/dev/null; \
	  else \
	    echo "make: the alert rules' tests need promtool: run 'sudo apt-get install -y prometheus'" >&2; \
	    exit 1; \
	  fi; }

# The payment saga's tests run through it (make test-pgbouncer).
pgbouncer: ## Install Debian's pgbouncer for the tests through a pooler, if it is missing
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make: installing Debian's pgbouncer (the payment saga's tests run through it)"; \
	    apt-get update -q >/dev/null && apt-get install -y -q pgbouncer >/dev/null; \
	  else \
	    echo "make: the tests through a pooler need pgbouncer: run 'sudo apt-get install -y pgbouncer'" >&2; \
	    exit 1; \
	  fi; }

# The deploy tests render deploy/k8s with kubectl's kustomize, which must be v5 or newer (kubectl
# 1.27+; the tests check). Debian's kubernetes-client is kubectl 1.20 with kustomize v2, which
# reads none of these kustomizations, so installing it would not help: this says what to get.
kubectl: ## Check that kubectl is there, for deploy-check (it renders deploy/k8s)
	@command -v kubectl >/dev/null || { \
	  echo "make: deploy-check renders deploy/k8s with kubectl 1.27 or newer (kustomize v5)." >&2; \
	  echo "make: install it from the Kubernetes apt repository or a cloud SDK; Debian's kubernetes-client (1.20) is too old" >&2; \
	  exit 1; }

deploy-check: install kubectl ## Lint the Dockerfile, validate compose.yaml and the rendered k8s manifests, offline
	$(BIN)/pytest -q $(DEPLOY_TESTS)

chaos: install ## Chaos run: 300 sagas under faults and SIGKILLs, then check every invariant
	$(BIN)/python -m tools.chaos $(CHAOS_ARGS)

bench: install ## Benchmarks as ratios: against the floor, DBOS and Temporal; 2 and 3 orchestrator replicas against 1 (writes docs/benchmarks.md)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

purge: install ## Purge old finished sagas (PURGE_ARGS="--older-than 30d [--dry-run] [--archive F]")
	$(BIN)/python -m orchestrator purge $(PURGE_ARGS)

lint: install ## Check style (ruff) and types (mypy --strict: engine, orchestrator, services)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean: ## Remove the virtualenv, caches and the embedded database's data
	rm -rf $(VENV) .data .pytest_cache .ruff_cache .mypy_cache *.egg-info

.PHONY: help install browser promtool pgbouncer test-pgbouncer kubectl deploy-check run-all migrate test chaos bench purge lint clean
