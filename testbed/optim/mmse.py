"""MMSE transceiver by alternating minimization (not zero-forcing; beyond the paper).

Each step solves one block exactly, so the MSE never increases:

* Precoders given A: node n solves min ||F_n B - I_L||_F^2 s.t. tr(B B^H) <= P_n with
  F_n = A^H H_n (L, N_t). With the SVD F_n = U diag(s) V^H the solution is
  B_n(mu) = V diag(s / (s^2 + mu)) U^H = (F_n^H F_n + mu I)^{-1} F_n^H, with mu = 0 (the
  minimum-norm least-squares solution) when that meets the budget, else mu > 0 found by
  bisection so that sum_i s_i^2 / (s_i^2 + mu)^2 = P_n (power is decreasing in mu).
* Receiver given {B_n}: the Wiener filter
  A = (sum_n H_n B_n B_n^H H_n^H + noise_var I)^{-1} sum_n H_n B_n.

Power multipliers: with the Lagrangian MSE + sum_n mu_n (tr(B_n B_n^H) - P_n) (same scaling as
the MSE, Wirtinger stationarity F_n^H (F_n B_n - I) + mu_n B_n = 0), the envelope theorem at the
converged point gives d MSE* / d P_n = -mu_n (MSE in linear units per channel use, P_n linear per
channel use). ``info["power_multipliers"]`` holds mu_n.
"""
from __future__ import annotations

import numpy as np

from testbed.optim.baselines import solve_channel_inversion
from testbed.optim.lbfgs import lbfgs
from testbed.optim.mmse_newton import primal_dual_newton
from testbed.optim.siso import siso_receiver_gain


_TINY = np.finfo(float).tiny


def power_multiplier(s2: np.ndarray, P: np.ndarray, *, iters: int = 60, mu0: np.ndarray | None = None
                     ) -> np.ndarray:
    """Smallest mu_n >= 0 with p_n(mu_n) <= P_n, for squared singular values ``s2`` (N, r).

    p(mu) = sum_i s_i / (s_i + mu)^2 is the power of the optimal precoder at multiplier mu. Newton
    on psi(mu) = p(mu)^{-1/2} - P^{-1/2}, which is increasing and concave (the trust-region
    secular-equation trick, More & Sorensen 1983): from a point left of the root every Newton
    iterate stays left of it and increases monotonically to it, so no bracket is needed; it
    stops after a step that moved mu by less than 1e-7 (relative; the convergence is quadratic,
    so the error is then ~1e-14). Only the nodes that need mu > 0
    are iterated; a dead entry (s2 = 0) is carried with weight 0 (no division by zero).
    ``mu0`` (N,), optional: a guess (e.g. the multipliers of a nearby receiver); right of the
    root one Newton step (clipped at 0) brings it to the left. Returns mu (N,), with
    p_n(mu_n) <= P_n (1 + 1e-12).
    """
    N = s2.shape[0]
    rowsum = np.add.reduce                                    # sum over axis 1 without np.sum's wrapper
    all_live = bool(s2.min() > 0)                             # the usual case: no masking
    if all_live:
        p0 = rowsum(1.0 / s2, axis=1)
    else:
        live = s2 > 0
        p0 = rowsum(np.divide(1.0, s2, out=np.zeros_like(s2), where=live), axis=1)
    need = p0 > P
    mu = np.zeros(N)
    if not need.any():
        return mu
    if all_live:
        sw = ss = s2[need]
    else:
        sw = np.where(live, s2, 0.0)[need]                    # weights: 0 for dead entries
        ss = np.where(live, s2, 1.0)[need]                    # denominators: no 0 / 0
    Pn = P[need]
    rP = Pn ** -0.5
    x = np.zeros(Pn.shape) if mu0 is None else mu0[need].astype(float)
    for k in range(iters):
        d = 1.0 / (ss + x[:, None])
        t = sw * d * d
        p = rowsum(t, axis=1)                                 # p(x)
        q = rowsum(t * d, axis=1)                             # -p'(x) / 2
        step = p * (rP * np.sqrt(p) - 1.0) / q                # -psi / psi'
        if k == 0 and mu0 is not None:
            x = np.maximum(x + step, 0.0)                     # now left of the root (or 0)
            continue
        x = x + step
        if (np.abs(step) <= 1e-7 * x).all():                  # quadratic: now within ~1e-14
            break
    d = 1.0 / (ss + x[:, None])
    ok = rowsum(sw * d * d, axis=1) <= Pn * (1.0 + 1e-12)     # p(x) within the budget
    if ok.all():
        mu[need] = x
    else:
        hi = np.sqrt(rowsum(sw, axis=1) / Pn)                 # p(hi) <= sum s / hi^2 = P
        mu[need] = np.where(ok, x, np.maximum(x, hi))
    return mu


