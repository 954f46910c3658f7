# Everything runs from a virtualenv this Makefile creates; only python3 and make are needed
# (and apt-get, as root or through sudo, for the wrk load generator the benchmarks use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help install wrk lint typecheck pytest docs-build bench-smoke test bench docs demo clean

help:
	@echo "make test        lint, type-check, run the tests with coverage, build the docs,"
	@echo "                 smoke-run the benchmarks"
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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term-missing

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The benchmark command works and prints every section; it asserts nothing about speed.
bench-smoke: $(STAMP) wrk
	$(BIN)/python -m benchmarks --quick --no-progress

test: lint typecheck pytest docs-build bench-smoke

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
	rm -rf $(VENV) site bench-results .coverage .mypy_cache .pytest_cache .ruff_cache
