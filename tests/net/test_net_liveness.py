"""Liveness with real processes: a controller (this process) and 3 echo agents (children).
A killed (SIGKILL) or frozen (SIGSTOP) agent is named within 5 s, the run stops cleanly with
its partial results saved, survivors exit on SHUTDOWN, and no process is left behind."""
import itertools
import signal
import time

import numpy as np
import psutil
import pytest

from testbed.net.controller import Controller, ControllerConfig
from testbed.net.errors import PeerLostError
from testbed.net.results import JsonlRecorder
from testbed.net.schema import Partial
from testbed.net.supervisor import Supervisor

NODES = ["n0", "n1", "n2"]
FAULT_AT_ROUND = 4


def _job(ctl):
    """All-reduce-like rounds until something breaks: each node echoes its partial."""
    for r in itertools.count():
        msgs = {n: Partial(layer=0, site="attn", round_id=r,
                           tensor=np.full(16, i + r, np.float32)) for i, n in enumerate(NODES)}
        replies = ctl.gather(msgs, timeout_s=20)
        total = sum(rep.tensor for rep in replies.values())
        yield {"round": r, "sum0": float(total[0])}
        ctl.pump(0.02)


def _no_leftovers(pids):
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
    kids = psutil.Process().children(recursive=True)
    assert not [k for k in kids if k.pid in pids], kids


@pytest.mark.slow
@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_lost_agent_is_named_within_5s_and_run_stops_cleanly(tmp_path, fault):
    cfg = ControllerConfig({n: "node" for n in NODES}, "fp", heartbeat_interval_s=0.5,
                           peer_timeout_s=2.5)
    sup = Supervisor(tmp_path, grace_s=2.0, install_signal_handlers=False)
    recorder = JsonlRecorder(tmp_path / "partial.jsonl")
    victim = "n1"
    fault_time = {}
    try:
        with Controller(cfg) as ctl:
            for n in NODES:
                sup.start_python(n, "testbed.net.echo", [
                    "--node-id", n, "--router", ctl.router_address, "--pub", ctl.pub_address,
                    "--fingerprint", "fp"])
            ctl.wait_for_peers(timeout_s=90)
            pids = [p.pid for p in sup.procs.values()]

            def on_partial(item):
                recorder(item)
                if item["round"] == FAULT_AT_ROUND:
                    sup.signal(victim, fault)
                    fault_time["t"] = time.monotonic()

            with pytest.raises(PeerLostError) as info:
                ctl.run(_job, on_partial=on_partial)
            detect_s = time.monotonic() - fault_time["t"]
            # survivors got SHUTDOWN and exit by themselves, with success
            for n in NODES:
                if n != victim:
                    assert sup.wait(n, 10) == 0, (n, (tmp_path / "logs" / f"{n}.log")
                                                  .read_text())
        print(f"{signal.Signals(fault).name}: named after {detect_s:.2f} s")
        assert info.value.node_id == victim and detect_s <= 5.0
        assert victim in str(info.value) and "restart" in str(info.value)
        saved = recorder.read()
        assert [s["round"] for s in saved] == list(range(FAULT_AT_ROUND + 1))
        assert all(s["sum0"] == sum(i + s["round"] for i in range(3)) for s in saved)
        assert "registered" in (tmp_path / "logs" / "n0.log").read_text()
    finally:
        codes = sup.stop_all()
        sup.close()
    assert codes[victim] == -fault if fault == signal.SIGKILL else codes[victim] is not None
    _no_leftovers(pids)


@pytest.mark.slow
def test_agents_exit_when_the_controller_disappears(tmp_path):
    cfg = ControllerConfig({"n0": "node"}, "fp")
    with Supervisor(tmp_path, grace_s=1.0, install_signal_handlers=False) as sup:
        ctl = Controller(cfg)
        sup.start_python("n0", "testbed.net.echo", [
            "--node-id", "n0", "--router", ctl.router_address, "--pub", ctl.pub_address,
            "--fingerprint", "fp", "--controller-timeout", "1.5"])
        ctl.wait_for_peers(timeout_s=90)
        ctl.close()  # vanishes without SHUTDOWN
        t0 = time.monotonic()
        assert sup.wait("n0", 10) == 1
        assert time.monotonic() - t0 < 5
        assert "no heartbeat from the controller" in (tmp_path / "logs" / "n0.log").read_text()
        pid = sup.procs["n0"].pid
    _no_leftovers([pid])
