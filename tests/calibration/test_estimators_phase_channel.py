"""Phase and LS channel estimates against their exact error variances."""
import numpy as np
import pytest
from scipy import integrate

from calibration.estimators.channel import (estimate_channel_ls, ls_error_covariance,
                                            ls_error_variance)
from calibration.estimators.crb import crb_phase
from calibration.estimators.phase import estimate_phase, phase_error_pdf, phase_error_variance
from calibration.estimators.sequences import orthogonal_pilots, zadoff_chu


def _cn(rng, shape, var):
    return np.sqrt(var / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def test_phase_pdf_is_a_density():
    for rho in (0.3, 3.0, 30.0):
        total, _ = integrate.quad(lambda t: phase_error_pdf(t, rho), -np.pi, np.pi)
        assert total == pytest.approx(1.0, abs=1e-8)
    assert phase_error_variance(1e-10) == pytest.approx(np.pi ** 2 / 3, rel=1e-4)   # uniform
    assert phase_error_variance(1e3) == pytest.approx(crb_phase(1e3), rel=2e-3)


@pytest.mark.parametrize("snr_db", [-10, -5, 0, 5, 10])
def test_phase_std_matches_exact_theory(snr_db):
    rng = np.random.default_rng(400 + snr_db)
    ref = zadoff_chu(15)
    trials = 4000
    phi = rng.uniform(-np.pi, np.pi, trials)
    noise_var = 10 ** (-snr_db / 10)
    rx = np.exp(1j * phi)[:, None] * ref + _cn(rng, (trials, ref.size), noise_var)
    err = np.angle(np.exp(1j * (estimate_phase(rx, ref) - phi)))
    snr_total = ref.size / noise_var
    theory = phase_error_variance(snr_total)
    assert np.var(err) == pytest.approx(theory, rel=0.1)
    assert abs(err.mean()) < 4 * np.sqrt(theory / trials)


def test_ls_channel_orthogonal_pilots_error_variance():
    rng = np.random.default_rng(5)
    n_rx, n_tx, k, trials, noise_var = 4, 3, 16, 3000, 0.2
    pilots = orthogonal_pilots(n_tx, k)
    np.testing.assert_allclose(pilots @ pilots.conj().T, k * np.eye(n_tx), atol=1e-9)
    h = _cn(rng, (n_rx, n_tx), 1.0)
    rx = (h @ pilots)[None] + _cn(rng, (trials, n_rx, k), noise_var)
    err = estimate_channel_ls(rx, pilots) - h
    np.testing.assert_allclose(ls_error_variance(pilots, noise_var), noise_var / k)
    emp = np.mean(np.abs(err) ** 2, axis=0)
    np.testing.assert_allclose(emp, noise_var / k, rtol=0.12)
    assert np.abs(err.mean(axis=0)).max() < 4 * np.sqrt(noise_var / k / trials)


def test_ls_channel_nonorthogonal_pilots_total_mse():
    rng = np.random.default_rng(6)
    n_rx, n_tx, k, trials, noise_var = 2, 3, 8, 4000, 0.5
    pilots = _cn(rng, (n_tx, k), 1.0)
    h = _cn(rng, (n_rx, n_tx), 1.0)
    rx = (h @ pilots)[None] + _cn(rng, (trials, n_rx, k), noise_var)
    err = estimate_channel_ls(rx, pilots) - h
    theory = n_rx * np.trace(ls_error_covariance(pilots, noise_var)).real
    assert np.mean(np.sum(np.abs(err) ** 2, axis=(1, 2))) == pytest.approx(theory, rel=0.05)


def test_ls_channel_noiseless_exact_and_rank_check():
    rng = np.random.default_rng(7)
    pilots = orthogonal_pilots(2, 5)
    h = _cn(rng, (3, 2), 1.0)
    np.testing.assert_allclose(estimate_channel_ls(h @ pilots, pilots), h, atol=1e-12)
    with pytest.raises(ValueError, match="linearly dependent"):
        estimate_channel_ls(np.zeros((3, 4)), np.ones((2, 4)))
