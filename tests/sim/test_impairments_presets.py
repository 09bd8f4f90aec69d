"""Bench presets: the parameters match the physics they claim, and serialize."""
import json

import numpy as np
import pytest

from sim_backend.impairment_presets import (BenchImpairments, uncalibrated_pluto_bench,
                                            usrp_shared_reference)


def test_pluto_bench_ppm_cfo_and_sro_are_one_oscillator():
    bench = uncalibrated_pluto_bench(8, 2.4e9, np.random.default_rng(0))
    cfo = np.array([p.cfo_hz for p in bench.tx])
    sro = np.array([p.sro_ppm for p in bench.tx])
    np.testing.assert_allclose(cfo, sro * 1e-6 * 2.4e9)
    assert np.all(np.abs(sro) <= 50.01) and np.max(np.abs(cfo)) > 5e3   # tens of kHz
    offs = np.array([p.timing_offset_samples for p in bench.tx])
    assert np.all((offs >= 20) & (offs < 401)) and np.any(offs % 1 != 0)
    assert all(p.random_phase_per_tune and p.dac_bits == 12 for p in bench.tx)
    assert all(abs(p.gain_error_db) <= 2.0 for p in bench.tx)
    assert bench.rx.adc_bits == 12 and bench.rx.adc_clip


def test_usrp_shared_reference_has_no_frequency_offset():
    bench = usrp_shared_reference(6, np.random.default_rng(1))
    assert all(abs(p.cfo_hz) < 1.0 and p.sro_ppm == 0.0 for p in bench.tx)
    assert all(0.0 <= p.timing_offset_samples < 1.0 for p in bench.tx)
    assert all(p.random_phase_per_tune for p in bench.tx)
    # a tone through a node drifts by < 2 pi * 1 Hz * 1 ms over 1000 samples at 1 MS/s
    tx = bench.build_tx()[0]
    y, _ = tx.apply_tx(np.full((1, 1000), 0.5 + 0j), 0, 1e6)
    drift = np.angle(y[0, -1] * np.conj(y[0, 0]))
    assert abs(drift) < 2 * np.pi * 1.0 * 1e-3 + 0.01


def test_presets_are_deterministic_and_round_trip_through_json():
    a = uncalibrated_pluto_bench(3, 915e6, np.random.default_rng(5))
    b = uncalibrated_pluto_bench(3, 915e6, np.random.default_rng(5))
    assert a == b
    restored = BenchImpairments.from_dict(json.loads(json.dumps(a.to_dict())))
    assert restored == a
    x = np.exp(0.1j * np.arange(200))[None] * 0.5
    ya, sa = a.build_tx()[1].apply_tx(x, 10, 1e6)
    yb, sb = restored.build_tx()[1].apply_tx(x, 10, 1e6)
    assert sa == sb and np.array_equal(ya, yb)


def test_pluto_node_burst_lands_where_its_timing_offset_says():
    from calibration.estimators.sequences import shaped_preamble, zadoff_chu
    from calibration.estimators.timing import estimate_delay
    bench = uncalibrated_pluto_bench(2, 915e6, np.random.default_rng(2))
    p = bench.tx[0]
    p.cfo_hz = 0.0                      # isolate timing (CFO is tested on its own)
    p.phase_noise_linewidth_hz = p.phase_noise_rms_deg = 0.0
    ref = 0.5 * shaped_preamble(zadoff_chu(31))
    y, start = bench.build_tx()[0].apply_tx(ref[None], 0, 1e6)
    assert estimate_delay(y[0], ref) + start == pytest.approx(p.timing_offset_samples, abs=0.02)


def test_bad_node_count():
    from testbed.errors import ConfigError
    with pytest.raises(ConfigError):
        usrp_shared_reference(0, np.random.default_rng(0))


def test_pluto_phase_noise_is_a_bounded_pll_plus_a_tiny_tcxo_walk():
    """0.5 deg rms, -100 dBc/Hz at 100 kHz far out (corner pi f^2 L / sigma^2 = 41 kHz) on every
    node and on the receiver; TCXO -120 dBc/Hz at 100 Hz at 40 MHz, +27.2 dB at 915 MHz;
    receiver ADC full scale 12 dB above the rms of 3 full-power nodes."""
    from sim_backend.impairment_presets import INTERP_HALF_TAPS, tcxo_linewidth_hz
    bench = uncalibrated_pluto_bench(3, 915e6, np.random.default_rng(0))
    sigma2 = np.radians(0.5) ** 2
    lw = 2 * np.pi * 100.0 ** 2 * 10 ** ((-120.0 + 20 * np.log10(915e6 / 40e6)) / 10)
    assert lw == pytest.approx(3.29e-5, rel=0.01)
    for p in [*bench.tx, bench.rx]:
        assert p.phase_noise_rms_deg == 0.5
        assert p.phase_noise_corner_hz == pytest.approx(np.pi * 1e10 * 1e-10 / sigma2)
        assert p.phase_noise_linewidth_hz == pytest.approx(lw)
    assert tcxo_linewidth_hz(2.4e9) == pytest.approx(lw * (2.4e9 / 915e6) ** 2)
    assert all(p.interp_half_taps == INTERP_HALF_TAPS for p in bench.tx)
    assert bench.rx.adc_full_scale == pytest.approx(10 ** 0.6 * np.sqrt(3 * 10 ** -1.2 / 2))
    usrp = usrp_shared_reference(2, np.random.default_rng(0))
    for p in [*usrp.tx, usrp.rx]:
        assert p.phase_noise_rms_deg == 0.5 and p.phase_noise_linewidth_hz == 0.0
        assert p.phase_noise_corner_hz == pytest.approx(np.pi * 1e10 * 1e-11 / np.radians(0.5) ** 2)
