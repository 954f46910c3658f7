# Everything runs from virtualenvs this Makefile creates from the lock file (uv.lock) with
# uv; only python3 and make are needed (and apt-get, as root or through sudo, for the
# servers the tests start and the wrk load generator the benchmarks use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# uv, pinned, installed from the package index into .tools/ the first time it is needed.
UV_VERSION := 0.13.10
UV := .tools/bin/uv
# The machine's own Pythons only: uv never downloads an interpreter.
export UV_PYTHON_DOWNLOADS := never
# The dev and bench extras (test tools, servers and frameworks, the peer libraries the
# benchmarks compare against), exactly as locked. Every virtualenv installs the same set.
SYNC := $(UV) sync --locked --no-progress --extra dev --extra bench

.PHONY: help install lock wrk valgrind lint typecheck pytest pytest-newest redis-server \
	postgres pytest-sqlalchemy20 test-sqlalchemy-suite docs-build bench-smoke test test-pythons test-latest test-lowest bench \
	bench-docs docs demo clean

# Other Pythons (3.12+) found under pyenv or on PATH, each checked to run: fast paths differ
# by version (eager tasks exist only on 3.12+). Each gets a virtualenv .venv-X.Y of its own.
find_python = $(firstword $(foreach p,$(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)) \
  $(shell command -v python$(1) 2>/dev/null),$(if $(shell $(p) -c 'print(1)' 2>/dev/null),$(p))))
OTHER_VERSIONS := $(foreach v,3.12 3.13 3.14,$(if $(call find_python,$(v)),$(v)))
NEWEST := $(lastword $(OTHER_VERSIONS))
# The interpreter behind $(PYTHON) itself (not a pyenv shim), for uv.
PYTHON_EXE = $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
DEMO_PORT ?= 8000
DOCS_PORT ?= 8001

help:
	@echo "make test        lint, type-check, run the tests with coverage (and again on the"
	@echo "                 newest Python found), build the docs, smoke-run the benchmarks"
	@echo "make test-pythons  the tests on every other Python 3.12+ found (pyenv or PATH)"
	@echo "make test-latest the checks and tests with the newest releases of every dependency,"
	@echo "                 then the tests with the lowest versions pyproject.toml allows"
	@echo "make test-sqlalchemy-suite  SQLAlchemy's own ORM tests, plain and with tracking"
	@echo "make lock        resolve again after a dependency change (UPGRADE=1: newest of all)"
	@echo "make bench       run the benchmark suite (asignals against its peers, 10-15 min;"
	@echo "                 dispatch and instructions also on every other Python 3.12+ found)"
	@echo "                 BENCH_ARGS='--quick' or 'dispatch --loops asyncio' to narrow it"
	@echo "make bench-docs  write the last make bench run into docs/performance.md and README.md"
	@echo "make demo        run the FastAPI demo shop on http://127.0.0.1:$(DEMO_PORT)"
	@echo "make docs        serve the documentation on http://127.0.0.1:$(DOCS_PORT)"
	@echo "                 (DEMO_PORT=... / DOCS_PORT=... to change; both can run at once)"
	@echo "make clean       remove the virtualenvs, uv and build output"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# --locked: a uv.lock that no longer matches pyproject.toml is an error, not a new resolve.
$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(SYNC) --python "$(PYTHON_EXE)"
	touch $(STAMP)

install: $(STAMP)

# After changing the dependencies in pyproject.toml: resolve again and write uv.lock (commit
# it with the change). `make lock UPGRADE=1` moves every locked version to the newest.
lock: | $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade)

# The virtualenv of another Python: .venv-3.13/.installed-stamp and so on.
.venv-%/.installed-stamp: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=.venv-$* $(SYNC) --python "$(call find_python,$*)"
	touch $@

# wrk (Debian package) drives the ASGI benchmarks; without it that section says so.
wrk:
	@command -v wrk >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; } \
	  || echo "wrk could not be installed: the ASGI load runs will be skipped"

# valgrind (Debian package): callgrind counts the instructions of the benchmarks' sends and
# requests; without it that section says so and is skipped.
valgrind:
	@command -v valgrind >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq valgrind >/dev/null; } \
	  || echo "valgrind could not be installed: the instruction counts will be skipped"

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
pytest-newest: .venv-$(NEWEST)/.installed-stamp redis-server postgres
	@echo "== the suite on $$(.venv-$(NEWEST)/bin/python --version)"
	.venv-$(NEWEST)/bin/pytest -q -p no:cacheprovider
endif

# SQLAlchemy 2.0 as well as the locked 2.1: the asignals.sqlalchemy tests (the outbox's
# included) again with the newest 2.0 release, in a virtualenv of their own where
# everything else is as locked.
SQLALCHEMY_20 := 2.0.59
.venv-sqlalchemy20/.installed-stamp: pyproject.toml uv.lock | $(UV)
	$(UV) venv --quiet --clear --python "$(PYTHON_EXE)" .venv-sqlalchemy20
	$(UV) export --quiet --locked --no-hashes --no-emit-project --extra dev \
	  --no-emit-package sqlalchemy -o .venv-sqlalchemy20/locked.txt
	$(UV) pip install --quiet --python .venv-sqlalchemy20/bin/python \
	  -r .venv-sqlalchemy20/locked.txt "sqlalchemy[asyncio]==$(SQLALCHEMY_20)" -e .
	touch $@

