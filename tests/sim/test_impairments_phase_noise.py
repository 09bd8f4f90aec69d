"""PLL (Ornstein-Uhlenbeck) and Wiener phase noise against theory: stationary variance,
autocorrelation, phase-difference variance over a gap, far-out PSD level (scipy Welch), the
dBc/Hz helpers, continuity across calls, seeds, validation."""
import math

import numpy as np
import pytest
from scipy import signal

from sim_backend.impairments import (PLLPhase, RxImpairmentParams, RxImpairments,
                                     TxImpairmentParams, TxImpairments, linewidth_from_dbc_hz,
                                     pll_corner_from_dbc_hz, pll_phase_psd)
from testbed.errors import ConfigError

FS = 1e6
RMS_DEG, CORNER = 1.0, 10e3
SIGMA2 = math.radians(RMS_DEG) ** 2


def pll_phase(n, seed=3, rms_deg=RMS_DEG, corner=CORNER, fs=FS):
    tx = TxImpairments(TxImpairmentParams(phase_noise_rms_deg=rms_deg,
                                          phase_noise_corner_hz=corner, seed=seed))
    y, _ = tx.apply_tx(np.ones((1, n), complex), 0, fs)
    return np.angle(y[0])


def test_stationary_variance_and_zero_mean():
    ph = pll_phase(1 << 19)
    # ~1e4 correlation times: the sample variance is within a few % of sigma^2
    assert np.var(ph) == pytest.approx(SIGMA2, rel=0.05)
    assert abs(np.mean(ph)) < 4 * math.sqrt(SIGMA2 / ((1 << 19) * math.pi * CORNER / FS))


@pytest.mark.parametrize("lag", [5, 16, 50])
def test_autocorrelation_is_sigma2_exp_minus_2pi_B_tau(lag):
    ph = pll_phase(1 << 19, seed=4)
    r = np.mean(ph[lag:] * ph[:-lag])
    expected = SIGMA2 * math.exp(-2 * math.pi * CORNER * lag / FS)
    assert r == pytest.approx(expected, abs=0.06 * SIGMA2)


@pytest.mark.parametrize("gap", [3, 20, 200])
def test_phase_difference_over_a_gap(gap):
    """Two calls `gap` samples apart, many independent generators: var(phi(t+g) - phi(t)) =
    2 sigma^2 (1 - exp(-2 pi B g / fs))."""
    rng = np.random.default_rng(gap)
    diffs = []
    for _ in range(3000):
        pll = PLLPhase(math.sqrt(SIGMA2), CORNER, rng)
        a = pll.phases(1000, 1, FS)[0]
        b = pll.phases(1000 + gap, 1, FS)[0]
        diffs.append(b - a)
    expected = 2 * SIGMA2 * (1 - math.exp(-2 * math.pi * CORNER * gap / FS))
    assert np.var(diffs) == pytest.approx(expected, rel=0.1)


def aliased(psd, f, fs=FS, k_max=200):
    """Spectrum of the sampled process: sum_k psd(f - k fs) (theory of sampling)."""
    return sum(psd(f - k * fs) for k in range(-k_max, k_max + 1))


def band_db(f, p, centre, half_width=10e3):
    sel = np.abs(f - centre) <= half_width
    return 10 * np.log10(np.mean(p[sel]))


def test_far_out_psd_matches_the_dbc_level_it_was_built_from():
    corner = pll_corner_from_dbc_hz(RMS_DEG, -100.0, 100e3)
    assert corner == pytest.approx(math.pi * 1e10 * 1e-10 / SIGMA2)      # 10.3 kHz
    ph = pll_phase(1 << 19, seed=5, corner=corner)
    f, p = signal.welch(ph, fs=FS, nperseg=1024, return_onesided=False, detrend=False)
    # the far-out level it was built from (the 1/f^2 form is 0.05 dB off at 100 kHz)
    assert band_db(f, p, 100e3) == pytest.approx(-100.0, abs=0.3)
    # the whole spectrum: the sampled Lorentzian (aliased continuous PSD), 20 kHz bands
    theory = aliased(lambda x: pll_phase_psd(x, RMS_DEG, corner), f)
    for centre in (15e3, 50e3, 100e3, 200e3, 400e3):
        assert band_db(f, p, centre) == pytest.approx(band_db(f, theory, centre), abs=0.3)
    # in-loop level sigma^2 / (pi B) and the shape integrates to sigma^2
    assert pll_phase_psd(0.0, RMS_DEG, corner) == pytest.approx(SIGMA2 / (math.pi * corner))
    assert np.trapz(pll_phase_psd(np.linspace(-1e9, 1e9, 2_000_001), RMS_DEG, corner),
                    dx=1e3) == pytest.approx(SIGMA2, rel=1e-3)


