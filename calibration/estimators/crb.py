"""Cramer-Rao bounds for the calibration estimators (in AWGN, complex noise variance ``noise_var``).

Data models (w ~ CN(0, noise_var) white, a an unknown complex amplitude, i.e. unknown gain *and*
phase, which is what a freshly tuned radio gives us):

* delay:  r[m] = a s(m - tau) + w[m], s a known band-limited waveform; tau in samples.
  var(tau) >= noise_var / (2 |a|^2 (||s'||^2 - |<s', s>|^2 / ||s||^2))    [samples^2]
  with s' = ds/dtau computed exactly through the DFT (s' <-> j 2 pi k / n S[k]). For a waveform
  whose spectrum is centred on 0 Hz the projection term vanishes and this is the textbook
  1 / (8 pi^2 B_rms^2 SNR_total), B_rms in cycles/sample, SNR_total = |a|^2 ||s||^2 / noise_var.
* CFO:    r[n] = a s[n] exp(j 2 pi f n / fs) + w[n], s a known pilot, n = 0..N-1.
  var(f) >= fs^2 / (4 pi^2) * noise_var / (2 |a|^2 (sum n^2 |s|^2 - (sum n |s|^2)^2 / sum |s|^2))
  [Hz^2]; for a constant-modulus pilot: 6 fs^2 / ((2 pi)^2 SNR N (N^2 - 1)), SNR = |a|^2/noise_var
  per sample. This bound (known pilot, unknown phase) also bounds any estimator that does not use
  the pilot (the repeated-preamble estimator), since knowing more can only lower the bound.
* phase:  r = a e^{j phi} s + w with s, |a| known: var(phi) >= 1 / (2 SNR_total).
"""
from __future__ import annotations

import numpy as np


def _signed_bins(n: int) -> np.ndarray:
    """DFT bin indices -n/2..n/2-1 (as floats), the frequencies of the band-limited interpolant."""
    return np.fft.fftfreq(n) * n


def crb_delay(waveform: np.ndarray, noise_var: float) -> float:
    """CRB on the delay in samples^2 for a known waveform with unknown complex amplitude.

    waveform: noiseless received burst a*s, shape (n,) (amplitude included; zero-pad it so the
    DFT interpolant does not wrap). noise_var: complex noise variance per sample (linear).
    """
    s = np.asarray(waveform, dtype=complex)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(f"waveform must be 1-D with >= 2 samples, got shape {s.shape}")
    if not noise_var > 0:
        raise ValueError(f"noise_var must be > 0, got {noise_var}")
    n = s.size
    ds = np.fft.ifft(2j * np.pi * _signed_bins(n) / n * np.fft.fft(s))
    energy = np.vdot(s, s).real
    fisher_core = np.vdot(ds, ds).real - abs(np.vdot(s, ds)) ** 2 / energy
    return float(noise_var / (2.0 * fisher_core))


def rms_bandwidth(waveform: np.ndarray) -> float:
    """RMS bandwidth of a waveform (shape (n,)) in cycles/sample, about its mean frequency."""
    s = np.asarray(waveform, dtype=complex)
    spec = np.abs(np.fft.fft(s)) ** 2
    f = _signed_bins(s.size) / s.size
    mean = np.sum(f * spec) / np.sum(spec)
    return float(np.sqrt(np.sum((f - mean) ** 2 * spec) / np.sum(spec)))


def crb_delay_rms(snr_total: float, rms_bandwidth_cycles: float) -> float:
    """Textbook delay CRB 1 / (8 pi^2 B_rms^2 SNR_total) in samples^2 (SNR_total linear)."""
    return float(1.0 / (8.0 * np.pi ** 2 * rms_bandwidth_cycles ** 2 * snr_total))


def crb_cfo(pilot: np.ndarray, amplitude: complex, noise_var: float,
            sample_rate_hz: float) -> float:
    """CRB on the CFO in Hz^2 for a known pilot (shape (N,)) with unknown complex amplitude.

    amplitude: |a| of the received pilot (linear); noise_var: complex noise variance per sample.
    """
    s2 = np.abs(np.asarray(pilot, dtype=complex)) ** 2
    if s2.ndim != 1 or s2.size < 2:
        raise ValueError(f"pilot must be 1-D with >= 2 samples, got shape {s2.shape}")
    if not noise_var > 0:
        raise ValueError(f"noise_var must be > 0, got {noise_var}")
    n = np.arange(s2.size)
    spread = np.sum(n ** 2 * s2) - np.sum(n * s2) ** 2 / np.sum(s2)
    var_omega = noise_var / (2.0 * abs(amplitude) ** 2 * spread)   # rad^2 / sample^2
    return float(var_omega * sample_rate_hz ** 2 / (4.0 * np.pi ** 2))


def crb_cfo_constant_modulus(snr_db: float, n_samples: int, sample_rate_hz: float) -> float:
    """CFO CRB in Hz^2 for a constant-modulus pilot of N samples: 6 fs^2/((2 pi)^2 SNR N (N^2-1)).

    snr_db: per-sample SNR |a|^2 / noise_var in dB.
    """
    snr = 10.0 ** (snr_db / 10.0)
    n = float(n_samples)
    return float(6.0 * sample_rate_hz ** 2 / ((2 * np.pi) ** 2 * snr * n * (n * n - 1.0)))


def crb_phase(snr_total: float) -> float:
    """CRB on the phase in rad^2 given the total (integrated) SNR |a|^2 ||s||^2 / noise_var."""
    if not snr_total > 0:
        raise ValueError(f"snr_total must be > 0, got {snr_total}")
    return float(1.0 / (2.0 * snr_total))