def stack_channels(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The channels side by side, Hs = [H_1 ... H_N] (N_r, N N_t), and Hs^H (N N_t, N_r), both
    contiguous: constant over a design, formed once by callers that evaluate many receivers."""
    N, N_r, N_t = H.shape
    Hs = np.transpose(H, (1, 0, 2)).reshape(N_r, N * N_t)
    return Hs, np.ascontiguousarray(Hs.conj().T)


def _where(live, x, fill):
    """``x`` where ``live``, else ``fill``; ``live`` None means live everywhere (``x`` as is)."""
    return x if live is None else np.where(live, x, fill)


def _precoder_block(H: np.ndarray, A: np.ndarray, P: np.ndarray, noise_var: float, *,
                    grad: bool | str, precoders: bool = True, mu0: np.ndarray | None = None, stacked=None,
                    bound: tuple[np.ndarray, float] | None = None):
    """Everything the optimal precoders for receiver ``A`` (N_r, L) determine, from the eigen-
    decomposition of K_n = A^H H_n H_n^H A = U_n diag(lam_n) U_n^H (L x L per node).

    With V_n = H_n^H A: B_n = V_n U_n diag(1 / (lam + mu_n)) U_n^H (live eigenvalues; a dead one,
    lam <= 1e-12 max lam, gets gain 0), the node's error ||A^H H_n B_n - I||^2 =
    sum_i (mu_n / (lam_i + mu_n))^2 (1 for a dead eigenvalue) and, by the envelope theorem, the
    gradient of f(A) = min_B MSE(A, B) w.r.t. conj(A): noise_var A - sum_n H_n V_n U_n
    diag(mu_n / (lam + mu_n)^2) U_n^H. For L = 1 all of it is scalar per node (mu_n in closed
    form, no eigen-decomposition). ``grad="later"`` returns the gradient as a function that
    computes it (for a line search that needs it at accepted points only). ``precoders=False``
    skips B (None is returned); ``mu0`` warm-starts the multipliers' root-find
    (`power_multiplier`); ``stacked``: `stack_channels` (H), formed here when not given.
    Returns ``(f, grad or None, B, mu)``.

    ``bound = (m, above)``, optional (L >= 2, f only): f is the maximum over the multipliers of
    the Lagrangian noise_var ||A||^2 + sum_n [m_n tr (K_n + m_n I)^-1 - m_n P_n], so its value at
    any m >= 0 (N,) is a lower bound; when that exceeds ``above`` it is returned as f, with mu
    None, and the multipliers are not solved for (a line search that only needs f > above).
    """
    N, N_r, N_t = H.shape
    L = A.shape[1]
    if stacked is None and (L > 1 or grad):
        stacked = stack_channels(H)
    if L == 1:
        V = np.conj(np.swapaxes(H, 1, 2)) @ A                # (N, N_t, 1) = H_n^H a
        lam = np.sum(np.abs(V[:, :, 0]) ** 2, axis=1)[:, None]
        live = lam > 1e-300
        mu = np.where(live[:, 0], np.maximum(np.sqrt(lam[:, 0] / P) - lam[:, 0], 0.0), 0.0)
        U = None
        norm2 = np.sum(np.abs(A) ** 2)                        # ||A||_F^2
    else:
        V = (stacked[1] @ A).reshape(N, N_t, L)               # H_n^H A, one product for all nodes
        K = np.conj(np.swapaxes(V, 1, 2)) @ V
        if grad or precoders:
            lam, U = np.linalg.eigh(K)                        # (N, L) ascending, (N, L, L)
        else:
            lam, U = np.linalg.eigvalsh(K), None              # f and mu need the eigenvalues only
        norm2 = np.vdot(A, A).real
        if (lam[:, 0] > 1e-12 * lam[:, -1]).all():            # the usual case: all live, no masks
            live = None
            if bound is not None:
                m, above = bound
                gain_m = m * np.add.reduce(1.0 / (lam + m[:, None]), axis=1)    # m tr (K + m I)^-1
                low = noise_var * norm2 + np.add.reduce(gain_m - m * P)
                if low - 1e-12 * np.add.reduce(gain_m + m * P) > above:       # beyond its rounding
                    return float(low), None, None, None
        else:
            lam = np.maximum(lam, 0.0)
            live = lam > 1e-12 * np.maximum(lam[:, -1:], _TINY)
        mu = power_multiplier(_where(live, lam, 0.0), P, mu0=mu0)
    den = _where(live, lam + mu[:, None], 1.0)
    ratio = _where(live, mu[:, None] / den, 1.0)
    f = float(np.add.reduce(ratio ** 2, axis=None) + noise_var * norm2)   # np.sum without a wrapper
    gain = _where(live, 1.0 / den, 0.0)
    if not precoders:
        B = None
    elif L == 1:
        B = V * gain[:, None, :]
    else:
        B = V @ (U * gain[:, None, :]) @ np.conj(np.swapaxes(U, 1, 2))
    if not grad:
        return f, None, B, mu

    def gradient():
        c = _where(live, ratio * gain, 0.0)                   # mu / (lam + mu)^2
        W = V * c[:, None, :] if L == 1 else V @ (U * c[:, None, :]) @ np.conj(np.swapaxes(U, 1, 2))
        return noise_var * A - stacked[0] @ W.reshape(N * N_t, L)

    return f, gradient if grad == "later" else gradient(), B, mu


def precoders_given_receiver(H: np.ndarray, A: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power-constrained least-squares precoders for receiver ``A`` (N_r, L).

    Returns ``(B, mu)``: B (N, N_t, L) with tr(B_n B_n^H) <= P_n, mu (N,) the Lagrange multipliers
    (0 where the budget is slack).
    """
    _, _, B, mu = _precoder_block(H, A, P, 0.0, grad=False)
    return B, mu


def wiener_receiver(H: np.ndarray, B: np.ndarray, noise_var: float) -> np.ndarray:
    """Optimal receiver (N_r, L) for fixed precoders ``B`` (N, N_t, L): the Wiener filter."""
    C = np.einsum("nrt,ntl->nrl", H, B)                       # H_n B_n
    R = np.einsum("nrl,nsl->rs", C, C.conj()) + noise_var * np.eye(H.shape[1])
    return np.linalg.solve(R, C.sum(axis=0))


def _step(H, P, noise_var, B):
    """One alternating step from precoders B = B(A): (A', B(A'), mu, mse) with A' = Wiener(B)."""
    A2 = wiener_receiver(H, B, noise_var)
    f2, _, B2, mu2 = _precoder_block(H, A2, P, noise_var, grad=False)
    return A2, B2, mu2, f2


def alternate(H: np.ndarray, P: np.ndarray, noise_var: float, A0: np.ndarray, *,
              tol: float = 1e-10, max_iter: int = 2000, accelerate: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float], bool]:
    """Alternating minimization from receiver ``A0`` until the relative MSE drop is below ``tol``.

    One alternating step is the map A -> Wiener(B(A)), a majorize-minimize step on the reduced
    error f(A) = min_B MSE(A, B). With ``accelerate`` the steps are grouped in SQUAREM cycles
    (Varadhan & Roland, Scand. J. Stat. 2008): two steps, an extrapolated receiver, one more
    step from it, kept only if it does not raise the MSE (else the plain two-step result).
    Returns ``(A, B, mu, history, converged)``; ``history`` holds the MSE after every accepted
    cycle (or step, without acceleration) and never increases.
    """
    f0, _, B, mu = _precoder_block(H, A0, P, noise_var, grad=False)
    A = A0
    history = [f0]
    converged = False
    for _ in range(max_iter):
        A1, B1, mu1, f1 = _step(H, P, noise_var, B)
        cand = (A1, B1, mu1, f1)
        if accelerate:
            A2, B2, mu2, f2 = _step(H, P, noise_var, B1)
            cand = (A2, B2, mu2, f2)
            r = A1 - A
            v = (A2 - A1) - r
            nv = np.linalg.norm(v)
            if nv > 0:
                a = -np.linalg.norm(r) / nv
                a = min(a, -1.0)
                Ax = A - 2 * a * r + a * a * v
                A3, B3, mu3, f3 = _step(H, P, noise_var, precoders_given_receiver(H, Ax, P)[0])
                if np.isfinite(f3) and f3 <= f2:
                    cand = (A3, B3, mu3, f3)
        if cand[3] > history[-1]:                             # rounding at convergence: stop
            converged = True
            break
        A, B, mu, f = cand
        history.append(f)
        if history[-2] - history[-1] <= tol * history[-1]:
            converged = True
            break
    return A, B, mu, history, converged


