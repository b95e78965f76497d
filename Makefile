# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medscope-installed

.PHONY: demo test test-all bench lint clean

# torch is pinned and installed first, alone: an unpinned torch drags in GBs of CUDA wheels.
# Everything else within the exact tested versions of constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

# System packages for tests that need them, where apt is usable (root): Chromium renders the HTML report and,
# driven by chromium-driver, the review workspace; Java runs pycocoevalcap's METEOR; PostgreSQL serves the
# review database's PostgreSQL test. Without them those tests skip and say why.
SYSDEPS := $(VENV)/.medscope-sysdeps
$(SYSDEPS): $(STAMP)
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  missing=""; \
	  command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	  if [ -n "$$missing" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "could not install$$missing: the tests that need them will skip"; \
	  fi; \
	fi
	touch $(SYSDEPS)

demo: $(STAMP)
	$(VENV)/bin/medscope demo --out runs/demo

test: $(SYSDEPS)
	$(PY) -m pytest -m "not slow" -q

test-all: $(SYSDEPS)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/video_access.py --out benchmarks/results
	$(PY) benchmarks/threads.py --out benchmarks/results
	$(PY) benchmarks/eval_throughput.py --out benchmarks/results
	$(PY) benchmarks/review_workspace.py --out benchmarks/results
	$(PY) benchmarks/sft_rows.py --out benchmarks/results
	$(PY) benchmarks/policy_ceiling.py --out benchmarks/results
	$(PY) benchmarks/grammar.py --out benchmarks/results
	$(PY) benchmarks/episode_rows.py --out benchmarks/results
	$(PY) benchmarks/eval_batching.py --out benchmarks/results
	$(PY) benchmarks/eval_frames.py --out benchmarks/results

lint: $(STAMP)
	$(VENV)/bin/ruff check medscope tests benchmarks
	$(VENV)/bin/mypy medscope

clean:
	rm -rf $(VENV) runs/demo .pytest_cache .mypy_cache .ruff_cache
