# Evently — see README.md. Every target installs what it needs (the .venv, and through
# infra/stack.py: Redis, Kafka, Kafka Connect + Debezium, FerretDB).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -q -ra

.PHONY: up down status logs reset test test-faults test-unit venv bench demo

$(STAMP): pyproject.toml
	@echo "==> python: creating $(VENV) and installing pinned dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,load]'
	@touch $(STAMP)

venv: $(STAMP)

up: venv
	@$(PY) -m infra.stack up

# make demo: seed a small demo (organizer, buyer, venue, two on-sale events) and print the URLs and tokens
demo: up
	@$(PY) -m infra.demo

down: venv
	@$(PY) -m infra.stack down

status: venv
	@$(PY) -m infra.stack status

# make logs                  last lines of every log;  make logs C=kafka F=1   follow one
logs: venv
	@$(PY) -m infra.stack logs $(C) $(if $(F),-f)

reset: venv
	@$(PY) -m infra.stack reset

# Brings the whole stack up, runs unit + integration + e2e tests against it, then the fault suite (tests/faults:
# ten faults injected into a steady sale, ~5 min), and tears it down (KEEP_STACK=1 leaves it running). The
# browser e2e test needs Chromium + playwright-core: `infra.install browser` installs them when missing.
# The teardown's output goes to .stack/logs/down.log (shown only if it fails), so pytest's summary stays last.
test: venv
	@$(PY) -m infra.install browser
	@$(PY) -m infra.stack up || { $(PY) -m infra.stack down; exit 1; }
	@$(PY) -m infra.stack exec -- $(PY) -m pytest $(PYTEST_ARGS) --ignore=tests/faults; rc=$$?; \
	  echo "==> fault suite (tests/faults)"; \
	  $(PY) -m infra.stack exec -- $(PY) -m pytest $(PYTEST_ARGS) tests/faults || rc=1; \
	  $(PY) -m tests.faults.report || true; \
	  if [ -z "$(KEEP_STACK)" ]; then \
	    $(PY) -m infra.stack down > .stack/logs/down.log 2>&1 || { cat .stack/logs/down.log; rc=1; }; \
	  fi; exit $$rc

# The fault suite alone, on the running stack (started if it is not): make test-faults [K=kafka]
test-faults: venv
	@$(PY) -m infra.stack up
	@$(PY) -m infra.stack exec -- $(PY) -m pytest $(PYTEST_ARGS) tests/faults $(if $(K),-k $(K)); rc=$$?; \
	  $(PY) -m tests.faults.report --last $(if $(K),1,10) || true; exit $$rc

# Orders/s with and without payment on the running stack, side by side in one run (loadtests/bench_orders.py
# --mode both: free orders, then hold + checkout + devpay capture + webhook; CPU per order of the command service,
# devpay and PostgreSQL). Loads both cores for about 2 x the duration plus set-up. make bench [BENCH_ARGS="..."]
BENCH_ARGS ?= --duration 20 --concurrency 48
bench: venv
	@$(PY) -m infra.stack exec -- $(PY) loadtests/bench_orders.py --mode both $(BENCH_ARGS)

# Pure unit tests only: no stack needed.
test-unit: venv
	@$(PY) -m pytest $(PYTEST_ARGS) tests/unit