def reduced_mse(H: np.ndarray, P: np.ndarray, noise_var: float, A: np.ndarray):
    """f(A) = min_B MSE(A, B) and its Wirtinger gradient d f / d conj(A) (N_r, L).

    By the envelope theorem (the budgets do not depend on A) the gradient is that of the MSE at
    the optimal B(A): sum_n C_n (C_n^H A - I) + noise_var A with C_n = H_n B_n(A).
    Returns ``(f, grad, B, mu)``.
    """
    return _precoder_block(H, A, P, noise_var, grad=True)


def quasi_newton_receiver(H: np.ndarray, P: np.ndarray, noise_var: float, A0: np.ndarray, *,
                          max_iter: int = 1000) -> tuple[np.ndarray, list[float]]:
    """Minimize the reduced error f(A) over the receiver with L-BFGS from ``A0`` (N_r, L).

    Alternating steps alone crawl along flat valleys (thousands of iterations at N_r = 20);
    L-BFGS on f(A), with the inner block minimization over B done exactly, needs a few hundred
    cheap evaluations. Returns the receiver and the MSE after every L-BFGS step (decreasing).
    """
    shape = A0.shape
    size = A0.size

    def unpack(x):
        return (x[:size] + 1j * x[size:]).reshape(shape)

    last_mu = [None]
    stacked = stack_channels(H)

    def fun(x):
        # the precoders are not needed here; the previous evaluation's multipliers start the
        # root-find (L-BFGS evaluates nearby receivers); the gradient only for accepted steps
        f, gradient, _, last_mu[0] = _precoder_block(H, unpack(x), P, noise_var, grad="later",
                                                     precoders=False, mu0=last_mu[0], stacked=stacked)

        def real_gradient():
            g = 2.0 * gradient().ravel()                      # gradient in (Re A, Im A)
            return np.concatenate([g.real, g.imag])

        return f, real_gradient

    x, trace = lbfgs(fun, np.concatenate([A0.ravel().real, A0.ravel().imag]), max_iter=max_iter)
    return unpack(x), trace


