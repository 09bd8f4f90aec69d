"""Delay estimation and burst detection against theory (CRB, exact false-alarm law)."""
import numpy as np
import pytest
from scipy import stats

from calibration.estimators.crb import crb_delay
from calibration.estimators.sequences import shaped_preamble, zadoff_chu
from calibration.estimators.timing import (detect_bursts, detection_metric, detection_threshold,
                                           estimate_delay)

REF = shaped_preamble(zadoff_chu(31), samples_per_symbol=2, rolloff=0.35, span_symbols=8)
N_WIN = 128


def _delayed(ref, tau, n):
    """Exact band-limited delay by tau samples (the data model), shape tau.shape + (n,)."""
    k = np.fft.fftfreq(n) * n
    spec = np.fft.fft(ref, n) * np.exp(-2j * np.pi * np.multiply.outer(tau, k) / n)
    return np.fft.ifft(spec, axis=-1)


@pytest.mark.parametrize("snr_db", [5, 10, 15, 20, 25, 30])
def test_delay_unbiased_and_near_crb(snr_db):
    rng = np.random.default_rng(100 + snr_db)
    trials = 300
    tau = rng.uniform(10.0, 40.0, trials)
    amp = np.exp(2j * np.pi * rng.uniform(size=trials))
    noise_var = 10 ** (-snr_db / 10)   # REF has unit power per sample
    clean = amp[:, None] * _delayed(REF, tau, N_WIN)
    noise = np.sqrt(noise_var / 2) * (rng.standard_normal(clean.shape)
                                      + 1j * rng.standard_normal(clean.shape))
    err = estimate_delay(clean + noise, REF) - tau
    crb_std = np.sqrt(crb_delay(np.pad(REF, (0, N_WIN - REF.size)), noise_var))
    assert abs(err.mean()) < 4 * crb_std * 2 / np.sqrt(trials)
    ratio = err.std() / crb_std
    assert 0.85 < ratio < 2.0, ratio


def test_delay_noiseless_is_exact_for_any_fraction():
    tau = np.array([0.0, 3.25, 17.5, 41.999, 50.01])
    est = estimate_delay(_delayed(REF, tau, N_WIN), REF)
    np.testing.assert_allclose(est, tau, atol=1e-6)


def test_delay_rejects_short_window():
    with pytest.raises(ValueError, match="shorter than the reference"):
        estimate_delay(np.zeros(10, complex), REF)


def test_detection_metric_on_noise_is_beta_1_Lminus1():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3000, N_WIN)) + 1j * rng.standard_normal((3000, N_WIN))
    metric_at_lag = detection_metric(w, REF)[:, 20]
    assert stats.kstest(metric_at_lag, stats.beta(1, REF.size - 1).cdf).pvalue > 1e-3


def test_window_false_alarm_rate_within_union_bound():
    rng = np.random.default_rng(8)
    pfa = 0.05
    w = rng.standard_normal((4000, N_WIN)) + 1j * rng.standard_normal((4000, N_WIN))
    metric = detection_metric(w, REF)
    thr = detection_threshold(REF.size, metric.shape[1], pfa)
    rate = np.mean(metric.max(axis=1) > thr)
    assert pfa / 5 < rate < 1.25 * pfa, rate


def test_detect_two_bursts_at_low_snr():
    rng = np.random.default_rng(9)
    n = 600
    x = np.zeros(n, complex)
    x[100:100 + REF.size] += 0.7 * REF
    x[350:350 + REF.size] += 0.7j * REF
    x += (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)   # ~ -3 dB
    np.testing.assert_array_equal(detect_bursts(x, REF, pfa=1e-3), [100, 350])
    noise_only = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)
    assert detect_bursts(noise_only, REF, pfa=1e-3).size == 0
