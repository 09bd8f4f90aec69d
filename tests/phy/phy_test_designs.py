"""A tiny zero-forcing transceiver design for tests (the paper's ZF precoder for a given A,
with A from the principal eigenvectors of sum_n H_n H_n^H), independent of testbed.optim."""
from dataclasses import dataclass

import numpy as np


@dataclass
class Design:
    A: np.ndarray
    B: np.ndarray
    mse: float


def formula_mse(H, A, B, noise_var):
    """sum_n ||A^H H_n B_n - I||_F^2 + noise_var ||A||_F^2 (DESIGN.md section 3)."""
    L = A.shape[1]
    err = sum(np.linalg.norm(A.conj().T @ H[n] @ B[n] - np.eye(L)) ** 2 for n in range(len(H)))
    return float(err + noise_var * np.linalg.norm(A) ** 2)


def zf_design(H, P, noise_var, method="local-zf", n_streams=None):
    """ZF for a fixed direction G (N_r, L): B_n = (G^H H_n)^H (G^H H_n H_n^H G)^-1 / t, A = t G,
    with t^2 = max_n tr[(G^H H_n H_n^H G)^-1] / P_n so every power budget holds."""
    N, n_r, n_t = H.shape
    L = n_streams or (1 if n_t == 1 else min(n_t, n_r))
    w, v = np.linalg.eigh(sum(h @ h.conj().T for h in H))
    G = v[:, ::-1][:, :L]
    P = np.broadcast_to(np.asarray(P, float), (N,))
    B, need = [], []
    for n in range(N):
        F = G.conj().T @ H[n]
        M = np.linalg.inv(F @ F.conj().T)
        B.append(F.conj().T @ M)
        need.append(np.trace(M).real / P[n])
    t = np.sqrt(max(need))
    A, B = t * G, np.stack(B) / t
    return Design(A, B, formula_mse(H, A, B, noise_var))