def hybrid_receiver(H: np.ndarray, P: np.ndarray, noise_var: float, A0: np.ndarray, *,
                    lbfgs_steps: int = 20, rounds: int = 10, max_iter: int = 1000
                    ) -> tuple[np.ndarray, list[float], bool]:
    """Minimize the reduced error f(A) for L >= 2 from ``A0`` (N_r, L): rounds of ``lbfgs_steps``
    L-BFGS steps (`quasi_newton_receiver`), each followed by primal-dual Newton
    (`testbed.optim.mmse_newton.primal_dual_newton`, quadratic once in its basin) until Newton
    converges (or L-BFGS stops by its own tolerance); after ``rounds`` failed rounds, plain
    L-BFGS (up to ``max_iter`` steps).

    L-BFGS alone needs 400-800 steps at N_r = 20, L = 4 (the budgets make f a stiff penalty);
    this needs 20 L-BFGS and 9-30 (median ~14) Newton steps on 34 of 40 draws at (8, 20, 4, 4),
    a second round on the others. Returns ``(A, trace, stationary)``: the MSE after every step
    (non-increasing up to rounding, 1e-14 relative) and whether Newton converged.
    """
    stacked = stack_channels(H)

    def reduced(A, mu0, bound=None):
        f, _, _, mu = _precoder_block(H, A, P, noise_var, grad=False, precoders=False, mu0=mu0,
                                      stacked=stacked, bound=bound)
        return f, mu

    A, trace = A0, []
    for _ in range(rounds):
        A, tr = quasi_newton_receiver(H, P, noise_var, A, max_iter=lbfgs_steps)
        trace += tr
        if len(tr) < lbfgs_steps:                             # L-BFGS met its own tolerance
            return A, trace, False
        A_n, tr, converged = primal_dual_newton(H, P, noise_var, A, reduced)
        if tr:
            A = A_n
            trace += tr
        if converged:
            return A, trace, True
    A, tr = quasi_newton_receiver(H, P, noise_var, A, max_iter=max_iter)
    return A, trace + tr, False


