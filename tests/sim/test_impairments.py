"""Each impairment does what its unit says, checked against independent oracles."""
import numpy as np
import pytest
from scipy import signal

from calibration.estimators.sequences import shaped_preamble, zadoff_chu
from calibration.estimators.timing import estimate_delay
from sim_backend.hooks import RxImpairment, TxImpairment
from sim_backend.impairments import (RxImpairmentParams, RxImpairments, TxImpairmentParams,
                                     TxImpairments, linewidth_from_dbc_hz, quantize)
from testbed.errors import ConfigError

FS = 1.0e6


def raised_cosine(t, sps=4.0, beta=0.5):
    """Closed-form raised-cosine pulse at times t (samples): band-limited to (1+beta)/(2 sps)."""
    t = np.asarray(t, float) / sps
    den = 1 - (2 * beta * t) ** 2
    safe = np.where(np.abs(den) < 1e-10, 1.0, den)
    out = np.sinc(t) * np.cos(np.pi * beta * t) / safe
    return np.where(np.abs(den) < 1e-10, np.pi / 4 * np.sinc(1 / (2 * beta)), out)


def test_hooks_satisfy_protocol():
    assert isinstance(TxImpairments(), TxImpairment)
    assert isinstance(RxImpairments(), RxImpairment)


def test_all_off_is_identity():
    x = np.exp(1j * np.arange(50.0))[None]
    y, start = TxImpairments().apply_tx(x, 123, FS)
    assert start == 123 and np.array_equal(y, x)
    assert np.array_equal(RxImpairments().apply_rx(x, 5, FS), x)


def test_integer_timing_offset_is_a_plain_shift():
    x = np.arange(10, dtype=complex)[None]
    y, start = TxImpairments(TxImpairmentParams(timing_offset_samples=-7)).apply_tx(x, 100, FS)
    assert start == 93 and np.array_equal(y, x)


def test_fractional_offset_matches_closed_form_pulse_and_scipy_resample():
    centre, tau, s0 = 60, 3.25, 1000
    k = np.arange(121)
    x = raised_cosine(k - centre).astype(complex)[None]
    y, start = TxImpairments(TxImpairmentParams(timing_offset_samples=tau)).apply_tx(x, s0, FS)
    m = start + np.arange(y.shape[1])
    # oracle 1: the continuous pulse evaluated at the delayed times
    expected = raised_cosine(m - s0 - centre - tau)
    assert np.max(np.abs(y[0] - expected)) < 2e-3
    # oracle 2: scipy's FFT resampler (16x) puts the peak 3.25 samples later
    up = 16
    fine = signal.resample(np.pad(y[0].real, (0, 64)), up * (y.shape[1] + 64))
    peak = np.argmax(fine) / up + start
    assert peak - (s0 + centre) == pytest.approx(tau, abs=1 / up)
    # our estimator agrees to much better than a sample
    d = estimate_delay(y[0], x[0]) + start - s0
    assert d == pytest.approx(tau, abs=1e-3)


def test_fractional_offset_np_interp_oracle_on_oversampled_pulse():
    """Slowly varying pulse: linear interpolation (np.interp) is an accurate oracle."""
    k = np.arange(400)
    x = np.exp(-0.5 * ((k - 200) / 30.0) ** 2).astype(complex)[None]
    y, start = TxImpairments(TxImpairmentParams(timing_offset_samples=5.6)).apply_tx(x, 0, FS)
    m = start + np.arange(y.shape[1])
    oracle = np.interp(m - 5.6, k, x[0].real, left=0.0, right=0.0)
    # np.interp's own error bound: max|x''| d (1 - d) / 2 = 0.24 / (2 * 30**2) = 1.3e-4
    assert np.max(np.abs(y[0].real - oracle)) < 2e-4