def test_wiener_far_out_psd_matches_linewidth_from_dbc_hz():
    """L(f) = lw / (2 pi f^2): the increments' flat spectrum 2 pi lw / fs per sample, seen
    through the sampled random walk (aliased 1/f^2)."""
    lw = linewidth_from_dbc_hz(-70.0, 100e3)
    tx = TxImpairments(TxImpairmentParams(phase_noise_linewidth_hz=lw, seed=6))
    y, _ = tx.apply_tx(np.ones((1, 1 << 19), complex), 0, FS)
    ph = np.unwrap(np.angle(y[0]))
    f, p = signal.welch(ph, fs=FS, nperseg=1024, return_onesided=False, detrend="linear")
    with np.errstate(divide="ignore"):
        theory = aliased(lambda x: lw / (2 * math.pi * x ** 2), f)
    assert band_db(f, theory, 100e3) == pytest.approx(-70.0, abs=0.2)
    assert band_db(f, p, 100e3) == pytest.approx(band_db(f, theory, 100e3), abs=0.3)


def test_continuous_across_calls_and_gaps():
    """Split generation equals nothing special: adjacent calls continue the AR(1) recursion
    (one-step innovation variance), a long gap decorrelates to the stationary law."""
    rng = np.random.default_rng(7)
    steps, far = [], []
    for _ in range(2000):
        pll = PLLPhase(math.sqrt(SIGMA2), CORNER, rng)
        a = pll.phases(0, 10, FS)
        b = pll.phases(10, 10, FS)
        steps.append(b[0] - a[-1])
        c = pll.phases(10 ** 9, 1, FS)
        far.append((b[-1], c[0]))
    rho = math.exp(-2 * math.pi * CORNER / FS)
    assert np.var(steps) == pytest.approx(2 * SIGMA2 * (1 - rho), rel=0.1)
    far = np.array(far)
    assert abs(np.corrcoef(far.T)[0, 1]) < 0.1 and np.var(far[:, 1]) == pytest.approx(SIGMA2, rel=0.1)


def test_seeded_and_independent_between_seeds():
    a, b, c = pll_phase(1000, seed=9), pll_phase(1000, seed=9), pll_phase(1000, seed=10)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_receiver_pll_rotates_backwards():
    p = dict(phase_noise_rms_deg=2.0, phase_noise_corner_hz=5e3, seed=1)
    y, _ = TxImpairments(TxImpairmentParams(**p)).apply_tx(np.ones((1, 500), complex), 40, FS)
    r = RxImpairments(RxImpairmentParams(**p)).apply_rx(np.ones((1, 500), complex), 40, FS)
    np.testing.assert_allclose(r[0], np.conj(y[0]))
    assert np.std(np.angle(r[0])) > 0.01


def test_params_serialize_and_validate():
    p = TxImpairmentParams(phase_noise_rms_deg=1.0, phase_noise_corner_hz=1e4)
    assert TxImpairmentParams.from_dict(p.to_dict()) == p
    q = RxImpairmentParams(phase_noise_rms_deg=0.5, phase_noise_corner_hz=2e3)
    assert RxImpairmentParams.from_dict(q.to_dict()) == q
    with pytest.raises(ConfigError, match="phase_noise_corner_hz"):
        TxImpairmentParams(phase_noise_rms_deg=1.0)
    with pytest.raises(ConfigError, match="phase_noise_rms_deg"):
        RxImpairmentParams(phase_noise_rms_deg=-1.0, phase_noise_corner_hz=1.0)
    with pytest.raises(ConfigError, match="linewidth"):
        TxImpairmentParams(phase_noise_linewidth_hz=-1.0)
    with pytest.raises(ConfigError):
        pll_corner_from_dbc_hz(0.0, -100.0, 1e5)
