"""The right culprit, fast: kill -9 or freeze (SIGSTOP) one role process of a running AirComp
job and the run must stop within 5 s naming that role, with the completed steps saved and no
process left behind; a role that dies while the bench starts stops `up_and_run` at once,
quoting its log. One trial per (role, signal) here; `benchmarks/bench_fault_blame.py` repeats
them (20 trials per case) and prints the detection times.

A 2-node, 2-antenna simulated bench (fewer processes than sim_4node): channel broker,
receiver, node0, node1, each a real `testbed` process."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from testbed.llm.default_model import ensure_default_model
from testbed.net.roles.bench_runner import JobSpec, up_and_run
from testbed.net.roles.common import resolve_bench

pytestmark = pytest.mark.slow

PROMPT = [72, 101, 108, 108, 111]
RADIOS = Path(__file__).resolve().parents[2] / "firmware_configs" / "radios"
BENCH_2NODE = f"""
name: sim_2node_faults
description: 2 simulated nodes, 2-antenna receiver (fault tests)
controller: {{host: 127.0.0.1, router_port: 5555, pub_port: 5556, heartbeat_s: 0.5,
              dead_after_s: 3.0}}
assignment: given
nodes:
  - {{id: node0, host: 127.0.0.1, radio: {RADIOS / 'sim.yaml'}, ratio: 0.6}}
  - {{id: node1, host: 127.0.0.1, radio: {RADIOS / 'sim.yaml'}, ratio: 0.4}}
receiver:
  id: receiver
  n_antennas: 2
  radio: {{kind: sim, sample_rate_hz: 1.0e6, center_freq_hz: 915.0e6, n_tx_channels: 1,
           n_rx_channels: 2}}
channel: {{seed: 7, snr_db: 20.0, fading: rayleigh{{impairments}}}}
"""


def bench_file(tmp_path: Path, impairments: str | None = None) -> Path:
    """Write the 2-node bench (optionally with a channel.impairments value) and return it."""
    extra = "" if impairments is None else f", impairments: {impairments}"
    path = tmp_path / "sim_2node_faults.yaml"
    path.write_text(BENCH_2NODE.replace("{impairments}", extra))
    return path


@pytest.fixture(scope="module")
def model_dir():
    return ensure_default_model(progress=False)


def run_with_fault(tmp_path: Path, model_dir, victim: str, sig: int, after_steps: int = 1):
    """up_and_run an AirComp generation on the 2-node bench and send ``sig`` to ``victim``'s
    process once ``after_steps`` tokens are saved. Returns (exit code, results, kill time (unix
    s) or None, every pid the bench had)."""
    spec = bench_file(tmp_path)
    bench = resolve_bench(str(spec))
    fault: dict = {}
    run_dir = tmp_path / "run"

    def hook(sup):
        def killer():
            steps = run_dir / "steps.jsonl"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if steps.exists() and len(steps.read_text().splitlines()) >= after_steps:
                    fault["pids"] = [p.pid for p in sup.procs.values()]
                    fault["t"] = time.time()
                    os.kill(sup.procs[victim].pid, sig)
                    return
                time.sleep(0.01)
        threading.Thread(target=killer, daemon=True).start()

    code = up_and_run(str(spec), bench, str(model_dir), "aircomp-zf-sdr",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=200), run_dir,
                      sup_hook=hook)
    res = json.loads((run_dir / "results.json").read_text())
    return code, res, fault.get("t"), fault.get("pids", [])


def _alive(pids):
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill9", "sigstop"])
@pytest.mark.parametrize("victim, kind", [("node1", "node"), ("receiver", "receiver"),
                                          ("channel", "broker")])
def test_faulty_role_is_named_within_5_s(tmp_path, model_dir, victim, kind, sig):
    code, res, t_fault, pids = run_with_fault(tmp_path, model_dir, victim, sig)
    assert t_fault is not None, "the run ended before the fault could be injected"
    assert code == 1 and res["status"] == "failed", res.get("error")
    assert res["culprit"] == {"kind": kind, "id": victim}, res["error"]
    assert repr(victim) in res["error"]
    assert res["detected_unix"] - t_fault < 5.0              # named (and printed) by then
    assert res["ended_unix"] - res["detected_unix"] < 5.0    # + survivors' counters, saving
    assert 1 <= res["steps_completed"] == len(res["generated_ids"])
    assert _alive(pids) == []


def test_role_dying_at_start_stops_up_within_5_s_quoting_its_log(tmp_path, model_dir, capsys):
    """A typo in channel.impairments: the bench file loads (the controller does not use the
    key) but the channel process dies building its air; up_and_run must not wait for the
    registration timeout (120 s) but stop at once and quote the channel's log."""
    spec = bench_file(tmp_path, impairments="uncalibrated-plutoo")
    bench = resolve_bench(str(spec))
    seen: dict = {}

    def hook(sup):
        seen["pids"] = [p.pid for p in sup.procs.values()]
        seen["sup"] = sup

    t0 = time.monotonic()
    code = up_and_run(str(spec), bench, str(model_dir), "exact",
                      JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=2),
                      tmp_path / "run", sup_hook=hook, register_timeout_s=120.0)
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 1
    assert "channel" in err and "uncalibrated-plutoo" in err     # the log's own error, quoted
    died = (tmp_path / "run" / "logs" / "channel.log").stat().st_mtime
    assert time.time() - died < 5.0 + 3.0                          # + teardown grace
    assert elapsed < 60.0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["status"] == "failed" and "channel" in res["error"]
    assert _alive(seen["pids"]) == []


def test_ctrl_c_is_recorded_as_interrupted_with_what_was_saved(tmp_path, model_dir):
    """A user's Ctrl-C (SIGINT to `testbed run --up`) tears the bench down and leaves
    results.json with status "interrupted" and the steps done so far; exit status 130."""
    import subprocess
    import sys
    spec = bench_file(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "run", "--bench", str(spec), "--up",
         "--method", "exact", "--prompt-ids", ",".join(map(str, PROMPT)),
         "--max-new-tokens", "400", "--out", str(out), "--model", str(model_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        steps = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out.glob("*/steps.jsonl"))
            if found and len(found[0].read_text().splitlines()) >= 2:
                steps = found[0]
                break
            time.sleep(0.05)
        assert steps is not None, "the run never got going"
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, text
    res = json.loads((steps.parent / "results.json").read_text())
    assert res["status"] == "interrupted", res
    assert "Ctrl-C" in res["error"] and res["steps_completed"] >= 2
    assert len(steps.read_text().splitlines()) == res["steps_completed"]
    assert "interrupted: saved" in text
    assert _alive(children) == []
