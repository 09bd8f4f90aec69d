"""The node and receiver roles on the Pluto and USRP drivers (over their fakes, whose TX loops
back to RX): an ``exact`` and an AirComp round through the role code, with no simulator in the
process -- channel, noise and clock come from the radio. One node and the receiver share one
radio, as on a first bench with a TX->RX cable."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import yaml

from fakes.fake_adi import FakePluto
from fakes.fake_uhd import FakeDevice, make_fake_uhd
from net.conftest import agent_thread
from testbed.config.loader import load_bench
from testbed.config.radio import PlutoConfig, UsrpConfig
from testbed.llm.default_model import ensure_default_model
from testbed.llm.sharding import shard_checkpoint
from testbed.net.controller import Controller, ControllerConfig
from testbed.net.roles.common import BenchAddresses, agent_config, model_fingerprint
from testbed.net.roles.controller_job import BenchSession
from testbed.net.roles.node import NodeAgent
from testbed.net.roles.receiver import ReceiverAgent
from testbed.radio.base import RadioSettings
from testbed.radio.pluto import PlutoRadio
from testbed.radio.usrp import UsrpRadio

pytestmark = pytest.mark.slow
IDS = [72, 101, 108, 108, 111, 32, 119, 111]


def _pluto():
    cfg = PlutoConfig(uri="ip:192.168.2.1", sample_rate_hz=1e6, rx_buffer_size=1024,
                      tx_buffer_size=1024, rx_history_samples=1 << 17)
    # background streaming on a fake paced like a real ADC: time runs with the wall clock
    return PlutoRadio(cfg, node_id="pi5-a", device=FakePluto(pace_s_per_sample=1e-6),
                      background=True, timing_checks=False).open()


def _usrp():
    dev = FakeDevice(n_channels=1, paced=True)      # device time runs with the wall clock
    return UsrpRadio(UsrpConfig(args="type=b200", sample_rate_hz=1e6, n_tx_channels=1,
                                n_rx_channels=1), node_id="b210", uhd_module=make_fake_uhd(dev),
                     sleep=dev.advance).open()


def _bench(tmp_path, kind: str, ports):
    radio = ({"kind": "pluto", "uri": "ip:192.168.2.1", "sample_rate_hz": 1e6}
             if kind == "pluto" else {"kind": "usrp", "args": "type=b200", "sample_rate_hz": 1e6})
    doc = {"name": f"one_{kind}", "controller": {"host": "127.0.0.1", "router_port": ports[0],
                                                 "pub_port": ports[1]},
           "assignment": "equal", "nodes": [{"id": "node0", "radio": radio}],
           "receiver": {"id": "receiver", "n_antennas": 1, "radio": radio}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_bench(path)


@pytest.mark.parametrize("kind", ["pluto", "usrp"])
def test_exact_and_aircomp_rounds_through_the_roles_on_driver(kind, tmp_path, monkeypatch):
    from testbed.net.roles.bench_runner import free_ports
    monkeypatch.setitem(sys.modules, "sim_backend", None)       # no simulator in this process
    model_dir = ensure_default_model(progress=False)
    ports = free_ports(3)
    bench = _bench(tmp_path, kind, ports)
    fp = model_fingerprint(model_dir)
    addrs = BenchAddresses(f"tcp://127.0.0.1:{ports[0]}", f"tcp://127.0.0.1:{ports[1]}", "",
                           f"tcp://127.0.0.1:{ports[2]}", "")
    radio = _pluto() if kind == "pluto" else _usrp()
    radio.configure(RadioSettings(sample_rate_hz=1e6, center_freq_hz=915e6,
                                  tx_gain_db=-10.0 if kind == "pluto" else 50.0,
                                  rx_gain_db=30.0, n_tx_channels=1, n_rx_channels=1))
    ref = shard_checkpoint(model_dir, [1.0])(torch.tensor([IDS]))[0, -1].detach().numpy()
    cfg = ControllerConfig.from_bench(bench, fp)
    with Controller(cfg) as ctl:
        node = NodeAgent(agent_config("node0", "node", addrs, fp, bench, radio=radio),
                         model_dir, 0, ["node0"], radio=radio, estimates_address=addrs.estimates)
        rx = ReceiverAgent(agent_config("receiver", "receiver", addrs, fp, bench, radio=radio),
                           radio=radio, estimates_address=addrs.estimates)
        with agent_thread(rx), agent_thread(node):
            ctl.wait_for_peers(timeout_s=30)
            assert ctl.peers["node0"].capabilities.radio_kind == kind
            assert ctl.peers["node0"].capabilities.radio_serial == radio.identity().serial
            exact = BenchSession(ctl, bench, fp, "exact")
            exact.assign()
            got = exact.forward(torch.tensor([IDS]), reset=True, use_cache=False, last_only=True)
            np.testing.assert_allclose(got[0], ref, atol=1e-4)
            # generous slack: the roles share this process (and a loaded CI machine)
            air = BenchSession(ctl, bench, fp, "aircomp-zf-sdr", csi="estimated", slack_s=0.2)
            air.assign()
            scales = air.statistics_pass(torch.tensor(IDS * 8), window=16, n_windows=2,
                                         decode_steps=2)
            assert len(scales) == 8
            got = air.forward(torch.tensor([IDS]), reset=True, use_cache=False, last_only=True)
            summary = air.summary()
            assert summary["rounds"] >= 8 and summary["simulator_truth_used"] == []
            assert summary["detected_offsets"] == [0]
            # one node through a loopback at high SNR: the sum is its own partial, nearly exact
            # (the test model's logits are nearly flat, so compare them, not their argmax)
            centred = ref - ref.mean()
            rel = np.linalg.norm((got[0] - got[0].mean()) - centred) / np.linalg.norm(centred)
            assert rel < 0.1, f"AirComp logits off the exact ones by {rel:.3f} (relative)"
            assert np.max(np.abs(got[0] - ref)) < 0.05 * np.max(np.abs(ref))
    assert radio.counters().late == 0
    radio.close()
