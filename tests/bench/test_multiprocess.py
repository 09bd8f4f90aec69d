"""`testbed up` + run over the 4-node simulated bench vs the in-process simulation, and a node
killed mid-run. Each test starts 6 processes (broker, receiver, 4 nodes): slow."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest
import torch

from sim_backend.channel import ChannelModel
from sim_backend.sim_allreduce import build_sim_allreduce
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


def _reference_logits(sharded, n_tokens):
    """Per-step last-position logits of greedy decoding in-process (as ShardedModel.generate)."""
    sharded.reset_cache()
    tokens, out = torch.tensor([PROMPT]), []
    for _ in range(n_tokens):
        logits = sharded.forward(tokens, use_cache=True)[:, -1]
        out.append(logits.numpy())
        tokens = logits.argmax(-1, keepdim=True)
    return np.stack(out)


def test_exact_over_processes_equals_inprocess(bench, model_dir, tmp_path):
    code = up_and_run("sim_4node", bench, str(model_dir), "exact",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=4, save_logits=True),
                      tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok"
    ref = _reference_logits(shard_checkpoint(model_dir, _ratios(bench)), 4)
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


def test_aircomp_over_broker_reproduces_inprocess_mse(bench, model_dir, tmp_path):
    code = up_and_run("sim_4node", bench, str(model_dir), "aircomp-zf-sdr",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=2, save_logits=True),
                      tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok", res.get("error")
    ch = bench.channel
    model = ChannelModel(4, 4, 1, fading=ch.fading, path_loss_db=np.array(
        [ch.path_loss_db[f"node{i}"] for i in range(4)]))
    ar, _ = build_sim_allreduce("aircomp", n_nodes=4, n_rx=4, snr_db=ch.snr_db, seed=ch.seed,
                                channel_model=model, design_method="zf-sdr")
    sharded = shard_checkpoint(model_dir, _ratios(bench), ar)
    ref = _reference_logits(sharded, 2)
    stats = ar.stats()
    ref_mse = np.mean([s["mse_tensor"] for s in stats.values()])  # 2 rounds per (layer, site)
    got_mse = res["allreduce"]["mse_tensor_mean"]
    # same seed -> same channels, noise and designs: the same measured MSE and logits
    assert got_mse == pytest.approx(ref_mse, rel=1e-6)
    assert got_mse > 0
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), ref, atol=1e-5, rtol=0)


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
    alive = [p for p in killed["pids"] if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_digital_gloo_over_processes_equals_inprocess_exact(bench, model_dir, tmp_path):
    """The digital baseline on the bench: gloo all-reduce between the node processes gives the
    exact sum, so the logits equal the in-process split model's (fp32 summation order aside)."""
    code = up_and_run("sim_4node", bench, str(model_dir), "digital",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=3, save_logits=True),
                      tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok"
    ref = _reference_logits(shard_checkpoint(model_dir, _ratios(bench)), 3)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), ref, atol=1e-4, rtol=0)


def test_aircomp_with_channels_estimated_over_the_air(bench, model_dir, tmp_path):
    """--csi estimated: each realization starts with a pilot sounding frame sent by the node
    processes through the broker; the receiver's LS estimates drive the design. The measured
    MSE must follow the signal-model prediction made from those estimates (estimation error at
    20 dB with 32-sample pilots is ~1/3000 of a unit channel), and every frame is found on time."""
    code = up_and_run("sim_4node", bench, str(model_dir), "aircomp-zf-sdr",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=2), tmp_path,
                      csi="estimated")
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok" and res["csi"] == "estimated"
    air = res["allreduce"]
    assert air["rounds"] == 2 * 8
    ratio = air["mse_tensor_mean"] / air["mse_tensor_predicted_mean"]
    assert 0.7 < ratio < 1.5, ratio
