"""Impairment presets on the channel broker (multi-process simulated bench): a 2-node bench with
``channel.impairments`` shows the preset's timing offsets (cross-correlation), the same bench
without impairments does not; node clocks, tunes and preset names over the wire."""
import numpy as np
import pytest

from calibration.estimators.sequences import shaped_preamble, zadoff_chu
from calibration.estimators.timing import estimate_delay
from sim_backend.broker import ChannelBroker, air_from_bench, bench_impairments
from sim_backend.impairment_presets import uncalibrated_pluto_bench, usrp_shared_reference
from sim_backend.remote_radio import open_sim_radio
from sim_backend.sim_radio import node_sample_at
from testbed.config.bench import BenchConfig
from testbed.errors import ConfigError, StreamError
from testbed.radio.base import RadioSettings

SEED = 7
FS = 1.0e6
CARRIER = 915.0e6
REF = shaped_preamble(zadoff_chu(63))          # 150 samples, band-limited, unit power
AMP = 0.25                                     # no DAC clipping at 12 bits / full scale 1
GAP = 1500                                     # node 1 sends GAP node samples after node 0
WINDOW = 3200


def _radio(n_rx: int = 0) -> dict:
    return {"kind": "sim", "sample_rate_hz": FS, "center_freq_hz": CARRIER,
            "n_tx_channels": 1, "n_rx_channels": max(n_rx, 1)}


def _bench(impairments: str | None) -> BenchConfig:
    return BenchConfig.model_validate({
        "name": "sim_2node_test", "assignment": "equal",
        "nodes": [{"id": "node0", "radio": _radio()}, {"id": "node1", "radio": _radio()}],
        "receiver": {"n_antennas": 1, "radio": _radio(1)},
        # Rician K = 30 dB: |h| ~ 1, no deep fade; 40 dB SNR
        "channel": {"seed": SEED, "snr_db": 40.0, "fading": "rician", "k_factor_db": 30.0,
                    "impairments": impairments}})


def _open(bench, broker):
    txs = [open_sim_radio(n.radio, role="node", node_id=n.id, node_index=i,
                          broker=broker.address) for i, n in enumerate(bench.nodes)]
    rx = open_sim_radio(bench.receiver.radio, role="receiver", broker=broker.address)
    return txs, rx


def _arrivals(bench, cfo_hz):
    """Send REF from node 0 at node sample s0 and node 1 at s0 + GAP over the broker; return the
    send times and the measured arrival air samples (CFO ``cfo_hz[i]`` removed first)."""
    with ChannelBroker(air_from_bench(bench)) as broker:
        txs, rx = _open(bench, broker)
        start = broker.common_now() + 64
        sends = [start, start + GAP]
        for t, s in zip(txs, sends):
            t.transmit(AMP * REF[None, :], s)
            t.done_until(start + WINDOW)
        y = rx.receive(WINDOW, start)[0].astype(complex)
        m = start + np.arange(WINDOW)
        got = []
        for i, s in enumerate(sends):
            seg = slice(s - start - 50 if i else 0, s - start + GAP - 50 if not i else WINDOW)
            z = y[seg] * np.exp(-2j * np.pi * cfo_hz[i] * m[seg] / FS)
            got.append(m[seg][0] + float(estimate_delay(z, REF)))
        for r in (*txs, rx):
            r.close()
    return np.array(sends), np.array(got)


@pytest.mark.parametrize("preset,draw", [
    ("uncalibrated-pluto", lambda rng: uncalibrated_pluto_bench(2, CARRIER, rng)),
    ("usrp-shared-ref", lambda rng: usrp_shared_reference(2, rng)),
])
def test_bursts_arrive_at_the_presets_timing_offsets(preset, draw):
    truth = draw(np.random.default_rng(SEED)).tx        # the preset, drawn from channel.seed
    sends, got = _arrivals(_bench(preset), [p.cfo_hz for p in truth])
    expected = np.array([s / (1 + p.sro_ppm * 1e-6) + p.timing_offset_samples
                         for s, p in zip(sends, truth)])
    np.testing.assert_allclose(got, expected, atol=0.05)
    if preset == "uncalibrated-pluto":                  # 20..400 samples late
        assert np.all(got - sends > 19)


def test_same_bench_without_impairments_has_no_offset():
    sends, got = _arrivals(_bench(None), [0.0, 0.0])
    np.testing.assert_allclose(got, sends, atol=0.05)


def test_broker_builds_the_same_impairments_as_testbed_calibrate():
    from testbed.commands.calibrate import _sim_bench
    for preset in ("uncalibrated-pluto", "usrp-shared-ref"):
        bench = _bench(preset)
        imp = _sim_bench(bench, preset, SEED)[3]
        assert bench_impairments(bench).to_dict() == imp.to_dict()
    assert bench_impairments(_bench(None)) is None
    assert bench_impairments(_bench("none")) is None


def test_unknown_preset_is_a_config_error_listing_the_valid_ones():
    with pytest.raises(ConfigError, match="uncalibrated-pluto.*usrp-shared-ref"):
        air_from_bench(_bench("pluto-ish"))


def test_remote_node_clock_late_check_and_common_now():
    bench = _bench("uncalibrated-pluto")
    with ChannelBroker(air_from_bench(bench)) as broker:
        txs, rx = _open(bench, broker)
        for t in txs:
            t.done_until(10 ** 5)
        rx.receive(10, 10 ** 5 - 10)                    # air clock -> 100000
        air = broker.air
        nows = [t.now() for t in txs]
        assert nows == [node_sample_at(air.now, air.tx_impairment(i)) for i in range(2)]
        assert rx.now() == air.now == 10 ** 5
        assert broker.common_now() == max([air.now, *nows])
        with pytest.raises(StreamError, match="late"):
            txs[0].transmit(AMP * REF[None, :], nows[0] - 1)
        assert txs[0].counters().late == 1
        txs[0].transmit(AMP * REF[None, :], nows[0])   # exactly the node clock is in time
        for r in (*txs, rx):
            r.close()


def test_remote_configure_to_a_new_carrier_tunes_the_hooks_deterministically():
    bench = _bench("uncalibrated-pluto")
    phases = []
    for order in ([0, 1, "rx"], ["rx", 1, 0]):         # process start order must not matter
        with ChannelBroker(air_from_bench(bench)) as broker:
            air = broker.air
            before = [air.tx_impairment(i).lo_phase_rad for i in range(2)]
            radios = {}
            for who in order:
                if who == "rx":
                    radios[who] = open_sim_radio(bench.receiver.radio, role="receiver",
                                                 broker=broker.address)
                else:
                    radios[who] = open_sim_radio(bench.nodes[who].radio, role="node",
                                                 node_index=who, broker=broker.address)
            opened = [air.tx_impairment(i).lo_phase_rad for i in range(2)]
            assert all(a != b for a, b in zip(before, opened))     # tuned at open
            s = radios[0].settings
            radios[0].configure(s)                                 # same carrier: no tune
            assert air.tx_impairment(0).lo_phase_rad == opened[0]
            radios[0].configure(RadioSettings(**{**s.__dict__, "center_freq_hz": 2.4e9}))
            assert air.tx_impairment(0).lo_phase_rad != opened[0]
            assert air.tx_impairment(1).lo_phase_rad == opened[1]
            phases.append(opened + [air.rx_impairment.lo_phase_rad])
            for r in radios.values():
                r.close()
    assert phases[0] == phases[1]
