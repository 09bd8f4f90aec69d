"""Shards from the controller over real processes: nodes started without a checkpoint, with an
empty cache (TESTBED_CACHE_DIR), get their slices from the controller and run `exact` and
`aircomp-zf-sdr` with the logits of nodes that load the checkpoint themselves; a tampered
cached slice is refused before use and fetched again (2-node bench, 4 processes: slow).
The digital method's gloo rendezvous on a multi-host bench."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench_reference import greedy_logits
from testbed.llm.default_model import ensure_default_model
from testbed.llm.sharding import shard_checkpoint
from testbed.net.roles.bench_runner import JobSpec, up_and_run
from testbed.net.roles.common import resolve_bench

PROMPT = [72, 101, 108, 108, 111]
RATIOS = (0.6, 0.4)
BENCHES = Path(__file__).resolve().parents[2] / "firmware_configs" / "benches"


def _two_node_bench(tmp_path: Path) -> Path:
    spec = yaml.safe_load((BENCHES / "sim_4node.yaml").read_text())
    radio = str(BENCHES / "../radios/sim.yaml")
    spec["name"] = "sim_2node"
    spec["nodes"] = [dict(n, radio=radio, ratio=r) for n, r in zip(spec["nodes"], RATIOS)]
    spec["receiver"]["n_antennas"] = spec["receiver"]["radio"]["n_rx_channels"] = 2
    spec["channel"]["path_loss_db"] = {"node0": 0.0, "node1": 3.0}
    path = tmp_path / "sim_2node.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(bench_file, method, run_dir, model_dir, **kw):
    code = up_and_run(str(bench_file), resolve_bench(str(bench_file)), str(model_dir), method,
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=3, save_logits=True),
                      run_dir, **kw)
    res = json.loads((run_dir / "results.json").read_text())
    assert code == 0 and res["status"] == "ok", res.get("error")
    return res, np.load(run_dir / "logits.npy")


@pytest.mark.slow
def test_nodes_without_checkpoint_run_on_slices_from_the_controller(tmp_path, monkeypatch):
    model_dir = ensure_default_model(progress=False)     # the controller's checkpoint
    bench_file = _two_node_bench(tmp_path)
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(cache))  # inherited by every role process

    res, got = _run(bench_file, "exact", tmp_path / "exact", model_dir)
    ref = greedy_logits(shard_checkpoint(model_dir, RATIOS), PROMPT, 3)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    for n in ("node0", "node1"):
        a = res["assignment"][n]
        assert a["weights"]["source"] == "controller" and a["slice"]["source"] == "controller"
        assert a["slice"]["bytes_sent"] == a["weights"]["bytes_received"] > 0
        assert a["slice"]["sha256"] == a["weights"]["sha256"]
    # nothing but the two slices in the nodes' cache: no default model was trained there
    assert [p.name for p in cache.iterdir()] == ["slices"]
    slices = sorted((cache / "slices").iterdir())
    assert len(slices) == 2
    assert all(s.stat().st_size < 0.8 * (model_dir / "model.safetensors").stat().st_size
               for s in (d / "model.safetensors" for d in slices))

    # one bit of node1's cached slice flipped: refused before use, fetched again
    node1_dir = Path(res["assignment"]["node1"]["slice"]["path"])
    w = node1_dir / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-5] ^= 0x08
    w.write_bytes(bytes(raw))
    res_air, air = _run(bench_file, "aircomp-zf-sdr", tmp_path / "air", model_dir)
    a0, a1 = res_air["assignment"]["node0"], res_air["assignment"]["node1"]
    assert a0["weights"]["source"] == "cache" and a0["slice"]["bytes_sent"] == 0
    assert a1["weights"]["source"] == "controller" and "SHA-256" in a1["weights"]["cache_rejected"]
    assert w.read_bytes() != bytes(raw)

    # the same run with nodes that load the checkpoint themselves: the same logits (to float
    # rounding: on some CPUs the processes' kernels differ by ~1e-6 from run to run)
    res_own, own = _run(bench_file, "aircomp-zf-sdr", tmp_path / "own", model_dir,
                        nodes_bring_model=True)
    assert res_own["assignment"]["node0"]["weights"] == {"source": "own checkpoint",
                                                         "path": str(model_dir)}
    assert "slice" not in res_own["assignment"]["node0"]
    np.testing.assert_allclose(air, own, atol=1e-4, rtol=0)
    assert res_air["generated_ids"] == res_own["generated_ids"]
    assert res_air["allreduce"]["rounds"] > 0
    # stream health: the lock-step simulated radios never glitch
    from testbed.commands.run import stream_health_lines
    assert stream_health_lines(res_air) == [
        "stream health: 3 radios clean (no underflows, overflows, late, stream breaks, re-syncs)"]


def test_gloo_rendezvous_on_a_multi_host_bench_uses_node0_and_a_port_of_its_own():
    """`--method digital` on pluto_4node: node0's address from the bench, a port none of the
    bench's other sockets uses (node0 may share the receiver's host)."""
    from testbed.net.roles.bench_runner import gloo_rendezvous
    from testbed.net.roles.common import default_addresses
    bench = resolve_bench("pluto_4node")
    addrs = default_addresses(bench)
    host, port = gloo_rendezvous(bench, addrs)
    assert host == bench.nodes[0].host != "127.0.0.1"
    used = {int(a.rsplit(":", 1)[1]) for a in (addrs.router, addrs.pub, addrs.broker,
                                               addrs.estimates, addrs.tap)}
    assert port not in used and len(used) == 5
