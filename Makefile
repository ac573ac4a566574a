# Two entry points: `make demo` (set up, then run the pipeline) and `make test` (set up, then test).
# The environment is a local .venv; torch is pinned to 2.13.0 (CPU) by constraints.txt so that no
# install pulls a CUDA build of several GB.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip --quiet --disable-pip-version-check
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo test bench evaluate clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install --no-deps -c constraints.txt -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The demo pipeline: the zoo, its registry and the selection for the held-out dataset. The evaluations (the
# meta-space left one dataset out, the convergence curves and the selection benchmark: about two hours on a
# 2-core CPU, README) are a target of their own.
DEMO_STAGES := register select fid

demo: $(STAMP)
	dvc repro $(DEMO_STAGES)

evaluate: $(STAMP)
	dvc repro leave_one_out convergence selection_benchmark

test: $(STAMP)
	python -m pytest

bench: $(STAMP)
	python -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)
