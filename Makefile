# Everything runs from a virtualenv this Makefile creates; only python3 and make are needed
# (and apt-get, as root or through sudo, for the wrk load generator the benchmarks use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help install wrk postgres lint typecheck pytest docs-build bench-smoke test test-pythons bench docs demo clean

help:
	@echo "make test        lint, type-check, run the tests with coverage, build the docs,"
	@echo "                 smoke-run the benchmarks"
	@echo "make test-pythons  the tests on every other Python 3.11+ found (pyenv or PATH)"
	@echo "make bench       run the benchmark suite (asignals against its peers, ~4 min)"
	@echo "                 BENCH_ARGS='--quick' or 'dispatch --loops asyncio' to narrow it"
	@echo "make demo        run the FastAPI demo shop on http://127.0.0.1:8000"
	@echo "make docs        serve the documentation on http://127.0.0.1:8000"
	@echo "make clean       remove the virtualenv and build output"

# The dev and bench extras: test tools, servers and frameworks, and the peer libraries the
# benchmarks compare against.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

# wrk (Debian package) drives the ASGI benchmarks; without it that section says so.
wrk:
	@command -v wrk >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; } \
	  || echo "wrk could not be installed: the ASGI load runs will be skipped"

# The PostgreSQL server (Debian package) for the asignals.sqlalchemy tests, which start a
# throwaway cluster of their own; without it those tests are skipped and say so.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql >/dev/null; } \
	  || echo "postgresql could not be installed: the PostgreSQL tests will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy --strict over everything; pyright over the package and the typing cases of typed
# signals (tests/typing), so both checkers users run are held to them.
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/basedpyright

pytest: $(STAMP) postgres
	$(BIN)/pytest --cov --cov-report=term-missing

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The benchmark command works and prints every section; it asserts nothing about speed.
bench-smoke: $(STAMP) wrk
	$(BIN)/python -m benchmarks --quick --no-progress

test: lint typecheck pytest docs-build bench-smoke

# The suite on each other supported Python this machine has, in a virtualenv of its own.
OTHER_PYTHONS := $(foreach v,3.12 3.13 3.14,$(firstword $(wildcard $(HOME)/.pyenv/versions/$(v).*/bin/python$(v)) $(shell command -v python$(v) 2>/dev/null)))
test-pythons:
	@test -n "$(strip $(OTHER_PYTHONS))" || echo "no other Python 3.11+ found"
	@set -e; for py in $(OTHER_PYTHONS); do \
	  venv=.venv-$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  test -x $$venv/bin/python || $$py -m venv $$venv; \
	  $$venv/bin/python -m pip install --quiet -e ".[dev]"; \
	  echo "== $$($$venv/bin/python --version)"; \
	  $$venv/bin/pytest -q -p no:cacheprovider; \
	done

bench: $(STAMP) wrk
	mkdir -p bench-results
	$(BIN)/python -m benchmarks --json bench-results/results.json \
	  --plot bench-results/dispatch.png $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

demo: $(STAMP)
	@echo "Open http://127.0.0.1:8000 or: curl -X POST 127.0.0.1:8000/orders -H 'content-type: application/json' -d '{\"item\": \"pizza\"}'"
	$(BIN)/uvicorn --app-dir docs/examples demo_app:app --host 127.0.0.1 --port 8000

clean:
	rm -rf $(VENV) .venv-3.* site bench-results demo-shop.db .coverage .mypy_cache .pytest_cache .ruff_cache
