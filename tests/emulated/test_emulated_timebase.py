"""The Pluto time base on emulated Plutos (real pyadi-iio/libiio stack, real-time air with the
uncalibrated-Pluto TCXOs): a node opened a random 10^5..3 10^5 samples after the receiver maps
the receiver's clock onto its own streams from the receiver's beacon, and a burst it schedules
for receiver sample A lands there; a stalled stream breaks the time base (counted), a new sync
restores it."""
import time

import numpy as np
import pytest

from calibration.corrections import CorrectedRadio
from calibration.procedures import measure_burst
from calibration.timebase import (BEACON, TimeBase, TimeBaseLost, beacon_waveform, capture,
                                  find_beacon, measure_loopback_offset, send_beacon,
                                  timebase_correction)

FS = 1e6

from syslibs import require_module  # noqa: E402 (after the module's imports)
require_module("iio")
require_module("adi")

TIME_SCALE = 10.0


@pytest.fixture
def air():
    """One node and the receiver's first 2R2T radio of pluto_4node_emulated on a real-time
    air (time scale 6), each on a free port; the radios' drivers are closed by the test."""
    from conftest import emulated_bench_config

    from sim_backend.emulated_bench import EmulatedBench
    bench = emulated_bench_config(n_nodes=1, n_rx_radios=1)
    em = EmulatedBench.from_bench(bench, time_scale=TIME_SCALE)
    yield bench, em
    em.close()


def _open(cfg, who):
    from testbed.radio.factory import open_radio
    return open_radio(cfg, role="any", node_id=who)


def _sync(rx, node, fc):
    """The time base of ``node`` against ``rx``: loopbacks, beacon, capture, map."""
    d_rx = measure_loopback_offset(rx)
    d_node = measure_loopback_offset(node)
    t_b = rx.now() + rx.schedule_latency_samples()
    send_beacon(rx, t_b)
    y, first = capture(node, (1 << 18) + 1, back=node.schedule_latency_samples())
    fix = find_beacon(y, first, node.settings.sample_rate_hz)
    corr = timebase_correction(t_b + d_rx, fix, d_node, fc)
    return corr, fix


def _probe_lands(rx, tx, at):
    """Send the beacon through ``tx`` for receiver sample ``at``; where and at which residual
    CFO the receiver finds it: (integer peak of np.correlate - at, fine arrival - at, cfo)."""
    send_beacon(tx, at)
    first = at - 3_000
    y = rx.receive(8_000, first)[0].astype(complex)
    ref = beacon_waveform()
    peak = int(np.argmax(np.abs(np.correlate(y, ref, "valid"))))
    arrival, cfo, _, metric, _ = measure_burst(y[None, :], first, ref, BEACON, FS)
    assert metric > 0.5
    return peak + first - at, arrival - at, cfo


def test_node_schedules_on_the_receiver_clock_across_a_random_stream_start_offset(air):
    bench, em = air
    rng = np.random.default_rng()
    rx = _open(bench.receiver.primary_radio, "receiver")
    node = None
    try:
        offset = rng.uniform(1.0e5, 3.0e5)               # samples of emulated time
        time.sleep(offset / FS * TIME_SCALE)
        node = _open(bench.nodes[0].radio, "pi5-a")
        assert abs(rx.now() - node.now()) > 0.9e5         # the clocks are far apart
        corr, fix = _sync(rx, node, bench.receiver.primary_radio.center_freq_hz)
        assert fix.metric > 0.7
        true_cfo = em.air.radio("pi5-a").lo.ppm * 1e-6 * 915e6   # node LO above receiver's
        assert corr.cfo_hz == pytest.approx(true_cfo, abs=30.0)
        tb = TimeBase(corr, TimeBase.snapshot({"node": node, "rx": rx}))
        cr = CorrectedRadio(node, corr, half_taps=64)
        at = max(rx.now() + rx.schedule_latency_samples(), cr.now()) + 20_000
        peak, fine, cfo = _probe_lands(rx, cr, at)
        assert peak == 0
        assert abs(fine) < 0.2                           # samples
        assert abs(cfo) < 30.0                           # Hz left after the pre-rotation
        tb.check({"node": node, "rx": rx}, "pi5-a")      # nothing slipped
        # a raw (unmapped) burst lands a stream-start offset away
        raw_at = node.now() + 20_000
        send_beacon(node, raw_at)
        assert abs(corr.air_position(raw_at) - raw_at) > 0.9e5
    finally:
        for r in (node, rx):
            if r is not None:
                r.close()


def test_stalled_stream_breaks_the_time_base_and_a_resync_restores_it(air):
    bench, em = air
    rx = _open(bench.receiver.primary_radio, "receiver")
    node = None
    try:
        time.sleep(1e5 / FS * TIME_SCALE)
        node = _open(bench.nodes[0].radio, "pi5-a")
        fc = bench.receiver.primary_radio.center_freq_hz
        corr, _ = _sync(rx, node, fc)
        radios = {"node": node, "rx": rx}
        tb = TimeBase(corr, TimeBase.snapshot(radios))
        em.faults["pi5-a"].stall(0.8)                    # wall s: ~130k samples at k = 6
        time.sleep(1.0)
        node.run_until(node.now() + 50_000)
        assert node.counters().underflows + node.counters().overflows >= 1
        assert tb.broken(radios) == ["node"]
        with pytest.raises(TimeBaseLost, match="pi5-a.*node"):
            tb.check(radios, "pi5-a")
        corr2, _ = _sync(rx, node, fc)                   # re-sync
        cr = CorrectedRadio(node, corr2, half_taps=64)
        at = max(rx.now() + rx.schedule_latency_samples(), cr.now()) + 20_000
        peak, fine, _ = _probe_lands(rx, cr, at)
        assert peak == 0 and abs(fine) < 0.2
    finally:
        for r in (node, rx):
            if r is not None:
                r.close()
