"""Our UsrpRadio driver against emulated USRPs on a real-time air, over TCP (the driver imports
`sim_backend.usrp_emu.uhd_api` for ``type=emulated`` args and makes the calls it makes on a
real device): bursts land where their time_spec puts them, a burst that reaches the device late
is reported with how late, a slow link underflows a burst, a stalled host overflows RX, two
processes that latch the same shared PPS edge share one device time (and a radio on its own
PPS does not), a stalled or unplugged radio is an error naming the node."""
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from sim_backend.realtime_air import LOParams, RealtimeAir
from sim_backend.usrp_emu import EmulatedUsrp, PpsSource, UsrpServer
from testbed.config.radio import UsrpConfig
from testbed.errors import StreamError
from emulated_support import realtime_retry
from testbed.radio.usrp import UsrpRadio

FS = 1e6
REF = (0.5 * np.exp(2j * np.pi * np.random.default_rng(2).random(256))).astype(np.complex64)


class UsrpBench:
    """Two emulated X310s (own TCXOs) on one air, ``a`` -> ``b`` through a 20 dB cable."""

    def __init__(self, **dev_kw):
        self.air = RealtimeAir(FS, seed=5, noise_dbm_hz=None)
        self.a = EmulatedUsrp(self.air, "usrp-a", lo=LOParams(ppm=4.0), **dev_kw)
        self.b = EmulatedUsrp(self.air, "usrp-b", lo=LOParams(ppm=-3.0), **dev_kw)
        self.air.connect(self.a.port, 0, self.b.port, 0, gain_db=-20.0)
        self.sa, self.sb = UsrpServer(self.a), UsrpServer(self.b)

    def close(self):
        for s in (self.sa, self.sb):
            s.faults.replug()
            s.faults.stall(0)
            s.close()


@pytest.fixture
def bench():
    b = UsrpBench()
    yield b
    b.close()


def config(args, time_source="external", pps_align="unknown_pps", **kw):
    base = dict(args=args, model="x310", sample_rate_hz=FS, center_freq_hz=915e6,
                tx_gain_db=31.5, rx_gain_db=20.0, clock_source=time_source,
                time_source=time_source, pps_align=pps_align, rx_timeout_s=0.5)
    return UsrpConfig(**{**base, **kw})


