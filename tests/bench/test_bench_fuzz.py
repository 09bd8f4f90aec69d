"""A whole bench under hostile traffic (issue 16): while `testbed up`'s roles run an AirComp
generation, a stranger on the LAN throws thousands of hostile frames at the controller's ROUTER
and at the channel broker. The bench keeps serving and the run is bit-identical (generated ids,
logits hash, measured all-reduce error) to a clean run with the same seed."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq

from testbed.config.loader import find_config
from testbed.llm.default_model import ensure_default_model
from testbed.net.codec import encode
from testbed.net.roles.bench_runner import (JobSpec, loopback_addresses, run_on_bench,
                                            start_bench)
from testbed.net.roles.common import resolve_bench
from testbed.net.schema import PROTOCOL_VERSION, Heartbeat, Partial, Register
from testbed.net.supervisor import Supervisor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "net"))
from hostile import BROKER_CRASHERS, hostile_frames  # noqa: E402

pytestmark = pytest.mark.slow

N_FRAMES = 2000


def _control_templates():
    return [encode(m) for m in (
        Heartbeat(seq=1, timestamp=0.5),
        Register(node_id="node0", role="node", protocol_version=PROTOCOL_VERSION,
                 model_fingerprint="sha256:x"),
        Partial(layer=0, site="attn", round_id=1, tensor=np.ones(4, np.float32)))]


def _broker_templates():
    def h(**kw):
        return json.dumps({"seq": 5, **kw}).encode()
    return [[h(op="tx_until", node=1, until=10**9)], [h(op="receive", n=64, at=100)],
            [h(op="hello", node=0)], [h(op="now")],
            [h(op="transmit", node=2, at=10**6, shape=[1, 4]), b"\0" * 32]]


def _wait_until_claimed(ctx, broker: str, n_radios: int, stop: threading.Event) -> None:
    """Wait until every radio of the bench said hello to the broker (broker ``info``): the
    attack comes from a stranger during the run, not before the roles exist (on a plain broker
    a stranger could claim a radio first -- that is what CURVE is for)."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(broker)
    try:
        while not stop.is_set():
            s.send(json.dumps({"op": "info", "seq": 1}).encode())
            if s.poll(2000) and len(json.loads(s.recv()).get("claimed", [])) >= n_radios:
                return
            stop.wait(0.5)
    finally:
        s.close()


def _attack(addresses, stop: threading.Event, sent: dict) -> None:
    """Once the roles hold their radios, send hostile frames to the ROUTER and the broker in
    batches until ``stop``."""
    ctx = zmq.Context()
    socks = {}
    try:
        _wait_until_claimed(ctx, addresses.broker, 5, stop)
        for name, address in (("router", addresses.router), ("broker", addresses.broker)):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 100000)
            s.connect(address)
            socks[name] = s
        rng = np.random.default_rng(5)
        frames = {"router": list(hostile_frames(rng, _control_templates(), N_FRAMES)),
                  "broker": list(hostile_frames(rng, _broker_templates(), N_FRAMES,
                                                crashers=BROKER_CRASHERS))}
        k = 0
        while not stop.is_set() and k < N_FRAMES:
            for name, s in socks.items():
                for f in frames[name][k:k + 100]:
                    s.send_multipart(f)
                    sent[name] += 1
                while s.poll(0):  # drain the refusals
                    s.recv_multipart()
            k += 100
            stop.wait(0.2)
    finally:
        for s in socks.values():
            s.close()
        ctx.term()


#: The controller's silence limit for this test's bench (sim_4node has 3 s). The suite's last
#: stretch runs this test's six role processes beside another bench's on a 2-core machine, with
#: the attacking thread in the controller's own process: a heartbeat was processed 3.0-3.2 s
#: late in 2 of 3 full runs on a slower machine, and the run stopped as "lost", attack or not
#: the question. This test is about what the run computes under hostile traffic; how fast a
#: silent role is named is test_fault_blame's.
DEAD_AFTER_S = 10.0


def _bench_spec(tmp_path) -> Path:
    """sim_4node with `DEAD_AFTER_S` (its radio paths made absolute for the copy)."""
    src = Path(find_config("sim_4node", "benches"))
    text = src.read_text().replace("dead_after_s: 3.0", f"dead_after_s: {DEAD_AFTER_S}")
    text = text.replace("../radios/", f"{(src.parent.parent / 'radios').as_posix()}/")
    path = tmp_path / "sim_4node_patient.yaml"
    path.write_text(text)
    return path


def _run(tmp_path, name, attack: bool):
    spec = str(_bench_spec(tmp_path))
    bench = resolve_bench(spec)
    assert bench.controller.dead_after_s == DEAD_AFTER_S
    model_dir = ensure_default_model(progress=False)
    addresses = loopback_addresses()
    run_dir = tmp_path / name
    stop, sent = threading.Event(), {"router": 0, "broker": 0}
    with Supervisor(run_dir) as sup:
        start_bench(sup, spec, bench, addresses, str(model_dir))
        thread = threading.Thread(target=_attack, args=(addresses, stop, sent), daemon=True)
        if attack:
            thread.start()
        try:
            code = run_on_bench(bench, addresses, model_dir, "aircomp-zf-sdr",
                                JobSpec("generate", prompt_ids=[72, 101, 108], max_new_tokens=2,
                                        save_logits=True),
                                run_dir, supervisor=sup)
        finally:
            stop.set()
            if attack:
                thread.join(10)
        for n in sup.alive():
            sup.wait(n, 3.0)
    return code, json.loads((run_dir / "results.json").read_text()), sent


def test_bench_under_hostile_frames_runs_the_same_as_a_clean_run(tmp_path):
    """Hostile frames change nothing the run computes: the same tokens, logits and rounds. (Not
    bit for bit: on some CPUs two runs of the same bench differ by ~1e-6 in the logits, from
    the processes' float kernels, attack or not.)"""
    code0, clean, _ = _run(tmp_path, "clean", attack=False)
    code1, attacked, sent = _run(tmp_path, "attacked", attack=True)
    assert code0 == 0 and clean["status"] == "ok", clean.get("error")
    assert code1 == 0 and attacked["status"] == "ok", attacked.get("error")
    assert sent["router"] >= 500 and sent["broker"] >= 500, sent
    assert attacked["generated_ids"] == clean["generated_ids"]
    np.testing.assert_allclose(np.load(tmp_path / "attacked" / "logits.npy"),
                               np.load(tmp_path / "clean" / "logits.npy"), atol=1e-4, rtol=0)
    same = ("rounds", "detected_offsets")
    assert {k: attacked["allreduce"].get(k) for k in same} == \
        {k: clean["allreduce"].get(k) for k in same}
    assert attacked["allreduce"]["mse_tensor_predicted_mean"] == pytest.approx(
        clean["allreduce"]["mse_tensor_predicted_mean"], rel=1e-3)
    assert attacked["allreduce"]["scales"] == pytest.approx(clean["allreduce"]["scales"],
                                                            rel=1e-4)
