# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv as needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; installed before the `trainer` extra so that pip never resolves a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test bench install-core install-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77"

install-core: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-all: $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[trainer,dev]"

## Build the example machine of the hand-written report (dead daemon, orphaned training,
## checkpoint bloat, doc drift, validation off), audit it, clean up.
demo: install-core
	$(BIN)/healthkit demo

## The whole test suite, as CI runs it (no network, no GPU).
test: install-all
	$(BIN)/python -m pytest -q

bench: install-all
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python bench/bench_trainer.py

clean:
	rm -rf $(VENV) build *.egg-info
