"""Reference sequences for calibration: Zadoff-Chu, RRC pulse shaping, repeated preambles, pilots.

All sequences are complex baseband, shape ``(n_samples,)`` (or ``(n_tx, n_samples)`` for pilots),
unit average power per sample unless stated otherwise.
"""
from __future__ import annotations

import math

import numpy as np


def zadoff_chu(length: int, root: int = 1) -> np.ndarray:
    """Zadoff-Chu sequence of odd ``length`` and ``root`` coprime to it, shape (length,).

    Constant modulus 1 and ideal periodic autocorrelation (zero at every non-zero cyclic lag).
    """
    if length < 3 or length % 2 == 0:
        raise ValueError(f"length must be an odd integer >= 3, got {length}")
    if math.gcd(root, length) != 1:
        raise ValueError(f"root must be coprime to length={length}, got root={root}")
    n = np.arange(length)
    return np.exp(-1j * np.pi * root * n * (n + 1) / length)


def rrc_taps(samples_per_symbol: int, rolloff: float, span_symbols: int) -> np.ndarray:
    """Root-raised-cosine filter taps, shape (span_symbols * samples_per_symbol + 1,), unit energy.

    ``rolloff`` in (0, 1]; the shaped signal occupies |f| <= (1 + rolloff) / (2 sps) cycles/sample.
    """
    if samples_per_symbol < 1:
        raise ValueError(f"samples_per_symbol must be >= 1, got {samples_per_symbol}")
    if not 0.0 < rolloff <= 1.0:
        raise ValueError(f"rolloff must be in (0, 1], got {rolloff}")
    if span_symbols < 2 or span_symbols % 2:
        raise ValueError(f"span_symbols must be an even integer >= 2, got {span_symbols}")
    sps, beta = samples_per_symbol, rolloff
    t = np.arange(-span_symbols * sps // 2, span_symbols * sps // 2 + 1) / sps
    h = np.empty_like(t)
    for i, ti in enumerate(t):
        if abs(ti) < 1e-12:
            h[i] = 1.0 + beta * (4.0 / np.pi - 1.0)
        elif abs(abs(ti) - 1.0 / (4.0 * beta)) < 1e-12:
            h[i] = (beta / np.sqrt(2.0)) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * beta))
                                            + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta)))
        else:
            num = np.sin(np.pi * ti * (1 - beta)) + 4 * beta * ti * np.cos(np.pi * ti * (1 + beta))
            h[i] = num / (np.pi * ti * (1 - (4 * beta * ti) ** 2))
    return h / np.linalg.norm(h)


def shaped_preamble(symbols: np.ndarray, samples_per_symbol: int = 2, rolloff: float = 0.35,
                    span_symbols: int = 8) -> np.ndarray:
    """Band-limited waveform of ``symbols`` (shape (n,)) through an RRC filter.

    Returns shape (n * sps + span_symbols * sps,) samples, scaled to unit average power over the
    symbols' duration (n * sps samples). Band-limited signals are what make sub-sample delays
    well defined.
    """
    symbols = np.asarray(symbols, dtype=complex)
    up = np.zeros(symbols.size * samples_per_symbol, dtype=complex)
    up[::samples_per_symbol] = symbols
    wave = np.convolve(up, rrc_taps(samples_per_symbol, rolloff, span_symbols))
    return wave * np.sqrt(up.size / np.sum(np.abs(wave) ** 2))


def repeated_preamble(base: np.ndarray, n_periods: int) -> np.ndarray:
    """``base`` (shape (P,)) repeated ``n_periods`` times back to back, shape (n_periods * P,).

    A CFO of f Hz turns each period into the previous one times exp(j 2 pi f P / fs), which the
    repeated-preamble CFO estimator measures (unambiguous for |f| < fs / (2 P)).
    """
    if n_periods < 2:
        raise ValueError(f"n_periods must be >= 2 for a repeated preamble, got {n_periods}")
    return np.tile(np.asarray(base, dtype=complex), n_periods)


def orthogonal_pilots(n_tx: int, length: int) -> np.ndarray:
    """Unit-modulus pilots with orthogonal rows, shape (n_tx, length), P P^H = length * I.

    Row t is a Zadoff-Chu sequence (prime-ish odd length) times the DFT tone exp(j 2 pi t n / L),
    so rows are orthogonal for any n_tx <= length.
    """
    if not 1 <= n_tx <= length:
        raise ValueError(f"need 1 <= n_tx <= length, got n_tx={n_tx}, length={length}")
    n = np.arange(length)
    base = zadoff_chu(length, 1) if length % 2 else np.exp(-1j * np.pi * n * n / length)
    tones = np.exp(2j * np.pi * np.outer(np.arange(n_tx), n) / length)
    return tones * base[None, :]