def test_sro_compresses_spacing_and_drifts_start():
    ref = shaped_preamble(zadoff_chu(31))
    gap, s0, sro_ppm = 4000, 2_000_000, 500.0
    x = np.zeros((1, gap + ref.size), complex)
    x[0, :ref.size] = ref
    x[0, gap:] = ref
    tx = TxImpairments(TxImpairmentParams(sro_ppm=sro_ppm, timing_offset_samples=10.0))
    y, start = tx.apply_tx(x, s0, FS)
    eps = sro_ppm * 1e-6
    first = estimate_delay(y[0, :gap // 2], ref) + start
    second = estimate_delay(y[0, gap // 2:], ref) + start + gap // 2
    # the estimator locks on the pulse centre c; node sample s0 + c lands at (s0 + c)/(1+eps) + 10
    c = (ref.size - 1) / 2
    assert first == pytest.approx((s0 + c) / (1 + eps) + 10.0 - c, abs=2e-3)   # ~ -999.5 drift
    assert second - first == pytest.approx(gap / (1 + eps), abs=2e-3)


def test_cfo_rotates_tone_by_2pi_f_over_fs_per_sample():
    n = 1024
    cfo = FS * 37 / n
    tx = TxImpairments(TxImpairmentParams(cfo_hz=cfo))
    y, _ = tx.apply_tx(np.ones((1, n), complex), 0, FS)
    assert np.argmax(np.abs(np.fft.fft(y[0]))) == 37
    step = np.angle(y[0, 1:] * np.conj(y[0, :-1]))
    np.testing.assert_allclose(step, 2 * np.pi * cfo / FS, atol=1e-9)


def test_cfo_phase_is_continuous_in_absolute_time():
    cfo = 1234.5
    tx = TxImpairments(TxImpairmentParams(cfo_hz=cfo))
    y1, _ = tx.apply_tx(np.ones((1, 10), complex), 0, FS)
    y2, _ = tx.apply_tx(np.ones((1, 10), complex), 987_654_321, FS)
    expected = np.exp(2j * np.pi * cfo * 987_654_321 / FS)
    assert y2[0, 0] / y1[0, 0] == pytest.approx(expected, abs=1e-6)


def test_ppm_constructor_ties_cfo_and_sro():
    p = TxImpairmentParams.from_ppm(20.0, 915e6, gain_error_db=1.0)
    assert p.cfo_hz == pytest.approx(18_300.0) and p.sro_ppm == 20.0 and p.gain_error_db == 1.0


def test_gain_error_scales_power():
    x = 0.1 * np.exp(1j * np.arange(100.0))[None]
    y, _ = TxImpairments(TxImpairmentParams(gain_error_db=-2.0)).apply_tx(x, 0, FS)
    assert 10 * np.log10(np.mean(np.abs(y) ** 2) / np.mean(np.abs(x) ** 2)) == pytest.approx(-2.0)


@pytest.mark.parametrize("bits", [8, 12])
def test_quantization_noise_power_is_step_squared_over_12(bits):
    rng = np.random.default_rng(bits)
    x = rng.uniform(-0.9, 0.9, 20000) + 1j * rng.uniform(-0.9, 0.9, 20000)
    y, _ = TxImpairments(TxImpairmentParams(dac_bits=bits, dac_clip=True)).apply_tx(x[None], 0, FS)
    step = 2.0 ** (1 - bits)
    err = y[0] - x
    assert np.var(err.real) == pytest.approx(step ** 2 / 12, rel=0.05)
    assert np.var(err.imag) == pytest.approx(step ** 2 / 12, rel=0.05)
    np.testing.assert_allclose(y[0] * 2 ** (bits - 1), np.round(y[0] * 2 ** (bits - 1)))


def test_clipping_at_full_scale_on_both_converters():
    x = 3.0 * np.exp(1j * np.linspace(0, 2 * np.pi, 200))[None]
    y, _ = TxImpairments(TxImpairmentParams(dac_clip=True)).apply_tx(x, 0, FS)
    assert np.max(np.abs(y.real)) == 1.0 and np.max(np.abs(y.imag)) == 1.0
    r = RxImpairments(RxImpairmentParams(adc_bits=12, adc_clip=True)).apply_rx(x, 0, FS)
    assert np.max(r.real) == pytest.approx(1 - 2 ** -11) and np.min(r.real) == -1.0
    small = 0.3 * x
    assert np.array_equal(quantize(small, None, clip=True), small)


def test_random_phase_changes_each_tune_and_is_seeded():
    params = TxImpairmentParams(random_phase_per_tune=True, phase_offset_rad=0.3)
    a, b = TxImpairments(params), TxImpairments(params)
    assert a.lo_phase_rad == 0.3
    ra, rb = np.random.default_rng(11), np.random.default_rng(11)
    phases_a, phases_b = [], []
    for _ in range(5):
        a.on_tune(ra)
        b.on_tune(rb)
        phases_a.append(a.lo_phase_rad)
        phases_b.append(b.lo_phase_rad)
    assert phases_a == phases_b and len(set(phases_a)) == 5
    y, _ = a.apply_tx(np.ones((1, 4), complex), 0, FS)
    np.testing.assert_allclose(np.angle(y[0]), phases_a[-1])
    fixed = TxImpairments(TxImpairmentParams(phase_offset_rad=0.3))
    fixed.on_tune(np.random.default_rng(1))
    assert fixed.lo_phase_rad == 0.3


def test_wiener_phase_noise_variance_grows_as_2pi_linewidth_t():
    lw, n, lag = 100.0, 40000, 10
    fs = 1e5
    tx = TxImpairments(TxImpairmentParams(phase_noise_linewidth_hz=lw, seed=3))
    y, _ = tx.apply_tx(np.ones((1, n), complex), 0, fs)
    ph = np.unwrap(np.angle(y[0]))
    d = ph[lag::lag] - ph[:-lag:lag]
    assert np.var(d) == pytest.approx(2 * np.pi * lw * lag / fs, rel=0.1)
    assert linewidth_from_dbc_hz(-100.0, 1e5) == pytest.approx(2 * np.pi)


def test_receiver_cfo_rotates_backwards():
    rx = RxImpairments(RxImpairmentParams(cfo_hz=1000.0))
    y = rx.apply_rx(np.ones((2, 100), complex), 50, FS)
    np.testing.assert_allclose(np.angle(y[:, 1] / y[:, 0]), -2 * np.pi * 1000.0 / FS)
    assert y.shape == (2, 100)


def test_params_round_trip_and_reject_unknown_keys():
    p = TxImpairmentParams(timing_offset_samples=3.5, cfo_hz=10.0, dac_bits=12)
    assert TxImpairmentParams.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="cfo_khz"):
        TxImpairmentParams.from_dict({"cfo_khz": 1.0})
    with pytest.raises(ConfigError):
        TxImpairmentParams(interp_half_taps=1)
