# bitplane — one-command install, test, demo and benchmarks (pip only, no root).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: install install-train test test-slow demo demo-resnet20 demo-nin bench lint clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $(STAMP)

# PyTorch 2.13 CPU, onnx, brevitas for train/ and import (optional; their tests are skipped without them)
install-train: $(STAMP)
	$(PY) -m pip install -q -r requirements-train.txt

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q -m slow tests

demo: $(STAMP)
	$(PY) -m bitplane.demo

# the graph network: ResNet-20 (residual adds, projection shortcuts, global average pool) -> build/demo-resnet20/
demo-resnet20: $(STAMP)
	$(PY) -m bitplane.demo --net resnet20

# the seed's NIN (1x1 convolutions, global average pool), trained here -> build/demo-nin/
demo-nin: $(STAMP)
	$(PY) -m bitplane.demo --net nin

bench: $(STAMP)
	$(PY) bench/report.py

clean:
	rm -rf build .pytest_cache sim_build