def open_pair(bench, **kw):
    """Both radios opened at once (one PPS second), aligned on the shared PPS."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "b", UsrpRadio(config(bench.sb.args, **kw), node_id="node-b").open()))
    t.start()
    a = UsrpRadio(config(bench.sa.args, **kw), node_id="node-a").open()
    t.join()
    return a, out["b"]


def peak(y):
    c = np.abs(np.correlate(y, REF, "valid"))
    return int(np.argmax(c)), float(c.max() / np.linalg.norm(REF) ** 2)


def test_bursts_land_at_their_time_spec(bench):
    a, b = open_pair(bench)
    assert a.time_scale == 1.0 and 0 <= a.now() < FS     # zeroed on a PPS edge just now
    start = max(a.now(), b.now()) + 200_000
    a.transmit(REF, start)
    a.transmit(REF, start + 12_345)
    y = b.receive(14_000, start - 100)[0]
    i1, g1 = peak(y[:5000])
    i2, g2 = peak(y[12_000:])
    assert (i1, i2 + 12_000 - i1) == (100, 12_345)
    assert g1 == pytest.approx(1.0, abs=1e-3)           # -20 dB cable, +20 dB RX gain
    ca, cb = a.counters(), b.counters()
    assert ca.total() == 0 and cb.total() == 0 and ca.samples_sent == 512
    assert a.identity().serial == bench.a.serial and a.identity().firmware == "X310"


def test_burst_arriving_late_is_reported_with_how_late(bench):
    a = UsrpRadio(config(bench.sa.args, "internal", "none"), node_id="node-a").open()
    bench.sa.faults.cap(1.0)    # 1 MB/s: the first 7984-sample packet group takes 32 ms
    with pytest.raises(StreamError, match=r"node 'node-a'.*late by (\d+) samples") as err:
        a.transmit(np.tile(REF, 40), a.now() + 2_000)      # due in 2 ms
    late = int(err.value.args[0].split("late by ")[1].split()[0])
    assert 25_000 < late < 500_000         # ~30 ms at 1 MS/s (more on a loaded machine)
    assert a.counters().late == 1


def test_slow_link_underflows_a_burst(bench):
    a = UsrpRadio(config(bench.sa.args, "internal", "none"), node_id="node-a").open()
    bench.sa.faults.cap(1.0)         # 1 MB/s = 250 kS/s of sc16: a 1 MS/s burst starves
    with pytest.raises(StreamError, match="underflow"):
        a.transmit(np.tile(REF, 160), a.now() + 100_000)    # 40960 samples, 0.1 s ahead
    assert a.counters().underflows >= 1


@realtime_retry()
def test_stalled_host_overflows_rx(bench):
    bench.b.rx_buffer_ticks = 50_000
    b = UsrpRadio(config(bench.sb.args, "internal", "none"), node_id="node-b").open()
    threading.Timer(0.05, bench.sb.faults.stall, args=(0.3,)).start()
    with pytest.raises(StreamError, match="overflow"):    # window 20..420 ms, stall 50..350
        b.receive(400_000, b.now() + 20_000)
    assert b.counters().overflows == 1
    y = b.receive(1000, b.now() + 20_000)                 # the next window is fine
    assert y.shape == (1, 1000)


def test_radios_on_different_pps_sources_are_not_aligned(bench):
    bench.b.pps = PpsSource(offset_s=0.37)          # b's PPS cable goes to another OctoClock
    a, b = open_pair(bench)
    start = max(a.now(), b.now()) + 200_000
    a.transmit(REF, start)
    y = b.receive(2_000, start - 100)[0]
    assert peak(y)[1] < 0.1                          # the burst is not in b's window


@pytest.mark.parametrize("fault", ["unplug", "stall"])
def test_dead_radio_gives_an_error_naming_the_node(bench, fault):
    b = UsrpRadio(config(bench.sb.args, "internal", "none"), node_id="x310-b").open()
    if fault == "unplug":
        bench.sb.faults.unplug()
    else:
        bench.sb.faults.stall(30.0)
    t0 = time.monotonic()
    with pytest.raises(StreamError, match="x310-b") as err:
        b.receive(1000, b.now() + 20_000) if fault == "unplug" else b.receive(1000, 10**9)
    assert time.monotonic() - t0 < 5.0
    assert bench.sb.args in str(err.value)


CHILD = r"""
import sys, numpy as np
from testbed.config.radio import UsrpConfig
from testbed.radio.usrp import UsrpRadio, import_uhd
import_uhd(sys.argv[1])        # imported before the PPS second starts, as a running node has
print("ready", flush=True)
sys.stdin.readline()
cfg = UsrpConfig(args=sys.argv[1], model="x310", sample_rate_hz=1e6, center_freq_hz=915e6,
                 tx_gain_db=31.5, rx_gain_db=20.0, clock_source="external",
                 time_source="external", pps_align="unknown_pps")
