"""Transmit-gain sweep: received level vs transmit level, fitted in dB, with a linearity check.

A linear chain gives rx_db = tx_db + offset_db (slope 1 dB/dB). A compressing amplifier bends
the curve down at high drive: the slope of a straight-line fit drops below 1 and the residual
grows. `fit_gain_sweep` fits rx_db = slope * tx_db + offset by least squares and flags the
sweep non-linear when |slope - 1| or the worst residual exceed the tolerances;
`compression_point_1db` finds the drive at which the output falls 1 dB below the small-signal
line (fitted with slope 1 on the lowest points).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GainFit:
    """Straight-line fit of a gain sweep.

    slope_db_per_db: fitted slope (1.0 for a linear chain); offset_db: rx level at tx 0 dB;
    residual_rms_db / max_abs_residual_db: misfit in dB; is_linear: within tolerances.
    """

    slope_db_per_db: float
    offset_db: float
    residual_rms_db: float
    max_abs_residual_db: float
    is_linear: bool


def power_db(samples: np.ndarray) -> float:
    """Mean power of complex samples (any shape) in dB relative to full scale 1.0 (dBFS)."""
    p = float(np.mean(np.abs(np.asarray(samples)) ** 2))
    if p <= 0:
        raise ValueError("samples have zero power; nothing was received")
    return 10.0 * np.log10(p)


def _check_sweep(tx_db, rx_db, min_points):
    tx = np.asarray(tx_db, float)
    rx = np.asarray(rx_db, float)
    if tx.shape != rx.shape or tx.ndim != 1 or tx.size < min_points:
        raise ValueError(f"need matching 1-D tx/rx level arrays with >= {min_points} points, "
                         f"got shapes {tx.shape} and {rx.shape}")
    if np.ptp(tx) <= 0:
        raise ValueError("transmit levels must span a range; sweep the transmit gain")
    return tx, rx


def fit_gain_sweep(tx_db: np.ndarray, rx_db: np.ndarray, slope_tol: float = 0.05,
                   residual_tol_db: float = 0.5) -> GainFit:
    """Least-squares line through (tx_db, rx_db) (both shape (n,), dB); see `GainFit`."""
    tx, rx = _check_sweep(tx_db, rx_db, 3)
    slope, offset = np.polyfit(tx, rx, 1)
    resid = rx - (slope * tx + offset)
    rms = float(np.sqrt(np.mean(resid ** 2)))
    worst = float(np.max(np.abs(resid)))
    linear = bool(abs(slope - 1.0) <= slope_tol and worst <= residual_tol_db)
    return GainFit(float(slope), float(offset), rms, worst, linear)


def compression_point_1db(tx_db: np.ndarray, rx_db: np.ndarray,
                          n_small_signal: int = 3) -> float | None:
    """Input level (dB, the tx_db axis) of 1 dB compression, or None if never reached.

    The small-signal line has slope 1 and the offset fitted on the ``n_small_signal`` lowest
    drive points; the crossing of 1 dB below it is linearly interpolated.
    """
    tx, rx = _check_sweep(tx_db, rx_db, n_small_signal + 1)
    order = np.argsort(tx)
    tx, rx = tx[order], rx[order]
    offset = float(np.mean(rx[:n_small_signal] - tx[:n_small_signal]))
    deficit = (tx + offset) - rx                    # dB below the linear line
    above = np.nonzero(deficit >= 1.0)[0]
    if above.size == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(tx[0])
    d0, d1 = deficit[i - 1], deficit[i]
    return float(tx[i - 1] + (1.0 - d0) * (tx[i] - tx[i - 1]) / (d1 - d0))
