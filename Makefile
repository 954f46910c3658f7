# Everything runs from a virtualenv this Makefile creates; only python3 and make are needed
# (and apt-get, as root or through sudo, for the wrk load generator the benchmarks use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help install wrk lint typecheck pytest pytest-newest redis-server postgres docs-build bench-smoke test \
	test-pythons bench bench-docs docs demo clean

# Other Pythons (3.12+) found under pyenv or on PATH, each checked to run: fast paths differ
# by version (eager tasks exist only on 3.12+). Each gets a virtualenv .venv-X.Y of its own.
find_python = $(firstword $(foreach p,$(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)) \
  $(shell command -v python$(1) 2>/dev/null),$(if $(shell $(p) -c 'print(1)' 2>/dev/null),$(p))))
OTHER_VERSIONS := $(foreach v,3.12 3.13 3.14,$(if $(call find_python,$(v)),$(v)))
NEWEST := $(lastword $(OTHER_VERSIONS))
DEMO_PORT ?= 8000
DOCS_PORT ?= 8001

help:
	@echo "make test        lint, type-check, run the tests with coverage (and again on the"
	@echo "                 newest Python found), build the docs, smoke-run the benchmarks"
	@echo "make test-pythons  the tests on every other Python 3.12+ found (pyenv or PATH)"
	@echo "make bench       run the benchmark suite (asignals against its peers, 10-15 min;"
	@echo "                 dispatch also on every other Python 3.12+ found)"
	@echo "                 BENCH_ARGS='--quick' or 'dispatch --loops asyncio' to narrow it"
	@echo "make bench-docs  write the last make bench run into docs/performance.md and README.md"
	@echo "make demo        run the FastAPI demo shop on http://127.0.0.1:$(DEMO_PORT)"
	@echo "make docs        serve the documentation on http://127.0.0.1:$(DOCS_PORT)"
	@echo "                 (DEMO_PORT=... / DOCS_PORT=... to change; both can run at once)"
	@echo "make clean       remove the virtualenvs and build output"

# The dev and bench extras: test tools, servers and frameworks, and the peer libraries the
# benchmarks compare against. Every virtualenv (.venv, .venv-3.x) installs the same.
EXTRAS := dev,bench
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

# The virtualenv of another Python: .venv-3.13/.installed-stamp and so on.
.venv-%/.installed-stamp: pyproject.toml
	test -x .venv-$*/bin/python || $(call find_python,$*) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

# wrk (Debian package) drives the ASGI benchmarks; without it that section says so.
wrk:
	@command -v wrk >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; } \
	  || echo "wrk could not be installed: the ASGI load runs will be skipped"

# redis-server (Debian package) for the asignals.redis tests and benchmarks; each test
# session and benchmark run starts its own on a free port (the package's service is unused).
redis-server:
	@command -v redis-server >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

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

pytest: $(STAMP) redis-server postgres
	$(BIN)/pytest --cov --cov-report=term-missing

# The suite again on the newest Python found (coverage is judged on the first run).
ifeq ($(NEWEST),)
pytest-newest:
	@echo "no Python 3.12+ found (pyenv or PATH): the suite ran on $$($(BIN)/python --version) only"
else
pytest-newest: .venv-$(NEWEST)/.installed-stamp
	@echo "== the suite on $$(.venv-$(NEWEST)/bin/python --version)"
	.venv-$(NEWEST)/bin/pytest -q -p no:cacheprovider
endif

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The benchmark command works (also with the newest Python's dispatch run) and prints a
# one-screen summary; it asserts nothing about speed.
bench-smoke: $(STAMP) wrk redis-server $(if $(NEWEST),.venv-$(NEWEST)/.installed-stamp)
	$(BIN)/python -m benchmarks --quick --no-progress \
	  $(if $(NEWEST),--also-python .venv-$(NEWEST)/bin/python)

test: lint typecheck pytest pytest-newest docs-build bench-smoke

# The suite on each other supported Python this machine has, in a virtualenv of its own.
test-pythons: $(foreach v,$(OTHER_VERSIONS),.venv-$(v)/.installed-stamp)
	@test -n "$(OTHER_VERSIONS)" || echo "no other Python 3.12+ found (pyenv or PATH)"
	@set -e; for v in $(OTHER_VERSIONS); do \
	  echo "== $$(.venv-$$v/bin/python --version)"; \
	  .venv-$$v/bin/pytest -q -p no:cacheprovider; \
	done

# Every section on this Python, the dispatch section also on every other Python found.
bench: $(STAMP) wrk redis-server $(foreach v,$(OTHER_VERSIONS),.venv-$(v)/.installed-stamp)
	mkdir -p bench-results
	$(BIN)/python -m benchmarks --json bench-results/results.json \
	  --plot bench-results/dispatch.png \
	  $(foreach v,$(OTHER_VERSIONS),--also-python .venv-$(v)/bin/python) $(BENCH_ARGS)

# The last `make bench` run into the Performance page, its plot and the README's figures.
bench-docs: $(STAMP)
	$(BIN)/python -m benchmarks --from-json bench-results/results.json \
	  --markdown docs/performance.md --readme README.md --plot docs/img/bench-dispatch.png

docs: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

demo: $(STAMP)
	@echo "Open http://127.0.0.1:$(DEMO_PORT) or: curl -X POST 127.0.0.1:$(DEMO_PORT)/orders -H 'content-type: application/json' -d '{\"item\": \"pizza\"}'"
	$(BIN)/uvicorn --app-dir docs/examples demo_app:app --host 127.0.0.1 --port $(DEMO_PORT)

clean:
	rm -rf $(VENV) .venv-3.* site bench-results demo-shop.db .coverage .mypy_cache .pytest_cache .ruff_cache
