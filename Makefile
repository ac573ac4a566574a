# Two entry points: `make demo` (set up, then run the pipeline) and `make test` (set up, then test).
# The environment is a local .venv; torch is pinned to 2.13.0 (CPU) by constraints.txt so that no
# install pulls a CUDA build of several GB.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip --quiet --disable-pip-version-check
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install --no-deps -c constraints.txt -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	dvc repro

test: $(STAMP)
	python -m pytest

bench: $(STAMP)
	python -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)
