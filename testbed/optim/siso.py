"""Globally optimal power control for single-antenna over-the-air computation (N_t = N_r = L = 1).

Threshold-based power control after Cao, Zhu, Xu, Huang, "Optimized Power Control for
Over-the-Air Computation in Fading Channels", IEEE Trans. Wireless Commun., 2020, re-derived for
this project's error (receiver a, precoders b_n, channels h_n, all complex scalars):

    MSE(a, b) = sum_n |conj(a) h_n b_n - 1|^2 + noise_var |a|^2,   |b_n|^2 <= P_n.

1. For fixed a the nodes decouple. Node n's term is smallest when conj(a) h_n b_n is real
   positive (phase alignment) with magnitude min(|a||h_n| sqrt(P_n), 1): it inverts its channel
   if the budget allows, else transmits at full power. With t = |a| and c_n = |h_n| sqrt(P_n):

       f(t) = sum_n (1 - c_n t)_+^2 + noise_var t^2.

   The phase of a is irrelevant; we take a = t real.
2. f is convex and continuously differentiable on t >= 0 (each (1 - c t)_+^2 is), and
   f'(0) < 0, so its minimizer is the unique stationary point t* > 0.
3. Sort the nodes so that c_(1) <= ... <= c_(N). At t*, the full-power set S = {n : c_n t* < 1}
   holds the weakest nodes, a prefix {1..k}; f'(t*) = 0 gives

       t_k = (sum_{i<=k} c_(i)) / (noise_var + sum_{i<=k} c_(i)^2).

   Exactly one k in 1..N is consistent: c_(k) t_k < 1 <= c_(k+1) t_k (no upper condition for
   k = N). The threshold on the channel quality c_n is 1/t*: nodes below it transmit at full
   power, nodes above it invert their channel with b_n = conj(h_n) / (t* |h_n|^2).
4. The optimum is f(t*) = sum_{i<=k} (1 - c_(i) t*)^2 + noise_var t*^2 (zero signal error for
   the inverting nodes).

Power multipliers (for the envelope theorem): with the Lagrangian MSE + sum_n mu_n (|b_n|^2 - P_n),
stationarity in b_n gives mu_n = t |h_n| (1 - c_n t) / sqrt(P_n) for full-power nodes and 0 for
inverting ones, and d MSE* / d P_n = -mu_n (checked against finite differences in the tests).
"""
from __future__ import annotations

import numpy as np


def siso_receiver_gain(c: np.ndarray, noise_var: float) -> float:
    """Optimal receiver magnitude t* = |a| for channel qualities ``c`` = |h_n| sqrt(P_n), shape (N,)."""
    cs = np.sort(np.asarray(c, dtype=float))
    s1 = np.cumsum(cs)
    s2 = np.cumsum(cs ** 2)
    t = s1 / (noise_var + s2)                                 # candidate t_k for k = 1..N
    below = cs * t < 1.0                                      # c_(k) t_k < 1
    above = np.append(cs[1:] * t[:-1] >= 1.0, True)           # c_(k+1) t_k >= 1
    ok = np.flatnonzero(below & above)
    if ok.size == 0:                                          # rounding at a tie: take the best
        f = [np.sum(np.clip(1.0 - cs * tk, 0.0, None) ** 2) + noise_var * tk ** 2 for tk in t]
        return float(t[int(np.argmin(f))])
    return float(t[ok[0]])


def siso_objective(t: float | np.ndarray, c: np.ndarray, noise_var: float) -> np.ndarray:
    """f(t) = sum_n (1 - c_n t)_+^2 + noise_var t^2: the MSE with optimal precoders given |a| = t.

    ``t`` scalar or array (any shape); ``c`` (N,). Returns an array shaped like ``t``.
    """
    t = np.asarray(t, dtype=float)
    gap = np.clip(1.0 - np.multiply.outer(t, np.asarray(c, dtype=float)), 0.0, None)
    return np.sum(gap ** 2, axis=-1) + noise_var * t ** 2


def solve_siso_optimal(H: np.ndarray, P: np.ndarray, noise_var: float, L: int, rng, **options):
    """Closed-form optimum for N_t = N_r = 1. Returns ``(A, B, lower_bound, info)``.

    ``H`` (N, 1, 1) complex, ``P`` (N,) linear. ``lower_bound`` equals the optimum (it is global).
    ``info["power_multipliers"]`` (N,) holds mu_n with d MSE*/d P_n = -mu_n; ``info["full_power"]``
    (N,) bool marks the nodes below the threshold.
    """
    if options:
        raise ValueError(f"method 'siso-optimal' takes no options, got {sorted(options)}")
    if H.shape[1:] != (1, 1):
        raise ValueError(f"method 'siso-optimal' needs N_r = N_t = 1, got H of shape {H.shape}; "
                         "use method='mmse' or 'zf-sdr' for multi-antenna nodes")
    h = H[:, 0, 0]
    mag = np.abs(h)
    if np.any(mag == 0):
        raise ValueError(f"nodes {np.flatnonzero(mag == 0).tolist()} have a zero channel")
    c = mag * np.sqrt(P)
    t = siso_receiver_gain(c, noise_var)
    full = c * t < 1.0
    amp = np.where(full, np.sqrt(P), 1.0 / (t * mag))
    b = amp * np.conj(h) / mag
    A = np.array([[t]], dtype=complex)
    B = b.astype(complex)[:, None, None]
    mu = np.where(full, t * mag * (1.0 - c * t) / np.sqrt(P), 0.0)
    opt = float(siso_objective(t, c, noise_var))
    info = {"receiver_gain": t, "threshold": 1.0 / t, "full_power": full, "power_multipliers": mu}
    return A, B, opt, info
