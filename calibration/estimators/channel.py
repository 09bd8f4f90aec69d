"""Pilot-based least-squares MIMO channel estimation.

Data model: Y = H P + W, Y (n_rx, K) received, P (n_tx, K) known pilots (full row rank),
H (n_rx, n_tx), W white with complex variance noise_var. LS: H_hat = Y P^H (P P^H)^{-1}.
Each row's error has covariance noise_var (P P^H)^{-1}; with orthogonal pilots of energy E_p per
row (P P^H = E_p I) every entry has error variance noise_var / E_p. For several single-antenna
nodes, stack their (mutually orthogonal) pilots as the rows of P.
"""
from __future__ import annotations

import numpy as np


def estimate_channel_ls(rx: np.ndarray, pilots: np.ndarray) -> np.ndarray:
    """LS channel, shape (..., n_rx, n_tx), from rx (..., n_rx, K) and pilots (n_tx, K)."""
    rx = np.asarray(rx, dtype=complex)
    p = np.asarray(pilots, dtype=complex)
    if p.ndim != 2 or rx.shape[-1] != p.shape[1]:
        raise ValueError(f"pilots must be (n_tx, K) with K = rx.shape[-1] = {rx.shape[-1]}, "
                         f"got {p.shape}")
    gram = p @ p.conj().T
    if np.linalg.matrix_rank(gram) < p.shape[0]:
        raise ValueError("pilot rows are linearly dependent; use orthogonal pilots "
                         "(sequences.orthogonal_pilots) with K >= n_tx")
    # H = Y P^H G^{-1}  <=>  G^T H^T = (Y P^H)^T  (G Hermitian)
    yp = rx @ p.conj().T
    return np.swapaxes(np.linalg.solve(gram.T, np.swapaxes(yp, -1, -2)), -1, -2)


def ls_error_covariance(pilots: np.ndarray, noise_var: float) -> np.ndarray:
    """Error covariance (n_tx, n_tx) of each row of the LS estimate: noise_var (P P^H)^{-1}."""
    p = np.asarray(pilots, dtype=complex)
    return noise_var * np.linalg.inv(p @ p.conj().T)


def ls_error_variance(pilots: np.ndarray, noise_var: float) -> np.ndarray:
    """Per-entry error variance of the LS estimate, shape (n_tx,) (the same for every rx row)."""
    return np.real(np.diag(ls_error_covariance(pilots, noise_var)))
