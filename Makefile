# Set-up and everyday commands. `make demo` and `make test` each create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# TORCH_INDEX: the index torch is installed from. PyPI's Linux torch wheels are CUDA builds
# (several GB); PyTorch's CPU index, the default, serves the CPU build. pip also searches the extra
# indexes and find-links of its own configuration (`pip config list`), so a CPU wheel kept there
# installs offline once the CPU index fails to answer (about 10 s of retries). `make setup
# TORCH_INDEX=` uses pip's configuration alone: on Linux that is PyPI's CUDA build, unless a local
# 2.13.0+cpu wheel is found (its +cpu label sorts above PyPI's plain 2.13.0).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(BIN)/aigb: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull the multi-GB CUDA build.
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	# The ray extra too, so that the tests of --backend ray run (aigb itself works without it).
	$(BIN)/pip install --quiet -e '.[learn,dev,ray]'
	touch $(BIN)/aigb

.PHONY: setup demo test test-all test-deps test-export bench benchmark-full
setup: $(BIN)/aigb

# The whole pipeline at demo size (data, training, evaluation, report) into demo/; re-running resumes.
demo: setup
	$(BIN)/aigb demo --out demo

test: setup
	$(BIN)/python -m pytest -q -n 2

test-all: setup
	$(BIN)/python -m pytest -q -n 2 -m ''

# System packages some tests need, from the distribution (Debian/Ubuntu; run as root): Chromium for
# the report's screenshot test. Never a browser download.
test-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# The exported folders replayed in a fresh venv with numpy 1.24 and torch's CPU build (no aigb); slow
# the first time (it builds the venv under .pytest_cache).
test-export: setup
	AIGB_TORCH_INDEX=$(TORCH_INDEX) $(BIN)/python -m pytest -q -m slow tests/export/test_venv.py

bench: setup
	$(BIN)/python benchmarks/sim_throughput.py

# The full benchmark (hours): default dataset, full training, the standard evaluation, table and report.
benchmark-full: setup
	bash benchmarks/full_benchmark.sh
