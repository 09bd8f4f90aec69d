"""A small L-BFGS minimizer in plain numpy (used by the MMSE and zero-forcing refinements)."""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dtrtrs


_TINY = np.finfo(float).tiny


def _inverse_hessian_times(S: np.ndarray, Y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """H g for the L-BFGS inverse-Hessian approximation of the pairs S, Y (m, n), rows oldest
    first, with H_0 = gamma I, gamma = s^T y / y^T y of the newest pair.

    The compact representation of Byrd, Nocedal & Schnabel (Math. Prog. 63, 1994, eq. 3.1):
    H = gamma I + [S^T gamma Y^T] [[R^-T (D + gamma Y Y^T) R^-1, -R^-T], [-R^-1, 0]] [S; gamma Y]
    with R the upper triangle of S Y^T and D its diagonal; the same vector as the two-loop
    recursion, in a fixed handful of small matrix products instead of 4 m vector operations.
    """
    SY = S @ Y.T                                              # R is its upper triangle: the
    gamma = SY[-1, -1] / (Y[-1] @ Y[-1])                      # triangular solves read no more
    a1 = S @ g
    t = dtrtrs(SY, a1)[0]                                     # R^-1 S g
    DY = gamma * (Y @ Y.T)
    DY.reshape(-1)[::len(DY) + 1] += np.diagonal(SY)          # D + gamma Y Y^T
    u = DY @ t - gamma * (Y @ g)
    p1 = dtrtrs(SY, u, trans=1)[0]                            # R^-T u
    return gamma * g + S.T @ p1 - gamma * (Y.T @ t)


def lbfgs(fun, x0: np.ndarray, *, max_iter: int = 1000, memory: int = 20, ftol: float = 1e-13,
          gtol: float = 1e-11) -> tuple[np.ndarray, list[float]]:
    """Minimize a smooth real function of a real vector by L-BFGS with Armijo backtracking.

    ``fun(x) -> (f, grad)``, grad an array or a function of no arguments that returns it (called
    at the start and at accepted steps only: the line search's rejected trials need f alone).
    Every accepted step strictly decreases f. Stops when the relative
    decrease falls below ``ftol``, the gradient norm below ``gtol`` (1 + |f|), or after
    ``max_iter`` steps. Returns ``(x, trace)`` with f after every accepted step. (Written here,
    with plain numpy, because scipy's L-BFGS-B spends milliseconds per step in multithreaded
    BLAS calls on tiny vectors when the machine is busy.)
    """
    x = np.asarray(x0, dtype=float)
    f, g = fun(x)
    g = g() if callable(g) else g
    S = np.empty((memory, x.size))                            # the pairs s, y in rows :k, oldest
    Y = np.empty((memory, x.size))                            # first (no stacking per step)
    k = 0
    trace: list[float] = []
    for _ in range(max_iter):
        if math.sqrt(g @ g) <= gtol * (1.0 + abs(f)):
            break
        if k:
            d = -_inverse_hessian_times(S[:k], Y[:k], g)
        else:
            d = -g * min(1.0, 1.0 / np.linalg.norm(g))
        slope = g @ d
        if slope >= 0:                                        # not a descent direction: restart
            k = 0
            d = -g * min(1.0, 1.0 / np.linalg.norm(g))
            slope = g @ d
        step = 1.0
        for _ in range(50):
            f_new, g_new = fun(x + step * d)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break                                             # no decrease possible: converged
        g_new = g_new() if callable(g_new) else g_new
        s_, y_ = step * d, g_new - g
        if s_ @ y_ > 1e-12 * math.sqrt(s_ @ s_) * math.sqrt(y_ @ y_):
            if k == memory:                                   # drop the oldest pair
                S[:-1], Y[:-1] = S[1:], Y[1:]                 # (overlap: numpy copies)
                k -= 1
            S[k], Y[k] = s_, y_
            k += 1
        x = x + s_
        decrease = f - f_new
        f, g = f_new, g_new
        trace.append(float(f))
        if decrease <= ftol * max(abs(f), _TINY):
            break
    return x, trace