def newton_single_stream(H: np.ndarray, P: np.ndarray, noise_var: float, a0: np.ndarray, *,
                         max_iter: int = 100) -> tuple[np.ndarray, list[float]]:
    """Minimize the single-stream (L = 1) reduced error by Newton's method from ``a0`` (N_r, 1).

    For L = 1 the optimal precoders give f(a) = sum_n (1 - min(1, c_n))^2 + noise_var ||a||^2,
    c_n = sqrt(P_n) ||H_n^H a|| (nodes with c_n >= 1 invert their channel exactly, the others
    transmit at full power; the vector form of the SISO function in `testbed.optim.siso`). In
    real coordinates x = (Re a, Im a), with q_n = c_n^2 = x^T Q_n x:

        grad f = sum_n phi'(q_n) 2 Q_n x + 2 noise_var x,
        hess f = sum_n [4 phi''(q_n) (Q_n x)(Q_n x)^T + 2 phi'(q_n) Q_n] + 2 noise_var I,

    phi(q) = (1 - sqrt q)^2 for q < 1, else 0. The Hessian may be indefinite (the problem is not
    convex) and is singular along the common phase; the step uses |eigenvalues| (floored), with
    Armijo backtracking, so f decreases at every step. Returns ``(a, trace)`` (f after every step).
    """
    N, N_r, N_t = H.shape
    Fm = np.transpose(np.sqrt(P)[:, None, None] * H, (1, 0, 2)).reshape(N_r, N * N_t)
    E1 = np.concatenate([Fm.real, Fm.imag])                  # Re(f^H a) = E1^T x
    E2 = np.concatenate([-Fm.imag, Fm.real])                 # Im(f^H a) = E2^T x
    node = np.repeat(np.arange(N), N_t)
    n2 = 2 * N_r

    def evaluate(x, derivatives):
        """(f, grad, Hessian); (f, None, None) without ``derivatives`` (the line search's
        trials need f alone)."""
        u, w = E1.T @ x, E2.T @ x
        q = np.bincount(node, u * u + w * w, minlength=N) if N_t > 1 else u * u + w * w
        c = np.sqrt(q)
        act = c < 1.0
        f = float(np.sum(np.where(act, 1.0 - c, 0.0) ** 2) + noise_var * (x @ x))
        if not derivatives:
            return f, None, None
        cs = np.where(c > 0, c, 1.0)
        d1 = np.where(act, 1.0 - 1.0 / cs, 0.0)                # phi'(q)
        Gk = E1 * u + E2 * w                                  # (2 N_r, N N_t): Q x per antenna
        G = Gk if N_t == 1 else Gk @ (node[:, None] == np.arange(N)[None, :])
        g = 2.0 * (G @ d1) + 2.0 * noise_var * x
        d2 = np.where(act, 0.5 / (cs * cs * cs), 0.0)          # phi''(q)
        dk = d1[node]
        Hm = 4.0 * (G * d2) @ G.T + 2.0 * ((E1 * dk) @ E1.T + (E2 * dk) @ E2.T)
        Hm[np.diag_indices(n2)] += 2.0 * noise_var
        return f, g, Hm

    x = np.concatenate([a0[:, 0].real, a0[:, 0].imag])
    f, g, Hm = evaluate(x, True)
    trace: list[float] = []
    for _ in range(max_iter):
        lam, V = np.linalg.eigh(Hm)
        floor = 1e-10 * max(float(np.max(np.abs(lam))), 1e-300)
        d = -V @ ((V.T @ g) / np.maximum(np.abs(lam), floor))
        slope = g @ d
        if not slope < 0:
            break
        step = 1.0
        for _ in range(40):
            x_new = x + step * d
            f_new = evaluate(x_new, False)[0]
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        decrease = f - f_new
        x, f = x_new, f_new
        trace.append(f)
        if decrease <= 1e-15 * f:
            break
        f, g, Hm = evaluate(x, True)
    return (x[:N_r] + 1j * x[N_r:])[:, None], trace


