"""`testbed up` + run over the 4-node simulated bench vs the in-process simulation, and a node
killed mid-run. Each test starts 6 processes (broker, receiver, 4 nodes): slow."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bench_reference import greedy_logits
from testbed.llm.default_model import ensure_default_model
from testbed.llm.sharding import shard_checkpoint
from testbed.net.roles.bench_runner import JobSpec, up_and_run
from testbed.net.roles.common import bench_ratios, resolve_bench

PROMPT = [72, 101, 108, 108, 111]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir():
    return ensure_default_model(progress=False)


@pytest.fixture(scope="module")
def bench():
    return resolve_bench("sim_4node")


def _ratios(bench):
    r = bench_ratios(bench)
    return [r[n.id] for n in bench.nodes]


def test_exact_over_processes_equals_inprocess(bench, model_dir, tmp_path):
    code = up_and_run("sim_4node", bench, str(model_dir), "exact",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=4, save_logits=True),
                      tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok"
    ref = greedy_logits(shard_checkpoint(model_dir, _ratios(bench)), PROMPT, 4)
    got = np.load(tmp_path / "logits.npy")
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert res["generated_ids"] == [int(np.argmax(l[0])) for l in ref]
    assert set(res["process_rss_bytes"]) == {"channel", "receiver", "node0", "node1", "node2",
                                             "node3"}
    assert all(v > 10e6 for v in res["process_rss_bytes"].values())
    # each node holds only its share: bytes proportional to the ratios (up to rounding)
    held = [res["assignment"][f"node{i}"]["shard_param_bytes"] for i in range(4)]
    assert held[0] > held[1] > held[2] > held[3] > 0
    assert len(res["per_token_latency_s"]) == 4 and res["allreduce"]["rounds"] == 4 * 8


def test_aircomp_bench_carries_no_partial_sums_on_the_network(bench, model_dir, tmp_path):
    """The issue's command: `run --up --method aircomp-mmse --csi estimated` over one held-out
    window, with the measurement tap. No message except the receiver's broadcast and the tap
    carries a tensor the size of a partial; during the job the controller receives a small
    fraction of the partials' bytes; no simulator truth is used; the tap's measured error
    follows the signal-model formula of the designs (DESIGN.md section 3)."""
    from testbed.cli import main
    from testbed.llm.textdata import heldout_tokens
    code = main(["run", "--bench", "sim_4node", "--up", "--method", "aircomp-mmse",
                 "--csi", "estimated", "--eval-text", "heldout", "--eval-windows", "1",
                 "--measure-error", "--run-dir", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok", res.get("error")
    window = 64
    partial_bytes = window * 128 * 4           # (1, 64, hidden 128) float32
    big = [r for r in res["traffic"] if r["max_bytes"] >= partial_bytes // 4]
    assert {r["type"] for r in big} <= {"estimate", "tap_partial"}, big
    assert {r["type"] for r in big} == {"estimate", "tap_partial"}
    job_rounds = res["allreduce"]["rounds"]
    assert job_rounds == 2 * 4                 # 4 layers x 2 sites
    got = sum(r["bytes"] for r in res["controller_traffic_job"] if r["direction"] == "in")
    partials = job_rounds * 4 * partial_bytes
    assert got < 0.05 * partials, (got, partials)
    assert res["allreduce"]["simulator_truth_used"] == []
    tap = res["measurement_tap"]
    assert tap["rounds_measured"] == job_rounds and "tap" in tap["source"]
    ratio = tap["mse_tensor_mean"] / res["allreduce"]["mse_tensor_predicted_mean"]
    assert 0.3 < ratio < 3.0, ratio
    assert res["ppl"] < 1.5 * 6.5            # a working model, not noise (uniform: 256)
    assert res["registered"]["receiver"]["radio_serial"] == "sim-rx"
    assert res["radios"]["node0"]["counters"]["late"] == 0


def test_killed_node_is_named_partial_results_saved_no_orphans(bench, model_dir, tmp_path):
    killed: dict = {}

    def hook(sup):
        def killer():
            steps = tmp_path / "steps.jsonl"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if steps.exists() and len(steps.read_text().splitlines()) >= 2:
                    killed["pids"] = [p.pid for p in sup.procs.values()]
                    killed["t"] = time.time()
                    os.kill(sup.procs["node2"].pid, signal.SIGKILL)
                    return
                time.sleep(0.02)
        threading.Thread(target=killer, daemon=True).start()

    code = up_and_run("sim_4node", bench, str(model_dir), "exact",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=400), tmp_path,
                      sup_hook=hook)
    res = json.loads((tmp_path / "results.json").read_text())
    assert "t" in killed, "the run ended before the node could be killed"
    assert code == 1 and res["status"] == "failed"
    assert "node2" in res["error"]
    assert res["ended_unix"] - killed["t"] < 5.0
    assert 2 <= res["steps_completed"] < 400
    assert len(res["generated_ids"]) == res["steps_completed"]
    lines = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert len(lines) == res["steps_completed"]
    # the survivors' stream counters are saved; the lost node is named as unreported
    assert set(res["radios"]) == {"receiver", "node0", "node1", "node3"}
    assert all(set(r["counters"]) >= {"underflows", "overflows", "late", "stream_breaks"}
               for r in res["radios"].values())
    assert res["radios_unreported"] == ["node2"]
    from testbed.commands.run import stream_health_lines
    assert stream_health_lines(res)[-1].startswith("stream health: no counters from node2")
    alive = [p for p in killed["pids"] if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def _watch_listeners(sup, stop: threading.Event, seen: list) -> None:
    """Until ``stop``: every 0.1 s, record the (ip, port) of every listening socket of the
    supervisor's children and of this process."""
    while not stop.is_set():
        pids = [os.getpid()] + [p.pid for p in sup.procs.values()]
        for pid in pids:
            try:
                seen.extend((c.laddr.ip, c.laddr.port)
                            for c in psutil.Process(pid).net_connections(kind="inet")
                            if c.status == psutil.CONN_LISTEN)
            except psutil.Error:
                pass
        stop.wait(0.1)


