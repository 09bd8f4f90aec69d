"""A bench file with ``controller.curve: true``: every role authenticates with CURVE keys;
`testbed up` makes fresh keys for a local bench; a role without its key is refused at start."""
from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from testbed.errors import ConfigError
from testbed.llm.default_model import ensure_default_model
from testbed.net.roles.bench_runner import JobSpec, up_and_run
from testbed.net.roles.common import KEYS_ENV, agent_config, default_addresses, resolve_bench
from testbed.net.transport import generate_keys

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "firmware_configs"


@pytest.fixture()
def curve_bench_file(tmp_path):
    (tmp_path / "radios").mkdir()
    (tmp_path / "benches").mkdir()
    shutil.copy(CONFIGS / "radios" / "sim.yaml", tmp_path / "radios" / "sim.yaml")
    text = (CONFIGS / "benches" / "sim_4node.yaml").read_text()
    text = text.replace("  dead_after_s: 3.0\n", "  dead_after_s: 3.0\n  curve: true\n")
    path = tmp_path / "benches" / "sim_4node_curve.yaml"
    path.write_text(text)
    return path


def test_curve_bench_role_without_keys_is_refused_with_how_to(curve_bench_file, monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    bench = resolve_bench(str(curve_bench_file))
    assert bench.controller.curve
    with pytest.raises(ConfigError, match="testbed keys"):
        agent_config("node0", "node", default_addresses(bench), "fp", bench)


def test_curve_bench_role_with_keys_of_another_node_only_is_refused(curve_bench_file, tmp_path,
                                                                    monkeypatch):
    generate_keys(tmp_path / "keys", clients=["node1"])
    monkeypatch.setenv(KEYS_ENV, str(tmp_path / "keys"))
    bench = resolve_bench(str(curve_bench_file))
    assert agent_config("node1", "node", default_addresses(bench), "fp", bench).curve is not None
    with pytest.raises(ConfigError, match="node0"):
        agent_config("node0", "node", default_addresses(bench), "fp", bench)


@pytest.mark.slow
def test_up_and_run_over_a_curve_bench(curve_bench_file, tmp_path, monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    bench = resolve_bench(str(curve_bench_file))
    model_dir = ensure_default_model(progress=False)
    run_dir = tmp_path / "run"
    try:
        code = up_and_run(str(curve_bench_file), bench, str(model_dir), "exact",
                          JobSpec("generate", prompt_ids=[72, 101], max_new_tokens=2), run_dir)
    finally:
        monkeypatch.delenv(KEYS_ENV, raising=False)
    res = json.loads((run_dir / "results.json").read_text())
    assert code == 0 and res["status"] == "ok"
    assert (run_dir / "keys" / "server.key_secret").is_file()
    assert len(res["generated_ids"]) == 2


@pytest.mark.slow
def test_aircomp_with_measurement_tap_over_a_curve_bench(curve_bench_file, tmp_path, monkeypatch):
    """Every socket of an AirComp round is CURVE on a CURVE bench (controller, broker, the
    receiver's estimates PUB, the measurement tap) and the round still works end to end."""
    monkeypatch.delenv(KEYS_ENV, raising=False)
    bench = resolve_bench(str(curve_bench_file))
    model_dir = ensure_default_model(progress=False)
    run_dir = tmp_path / "run"
    try:
        code = up_and_run(str(curve_bench_file), bench, str(model_dir), "aircomp-zf-sdr",
                          JobSpec("generate", prompt_ids=[72, 101], max_new_tokens=1), run_dir,
                          measure_error=True)
    finally:
        monkeypatch.delenv(KEYS_ENV, raising=False)
    res = json.loads((run_dir / "results.json").read_text())
    assert code == 0 and res["status"] == "ok", res.get("error")
    assert (run_dir / "keys" / "clients" / "controller.key_secret").is_file()
    assert res["measurement_tap"]["rounds_measured"] >= 1
