"""The over-the-air all-reduce error and the zero-forcing building blocks every design shares.

Signal model (DESIGN.md section 3), per channel use:

    Y = sum_n H_n B_n s_n + w,   s_hat = A^H Y,   w ~ CN(0, noise_var I_{N_r}),

with unit-power independent symbols s_n (L,), H_n (N_r, N_t), B_n (N_t, L), A (N_r, L). The error
of the sum sum_n s_n, averaged over symbols and noise, is

    MSE(A, {B_n}) = sum_n || A^H H_n B_n - I_L ||_F^2 + noise_var || A ||_F^2.

Array conventions used throughout ``testbed.optim``: ``H`` complex (N, N_r, N_t), ``A`` complex
(N_r, L), ``B`` complex (N, N_t, L), ``P`` (N,) linear power budget per channel use
(tr(B_n B_n^H) <= P_n), ``noise_var`` linear complex noise variance per receive antenna.
"""
from __future__ import annotations

import numpy as np

#: Relative slack allowed on tr(B_n B_n^H) <= P_n after numerical rounding.
POWER_RTOL = 1e-9


def aircomp_mse(H: np.ndarray, A: np.ndarray, B: np.ndarray, noise_var: float) -> float:
    """Mean squared error of the over-the-air sum per channel use (linear, not dB).

    ``H`` (N, N_r, N_t), ``A`` (N_r, L), ``B`` (N, N_t, L), ``noise_var`` linear noise variance
    per receive antenna. Returns sum_n ||A^H H_n B_n - I_L||_F^2 + noise_var ||A||_F^2, i.e. the
    summed error power over the L streams (divide by L for a per-stream figure).
    """
    H = np.asarray(H)
    A = np.asarray(A)
    B = np.asarray(B)
    L = A.shape[1]
    E = (A.conj().T @ H) @ B - np.eye(L)                      # A^H H_n B_n - I per node
    return float(np.sum(np.abs(E) ** 2) + noise_var * np.sum(np.abs(A) ** 2))


def node_powers(B: np.ndarray) -> np.ndarray:
    """Transmit power tr(B_n B_n^H) of every node, shape (N,), linear per channel use."""
    return np.sum(np.abs(np.asarray(B)) ** 2, axis=(1, 2))


def zf_trace_inverse(H: np.ndarray, G: np.ndarray) -> np.ndarray:
    """tr[(G^H H_n H_n^H G)^{-1}] for every candidate direction and node.

    ``H`` (N, N_r, N_t); ``G`` (N_r, L) or a batch (K, N_r, L). Returns (N,) or (K, N) with
    ``inf`` where G^H H_n H_n^H G is singular (zero forcing impossible for that node). This is the
    power node n needs to zero-force receiver ``G`` exactly (scale alpha = 1).
    """
    single = G.ndim == 2
    Gb = G[None] if single else G
    N, N_r, N_t = H.shape
    HmT = np.conj(np.transpose(H, (0, 2, 1)).reshape(N * N_t, N_r))   # rows: conj(H_n)^T
    W = np.conj(HmT @ Gb).reshape(len(Gb), N, N_t, -1)        # (K, N, N_t, L) = (G^H H_n)^T
    if Gb.shape[2] == 1:                                     # L = 1: 1 / ||H_n^H g||^2
        k = np.sum(np.abs(W[..., 0]) ** 2, axis=2)
        scale = np.max(np.sum(np.abs(H) ** 2, axis=(1, 2))) * np.sum(np.abs(Gb) ** 2, axis=(1, 2))
        tr = np.where(k > 1e-24 * scale[:, None], 1.0 / np.where(k > 0, k, 1.0), np.inf)
        return tr[0] if single else tr
    L = W.shape[3]
    Wf = W.reshape(-1, N_t, L)
    K = (np.swapaxes(Wf, 1, 2) @ Wf.conj()).reshape(W.shape[0], N, L, L)   # conj(G^H H_n H_n^H G)
    eig = np.linalg.eigvalsh(K)                              # (K, N, L), ascending
    scale = np.maximum(eig[..., -1:], np.finfo(float).tiny)
    bad = eig[..., 0] <= 1e-12 * scale[..., 0]
    safe = np.where(bad[..., None], 1.0, eig)
    tr = np.where(bad, np.inf, np.sum(1.0 / safe, axis=-1))
    return tr[0] if single else tr


def zf_precoders(H: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Minimum-power zero-forcing precoders B_n = H_n^H A (A^H H_n H_n^H A)^{-1}, shape (N, N_t, L).

    They satisfy A^H H_n B_n = I_L exactly; tr(B_n B_n^H) = tr[(A^H H_n H_n^H A)^{-1}].
    Requires A^H H_n to have full row rank L for every n.
    """
    F_h = np.conj(np.swapaxes(H, 1, 2)) @ A                  # (N, N_t, L) = H_n^H A
    K = np.conj(np.swapaxes(F_h, 1, 2)) @ F_h                # A^H H_n H_n^H A
    return F_h @ np.linalg.inv(K)


def zf_design_from_direction(H: np.ndarray, P: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Smallest feasible zero-forcing design along receive direction ``G`` (N_r, L).

    Normalizes ||G||_F = 1, sets alpha = max_n tr[(G^H H_n H_n^H G)^{-1}] / P_n (the weakest node
    spends its whole budget, every other node less), A = sqrt(alpha) G and B_n the ZF precoders.
    Returns ``(A, B, alpha)``; the design's MSE is noise_var * alpha. Raises ValueError when some
    node cannot zero-force G (rank deficiency).
    """
    G = G / np.linalg.norm(G)
    tau = zf_trace_inverse(H, G)
    if not np.all(np.isfinite(tau)):
        bad = np.flatnonzero(~np.isfinite(tau)).tolist()
        raise ValueError(f"zero forcing is impossible along this receive direction for nodes {bad}: "
                         "G^H H_n H_n^H G is singular; use fewer streams or method='mmse'")
    alpha = float(np.max(tau / P)) * (1.0 + 1e-12)
    A = np.sqrt(alpha) * G
    B = zf_precoders(H, A)
    return A, B, alpha


def enforce_power(B: np.ndarray, P: np.ndarray, *, rtol: float = 1e-6) -> np.ndarray:
    """Scale down any B_n whose power exceeds P_n by rounding (<= ``rtol`` relative) to exactly P_n.

    Raises RuntimeError if some node exceeds its budget by more than ``rtol``: that is a bug in a
    design method, not rounding.
    """
    p = node_powers(B)
    over = p > P * (1.0 + rtol)
    if np.any(over):
        raise RuntimeError(f"design violates the power budget at nodes {np.flatnonzero(over).tolist()}: "
                           f"used {p[over]}, allowed {P[over]}")
    fix = p > P
    if np.any(fix):
        B = B.copy()
        B[fix] *= np.sqrt(P[fix] / p[fix])[:, None, None]
    return B