def test_digital_over_processes_is_the_8bit_quantized_sum(bench, model_dir, tmp_path):
    """"digital" means the same everywhere: 8-bit quantized partials summed (gloo between the
    node processes on the bench), so the logits equal the in-process split model with the
    in-process `DigitalAllReduce` (fp32 summation order aside) and differ from exact.
    No process of the bench listens on 0.0.0.0 or [::] meanwhile (issue 16: torch's TCPStore
    did)."""
    from testbed.phy.allreduce_digital import DigitalAllReduce
    stop, seen = threading.Event(), []

    def hook(sup):
        threading.Thread(target=_watch_listeners, args=(sup, stop, seen), daemon=True).start()

    try:
        code = up_and_run("sim_4node", bench, str(model_dir), "digital",
                          JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=3,
                                  save_logits=True), tmp_path, sup_hook=hook)
    finally:
        stop.set()
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok"
    assert len(set(seen)) >= 4  # controller, broker ... and the gloo store were seen
    assert not [a for a in set(seen) if a[0] in ("0.0.0.0", "::")], sorted(set(seen))
    got = np.load(tmp_path / "logits.npy")
    ref = greedy_logits(shard_checkpoint(model_dir, _ratios(bench), DigitalAllReduce(8)),
                        PROMPT, 3)
    exact = greedy_logits(shard_checkpoint(model_dir, _ratios(bench)), PROMPT, 3)
    # the 8-bit sum over gloo is the in-process 8-bit sum: far closer to it than to exact (fp32
    # summation order may flip a rare quantization level: ~1e-3 against ~4e-2 for 8 bits)
    assert np.max(np.abs(got - exact)) > 1e-2      # quantization is visible
    for stat in (np.max, np.mean):
        assert stat(np.abs(got - ref)) < 0.25 * stat(np.abs(got - exact))
    air = res["allreduce"]["modelled_airtime"]     # the OFDMA airtime beside the wall time
    assert air["per_token_decode_s"] == pytest.approx(2 * 4 * air["per_allreduce_decode_s"])


def test_one_sounding_per_csi_interval_on_a_static_bench(bench, model_dir, tmp_path):
    """`--csi-interval-ms` on a bench whose channel stays put (channel.realization: fixed): the
    rounds of a whole held-out window share one sounding and design (the grid of 1 s of the
    receiver clock), and the measured error is still the predicted one. On a bench that draws
    a new channel every round the option is refused before anything starts."""
    import yaml

    from testbed.cli import main
    from testbed.config.loader import find_config
    shipped = Path(find_config("sim_4node", "benches"))
    spec = yaml.safe_load(shipped.read_text())
    spec["channel"]["realization"] = "fixed"
    spec["name"] = "sim_4node_fixed"
    (tmp_path / "benches").mkdir()
    (tmp_path / "radios").symlink_to(shipped.parent.parent / "radios")   # relative radio files
    path = tmp_path / "benches" / "sim_4node_fixed.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_dir = tmp_path / "run"
    code = main(["run", "--bench", str(path), "--up", "--method", "aircomp-zf-sdr",
                 "--csi", "estimated", "--csi-interval-ms", "1000", "--eval-text", "heldout",
                 "--eval-windows", "1", "--measure-error", "--run-dir", str(run_dir)])
    res = json.loads((run_dir / "results.json").read_text())
    assert code == 0 and res["status"] == "ok", res.get("error")
    air = res["allreduce"]
    assert air["rounds"] == 8 and air["soundings"] <= 1, air
    assert res["csi_interval_samples"] == 1_000_000
    tap = res["measurement_tap"]
    ratio = tap["mse_tensor_mean"] / air["mse_tensor_predicted_mean"]
    assert 0.3 < ratio < 3.0, ratio
    assert main(["run", "--bench", "sim_4node", "--up", "--method", "aircomp-zf-sdr",
                 "--csi-interval-ms", "5", "--eval-text", "heldout",
                 "--run-dir", str(tmp_path / "refused")]) == 1
    assert not (tmp_path / "refused").exists()
