"""Burst detection and sub-sample timing (delay) estimation against a known reference.

Data model: ``rx[m] = a * ref(m - tau) + w[m]`` with ``ref`` a known band-limited waveform
(shape (L,)), ``a`` an unknown complex amplitude, ``w`` white complex Gaussian noise and ``tau``
the delay in samples of ``ref[0]`` inside the window ``rx`` (shape (..., n), n >= L).

* Detection: the normalized correlation ``|<rx[k:k+L], ref>|^2 / (||ref||^2 ||rx[k:k+L]||^2)``
  is scale invariant and, on noise only, exactly Beta(1, L-1) distributed at each lag, so
  P(metric > t) = (1 - t)^(L-1). The threshold is set from a false-alarm probability per window
  (union over the window's lags).
* Delay: maximum likelihood, i.e. the maximum over tau of ``|C(tau)|``, C the cross-correlation
  continued between integer lags by its band-limited (DFT) interpolant. Integer peak, parabolic
  start, then Newton steps on |C|^2 with exact DFT derivatives. Unbiased and on the CRB above
  the threshold SNR for band-limited references; the Nyquist bin is treated as -n/2, so use
  references without energy at fs/2 (e.g. RRC-shaped, `sequences.shaped_preamble`).
"""
from __future__ import annotations

import numpy as np


def _as_batch(rx: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    rx = np.asarray(rx, dtype=complex)
    if rx.ndim < 1:
        raise ValueError("rx must have a sample axis (last axis)")
    return rx.reshape(-1, rx.shape[-1]), rx.shape[:-1]


def _check_ref(ref: np.ndarray, n: int) -> np.ndarray:
    ref = np.asarray(ref, dtype=complex)
    if ref.ndim != 1 or ref.size < 2:
        raise ValueError(f"ref must be 1-D with >= 2 samples, got shape {ref.shape}")
    if ref.size > n:
        raise ValueError(f"window has {n} samples, shorter than the reference ({ref.size}); "
                         "capture a longer receive window")
    return ref


def cross_correlation_spectrum(rx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """DFT of the cross-correlation, X[k] = RX[k] conj(REF[k]) (ref zero-padded to n), (..., n)."""
    rx = np.asarray(rx, dtype=complex)
    n = rx.shape[-1]
    ref = _check_ref(ref, n)
    return np.fft.fft(rx, axis=-1) * np.conj(np.fft.fft(ref, n))


def cross_correlation(rx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """c[..., k] = sum_i rx[..., k + i] conj(ref[i]) for lags k = 0..n-L, shape (..., n-L+1)."""
    rx = np.asarray(rx, dtype=complex)
    n = rx.shape[-1]
    ref = _check_ref(ref, n)
    return np.fft.ifft(cross_correlation_spectrum(rx, ref), axis=-1)[..., : n - ref.size + 1]


def detection_metric(rx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Normalized correlation in [0, 1] per lag k = 0..n-L, shape (..., n-L+1) (see module doc)."""
    rx = np.asarray(rx, dtype=complex)
    ref = _check_ref(ref, rx.shape[-1])
    c = cross_correlation(rx, ref)
    cum = np.concatenate([np.zeros(rx.shape[:-1] + (1,)), np.cumsum(np.abs(rx) ** 2, axis=-1)],
                         axis=-1)
    seg_energy = cum[..., ref.size:] - cum[..., : -ref.size]
    ref_energy = np.vdot(ref, ref).real
    # a silent stretch (exact zeros, e.g. a digital loopback between bursts) has no burst:
    # its energy is rounding noise of the running sum, not a denominator
    floor = 1e-9 * np.max(seg_energy, axis=-1, keepdims=True) + 1e-300
    with np.errstate(invalid="ignore", divide="ignore"):
        metric = np.where(seg_energy > floor, np.abs(c) ** 2 / (ref_energy * seg_energy), 0.0)
    return np.nan_to_num(np.clip(metric, 0.0, 1.0), nan=0.0)


def detection_threshold(ref_length: int, n_lags: int, pfa: float) -> float:
    """Threshold t on `detection_metric` so that noise alone crosses it somewhere in a window of
    ``n_lags`` lags with probability <= ``pfa`` (union bound over lags; Beta(1, L-1) per lag)."""
    if not 0.0 < pfa < 1.0:
        raise ValueError(f"pfa must be in (0, 1), got {pfa}")
    if ref_length < 2 or n_lags < 1:
        raise ValueError(f"need ref_length >= 2 and n_lags >= 1, got {ref_length}, {n_lags}")
    p_lag = pfa / n_lags
    return float(1.0 - p_lag ** (1.0 / (ref_length - 1)))


def detect_bursts(rx: np.ndarray, ref: np.ndarray, pfa: float = 1e-3,
                  min_separation: int | None = None) -> np.ndarray:
    """Integer start lags of bursts of ``ref`` in a 1-D window ``rx`` (shape (n,)).

    Returns the lags (int array, ascending) of local maxima of `detection_metric` above the
    threshold for false-alarm probability ``pfa`` per window, at least ``min_separation``
    samples apart (default: the reference length); the strongest wins within that distance.
    """
    rx = np.asarray(rx, dtype=complex)
    if rx.ndim != 1:
        raise ValueError(f"detect_bursts takes one window, shape (n,), got {rx.shape}")
    ref = _check_ref(ref, rx.size)
    metric = detection_metric(rx, ref)
    thr = detection_threshold(ref.size, metric.size, pfa)
    sep = ref.size if min_separation is None else int(min_separation)
    found: list[int] = []
    for k in np.argsort(metric)[::-1]:
        if metric[k] <= thr:
            break
        if all(abs(int(k) - j) >= sep for j in found):
            found.append(int(k))
    return np.array(sorted(found), dtype=int)


def estimate_delay(rx: np.ndarray, ref: np.ndarray, n_iter: int = 4,
                   max_lag: int | None = None) -> np.ndarray:
    """ML delay of ``ref`` in ``rx`` in samples (float), shape rx.shape[:-1].

    rx: (..., n) complex windows; ref: (L,) known band-limited reference. The integer search
    covers lags 0..max_lag (default n - L); the estimate is refined to a fraction of a sample.
    """
    xb, batch_shape = _as_batch(rx)
    n = xb.shape[-1]
    ref = _check_ref(ref, n)
    hi = n - ref.size if max_lag is None else int(max_lag)
    spec = cross_correlation_spectrum(xb, ref)
    mag2 = np.abs(np.fft.ifft(spec, axis=-1)) ** 2
    rows = np.arange(xb.shape[0])
    p = np.argmax(mag2[:, : hi + 1], axis=-1)
    ym, y0, yp = mag2[rows, (p - 1) % n], mag2[rows, p], mag2[rows, (p + 1) % n]
    denom = ym - 2 * y0 + yp
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(denom < 0, 0.5 * (ym - yp) / denom, 0.0)
    tau = p + np.clip(frac, -0.5, 0.5)
    w = 2j * np.pi * np.fft.fftfreq(n)              # j 2 pi k / n, signed bins
    for _ in range(n_iter):
        e = spec * np.exp(np.outer(tau, w))
        c0 = e.sum(-1)
        c1 = (e * w).sum(-1)
        c2 = (e * w * w).sum(-1)
        d1 = 2 * np.real(np.conj(c0) * c1)
        d2 = 2 * (np.abs(c1) ** 2 + np.real(np.conj(c0) * c2))
        step = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.0)
        tau = np.clip(tau + np.clip(step, -0.5, 0.5), p - 1.0, p + 1.0)
    return tau.reshape(batch_shape) if batch_shape else float(tau[0])
