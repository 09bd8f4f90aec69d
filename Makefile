# Two entry points for a fresh machine:
#   make demo   -- build the environment and run the main job on the simulated radio backend
#   make test   -- build the environment and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test env bench clean

env: $(STAMP)

$(STAMP): pyproject.toml tools/link_debian_uhd.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "numpy<2" "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) tools/link_debian_uhd.py
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/testbed demo

test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
