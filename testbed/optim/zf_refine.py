"""Local refinement of zero-forcing receivers on the EXACT zero-forcing objective.

The zero-forcing MSE of a receive direction G (N_r, L) is noise_var * alpha(G) with the
scale-invariant

    alpha(G) = ||G||_F^2 * max_n tr[(G^H M_n G)^{-1}] / P_n,     M_n = H_n H_n^H

(`testbed.optim.mse.zf_design_from_direction`). The semidefinite relaxations of
`testbed.optim.zf_sdr` give good starting directions; these routines then improve them.

* L = 1, `sca_single_stream`: successive convex approximation of
  min ||a||^2 s.t. ||F_n^H a||^2 >= 1 (F_n = sqrt(P_n) H_n). Each convex constraint is replaced by
  its tangent at the current point, 2 Re(a_k^H F_n F_n^H a) - ||F_n^H a_k||^2 >= 1, which implies
  it (the quadratic is convex), so every iterate is feasible and ||a||^2 never increases; the
  subproblem, the least-norm point of a polyhedron, is solved exactly through its NNLS dual
  (Lawson & Hanson, "Solving Least Squares Problems", ch. 23). Converges to a KKT point of the
  exact problem (Marks & Wright 1978; Mehanna, Huang & Sidiropoulos, IEEE TSP 2015).
* L >= 2, `minimax_direction`: log alpha(G) with the max over nodes smoothed by a log-sum-exp
  (temperature raised in stages), minimized by L-BFGS with analytic gradients
  d tr(K_n^{-1}) / d conj(G) = -M_n G K_n^{-2}, K_n = G^H M_n G. The result is scored by the exact
  alpha and kept only if it improves on the start.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from testbed.optim.lbfgs import lbfgs


def sca_single_stream(F: np.ndarray, a0: np.ndarray, *, tol: float = 1e-6, max_iter: int = 60
                      ) -> tuple[np.ndarray, list[float]]:
    """SCA for min ||a||^2 s.t. ||F_n^H a||^2 >= 1 from receiver ``a0`` (N_r,) (any nonzero).

    ``F`` (N, N_r, N_t) = sqrt(P_n) H_n. The start is first scaled onto the feasible set. Stops
    when an iteration lowers ||a||^2 by less than ``tol`` (relative) or after ``max_iter``.
    Returns ``(a, history)``: a feasible (min_n ||F_n^H a||^2 = 1), history the non-increasing
    ||a||^2 after the initial scaling and after every iteration.
    """
    N, N_r, N_t = F.shape
    Fm = np.transpose(F, (1, 0, 2)).reshape(N_r, N * N_t)
    FH = np.ascontiguousarray(Fm.conj().T)

    def gains(v):                                              # ||F_n^H a||^2 from v = FH a
        g = v.real ** 2 + v.imag ** 2
        return g if N_t == 1 else g.reshape(N, N_t).sum(axis=1)

    a = np.asarray(a0, dtype=complex)
    v = FH @ a                                                 # stacked F_n^H a
    s = 1.0 / np.sqrt(np.min(gains(v)))
    a, v = a * s, v * s
    hist = [float(np.vdot(a, a).real)]
    f = np.zeros(2 * N_r + 1)
    f[-1] = 1.0
    E = np.empty((2 * N_r + 1, N))
    for _ in range(max_iter):
        c = Fm * v[None, :]                                    # columns F_n (F_n^H a) per antenna
        if N_t > 1:
            c = c.reshape(N_r, N, N_t).sum(axis=2)
        # tangent constraints Re((2 c_n)^H a) >= 1 + ||F_n^H a||^2; least-norm point via NNLS
        # (Lawson-Hanson LDP) on E = [2 Re c; 2 Im c; 1 + ||F_n^H a||^2]
        np.multiply(c.real, 2.0, out=E[:N_r])
        np.multiply(c.imag, 2.0, out=E[N_r:2 * N_r])
        np.add(gains(v), 1.0, out=E[-1])
        u, _ = nnls(E, f)
        r = E @ u - f
        if not abs(r[-1]) > 0:                                 # cannot happen: a itself is feasible
            break
        x = r[:-1] / -r[-1]
        a_new = x[:N_r] + 1j * x[N_r:]
        v_new = FH @ a_new
        s = 1.0 / np.sqrt(np.min(gains(v_new)))                # exactly feasible
        a_new *= s
        val = float(np.vdot(a_new, a_new).real)
        if not val < hist[-1]:
            break
        a, v = a_new, v_new * s
        hist.append(val)
        if hist[-2] - val <= tol * val:
            break
    return a, hist


def zf_alpha(H: np.ndarray, P: np.ndarray, G: np.ndarray) -> float:
    """alpha(G) = ||G||_F^2 max_n tr[(G^H M_n G)^{-1}] / P_n (inf if some node cannot zero-force)."""
    from testbed.optim.mse import zf_trace_inverse
    return float(np.sum(np.abs(G) ** 2) * np.max(zf_trace_inverse(H, G) / P))


def minimax_direction(H: np.ndarray, P: np.ndarray, G0: np.ndarray, *,
                      temperatures=(30.0, 300.0, 3000.0), max_iter: int = 150
                      ) -> tuple[np.ndarray, dict]:
    """Lower alpha(G) from ``G0`` (N_r, L) by smoothed-minimax L-BFGS (see module docstring).

    ``temperatures``: log-sum-exp sharpness per stage (the smoothed max exceeds the max by at
    most log(N) / temperature in log alpha). Returns ``(G, info)`` with G the best of the start
    and the stages under the exact alpha; ``info`` has ``alpha0``, ``alpha`` and ``evaluations``.
    """
    N, N_r, N_t = H.shape
    L = G0.shape[1]
    M = np.einsum("nrt,nst->nrs", H, H.conj())
    shape, size = G0.shape, G0.size
    logP = np.log(P)
    count = [0]

    def unpack(x):
        return (x[:size] + 1j * x[size:]).reshape(shape)

    def parts(G):
        MG = M @ G                                             # (N, N_r, L)
        K = G.conj().T[None] @ MG                              # (N, L, L)
        try:
            Ki = np.linalg.inv(K)
        except np.linalg.LinAlgError:
            return None
        f = np.real(np.einsum("nii->n", Ki))
        if not np.all(f > 0):
            return None
        return MG, Ki, f

    def fun_for(beta):
        def fun(x):
            count[0] += 1
            G = unpack(x)
            p = parts(G)
            if p is None:
                return np.inf, np.zeros_like(x)
            MG, Ki, f = p
            g2 = float(np.sum(np.abs(G) ** 2))
            u = np.log(f) - logP
            m = u.max()
            e = np.exp(beta * (u - m))
            se = e.sum()
            val = np.log(g2) + m + np.log(se) / beta
            w = e / se / f                                     # d smoothmax / d f_n
            Kw = (Ki @ Ki) * w[:, None, None]                  # (N, L, L)
            grad = G / g2 - np.transpose(MG, (1, 0, 2)).reshape(N_r, -1) @ Kw.reshape(-1, L)
            grad = 2.0 * grad.ravel()                          # gradient in (Re G, Im G)
            return val, np.concatenate([grad.real, grad.imag])
        return fun

    G0 = np.asarray(G0, dtype=complex)
    G0 = G0 / np.linalg.norm(G0)
    best, best_alpha = G0, zf_alpha(H, P, G0)
    alpha0 = best_alpha
    x = np.concatenate([G0.ravel().real, G0.ravel().imag])
    for beta in temperatures:
        x, _ = lbfgs(fun_for(beta), x, max_iter=max_iter, ftol=1e-9, gtol=1e-9)
        G = unpack(x)
        G = G / np.linalg.norm(G)
        x = np.concatenate([G.ravel().real, G.ravel().imag])
        a = zf_alpha(H, P, G)
        if a < best_alpha:
            best, best_alpha = G, a
    return best, {"alpha0": alpha0, "alpha": best_alpha, "evaluations": count[0]}


def single_node_bound(H: np.ndarray, P: np.ndarray, L: int) -> float:
    """max_n (sum_{i<=L} m_{n,i}^{-1/2})^2 / P_n: a lower bound on min ||A||_F^2 over ZF designs.

    m_{n,i} are the top-L eigenvalues of M_n = H_n H_n^H. Each node alone needs this much: with
    C = M_n^{1/2} A of singular values s_i, ||A||_F^2 >= sum_i s_i^2 / m_{n,i} (von Neumann's
    trace inequality) and tr[(A^H M_n A)^{-1}] = sum_i 1 / s_i^2 <= P_n; the minimum of the first
    under the second is this value (s_i^2 proportional to sqrt(m_{n,i})). 0 if some node has
    rank < L (then zero forcing is infeasible anyway).
    """
    s = np.linalg.svd(H, compute_uv=False)[:, :L]            # (N, L) singular values, descending
    if s.shape[1] < L or np.any(s[:, -1] <= 0):
        return 0.0
    return float(np.max(np.sum(1.0 / s, axis=1) ** 2 / P))
