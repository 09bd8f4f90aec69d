"""Our PlutoRadio driver on the real pyadi-iio/libiio stack against an emulated Pluto with a
TX->RX cable: bursts land where scheduled (a fixed TX->RX latency, exact in samples), a host
stall shorter than libiio's timeout is counted as overflow/underflow from register 0x80000088,
and a stalled-for-good or unplugged radio gives a StreamError naming the node; the stall shows
in the stream health a run reports."""
import time

import numpy as np
import pytest

from testbed.config.radio import PlutoConfig
from testbed.errors import StreamError
from testbed.radio.pluto import PlutoRadio

from emulated_support import realtime_retry  # noqa: E402
from syslibs import require_module  # noqa: E402 (after the module's imports)
require_module("iio")
require_module("adi")


@pytest.fixture
def bench():
    """A slowed-down air (time scale 3): the machine is shared, the radio is real-time."""
    from emulated_support import Bench
    b = Bench(time_scale=3.0)
    yield b
    b.close()


def _radio(bench, name="drv", node_id="n7", **kw):
    srv = bench.pluto(name, loopback_cable_db=-30.0, **kw)
    cfg = PlutoConfig(uri=srv.uri, sample_rate_hz=1e6, center_freq_hz=915e6,
                      rf_bandwidth_hz=1e6, tx_gain_db=-10.0, rx_gain_db=30.0,
                      rx_buffer_size=8192, tx_buffer_size=8192, kernel_buffers=4)
    return srv, PlutoRadio(cfg, node_id=node_id, background=True).open()


def _peak(y, ref):
    c = np.abs(np.correlate(y, ref, "valid"))
    return int(np.argmax(c)), float(c.max() / (np.linalg.norm(ref) ** 2))


@realtime_retry()
def test_bursts_land_where_scheduled(bench):
    srv, radio = _radio(bench, name=f"drv{len(bench.servers)}")
    try:
        rng = np.random.default_rng(2)
        ref = 0.5 * np.exp(2j * np.pi * rng.random(256))
        start = radio.now() + 20_000
        radio.transmit(ref, start)
        radio.transmit(ref, start + 12_345)
        y = radio.receive(60_000, start - 5_000)[0]
        # the TX->RX latency is fixed while the streams run but differs between opens (1.8k-2.8k
        # samples here): the first burst lands at ~6.8k-7.8k, the second 12345 later. Cut the
        # window between them, so that each search sees one burst (a cut at 20k let the first
        # search find the second burst whenever the latency was below ~2.4k)
        i1, g1 = _peak(y[:13_000], ref)
        i2, g2 = _peak(y[13_000:], ref)
        # a stream break (the machine starved the test) moves the bursts; the radio must say so
        counters = radio.counters()
        assert counters.total() == 0, f"stream break while the bursts were in flight: {counters}"
        assert i2 + 13_000 - i1 == 12_345, (     # same clock for TX and RX: exact spacing
            f"bursts at {i1} and {i2 + 13_000} (peaks {g1:.3f}, {g2:.3f}) with no stream "
            f"break reported: {counters}")
        assert g1 > 0.01 and g2 > 0.01
        assert radio.identity().serial == srv.device.ctx.serial
    finally:
        radio.close()


def test_short_stall_counts_overflow_and_underflow(bench):
    srv, radio = _radio(bench)
    try:
        radio.run_until(radio.now() + 50_000)
        srv.faults.stall(0.5)                      # 0.5 s wall = 55k samples at k = 3
        time.sleep(0.6)
        radio.run_until(radio.now() + 50_000)
        c = radio.counters()
        assert c.overflows >= 1 and c.underflows >= 1
    finally:
        radio.close()


@pytest.mark.parametrize("fault", ["unplug", "stall"])
def test_dead_radio_gives_an_error_naming_the_node(bench, fault):
    srv, radio = _radio(bench)
    try:
        if fault == "unplug":
            srv.faults.unplug()
        else:
            srv.faults.stall(30.0)                 # longer than libiio's 5 s timeout
        with pytest.raises(StreamError, match="n7"):
            radio.run_until(radio.now() + 2_000_000)
    finally:
        srv.faults.replug()
        srv.faults.stall(0)
        radio.close()


