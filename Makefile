# Everything runs from a virtualenv this Makefile creates; only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help install lint typecheck pytest docs-build test docs demo clean

help:
	@echo "make test        lint, type-check, run the tests with coverage, build the docs"
	@echo "make demo        run the FastAPI demo shop on http://127.0.0.1:8000"
	@echo "make docs        serve the documentation on http://127.0.0.1:8000"
	@echo "make clean       remove the virtualenv and build output"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term-missing

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck pytest docs-build

docs: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

demo: $(STAMP)
	@echo "Open http://127.0.0.1:8000 or: curl -X POST 127.0.0.1:8000/orders -H 'content-type: application/json' -d '{\"item\": \"pizza\"}'"
	$(BIN)/uvicorn --app-dir docs/examples demo_app:app --host 127.0.0.1 --port 8000

clean:
	rm -rf $(VENV) site .coverage .mypy_cache .pytest_cache .ruff_cache
