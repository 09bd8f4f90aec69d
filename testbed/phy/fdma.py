"""Single-node zero-forcing transceiver (the per-node receiver of uncoded FDMA), closed form.

For one node alone (y = H b s + w, H (N_r, N_t)), the unbiased (A^H H B = I_L) transceiver of
least noise under tr(B B^H) <= P uses the L strongest singular modes H = U S V^H:
B = V_L diag(sqrt(p)), A = U_L diag(1 / (s_i sqrt(p_i))), p_i = P (1/s_i) / sum_j (1/s_j), with
MSE = noise_var (sum_i 1/s_i)^2 / P per channel use (L = 1: noise_var / (P s_1^2), i.e. MRC
receive with channel inversion at full power).
"""
from __future__ import annotations

import numpy as np


def single_node_zf(h: np.ndarray, power: float, noise_var: float,
                   n_streams: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """(A (N_r, L), B (N_t, L), mse) of the closed form above; mse per channel use (linear)."""
    h = np.asarray(h, dtype=complex)
    if not 1 <= n_streams <= min(h.shape):
        raise ValueError(f"n_streams must be in 1..{min(h.shape)} for a {h.shape} channel")
    U, s, Vh = np.linalg.svd(h)
    s = s[:n_streams]
    if s[-1] <= 0:
        raise ValueError("channel rank is below n_streams; use fewer streams")
    inv = 1.0 / s
    p = power * inv / inv.sum()
    B = Vh.conj().T[:, :n_streams] * np.sqrt(p)
    A = U[:, :n_streams] / (s * np.sqrt(p))
    return A, B, float(noise_var * inv.sum() ** 2 / power)
