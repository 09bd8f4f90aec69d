"""Sensitivity of the optimal AirComp MSE to the node transmit powers, and the SSCA projection.

Signal model (DESIGN.md section 3): MSE(A, {B_n}) = sum_n ||A^H H_n B_n - I_L||_F^2 + sigma^2 ||A||_F^2
with tr(B_n B_n^H) <= P_n. Shapes: H (N, N_r, N_t) complex, A (N_r, L) complex, P (N,) linear
power per channel use (same unit as sigma^2 = `noise_var`).

Envelope theorem. Let V(P) = min_{A,B} MSE. At an optimum (A*, B*), V'(P_n) equals the derivative of
the Lagrangian in P_n, i.e. -mu_n, the multiplier of node n's power constraint. For fixed A the
problem decouples into one power-constrained least-squares problem per node,
    v_n(P_n; A) = min_{||B||_F^2 <= P_n} ||M_n B - I||_F^2,   M_n = A^H H_n (L x N_t),
solved in closed form through the SVD M_n = U diag(s) W^H: B(mu) = W diag(s / (s^2 + mu)) U^H,
||B(mu)||^2 = sum s^2/(s^2+mu)^2, v_n = sum (mu / (s^2 + mu))^2 + (L - rank). `mmse_value_and_power_gradient`
returns V(P; A) = sum_n v_n + sigma^2 ||A||^2 and its exact gradient -mu (dV/dP_n). At the A of a
converged MMSE design (A is then optimal for its B, B optimal for A) this gradient is dV*/dP.

For zero-forcing (method "zf-sdr") the value for a fixed receive direction G = A / ||A||_F is
    MSE_ZF(P; G) = sigma^2 max_n t_n / P_n,  t_n = tr[(G^H H_n H_n^H G)^{-1}],
whose (sub)gradient is -sigma^2 t_k / P_k^2 for the maximizing node k and 0 for the others.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq


def power_constrained_ls(M: np.ndarray, power: float) -> tuple[float, float, np.ndarray]:
    """min ||M B - I||_F^2 s.t. ||B||_F^2 <= power, for M of shape (L, N_t) complex.

    Returns (value, mu, B): the optimal value, the Lagrange multiplier mu >= 0 of the power
    constraint (= -d value / d power) and the optimal B, shape (N_t, L).
    """
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power}")
    L = M.shape[0]
    U, s, Wh = np.linalg.svd(M, full_matrices=False)
    tol = max(M.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)
    keep = s > tol
    s_k = s[keep]
    rank = int(keep.sum())
    if rank == 0:
        return float(L), 0.0, np.zeros((M.shape[1], L), dtype=complex)
    min_norm = float(np.sum(1.0 / s_k ** 2))
    if min_norm <= power:
        mu = 0.0
    else:
        def excess(mu_: float) -> float:
            return float(np.sum(s_k ** 2 / (s_k ** 2 + mu_) ** 2)) - power
        hi = float(np.sqrt(np.sum(s_k ** 2) / power)) * 1.01 + 1e-300
        mu = brentq(excess, 0.0, hi, xtol=1e-15 * max(hi, 1.0), rtol=1e-13, maxiter=300)
    gains = s_k / (s_k ** 2 + mu)
    B = (Wh[keep].conj().T * gains) @ U[:, keep].conj().T
    value = float(np.sum((mu / (s_k ** 2 + mu)) ** 2)) + (L - rank)
    return value, float(mu), B


def mmse_value_and_power_gradient(H: np.ndarray, A: np.ndarray, P: np.ndarray,
                                  noise_var: float) -> tuple[float, np.ndarray]:
    """V(P; A) = min_B MSE(A, B) under tr(B_n B_n^H) <= P_n, and dV/dP (shape (N,)) = -mu.

    H (N, N_r, N_t), A (N_r, L), P (N,) linear power per channel use, noise_var linear.
    """
    H = np.asarray(H)
    P = np.asarray(P, dtype=float)
    A = np.asarray(A).reshape(H.shape[1], -1)
    value = noise_var * float(np.sum(np.abs(A) ** 2))
    grad = np.zeros(H.shape[0])
    for n in range(H.shape[0]):
        v, mu, _ = power_constrained_ls(A.conj().T @ H[n], float(P[n]))
        value += v
        grad[n] = -mu
    return value, grad


def zf_value_and_power_gradient(H: np.ndarray, A: np.ndarray, P: np.ndarray,
                                noise_var: float) -> tuple[float, np.ndarray]:
    """ZF MSE sigma^2 max_n t_n/P_n for the receive direction of A, and its (sub)gradient in P.

    Raises ValueError if some G^H H_n H_n^H G is singular (ZF infeasible for that direction).
    """
    H = np.asarray(H)
    P = np.asarray(P, dtype=float)
    A = np.asarray(A).reshape(H.shape[1], -1)
    G = A / np.linalg.norm(A)
    t = np.empty(H.shape[0])
    for n in range(H.shape[0]):
        F = G.conj().T @ H[n]
        gram = F @ F.conj().T
        if np.linalg.cond(gram) > 1e12:
            raise ValueError(f"zero-forcing is infeasible for node {n}: G^H H_n H_n^H G is singular "
                             "(use n_streams <= N_t or another method)")
        t[n] = float(np.real(np.trace(np.linalg.inv(gram))))
    ratio = t / P
    k = int(np.argmax(ratio))
    grad = np.zeros(H.shape[0])
    grad[k] = -noise_var * t[k] / P[k] ** 2
    return noise_var * float(ratio[k]), grad


def project_capped_simplex(y: np.ndarray, upper: np.ndarray, total: float = 1.0) -> np.ndarray:
    """Euclidean projection of y onto {m : sum m = total, 0 <= m <= upper}; shape (N,).

    m_i = clip(y_i - lam, 0, upper_i) with lam found by bisection (the sum is monotone in lam).
    Raises ValueError if sum(upper) < total (empty set).
    """
    y = np.asarray(y, dtype=float)
    upper = np.asarray(upper, dtype=float)
    if np.any(upper < 0) or upper.sum() < total - 1e-12:
        raise ValueError(f"the capped simplex is empty: sum(upper)={upper.sum():.6g} < {total}")
    lo, hi = float(np.min(y - upper)) - 1.0, float(np.max(y)) + 1.0
    for _ in range(200):
        lam = 0.5 * (lo + hi)
        if np.clip(y - lam, 0.0, upper).sum() > total:
            lo = lam
        else:
            hi = lam
        if hi - lo < 1e-15 * max(1.0, abs(lam)):
            break
    m = np.clip(y - 0.5 * (lo + hi), 0.0, upper)
    # remove the last rounding error on a free coordinate so that sum(m) == total exactly
    free = (m > 0) & (m < upper)
    if free.any():
        i = int(np.flatnonzero(free)[0])
        m[i] = min(max(m[i] + total - m.sum(), 0.0), upper[i])
    return m
