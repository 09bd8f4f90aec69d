"""Least-squares channel estimation from time-orthogonal pilots (pure numpy).

With pilot p (energy E_p = ||p||^2) sent alone from antenna t of node n, the received slot is
Y = h_{n,t} p^T + W; the LS estimate is h_hat = Y conj(p) / E_p, whose error per entry is
CN(0, noise_var / E_p) (noise_var: complex noise variance per antenna per sample, in the same
units as the pilot amplitude).
"""
from __future__ import annotations

import numpy as np

from testbed.phy.framing import FrameLayout


def ls_estimate_column(y_slot: np.ndarray, pilot: np.ndarray) -> np.ndarray:
    """LS estimate of one channel column from its pilot slot ``(N_r, Lp)`` -> ``(N_r,)``."""
    p = np.asarray(pilot)
    return np.asarray(y_slot) @ p.conj() / np.vdot(p, p).real


def ls_channel_estimate(frame: np.ndarray, layout: FrameLayout) -> np.ndarray:
    """All channels from a received frame ``(N_r, >= payload_start)`` aligned to the frame
    start (and scaled to the pilot's units); returns complex ``(N, N_r, N_t)``."""
    p = layout.pilot()
    n_r = frame.shape[0]
    H = np.empty((layout.n_nodes, n_r, layout.n_tx), dtype=np.complex128)
    for n in range(layout.n_nodes):
        for t in range(layout.n_tx):
            H[n, :, t] = ls_estimate_column(frame[:, layout.pilot_slot(n, t)], p)
    return H


def ls_error_variance(noise_var: float, pilot_energy: float) -> float:
    """Theoretical LS error variance per channel entry: noise_var / pilot_energy (linear)."""
    return float(noise_var / pilot_energy)
