"""Carrier frequency offset (CFO) estimation, in Hz.

Data model: ``rx[n] = a * s[n] * exp(j 2 pi f n / fs) + w[n]``, n = 0..N-1, timing already known
(``rx`` starts at the preamble), ``a`` unknown complex, ``w`` white complex Gaussian.

* `estimate_cfo_repeated` (Moose / Schmidl-Cox): ``s`` made of identical periods of P samples;
  f = angle(sum_n rx[n + P] conj(rx[n])) * fs / (2 pi P). Does not need to know ``s``; range
  |f| < fs / (2 P). With two periods its variance is about 1.33x the known-pilot CRB (std 1.15x).
* `estimate_cfo_pilot`: maximum likelihood with the pilot known and the phase unknown, i.e. the
  peak of the periodogram of ``rx * conj(s)`` (FFT grid, then Newton steps with exact
  derivatives). Attains `crb.crb_cfo` above the threshold SNR; range |f| < fs / 2.
* `estimate_cfo`: Moose for the unambiguous coarse value, then the ML refinement around it.
"""
from __future__ import annotations

import numpy as np


def estimate_cfo_repeated(rx: np.ndarray, period_samples: int, sample_rate_hz: float) -> np.ndarray:
    """Repeated-preamble CFO in Hz from rx (..., M*P) made of M >= 2 identical periods of P.

    Returns shape rx.shape[:-1] (a float for 1-D rx).
    """
    rx = np.asarray(rx, dtype=complex)
    p = int(period_samples)
    if p < 1 or rx.shape[-1] < 2 * p:
        raise ValueError(f"need at least two periods of {p} samples, got {rx.shape[-1]} samples")
    z = np.sum(rx[..., p:] * np.conj(rx[..., :-p]), axis=-1)
    f = np.angle(z) * sample_rate_hz / (2 * np.pi * p)
    return f if np.ndim(f) else float(f)


def estimate_cfo_pilot(rx: np.ndarray, pilot: np.ndarray, sample_rate_hz: float,
                       initial_hz: np.ndarray | float | None = None, n_iter: int = 5,
                       oversample: int = 8) -> np.ndarray:
    """Known-pilot ML CFO in Hz. rx (..., N), pilot (N,); returns shape rx.shape[:-1].

    initial_hz: a coarse estimate to refine (scalar or rx.shape[:-1]); without it the start is
    the peak of an ``oversample`` x zero-padded FFT of rx * conj(pilot).
    """
    rx = np.asarray(rx, dtype=complex)
    pilot = np.asarray(pilot, dtype=complex)
    if pilot.ndim != 1 or rx.shape[-1] != pilot.size:
        raise ValueError(f"rx last axis ({rx.shape[-1]}) must equal the pilot length "
                         f"({pilot.shape}); cut rx at the detected timing")
    batch_shape = rx.shape[:-1]
    y = (rx * np.conj(pilot)).reshape(-1, pilot.size)
    n_len = pilot.size
    if initial_hz is None:
        nfft = int(oversample) * n_len
        k = np.argmax(np.abs(np.fft.fft(y, nfft, axis=-1)), axis=-1)
        nu = np.fft.fftfreq(nfft)[k]
    else:
        nu = np.broadcast_to(np.asarray(initial_hz, float) / sample_rate_hz,
                             batch_shape).reshape(-1).copy()
    nu0 = nu.copy()
    n = np.arange(n_len)
    w = -2j * np.pi * n
    for _ in range(n_iter):
        e = y * np.exp(np.outer(nu, w))
        g0, g1, g2 = e.sum(-1), (e * w).sum(-1), (e * w * w).sum(-1)
        d1 = 2 * np.real(np.conj(g0) * g1)
        d2 = 2 * (np.abs(g1) ** 2 + np.real(np.conj(g0) * g2))
        step = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.0)
        nu = np.clip(nu + np.clip(step, -0.5 / n_len, 0.5 / n_len),
                     nu0 - 1.0 / n_len, nu0 + 1.0 / n_len)
    f = nu * sample_rate_hz
    return f.reshape(batch_shape) if batch_shape else float(f[0])


def estimate_cfo(rx: np.ndarray, pilot: np.ndarray, period_samples: int,
                 sample_rate_hz: float) -> np.ndarray:
    """Coarse repeated-preamble CFO refined by known-pilot ML, in Hz; rx (..., N), pilot (N,)
    made of identical periods of ``period_samples``. Range |f| < fs / (2 P)."""
    coarse = estimate_cfo_repeated(rx, period_samples, sample_rate_hz)
    return estimate_cfo_pilot(rx, pilot, sample_rate_hz, initial_hz=coarse)


def remove_cfo(rx: np.ndarray, cfo_hz: float, sample_rate_hz: float,
               start_sample: int = 0) -> np.ndarray:
    """rx (..., n) de-rotated by a CFO of ``cfo_hz`` Hz, sample 0 being ``start_sample``."""
    rx = np.asarray(rx, dtype=complex)
    n = start_sample + np.arange(rx.shape[-1])
    return rx * np.exp(-2j * np.pi * np.asarray(cfo_hz)[..., None] * n / sample_rate_hz)
