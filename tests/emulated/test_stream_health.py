"""Stream health in results: a radio's counters as the roles report them (`radio_stats`) and
the run summary's lines, on an emulated Pluto whose host stalls (the emulator's fault
injection makes the overflow/underflow, the driver counts them from the hardware register)."""
import time

import pytest

from testbed.commands.run import stream_health_lines
from testbed.config.radio import PlutoConfig
from testbed.net.roles.common import radio_stats
from testbed.radio.pluto import PlutoRadio

pytest.importorskip("adi", reason="pyadi-iio not installed")
pytest.importorskip("iio", reason="pylibiio not installed (pip install pylibiio==0.25)")


@pytest.fixture
def bench():
    from conftest import Bench
    b = Bench(time_scale=3.0)
    yield b
    b.close()


def _radio(bench, name, node_id):
    srv = bench.pluto(name, loopback_cable_db=-30.0)
    cfg = PlutoConfig(uri=srv.uri, sample_rate_hz=1e6, center_freq_hz=915e6,
                      rf_bandwidth_hz=1e6, tx_gain_db=-10.0, rx_gain_db=30.0,
                      rx_buffer_size=8192, tx_buffer_size=8192, kernel_buffers=4)
    return srv, PlutoRadio(cfg, node_id=node_id, background=True).open()


def test_stalled_radio_shows_in_results_and_summary(bench):
    srv_a, a = _radio(bench, "a", "node0")
    srv_b, b = _radio(bench, "b", "node1")
    try:
        for r in (a, b):
            r.run_until(r.now() + 50_000)
        clean = {"radios": {"node0": radio_stats(a), "node1": radio_stats(b)}}
        assert clean["radios"]["node0"]["counters"]["stream_breaks"] == 0
        assert stream_health_lines(clean) == [
            "stream health: 2 radios clean (no underflows, overflows, late, stream breaks)"]
        srv_a.faults.stall(0.5)                   # node0's host stalls 0.5 s wall
        time.sleep(0.6)
        for r in (a, b):
            r.run_until(r.now() + 50_000)
        res = {"radios": {"node0": radio_stats(a, resyncs=1), "node1": radio_stats(b)},
               "radios_unreported": ["receiver"]}
        c = res["radios"]["node0"]["counters"]
        assert c["overflows"] >= 1 and c["underflows"] >= 1 and c["resyncs"] == 1
        assert c["stream_breaks"] >= c["overflows"] + c["underflows"]
        assert res["radios"]["node1"]["counters"]["stream_breaks"] == 0
        lines = stream_health_lines(res)
        assert lines[0].startswith("stream health: 1 of 2 radios had errors")
        assert lines[1].startswith(f"  node0 (pluto {srv_a.device.ctx.serial}): underflows ")
        assert lines[1].endswith("re-syncs 1")
        assert "node1" not in "".join(lines[1:-1])
        assert lines[-1].startswith("stream health: no counters from receiver")
    finally:
        a.close()
        b.close()
