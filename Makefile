# Every target works from a fresh clone with nothing installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-all demo ops ops-check gpu-wheels clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned CPU torch first: a bare or newer requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev,launchers]'
	touch $@

setup: $(VENV)/.installed

# One pytest-xdist worker per core, one torch thread each (tests/conftest.py); TEST_WORKERS=0 runs
# the tests in this process, one after the other.
TEST_WORKERS ?= auto

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu" -n $(TEST_WORKERS)

test-all: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS)

demo: setup
	$(PY) scripts/demo.py

ops: setup
	$(PY) -m tp2detr.ops build

ops-check: setup
	$(PY) -m tp2detr.ops check-nvcc

# The pure-Python packages the GPU machine's image lacks, as wheels in .whl/ at this venv's versions:
# name .whl in the device call's carry and scripts/gpu_check.sh installs them there (needs the network here).
GPU_WHEELS := hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher
gpu-wheels: setup
	rm -rf .whl
	$(PY) -m pip wheel -q --no-deps -w .whl $$($(PY) -c "import importlib.metadata as m; \
print(' '.join(p + '==' + m.version(p) for p in '$(GPU_WHEELS)'.split()))")

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
