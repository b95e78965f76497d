# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medscope-installed

.PHONY: demo test test-all bench lint clean

# torch is pinned and installed first, alone: an unpinned torch drags in GBs of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medscope demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/video_access.py --out benchmarks/results

lint: $(STAMP)
	$(VENV)/bin/ruff check medscope tests benchmarks
	$(VENV)/bin/mypy medscope

clean:
	rm -rf $(VENV) runs/demo .pytest_cache .mypy_cache .ruff_cache
