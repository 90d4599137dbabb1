# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv as needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; installed before the `trainer` extra so that pip never resolves a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test lint bench mutants install-core install-all clean

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

## Lint, format and types, as CI runs them before the tests (config in pyproject.toml).
lint: install-all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install-all
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python bench/bench_trainer.py

## Mutation testing of the safety rules (not run by CI: minutes on two cores). Config: [tool.mutmut] in
## pyproject.toml; mutmut copies the tree into mutants/. Only these rules are mutated:
MUTANTS ?= 'healthkit.system.redact.*' \
	'healthkit.system.procs.x_argv_matches__*' 'healthkit.system.procs.x__token_matches__*' \
	'healthkit.system.procs.x_start_time_matches__*' 'healthkit.system.procs.x_read_pid_file__*' 'healthkit.system.procs.x_probe__*' \
	'healthkit.formats.hf_checkpoints.x_checkpoint_completeness__*' 'healthkit.formats.hf_checkpoints.x__weight_problems__*' \
	'healthkit.formats.hf_checkpoints.x_read_state__*' 'healthkit.formats.hf_checkpoints.x__step_of__*' \
	'healthkit.fix.fixes_checkpoints.x__complete__*' 'healthkit.fix.fixes_checkpoints.x_protections__*' \
	'healthkit.fix.fixes_checkpoints.x__best_names__*' \
	'healthkit.contract.docvalues.x_same_value__*' 'healthkit.contract.docvalues.x_parse_doc_value__*' \
	'healthkit.contract.docvalues.x_format_for_doc__*' 'healthkit.fix.fixes_docs.x_rewrite__*' \
	'healthkit.system.fsutil.x_is_within__*' 'healthkit.fix.fileops.x_contained__*' 'healthkit.fix.fileops.x__open_dir__*' \
	'healthkit.fix.fileops.x_unlink_file__*' 'healthkit.fix.fileops.x_delete_dir__*' 'healthkit.fix.fileops.x_replace_file__*'
mutants: install-all
	$(BIN)/python -m pip install --quiet "mutmut>=3.8,<4"
	rm -rf mutants
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m mutmut run --max-children $${MUTMUT_JOBS:-2} $(MUTANTS)
	$(BIN)/python -m mutmut results

clean:
	rm -rf $(VENV) build *.egg-info mutants
