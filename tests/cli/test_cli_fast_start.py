"""Fast start: building the command line (every subcommand's --help) and importing the channel
and receiver role code must not load the model libraries (torch, transformers) nor scipy.signal
(~1 s each), so `testbed <cmd> --help` answers at once and the channel/receiver processes stay
small. Checked in a fresh interpreter through sys.modules, not with a timer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "scipy.signal", "cvxpy", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter (this tree first on sys.path); return which of HEAVY
    it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_probe_sees_heavy_imports():
    """The probe itself works: importing the model code does load torch."""
    assert "torch" in _loaded_after("import testbed.net.roles.controller_job")


def test_every_help_is_light():
    code = """
import contextlib, io
from testbed.cli import build_parser, command_names
parser = build_parser()
for name in command_names():
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args([name, "--help"])
        except SystemExit:
            pass
"""
    assert _loaded_after(code) == []


@pytest.mark.parametrize("role", ["channel", "receiver"])
def test_role_process_code_does_not_import_the_model(role):
    """What `testbed channel` / `testbed receiver` import up to serving: the command module, the
    bench runner's serve_* and the role's agent, the broker or remote radio."""
    code = f"""
from testbed.cli import build_parser
import testbed.commands.{role}
from testbed.net.roles.bench_runner import serve_{role}
import testbed.net.roles.{role}
import sim_backend.broker, sim_backend.remote_radio
from testbed.net.roles.common import resolve_bench, agent_config
resolve_bench("sim_4node")
"""
    loaded = _loaded_after(code)
    assert "torch" not in loaded and "transformers" not in loaded, loaded


def test_node_role_registers_before_loading_transformers():
    """A node imports torch (its all-reduce interface) but not the sharding code: transformers
    (~2-4 s) is loaded at ASSIGNMENT, after the node registered."""
    code = """
import testbed.commands.node
from testbed.net.roles.bench_runner import serve_node
import testbed.net.roles.node
"""
    assert "transformers" not in _loaded_after(code)
