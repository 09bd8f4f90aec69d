"""The emulated bench files are their hardware twins except for addresses (every role its own
radio in both), and `testbed emulate --bench usrp_2node_emulated` serves the bench's USRPs:
the roles' UsrpRadio drivers reach them over TCP, latch the shared PPS and a node's burst
lands at the receiver where its time_spec puts it."""
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from calibration.pps import pps_latch_time
from sim_backend.emulated_bench import bench_radios, emulated_address, is_emulated
from testbed.config.loader import find_config, load_bench
from testbed.radio.usrp import UsrpRadio

PAIRS = [("usrp_2node", "usrp_2node_emulated"), ("pluto_4node", "pluto_4node_emulated")]
ADDRESS_KEYS = {"args", "uri", "host", "description", "name", "external_reference"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_on_free_ports(name, tmp_path):
    """The shipped bench ``name`` with every 127.0.0.1 port replaced by a free one."""
    text = Path(find_config(name, "benches")).read_text()
    for old in sorted(set(re.findall(r"127\.0\.0\.1:(\d{5})", text))):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{_free_port()}")
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p, load_bench(p)


def _radio_view(radio):
    d = radio.model_dump()
    return {k: v for k, v in d.items() if k not in ADDRESS_KEYS}


@pytest.mark.parametrize("hw,emu", PAIRS)
def test_emulated_twin_differs_only_in_addresses(hw, emu):
    h, e = (load_bench(find_config(n, "benches")) for n in (hw, emu))
    assert not is_emulated(h) and is_emulated(e)
    hr, er = bench_radios(h), bench_radios(e)
    assert [w for w, _ in hr] == [w for w, _ in er]
    for (who, a), (_, b) in zip(hr, er):
        assert _radio_view(a) == _radio_view(b), who
    assert [n.id for n in h.nodes] == [n.id for n in e.nodes]
    assert h.allreduce == e.allreduce and h.assignment == e.assignment
    for bench in (h, e):      # every role its own radio (a Pluto's URI is per host)
        hosts = {n.id: n.host for n in bench.nodes}
        addrs = [(hosts.get(who, bench.receiver.host), getattr(r, "args", None) or r.uri)
                 for who, r in bench_radios(bench)]
        assert len(set(addrs)) == len(addrs), bench.name


def test_emulate_command_serves_the_usrp_bench(tmp_path):
    path, bench = bench_on_free_ports("usrp_2node_emulated", tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "emulate", "--bench",
                             str(path), "--duration", "60"], stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "emulate: ready" in line:
                break
        out = "".join(lines)
        for who, radio in bench_radios(bench):
            host, port = emulated_address(radio, who)
            assert f"emulate: {who} type=emulated,addr={host}:{port} serial" in out
        node_cfg = bench.nodes[0].radio.model_copy(update={"n_rx_channels": 0})
        rx = UsrpRadio(bench.receiver.radio, node_id="receiver").open()
        node = UsrpRadio(node_cfg, node_id=bench.nodes[0].id).open()
        # pps_align: agreed -- both zero their time on one PPS edge (calibration.pps)
        edges = {"rx": rx.observe_pps_edge(), "node": node.observe_pps_edge()}
        t = pps_latch_time(edges, rx.pps_period_s, time.time() + 0.2)
        latch = threading.Thread(target=rx.latch_time_at_pps_after, args=(t,))
        latch.start()
        node.latch_time_at_pps_after(t)
        latch.join()
        ref = (0.5 * np.exp(2j * np.pi * np.random.default_rng(1).random(256))).astype(
            np.complex64)
        start = max(node.now(), rx.now()) + 300_000
        node.transmit(ref, start)
        y = rx.receive(2000, start - 100)[0]
        c = np.abs(np.correlate(y, ref, "valid"))
        assert int(np.argmax(c)) == 100
        assert c.max() > 20 * np.median(c)
        assert node.counters().total() == 0 and rx.counters().total() == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_emulated_bench_is_not_a_simulated_one():
    from testbed.net.controller import ControllerConfig
    sim = load_bench(find_config("sim_4node", "benches"))
    assert sim.simulated
    for name in ("pluto_4node_emulated", "usrp_2node_emulated", "pluto_4node"):
        bench = load_bench(find_config(name, "benches"))
        assert not bench.simulated
        assert "channel" not in ControllerConfig.from_bench(bench, "x").expected_peers
    assert "channel" in ControllerConfig.from_bench(sim, "x").expected_peers


def test_testbed_up_starts_the_emulated_radios_first(tmp_path):
    from testbed.net.roles.emulated_radios import RADIOS_ID, start_emulated_radios
    from testbed.net.supervisor import Supervisor
    path, bench = bench_on_free_ports("usrp_2node_emulated", tmp_path)
    with Supervisor(tmp_path / "run", install_signal_handlers=False) as sup:
        assert start_emulated_radios(sup, str(path), bench) == [RADIOS_ID]
        for who, radio in bench_radios(bench):       # every radio answers like a USRP
            from sim_backend.usrp_emu.uhd_api import MultiUSRP
            assert MultiUSRP(radio.args).get_usrp_rx_info()["mboard_name"] == who
    assert sup.procs[RADIOS_ID].returncode() is not None      # torn down with the bench
    hw = load_bench(find_config("usrp_2node", "benches"))
    with Supervisor(tmp_path / "run2", install_signal_handlers=False) as sup:
        assert start_emulated_radios(sup, "usrp_2node", hw) == []