def _optimal_magnitude(H: np.ndarray, P: np.ndarray, noise_var: float, a: np.ndarray) -> np.ndarray:
    """Single-stream receiver ``a`` (N_r,) rescaled to the magnitude that is optimal along its
    direction (the SISO closed form of `testbed.optim.siso` with c_n = sqrt(P_n) ||H_n^H g||,
    ||g|| = 1); returns (N_r, 1)."""
    g = a / np.linalg.norm(a)
    c = np.sqrt(P) * np.linalg.norm(np.einsum("nrt,r->nt", H.conj(), g), axis=1)
    return siso_receiver_gain(c, noise_var) * g[:, None]


def _channel_inversion_start(H: np.ndarray, P: np.ndarray, noise_var: float, L: int, *,
                             zf_polish: bool = False) -> np.ndarray:
    """The channel-inversion receiver (N_r, L); for L = 1 rescaled to the optimal magnitude along
    its direction (`_optimal_magnitude`).

    With ``zf_polish`` (L = 1 only) the direction is first improved by a few coarse steps of the
    zero-forcing SCA (`testbed.optim.zf_refine.sca_single_stream`, relative tolerance 1e-3, no
    SDP): at moderate to high SNR the MMSE receiver is close to the ZF one, where all weak nodes
    sit at the full-power threshold. From channel inversion, where most nodes are far above it,
    Newton's method needs 20-50 steps (about one node crosses the threshold per step); from the
    polished start, 4-9.
    """
    A = solve_channel_inversion(H, P, noise_var, L, None)[0]
    if L == 1:
        a = A[:, 0]
        if zf_polish:
            from testbed.optim.zf_refine import sca_single_stream
            a = sca_single_stream(np.sqrt(P)[:, None, None] * H, a, tol=1e-3)[0]
        A = _optimal_magnitude(H, P, noise_var, a)
    return A


#: relative stationarity ||grad f|| ||A|| / f below which Newton's single-stream result is final
STATIONARY_TOL = 1e-9


