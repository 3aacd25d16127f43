# Giao: two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv infra up down status demo test test-fast lint bench catalog clean-data

help:
	@echo "make demo   - set up, start everything, run the city simulation (the main job)"
	@echo "make test   - set up, start Kafka and PostgreSQL, run the whole test suite"
	@echo "make test-fast - the tests that need no server (no Kafka, no PostgreSQL), in seconds"
	@echo "make lint   - ruff (lint and format) and mypy"
	@echo "make up     - start Kafka, PostgreSQL and the three services (idempotent)"
	@echo "make down   - stop them (data stays in var/)"
	@echo "make bench  - the benchmark (not part of make test)"

# The venv, re-made when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test]"
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

infra: venv
	deploy/local/tools.sh
	deploy/local/kafka.sh start
	deploy/local/postgres.sh start
	deploy/local/toxiproxy.sh start

up: venv
	deploy/local/tools.sh
	deploy/local/up.sh

down:
	deploy/local/down.sh

status:
	-deploy/local/kafka.sh status; deploy/local/postgres.sh status; deploy/local/toxiproxy.sh status; deploy/local/services.sh status

demo: up
	$(PY) -m tools.sim $(SIM_ARGS)

# Lint first: a finding fails `make test` (and CI) in seconds, before the servers start.
test: lint infra
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

# The tests marked with none of what needs a server or a browser (tests/conftest.py marks them):
# no root, no server started, no deploy/local script run. Every test in tests/e2e is marked e2e,
# and only e2e tests fuzz: the directory and the fuzzing plugins are left out unread (seconds of
# imports), which selects the same tests.
FAST_TESTS := not db and not kafka and not e2e and not browser
test-fast: venv
	$(PY) -m pytest -m "$(FAST_TESTS)" --ignore=tests/e2e -p no:hypothesispytest -p no:schemathesis $(PYTEST_ARGS)

# All three run, so that one report shows every finding; any finding fails.
lint: venv
	@status=0; \
	$(PY) -m ruff check . || status=1; \
	$(PY) -m ruff format --check . || status=1; \
	$(PY) -m mypy || status=1; \
	exit $$status

# The bench reads the topics as deploy/local's Kafka admin user (the services are users of their own).
bench: up
	GIAO_KAFKA_USERNAME=admin GIAO_KAFKA_PASSWORD="$${GIAO_KAFKA_ADMIN_PASSWORD:-dev-kafka-admin}" \
	  $(PY) -m tools.bench $(BENCH_ARGS)

catalog: venv
	$(PY) -m shared.catalog

clean-data: down
	rm -rf var/
