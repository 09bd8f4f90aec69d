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
                                  find_beacon, guarded, measure_loopback_offset, send_beacon,
                                  timebase_correction)

FS = 1e6

from emulated_support import realtime_retry  # noqa: E402
from syslibs import require_module  # noqa: E402 (after the module's imports)
require_module("iio")
require_module("adi")

TIME_SCALE = 8.0
ARRAY_TIME_SCALE = 40.0     # four radios' drivers in the test's process


@pytest.fixture
def air(tmp_path):
    """One node and the receiver's first 2R2T radio of pluto_4node_emulated served by
    `testbed emulate` in its own process (time scale 8: the other xdist worker runs beside it); the drivers are closed by the test."""
    from emulated_support import EmulatorProcess, emulated_bench_config
    bench = emulated_bench_config(n_nodes=1, n_rx_radios=1)
    em = EmulatorProcess(bench, tmp_path, TIME_SCALE)
    yield bench, em
    em.close()


def _open(cfg, who):
    from testbed.radio.factory import open_radio
    return open_radio(cfg, role="any", node_id=who)


def _sync(rx, node, fc, attempts=3):
    """The time base of ``node`` against ``rx``: loopbacks, beacon, capture, map; measured
    again when a radio slipped meanwhile (`guarded`), as the controller does."""
    radios = {"node": node, "rx": rx}
    for attempt in range(attempts):
        try:
            def step():
                d_rx = measure_loopback_offset(rx)
                d_node = measure_loopback_offset(node)
                t_b = rx.now() + rx.schedule_latency_samples()
                send_beacon(rx, t_b)
                y, first = capture(node, (1 << 18) + 1, back=node.schedule_latency_samples())
                fix = find_beacon(y, first, node.settings.sample_rate_hz)
                return timebase_correction(t_b + d_rx, fix, d_node, fc), fix
            return guarded(radios, "pi5-a", step)
        except TimeBaseLost:
            if attempt == attempts - 1:
                raise


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
        assert 100.0 < abs(corr.cfo_hz) < 46e3        # the preset's TCXOs: tens of kHz apart
        cr = CorrectedRadio(node, corr, half_taps=64)
        at = max(rx.now() + rx.schedule_latency_samples(), cr.now()) + 20_000
        peak, fine, cfo = _probe_lands(rx, cr, at)
        assert peak == 0
        assert abs(fine) < 0.2                           # samples
        assert abs(cfo) < 5.0                            # Hz left after the pre-rotation
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
        em.fault("stall pi5-a 2.0")                      # wall s: ~125k samples at k = 16
        time.sleep(2.3)
        node.run_until(node.now() + 50_000)
        assert node.counters().underflows + node.counters().overflows >= 1
        assert "node" in tb.broken(radios)
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


# ---------------------------------------------------------------- receiver array
def _retry(radios, step, attempts=3):
    """``step()`` measured again when a radio slipped meanwhile (`guarded`)."""
    for attempt in range(attempts):
        try:
            return guarded(radios, "test", step)
        except TimeBaseLost:
            if attempt == attempts - 1:
                raise


def _sync_nodes(first_rx, d_rx, nodes):
    """One beacon from the receiver's first radio; every node maps it (capture windows taken
    from before the beacon is sent)."""
    d_nodes = [measure_loopback_offset(n) for n in nodes]
    starts = [n.now() - n.schedule_latency_samples() for n in nodes]
    t_b = send_beacon(first_rx, first_rx.now() + first_rx.schedule_latency_samples())
    out = []
    for node, d, start in zip(nodes, d_nodes, starts):
        y, _ = capture(node, (1 << 18) + 1, first=start)
        fix = find_beacon(y, start, FS)
        out.append(timebase_correction(t_b + d_rx, fix, d, 915e6))
    return out


@pytest.fixture
def array_air(tmp_path):
    """Two nodes and both 2R2T receiver radios of pluto_4node_emulated (`testbed emulate` in
    its own process); four radios' streams in this process: time scale 40 (the shared
    machine is loaded)."""
    from emulated_support import EmulatorProcess, emulated_bench_config
    bench = emulated_bench_config(n_nodes=2, n_rx_radios=2)
    em = EmulatorProcess(bench, tmp_path, ARRAY_TIME_SCALE)
    yield bench, em
    em.close()



@realtime_retry()
def test_two_2r2t_plutos_form_one_aligned_4_antenna_receiver_for_an_aircomp_round(array_air):
    import torch

    from testbed.phy.analog_allreduce import AnalogAllReduce
    from testbed.radio.array import ArrayRadio
    from calibration.timebase import align_array
    bench, em = array_air
    radios = []
    try:
        rx_cfgs = bench.receiver.radio
        radios.append(_open(rx_cfgs[0], "receiver-0"))
        time.sleep(1.2e5 / FS * ARRAY_TIME_SCALE)              # the second radio starts later
        radios.append(_open(rx_cfgs[1], "receiver-1"))
        nodes = [_open(n.radio, n.id) for n in bench.nodes]
        radios += nodes
        every = {str(i): r for i, r in enumerate(radios)}

        def align():
            d = measure_loopback_offset(radios[0])
            return d, align_array(radios[:2], d)
        d_rx, offsets = _retry(every, align)
        assert offsets[0] == 0.0 and abs(offsets[1]) > 0.5e5
        array = ArrayRadio(radios[:2], offsets)
        assert array.settings.n_rx_channels == 4
        # the same burst reaches all four antennas at the same array sample
        at = array.now() + array.schedule_latency_samples() + 5_000
        send_beacon(nodes[0], nodes[0].now() + nodes[0].schedule_latency_samples())
        y = array.receive(1 << 18, at - (1 << 17)).astype(complex)
        arrivals = [find_beacon(y[a], 0, FS).arrival for a in range(4)]
        assert max(arrivals) - min(arrivals) < 0.3          # samples
        # an AirComp round of two nodes on the receiver clock into the 4-antenna array
        corrs = _retry(every, lambda: _sync_nodes(radios[0], d_rx, nodes))
        tx = [CorrectedRadio(n, c, half_taps=64) for n, c in zip(nodes, corrs)]
        ar = AnalogAllReduce(tx, array, scheme="aircomp", csi="estimated",
                             scale_policy="oracle")
        rng = np.random.default_rng(5)
        parts = [torch.tensor(rng.standard_normal(512), dtype=torch.float32) for _ in nodes]
        out = ar.reduce(parts, layer=0, site="attn")[0].numpy()
        exact = (parts[0] + parts[1]).numpy()
        stats = ar._stats.as_dict()[(0, "attn")]
        mse = float(np.mean((out - exact) ** 2))
        assert mse == pytest.approx(stats["mse_tensor"])
        # aligned: the error is a few % of the signal (unaligned it is the signal), and what
        # the receiver's design predicts from its own estimates: 1.6-1.9x measured (the
        # prediction ignores the pilots' estimation error). Before the nodes put their CFO
        # on the TX LO (calibration.corrections) it was 10-16x: the 27-34 kHz baseband
        # rotation wrapped the band edge, which the second radio got with the wrong phase
        assert mse < 3.0 * stats["mse_tensor_predicted"]
        assert mse < 0.05 * float(np.mean(exact ** 2))
    finally:
        for r in radios:
            r.close()