radio = UsrpRadio(cfg, node_id="child").open()
print("open", radio.now(), flush=True)
start = int(sys.stdin.readline())
y = radio.receive(2000, start - 100)[0]
ref = (0.5 * np.exp(2j * np.pi * np.random.default_rng(2).random(256))).astype(np.complex64)
print("peak", int(np.argmax(np.abs(np.correlate(y, ref, "valid")))), flush=True)
"""


def _child_hears_the_burst_where_scheduled(a, child):
    """``a`` sends REF 0.3 s ahead on its device time; the child, told that time, receives a
    window opened 100 samples earlier: the burst is 100 samples in iff both share one device
    time."""
    start = a.now() + 300_000
    child.stdin.write(f"{start}\n")
    child.stdin.flush()
    a.transmit(REF, start)
    assert child.stdout.readline().split() == ["peak", "100"]


def test_two_processes_latching_one_pps_edge_share_the_device_time(bench):
    child = subprocess.Popen([sys.executable, "-c", CHILD, bench.sb.args], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready"
        # start both alignments early in one PPS second: both latch the same edge
        edge = bench.a.pps.next_edge(bench.air.now_s())
        bench.air.sleep_until_s(edge + 0.05)
        child.stdin.write("go\n")
        child.stdin.flush()
        a = UsrpRadio(config(bench.sa.args), node_id="node-a").open()
        assert child.stdout.readline().startswith("open")
        _child_hears_the_burst_where_scheduled(a, child)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_emulated_module_has_the_names_and_values_of_real_uhd():
    from sim_backend.usrp_emu import uhd_api
    from testbed.radio import usrp as usrp_mod
    assert usrp_mod.import_uhd("type=emulated,addr=127.0.0.1:1") is uhd_api
    for dotted in usrp_mod.UHD_NAMES:
        mod, name = dotted.split(".")
        assert hasattr(getattr(uhd_api, mod), name), dotted
    for meth in usrp_mod.MULTI_USRP_METHODS:
        assert hasattr(uhd_api.usrp.MultiUSRP, meth), meth
    ts = uhd_api.types.TimeSpec.from_ticks(2 ** 40 + 7, 1e6)
    assert ts.to_ticks(1e6) == 2 ** 40 + 7
    try:
        from testbed.radio.system_libs import import_system_module
        uhd = import_system_module("uhd")
    except ImportError:
        return
    for enum_name in ("TXMetadataEventCode", "RXMetadataErrorCode", "StreamMode"):
        real = {k: int(v.value) for k, v in getattr(uhd.types, enum_name).__members__.items()}
        ours = {k: v.value for k, v in getattr(uhd_api.types, enum_name).__members__.items()}
        assert ours == real, enum_name
    real_ts = uhd.types.TimeSpec.from_ticks(2 ** 40 + 7, 1e6)
    assert (ts.get_full_secs(), ts.get_frac_secs()) == pytest.approx(
        (real_ts.get_full_secs(), real_ts.get_frac_secs()), abs=1e-12)


def test_emulate_usrp_command_serves_one_usrp_with_a_loopback_cable():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "emulate", "usrp", "--port",
                             str(port), "--name", "cli-usrp", "--loopback-cable-db", "-20",
                             "--duration", "60"], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "emulate: ready" in line:
                break
        args = f"type=emulated,addr=127.0.0.1:{port}"
        radio = UsrpRadio(config(args, "internal", "none"), node_id="solo").open()
        assert radio.identity().extra["node_id"] == "solo"
        at = radio.now() + 200_000
        radio.transmit(REF, at)
        i, g = peak(radio.receive(1000, at - 300)[0])
        assert i == 300 and g == pytest.approx(1.0, abs=1e-3)     # -20 dB cable, +20 dB RX
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_radios_aligned_in_different_pps_seconds_differ_by_whole_seconds(bench):
    """The hazard of pps_align unknown_pps on separate hosts: each process latches 0 on the
    edge after its own open(); opened a second apart, they are a whole second apart (the
    roles must agree on the edge, see docs/emulated_radios.md)."""
    a = UsrpRadio(config(bench.sa.args), node_id="node-a").open()
    b = UsrpRadio(config(bench.sb.args), node_id="node-b").open()     # opened >= 1 s later
    da = a.now()
    db = b.now()
    whole = round((da - db) / FS)
    assert whole >= 1 and abs((da - db) - whole * FS) < 0.05 * FS   # read ~ms apart


AGREED_CHILD = r"""
import sys, numpy as np
from testbed.config.radio import UsrpConfig
from testbed.radio.usrp import UsrpRadio
cfg = UsrpConfig(args=sys.argv[1], model="x310", sample_rate_hz=1e6, center_freq_hz=915e6,
                 tx_gain_db=31.5, rx_gain_db=20.0, clock_source="external",
                 time_source="external", pps_align="agreed")
radio = UsrpRadio(cfg, node_id="child").open()
print("edge", repr(radio.observe_pps_edge()), flush=True)
radio.latch_time_at_pps_after(float(sys.stdin.readline()))
print("latched", flush=True)
start = int(sys.stdin.readline())
y = radio.receive(2000, start - 100)[0]
ref = (0.5 * np.exp(2j * np.pi * np.random.default_rng(2).random(256))).astype(np.complex64)
print("peak", int(np.argmax(np.abs(np.correlate(y, ref, "valid")))), flush=True)
"""


@realtime_retry()
def test_processes_opened_seconds_apart_latch_the_pps_edge_the_controller_agrees(bench):
    """The cure for the hazard above (pps_align: agreed, `calibration.pps`): each process
    reports the host time of a PPS edge it saw, the controller hands out one host time halfway
    between edges, every process latches the edge after it: one device time, to the sample."""
    from calibration.pps import pps_latch_time
    a = UsrpRadio(config(bench.sa.args, pps_align="agreed"), node_id="node-a").open()
    time.sleep(1.3 * a.pps_period_s)               # opened more than a PPS period apart
    child = subprocess.Popen([sys.executable, "-c", AGREED_CHILD, bench.sb.args], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        word, edge_b = child.stdout.readline().split()
        assert word == "edge"
        edge_a = a.observe_pps_edge()
        t = pps_latch_time({"node-a": edge_a, "child": float(edge_b)}, a.pps_period_s,
                           time.time() + 0.3)
        child.stdin.write(f"{t!r}\n")
        child.stdin.flush()
        a.latch_time_at_pps_after(t)
        assert child.stdout.readline().strip() == "latched"
        _child_hears_the_burst_where_scheduled(a, child)
    finally:
        child.kill()
        child.wait(timeout=10)