def solve_mmse(H: np.ndarray, P: np.ndarray, noise_var: float, L: int, rng, *,
               init="channel-inversion", tol: float = 1e-10, max_iter: int = 2000, quasi_newton: bool = True,
               accelerate: bool = True, n_random: int = 100):
    """MMSE design (not zero-forcing). Returns ``(A, B, None, info)``.

    Per start: a second-order method on the reduced error f(A) = min_B MSE(A, B) (if
    ``quasi_newton``: Newton for L = 1, `newton_single_stream`; L-BFGS and primal-dual Newton
    otherwise, `hybrid_receiver`), then (unless the result is already stationary)
    alternating (Wiener receiver / power-constrained LS precoders) steps, SQUAREM-accelerated if
    ``accelerate``, until the relative MSE drop per cycle is below ``tol`` or ``max_iter`` cycles.
    ``init`` is "channel-inversion" (default: no SDP on the default path; for L = 1 polished by
    a few coarse zero-forcing SCA steps when ``quasi_newton`` and rescaled to the optimal
    magnitude along its direction), "zf-sdr", "best" (run from both, keep the lower
    MSE) or a receiver array (N_r, L) to warm-start from (e.g. the previous round's receiver);
    ``n_random`` is passed to zf-sdr.
    ``info``: ``power_multipliers`` (N,) mu_n >= 0 with d MSE*/d P_n = -mu_n (linear MSE per
    linear power unit); ``iterations`` (L-BFGS + alternating); ``converged``; ``mse_history``
    (non-increasing list, MSE at the start and after every iteration); ``init`` (winning start).
    """
    starts: dict[str, np.ndarray] = {}
    if isinstance(init, str):
        valid = ("best", "zf-sdr", "channel-inversion")
        if init not in valid:
            raise ValueError(f"mmse init must be one of {valid} or a receiver array, got {init!r}")
        if init in ("best", "channel-inversion"):
            starts["channel-inversion"] = _channel_inversion_start(H, P, noise_var, L,
                                                                   zf_polish=quasi_newton)
        if init in ("best", "zf-sdr"):
            from testbed.optim.zf_sdr import solve_zf_sdr     # local: cvxpy is slow to import
            starts["zf-sdr"] = solve_zf_sdr(H, P, noise_var, L, rng, n_random=n_random,
                                            compute_bound=False)[0]
    else:
        A0 = np.asarray(init, dtype=complex)
        if A0.shape != (H.shape[1], L) or not np.all(np.isfinite(A0)):
            raise ValueError(f"mmse init array must be finite with shape (N_r, L) = {(H.shape[1], L)}, "
                             f"got {A0.shape}")
        starts["array"] = A0
    best = None
    for name, A0 in starts.items():
        hist = [_precoder_block(H, A0, P, noise_var, grad=False, precoders=False)[0]]
        if quasi_newton:
            if L == 1:
                A0, trace = newton_single_stream(H, P, noise_var, A0)
            else:
                A0, trace, _ = hybrid_receiver(H, P, noise_var, A0)
            hist += trace
        f0, g0, B0, mu0 = reduced_mse(H, P, noise_var, A0)
        if quasi_newton and np.linalg.norm(g0) * np.linalg.norm(A0) <= STATIONARY_TOL * f0:
            # Newton converged to a stationary point: alternating steps cannot lower f further
            # (beyond rounding), so they are skipped
            A, B, mu, conv = A0, B0, mu0, True
        else:
            A, B, mu, alt, conv = alternate(H, P, noise_var, A0, tol=tol, max_iter=max_iter,
                                            accelerate=accelerate)
            hist += alt[1:]
        if best is None or hist[-1] < best[3][-1]:
            best = (A, B, mu, hist, conv, name)
    A, B, mu, hist, conv, name = best
    info = {"power_multipliers": mu, "iterations": len(hist) - 1, "converged": conv,
            "mse_history": hist, "init": name}
    return A, B, None, info
