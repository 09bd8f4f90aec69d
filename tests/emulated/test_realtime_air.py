"""The real-time air against closed forms: carrier offset of two TCXOs, the noise variance of
the air's settings, the sampling-rate offset (where a burst lands on another clock), cut
transmissions, silence. A hand-driven clock keeps these tests free of sleeps."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_backend.realtime_air import LOParams, RealtimeAir
from testbed.errors import ConfigError
from testbed.phy.resample import bandlimited_resample


class ManualClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _air(**kw):
    clock = ManualClock()
    return RealtimeAir(1.0e6, clock=clock, seed=3, **kw), clock


def _freq_hz(y, fs):
    """Frequency of a single complex tone from the mean phase increment (Hz)."""
    return float(np.angle(np.sum(y[1:] * np.conj(y[:-1]))) * fs / (2 * math.pi))


def test_tone_arrives_at_the_two_tcxos_carrier_offset():
    air, clock = _air(noise_dbm_hz=None)
    a = air.attach_radio("a", 1, 1, LOParams(ppm=12.5))
    b = air.attach_radio("b", 1, 1, LOParams(ppm=-7.0))
    air.connect(a, 0, b, 0, gain_db=-20.0)
    for r in (a, b):
        r.tune_tx(915e6)
        r.tune_rx(915e6)
    a.tx_repeat(np.full((1, 1000), 0.5 + 0j), start=0)
    clock.t += 1.0
    y = b.rx_pull(200_000, 50_000)[0]
    expected = 915e6 * (12.5e-6 + 7.0e-6)            # f (1 + ppm_a) - f (1 + ppm_b)
    assert abs(_freq_hz(y, b.clock_hz) - expected) < 0.5
    assert np.allclose(np.abs(y), 0.5 * 0.1, rtol=1e-3)    # -20 dB path, amplitude 0.05


def test_detuned_lo_moves_the_tone_and_out_of_band_links_carry_nothing():
    air, clock = _air(noise_dbm_hz=None)
    a = air.attach_radio("a", 1, 1)
    b = air.attach_radio("b", 1, 1)
    air.connect(a, 0, b, 0, gain_db=0.0)
    a.tune_tx(915.1e6)
    b.tune_rx(915e6)
    a.tx_repeat(np.ones((1, 64), complex), start=0)
    clock.t += 0.1
    y = b.rx_pull(10_000, 20_000)[0]
    assert abs(_freq_hz(y, 1e6) - 100e3) < 0.01
    b.tune_rx(916e6)                                  # 900 kHz away: beyond fs / 2
    assert not np.any(b.rx_pull(30_000, 1000))


def test_noise_variance_is_the_air_setting():
    air, clock = _air(noise_dbm_hz=-150.0, full_scale_dbm=0.0)
    r = air.attach_radio("r", 1, 2)
    clock.t += 1.0
    y = r.rx_pull(0, 200_000)
    expected = 10 ** (-150 / 10) * 1e6               # dBm/Hz x fs, over a 0 dBm full scale
    assert y.shape == (2, 200_000)
    assert np.var(y) == pytest.approx(expected, rel=0.02)
    assert air.noise_var(1e6) == pytest.approx(expected)


def test_burst_lands_where_the_two_sample_clocks_put_it():
    air, clock = _air(noise_dbm_hz=None)
    t = air.attach_radio("t", 1, 1, LOParams(ppm=100.0, random_phase_per_tune=False))
    r = air.attach_radio("r", 1, 1, LOParams(ppm=0.0, random_phase_per_tune=False))
    air.connect(t, 0, r, 0, gain_db=0.0)
    t.tune_tx(915e6)
    r.tune_rx(915e6 * (1 + 100e-6))                   # same carrier, only the clocks differ
    rng = np.random.default_rng(1)
    burst = (rng.standard_normal(256) + 1j * rng.standard_normal(256)) * 0.1
    t.tx_push(burst[None, :], start=500_000)
    clock.t += 1.0
    # t's sample 500000 is at tau = 500000 / (fs (1 + 1e-4)), i.e. r's sample 499950.005
    y = r.rx_pull(499_800, 600)[0]
    # the oracle: the burst's band-limited signal at r's samples, t-positions 1.0001 (n) - 500000
    ref = bandlimited_resample(burst[None, :], 499_800 * 1.0001 - 500_000, 1.0001, 600)[0]
    corr = abs(np.vdot(ref, y)) / (np.linalg.norm(ref) * np.linalg.norm(y))
    assert corr > 0.9999
    pos = 499_950.005 - 499_800
    assert np.sum(np.abs(y[: int(pos) - 40]) ** 2) < 1e-4 * np.sum(np.abs(y) ** 2)


def test_cut_transmission_and_silence():
    air, clock = _air(noise_dbm_hz=None)
    a = air.attach_radio("a", 1, 1)
    air.connect(a, 0, a, 0, gain_db=-30.0)             # a loopback cable
    a.tune_tx(2.4e9)
    a.tune_rx(2.4e9)
    a.tx_repeat(np.ones((1, 10), complex), start=0)
    a.tx_cut(5000)
    a.tx_push(np.zeros((1, 4096)), start=6000)        # silence is not stored
    clock.t += 0.1
    y = a.rx_pull(0, 10_000)[0]
    assert np.allclose(np.abs(y[:5000]), 10 ** (-30 / 20))
    assert not np.any(y[5000:])
    assert np.array_equal(a.tx_raw(4998, 4)[0], [1, 1, 0, 0])


def test_configuration_errors_name_the_fix():
    air, _ = _air()
    a = air.attach_radio("a", 1, 1)
    with pytest.raises(ConfigError, match="already"):
        air.attach_radio("a", 1, 1)
    with pytest.raises(ConfigError, match="exactly one"):
        air.connect(a, 0, a, 0)
    with pytest.raises(ConfigError, match="attached"):
        air.radio("nope")


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 29_999), max_size=4, unique=True))
def test_received_samples_do_not_depend_on_how_the_window_is_cut(cuts):
    """A transmitted segment is resampled onto the receiver's grid once, in fixed pieces:
    pulling [0, 30000) whole or in any pieces gives the same samples, on both antennas of a
    2-antenna receiver (one resampling shared by the antennas, each scaled by its path)."""
    air, clock = _air(noise_dbm_hz=None)
    a = air.attach_radio("a", 1, 1, LOParams(ppm=21.0, random_phase_per_tune=False))
    b = air.attach_radio("b", 1, 2, LOParams(ppm=-9.0, random_phase_per_tune=False))
    air.connect(a, 0, b, 0, h=0.5)
    air.connect(a, 0, b, 1, h=-0.25j)
    for r in (a, b):
        r.tune_tx(915e6)
        r.tune_rx(915e6)
    rng = np.random.default_rng(4)
    for start in range(0, 30_000, 7_000):        # back-to-back pushes, like a DMA
        a.tx_push(0.3 * (rng.standard_normal((1, 7_000)) + 1j * rng.standard_normal((1, 7_000))),
                  start)
    clock.t += 1.0
    whole = b.rx_pull(0, 30_000)
    edges = [0, *sorted(cuts), 30_000]
    pieces = np.concatenate([b.rx_pull(lo, hi - lo) for lo, hi in zip(edges, edges[1:])],
                            axis=1)
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-11)   # carrier phase rounding
    np.testing.assert_allclose(whole[1], whole[0] * (-0.5j), atol=1e-12)
    assert np.mean(np.abs(whole[0, 1000:29000]) ** 2) == pytest.approx(0.25 * 0.18, rel=0.1)
