# Two entry points that work on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/canopy demo

lint: $(STAMP)
	$(BIN)/ruff check protocol node cli.py tests $(wildcard bench fuzz)

typecheck: $(STAMP)
	$(BIN)/mypy --strict protocol

test: $(STAMP) lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

BENCH  := $(VENV)/.bench-installed

$(BENCH): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH)

.PHONY: bench
bench: $(BENCH)
	$(BIN)/python -m bench
