"""The CRB formulas agree with each other and with a brute-force Fisher information."""
import numpy as np
import pytest

from calibration.estimators.crb import (crb_cfo, crb_cfo_constant_modulus, crb_delay,
                                        crb_delay_rms, crb_phase, rms_bandwidth)
from calibration.estimators.sequences import shaped_preamble, zadoff_chu


def test_delay_crb_equals_textbook_rms_bandwidth_form():
    s = np.pad(shaped_preamble(zadoff_chu(31)), (0, 50))
    noise_var = 0.3
    snr_total = np.sum(np.abs(s) ** 2) / noise_var
    assert crb_delay(s, noise_var) == pytest.approx(crb_delay_rms(snr_total, rms_bandwidth(s)),
                                                    rel=1e-6)


def test_delay_crb_matches_numerical_fisher_information():
    """Fisher matrix of (tau, Re a, Im a) by finite differences of the shifted waveform."""
    s = np.pad(shaped_preamble(zadoff_chu(31)), (0, 50))
    n = s.size
    k = np.fft.fftfreq(n) * n
    noise_var, a = 0.5, 0.8 * np.exp(0.4j)

    def mean(theta):
        tau, ar, ai = theta
        return (ar + 1j * ai) * np.fft.ifft(np.fft.fft(s) * np.exp(-2j * np.pi * k * tau / n))

    theta0 = np.array([0.0, a.real, a.imag])
    grads = []
    for i in range(3):
        d = np.zeros(3)
        d[i] = 1e-5
        grads.append((mean(theta0 + d) - mean(theta0 - d)) / 2e-5)
    fim = np.array([[2 * np.real(np.vdot(gi, gj)) / noise_var for gj in grads] for gi in grads])
    assert crb_delay(a * s, noise_var) == pytest.approx(np.linalg.inv(fim)[0, 0], rel=1e-5)


def test_cfo_crb_general_equals_constant_modulus_closed_form():
    pilot = zadoff_chu(63)
    snr_db = 7.0
    noise_var = 10 ** (-snr_db / 10)
    assert crb_cfo(pilot, 1.0, noise_var, 2e6) == pytest.approx(
        crb_cfo_constant_modulus(snr_db, 63, 2e6), rel=1e-12)


def test_phase_crb_value_and_errors():
    assert crb_phase(50.0) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        crb_phase(0.0)
    with pytest.raises(ValueError, match="noise_var"):
        crb_delay(np.ones(8), 0.0)
