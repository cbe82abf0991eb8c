# Every target works from a fresh clone with nothing installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-all demo ops ops-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned CPU torch first: a bare or newer requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev,launchers]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) scripts/demo.py

ops: setup
	$(PY) -m tp2detr.ops build

ops-check: setup
	$(PY) -m tp2detr.ops check-nvcc

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