pytest-sqlalchemy20: .venv-sqlalchemy20/.installed-stamp postgres
	@echo "== the SQLAlchemy tests on SQLAlchemy $(SQLALCHEMY_20)"
	.venv-sqlalchemy20/bin/pytest -q -p no:cacheprovider tests/test_sqlalchemy_*.py tests/durable

# Not part of `make test` (two runs of some 12,000 tests): SQLAlchemy's own test/orm and
# test/ext/asyncio, from the sdist of the installed release, plainly and with track() and a
# receiver on every model signal; fails if a test fails only with tracking (the tests set
# aside, and why, are listed in tests/sqlalchemy_suite/run.py). SUITE_ARGS go to pytest.
test-sqlalchemy-suite: $(STAMP)
	$(BIN)/python tests/sqlalchemy_suite/run.py --workdir .sqlalchemy-suite $(SUITE_ARGS)

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The benchmark command works (also with the newest Python's dispatch run) and prints a
# one-screen summary; it asserts nothing about speed.
bench-smoke: $(STAMP) wrk redis-server $(if $(NEWEST),.venv-$(NEWEST)/.installed-stamp)
	$(BIN)/python -m benchmarks --quick --no-progress \
	  $(if $(NEWEST),--also-python .venv-$(NEWEST)/bin/python)

test: lint typecheck pytest pytest-newest pytest-sqlalchemy20 docs-build bench-smoke

# The suite on each other supported Python this machine has, in a virtualenv of its own.
test-pythons: $(foreach v,$(OTHER_VERSIONS),.venv-$(v)/.installed-stamp) redis-server postgres
	@test -n "$(OTHER_VERSIONS)" || echo "no other Python 3.12+ found (pyenv or PATH)"
	@set -e; for v in $(OTHER_VERSIONS); do \
	  echo "== $$(.venv-$$v/bin/python --version)"; \
	  .venv-$$v/bin/pytest -q -p no:cacheprovider; \
	done

# Not part of `make test`: both resolve afresh, so what they install (and so their result)
# changes as dependencies release. The newest releases the ranges in pyproject.toml allow,
# checked and tested; then the lowest ones, tested: a lower bound that is too loose fails.
test-latest: | $(UV) redis-server postgres
	$(UV) venv --quiet --clear --python "$(PYTHON_EXE)" .venv-latest
	$(UV) pip install --quiet --python .venv-latest/bin/python --upgrade -e ".[dev,bench]"
	@echo "== newest releases: $$($(UV) pip list --python .venv-latest/bin/python 2>/dev/null \
	  | grep -iE '^(anyio|redis|sqlalchemy|starlette|uvloop|trio|pytest-asyncio) ' | tr -s ' ' | paste -sd, -)"
	.venv-latest/bin/mypy
	.venv-latest/bin/pytest -q -p no:cacheprovider
	$(MAKE) --no-print-directory test-lowest

# The library's own dependencies, its extras' included, at the bottom of their ranges; the
# test tools as locked (their ranges are ours, not our users').
LIBRARY_DEPS := anyio typing-extensions uvloop trio redis sqlalchemy aiosqlite asyncpg
# An older anyio's pytest plugin imports a name the locked pytest deprecates.
LOWEST_PYTEST_ARGS := -W "ignore::pytest.PytestRemovedIn10Warning"
test-lowest: | $(UV) redis-server postgres
	$(UV) venv --quiet --clear --python "$(PYTHON_EXE)" .venv-lowest
	$(UV) export --quiet --locked --no-hashes --no-emit-project --extra dev --extra bench \
	  $(foreach p,$(LIBRARY_DEPS),--no-emit-package $(p)) -o .venv-lowest/tools.txt
	$(UV) pip install --quiet --python .venv-lowest/bin/python --resolution lowest-direct \
	  -r .venv-lowest/tools.txt -e ".[uvloop,trio,redis,sqlalchemy]"
	@echo "== lowest versions: $$($(UV) pip list --python .venv-lowest/bin/python 2>/dev/null \
	  | grep -iE '^($(subst $(eval) ,|,$(LIBRARY_DEPS))) ' | tr -s ' ' | paste -sd, -)"
	.venv-lowest/bin/pytest -q -p no:cacheprovider $(LOWEST_PYTEST_ARGS)

# Every section on this Python; dispatch and instructions also on every other Python found.
bench: $(STAMP) wrk valgrind redis-server \
	$(foreach v,$(OTHER_VERSIONS),.venv-$(v)/.installed-stamp)
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
	rm -rf $(VENV) .venv-* .tools .sqlalchemy-suite site bench-results demo-shop.db .coverage .mypy_cache \
	  .pytest_cache .ruff_cache
