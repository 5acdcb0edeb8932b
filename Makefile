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
	@# An editable install leaves our own modules uncompiled, and with PYTHONDONTWRITEBYTECODE
	@# set every node process would compile them again at start (~70 ms each).
	$(BIN)/python -m compileall -q protocol node commands cli.py
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/canopy demo

lint: $(STAMP)
	$(BIN)/ruff check protocol node commands cli.py tests $(wildcard bench fuzz)

typecheck: $(STAMP)
	$(BIN)/mypy --strict protocol

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n 2 --dist loadscope

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

BENCH  := $(VENV)/.bench-installed

$(BENCH): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH)

.PHONY: bench
bench: $(BENCH)
	$(BIN)/python -m compileall -q protocol node commands cli.py  # nodes start as installed ones do
	$(BIN)/python -m bench

FUZZ_SECONDS ?= 60
FUZZ := $(VENV)/.fuzz-installed

$(FUZZ): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[fuzz]'
	touch $(FUZZ)

.PHONY: fuzz soak
fuzz: $(FUZZ)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m fuzz.run

soak: $(STAMP)
	CANOPY_SOAK_KILLS=200 $(BIN)/pytest -p no:cacheprovider tests/test_crash_safety.py --timeout=1800