def test_stalled_radio_shows_in_results_and_summary(bench):
    """Stream health as results.json and `testbed run` report it (`radio_stats`,
    `stream_health_lines`): the stall adds to the stalled radio's overflows, underflows and
    stream breaks, and the summary names that radio with its counts. (The other radio is named
    only if the loaded machine made it glitch too.)"""
    from testbed.commands.run import stream_health_lines
    from testbed.net.roles.common import radio_stats
    srv_a, a = _radio(bench, "a", "node0")
    srv_b, b = _radio(bench, "b", "node1")
    try:
        for r in (a, b):
            r.run_until(r.now() + 50_000)
        before = radio_stats(a)["counters"]
        srv_a.faults.stall(0.5)                   # node0's host stalls 0.5 s wall
        time.sleep(0.6)
        for r in (a, b):
            r.run_until(r.now() + 50_000)
        res = {"radios": {"node0": radio_stats(a, resyncs=1), "node1": radio_stats(b)},
               "radios_unreported": ["receiver"]}
        c = res["radios"]["node0"]["counters"]
        assert c["overflows"] > before["overflows"] and c["underflows"] > before["underflows"]
        assert c["stream_breaks"] >= c["overflows"] + c["underflows"] > 0
        assert c["resyncs"] == 1
        lines = stream_health_lines(res)
        b_bad = any(res["radios"]["node1"]["counters"][k]
                    for k in ("underflows", "overflows", "late", "stream_breaks"))
        assert lines[0].startswith(f"stream health: {1 + b_bad} of 2 radios had errors")
        assert lines[1] == (f"  node0 (pluto {srv_a.device.ctx.serial}): underflows "
                            f"{c['underflows']}, overflows {c['overflows']}, "
                            + (f"late {c['late']}, " if c["late"] else "")
                            + f"stream breaks {c['stream_breaks']}, re-syncs 1")
        assert ("node1" in "".join(lines)) == b_bad
        assert lines[-1].startswith("stream health: no counters from receiver")
    finally:
        a.close()
        b.close()


@realtime_retry()
def test_tx_lo_offset_moves_the_transmitted_carrier_only(bench):
    """`set_tx_lo_offset` re-tunes the TX synthesizer through pyadi-iio/iiod: the offset the
    RF PLL gives is read back (a few Hz of fractional-N step), a DC burst comes back through the
    cable as a tone at exactly that offset (TX and RX share the TCXO), the RX LO stays, and a
    `configure` puts the TX LO back on the centre."""
    from emulated_support import tone_freq_hz
    srv, radio = _radio(bench, name=f"lo{len(bench.servers)}", ppm=17.0)
    try:
        assert radio.tx_lo_offset_hz == 0.0
        centre = radio.settings.center_freq_hz                # as the RF PLL gives 915 MHz
        got = radio.set_tx_lo_offset(-27_289.44)
        assert abs(got + 27_289.44) < 5.0 and got == radio.tx_lo_offset_hz
        assert radio.settings.center_freq_hz == centre           # the RX LO did not move
        start = radio.now() + 20_000
        radio.transmit(np.full(16_384, 0.5, complex), start)
        y = radio.receive(24_000, start)[0]
        fs = radio.settings.sample_rate_hz                    # as the BBPLL gives 1 MS/s
        # 0.1 Hz: the 12-bit ADC's quantization spurs of a ~100-code tone bias the slope by
        # ~0.06 Hz (the air's own tone is exact to 1e-7 Hz)
        assert tone_freq_hz(y[4_000:16_000], fs) == pytest.approx(got, abs=0.1)
        radio.configure(radio.settings)
        assert radio.tx_lo_offset_hz == 0.0
    finally:
        radio.close()
