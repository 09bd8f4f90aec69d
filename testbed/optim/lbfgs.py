"""A small L-BFGS minimizer in plain numpy (used by the MMSE and zero-forcing refinements)."""
from __future__ import annotations

import numpy as np


def lbfgs(fun, x0: np.ndarray, *, max_iter: int = 1000, memory: int = 20, ftol: float = 1e-13,
          gtol: float = 1e-11) -> tuple[np.ndarray, list[float]]:
    """Minimize a smooth real function of a real vector by L-BFGS with Armijo backtracking.

    ``fun(x) -> (f, grad)``. Every accepted step strictly decreases f. Stops when the relative
    decrease falls below ``ftol``, the gradient norm below ``gtol`` (1 + |f|), or after
    ``max_iter`` steps. Returns ``(x, trace)`` with f after every accepted step. (Written here,
    with plain numpy, because scipy's L-BFGS-B spends milliseconds per step in multithreaded
    BLAS calls on tiny vectors when the machine is busy.)
    """
    x = np.asarray(x0, dtype=float)
    f, g = fun(x)
    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    trace: list[float] = []
    for _ in range(max_iter):
        if np.linalg.norm(g) <= gtol * (1.0 + abs(f)):
            break
        q = g.copy()
        alphas = []
        for s_, y_ in zip(reversed(S), reversed(Y)):
            a = (s_ @ q) / (y_ @ s_)
            q -= a * y_
            alphas.append(a)
        if S:
            q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
        else:
            q *= min(1.0, 1.0 / np.linalg.norm(g))
        for (s_, y_), a in zip(zip(S, Y), reversed(alphas)):
            q += s_ * (a - (y_ @ q) / (y_ @ s_))
        d = -q
        slope = g @ d
        if slope >= 0:                                        # not a descent direction: restart
            S.clear()
            Y.clear()
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
        s_, y_ = step * d, g_new - g
        if s_ @ y_ > 1e-12 * np.linalg.norm(s_) * np.linalg.norm(y_):
            S.append(s_)
            Y.append(y_)
            if len(S) > memory:
                S.pop(0)
                Y.pop(0)
        x = x + s_
        decrease = f - f_new
        f, g = f_new, g_new
        trace.append(float(f))
        if decrease <= ftol * max(abs(f), np.finfo(float).tiny):
            break
    return x, trace
