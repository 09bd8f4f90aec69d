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

test: env
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
