"""`calibration.timebase` in closed form: the beacon found anywhere in a long capture at any
CFO of two +-25 ppm TCXOs (sub-sample timing, Hz-level CFO, phase), noise refused, and the
composition of two clock maps."""
import numpy as np
import pytest

from calibration.corrections import NodeCorrection
from calibration.procedures import CalibrationError
from calibration.timebase import (ECHO_SPACING, beacon_waveform, carried_over, compose,
                                  find_beacon)
from testbed.phy.resample import bandlimited_resample

FS = 1e6


def _synthetic(rng, n, pos, cfo_hz, phase, snr_db=20.0, amp=0.3, echo=True):
    ref = beacon_waveform()
    k0 = int(np.floor(pos))
    x = bandlimited_resample(ref[None, :], -(pos - k0), 1.0, ref.size + 2)[0]
    y = np.zeros(n, complex)
    for k in (k0, k0 + ECHO_SPACING) if echo else (k0,):
        if k + x.size <= n:
            y[k:k + x.size] = amp * x
    y *= np.exp(1j * (2 * np.pi * cfo_hz * np.arange(n) / FS + phase))
    sigma = amp / np.sqrt(10 ** (snr_db / 10))
    return y + sigma * (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)


def test_find_beacon_anywhere_in_a_long_capture_at_any_cfo():
    rng = np.random.default_rng(3)
    for _ in range(3):
        pos = rng.uniform(2_000, (1 << 17) - 3_000)
        cfo = rng.uniform(-46e3, 46e3)          # +-50 ppm at 915 MHz (two +-25 ppm TCXOs)
        phase = rng.uniform(-np.pi, np.pi)
        fix = find_beacon(_synthetic(rng, (1 << 17) + 1, pos, cfo, phase), 10_000, FS)
        assert fix.arrival - 10_000 == pytest.approx(pos, abs=0.05)
        assert fix.cfo_hz == pytest.approx(cfo, abs=20.0)
        want = np.angle(np.exp(1j * (phase + 2 * np.pi * cfo * pos / FS)))
        assert abs(np.angle(np.exp(1j * (fix.phase_rad - want)))) < 0.1
        assert fix.metric > 0.7


def test_the_echo_refines_the_cfo_to_a_fraction_of_a_hertz():
    rng = np.random.default_rng(6)
    errs = {True: [], False: []}
    for echo in (True, False):
        for _ in range(4):
            pos = rng.uniform(2_000, 40_000)
            cfo = rng.uniform(-46e3, 46e3)
            y = _synthetic(rng, (1 << 17) + 1, pos, cfo, rng.uniform(-np.pi, np.pi), echo=echo)
            fix = find_beacon(y, 0, FS)
            assert fix.arrival == pytest.approx(pos, abs=0.05)   # the first burst, not the echo
            errs[echo].append(abs(fix.cfo_hz - cfo))
    assert max(errs[True]) < 0.3                     # Hz: ~1 Hz without the echo
    assert max(errs[True]) < max(errs[False])


def test_find_beacon_refuses_noise():
    rng = np.random.default_rng(4)
    y = rng.standard_normal(1 << 15) + 1j * rng.standard_normal(1 << 15)
    with pytest.raises(CalibrationError, match="no beacon"):
        find_beacon(y, 0, FS)


def test_compose_is_the_composition_of_the_clock_maps():
    base = NodeCorrection(tau_samples=-123_456.7, sro_ppm=21.0, cfo_hz=19_000.0)
    fine = NodeCorrection(tau_samples=0.37, sro_ppm=-0.02, cfo_hz=-3.0, phase_rad=0.4,
                          gain_db=1.5)
    both = compose(base, fine)
    n = np.array([0.0, 1e5, 7.3e6])
    np.testing.assert_allclose(both.air_position(n), fine.air_position(base.air_position(n)),
                               rtol=0, atol=1e-6)
    assert (both.cfo_hz, both.phase_rad, both.gain_db) == (18_997.0, 0.4, 1.5)
    assert compose(base, None) is base


def test_carried_over_keeps_the_timing_at_the_calibration_and_drops_the_residual_sro():
    # a residual SRO of 0.017 ppm (a 15.9 Hz coarse CFO at 915 MHz) fitted near receiver sample
    # 3.7e6: the map is right there, but 2e7 samples later (a run's own time base) it is off by
    # 0.28 sample -- the inter-symbol interference that made the emulated USRP bench's AirComp
    # error 4x its prediction; what carries over is the delay at the calibration's end
    end = 3.7e6
    fine = NodeCorrection(tau_samples=0.3 - end * (1 / (1 + 0.017e-6) - 1), sro_ppm=0.017,
                          cfo_hz=0.013, phase_rad=38.6, gain_db=0.2)
    kept = carried_over(fine, end)
    assert kept.sro_ppm == 0.0
    assert kept.tau_samples == pytest.approx(float(fine.air_position(end)) - end, abs=1e-9)
    assert kept.tau_samples == pytest.approx(0.3, abs=1e-6)
    assert (kept.cfo_hz, kept.phase_rad, kept.gain_db) == (0.013, 38.6, 0.2)
    later = end + 2e7
    assert abs(float(fine.air_position(later)) - later - 0.3) > 0.3   # what the old file did
    assert float(kept.air_position(later)) - later == pytest.approx(0.3, abs=1e-9)
