# Set-up and everyday commands. `make demo` and `make test` each create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/aigb: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull the multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[learn,dev]'
	touch $(BIN)/aigb

.PHONY: setup demo test test-all bench
setup: $(BIN)/aigb

# The whole pipeline at demo size (data, training, evaluation, report) into demo/; re-running resumes.
demo: setup
	$(BIN)/aigb demo --out demo

test: setup
	$(BIN)/python -m pytest -q -n 2

test-all: setup
	$(BIN)/python -m pytest -q -n 2 -m ''

bench: setup
	$(BIN)/python benchmarks/sim_throughput.py
