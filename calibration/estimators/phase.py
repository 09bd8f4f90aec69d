"""Phase of a received reference after timing and CFO correction, and its exact error variance.

Data model: ``rx = a e^{j phi} s + w``, s known (N,), w ~ CN(0, noise_var). The estimate
phi_hat = angle(<rx, s>) is ML; its error is the angle of a complex Gaussian with mean
|a| ||s||^2 and variance noise_var ||s||^2, i.e. of ``1 + n`` with total SNR
rho = |a|^2 ||s||^2 / noise_var, whose density is known in closed form (below), so the
variance is exact at every SNR (-> 1 / (2 rho), the CRB, at high SNR).
"""
from __future__ import annotations

import numpy as np
from scipy import integrate, special


def estimate_phase(rx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Phase in rad (-pi, pi] of rx (..., N) against ref (N,); shape rx.shape[:-1]."""
    rx = np.asarray(rx, dtype=complex)
    ref = np.asarray(ref, dtype=complex)
    if rx.shape[-1] != ref.shape[-1]:
        raise ValueError(f"rx last axis ({rx.shape[-1]}) must equal the reference length "
                         f"({ref.shape[-1]})")
    ph = np.angle(np.sum(rx * np.conj(ref), axis=-1))
    return ph if np.ndim(ph) else float(ph)


def phase_error_pdf(theta: np.ndarray, snr_total: float) -> np.ndarray:
    """Density of the phase error (rad) of `estimate_phase` at total SNR ``snr_total`` (linear)."""
    g = float(snr_total)
    c = np.cos(theta)
    return (np.exp(-g) / (2 * np.pi)
            + 0.5 * np.sqrt(g / np.pi) * c * np.exp(-g * np.sin(theta) ** 2)
            * special.erfc(-np.sqrt(g) * c))


def phase_error_variance(snr_total: float) -> float:
    """Exact variance (rad^2) of the phase error at total SNR (linear), by numerical integration."""
    if not snr_total > 0:
        raise ValueError(f"snr_total must be > 0, got {snr_total}")
    val, _ = integrate.quad(lambda t: t * t * phase_error_pdf(t, snr_total), -np.pi, np.pi,
                            points=[0.0], limit=200)
    return float(val)
