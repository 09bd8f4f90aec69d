# Two entry points for a fresh machine:
#   make demo   -- build the environment and run the main job on the simulated radio backend
#   make test   -- build the environment and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test env sysdeps bench clean

# System packages first (they are checked every time: cheap when present), then the venv, then
# Debian's uhd module linked into it (again every time, in case the packages came later).
env: sysdeps $(STAMP)
	@$(PY) tools/link_debian_uhd.py --quiet

sysdeps:
	@sh tools/install_system_packages.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "numpy<2" "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: env
	$(VENV)/bin/testbed demo

# The default model is trained (or found in the cache) before the tests start, so that its
# minutes of training never run beside the real-time emulation tests on another worker.
test: env
	$(VENV)/bin/testbed train-default --no-progress
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist loadgroup

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
