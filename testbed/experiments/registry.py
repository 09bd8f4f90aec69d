"""The experiments `testbed experiment <name>` can run, and the interface each one implements.

Every experiment is one module in `testbed.experiments` that defines:

* ``NAME`` (the command-line name, e.g. ``"mse-vs-snr"``) and ``HELP`` (one line);
* ``add_arguments(parser)``: its own options (with documented defaults);
* ``run(args, run_dir) -> dict``: do the work with the parsed arguments (which always carry
  ``seed`` (int) and ``quick`` (bool)), write its plots into ``run_dir`` and return the results
  (plain data; the command writes them to ``run_dir/results.json``).

Modules are imported only when their experiment is selected or listed.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from testbed.errors import ConfigError

#: experiment name -> module path
EXPERIMENTS: dict[str, str] = {
    "mse-vs-snr": "testbed.experiments.mse_vs_snr",
    "mse-vs-nodes": "testbed.experiments.mse_vs_nodes",
    "latency": "testbed.experiments.latency",
    "perplexity": "testbed.experiments.perplexity",
    "assignment": "testbed.experiments.assignment",
}


def experiment_names() -> list[str]:
    """Names of all registered experiments, in registration order."""
    return list(EXPERIMENTS)


def load_experiment(name: str) -> ModuleType:
    """Import and return the module of experiment ``name``; ConfigError names the valid ones."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(EXPERIMENTS[name])
    for attr in ("NAME", "HELP", "add_arguments", "run"):
        if not hasattr(module, attr):
            raise ConfigError(f"experiment module {module.__name__} lacks {attr!r}")
    return module
