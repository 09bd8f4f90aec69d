"""Primal-dual Newton steps for the multi-stream MMSE design (`testbed.optim.mmse`, L >= 2).

With the precoders eliminated, node n's part of the error is a maximum over its power
multiplier (min_B ||F B - I||^2 + mu ||B||^2 = mu tr (K + mu I)^{-1}, F = A^H H_n):

    f(A) = max_{mu >= 0} Lag(A, mu),
    Lag(A, mu) = noise_var ||A||_F^2 + sum_n [mu_n tr (K_n + mu_n I)^{-1} - mu_n P_n],

K_n = A^H H_n H_n^H A (L x L). Newton's method on f alone (mu re-solved at every A) crawls: near
the 20 dB optimum every node is just over its zero-forcing budget and f is a stiff penalty of
those budgets (8 Hessian eigenvalues ~10^3 x the others), whose quadratic model holds only in
a tiny region. Here (A, mu) are the unknowns of the saddle point's stationarity conditions
(the SQP view: the budgets are linearized, mu is iterated, not re-solved), which converges
quadratically from much farther. Units: A as the receiver (N_r, L), mu linear MSE per linear
power unit (d f / d P_n = -mu_n at the optimum), P_n linear power per channel use.
"""
from __future__ import annotations

import math
import threading

import numpy as np
from scipy.linalg.blas import dgemm
from scipy.linalg.lapack import dpotrf, dpotrs

_TINY = np.finfo(float).tiny


def saddle_workspace(N: int, N_r: int, L: int) -> tuple[np.ndarray, ...]:
    """Work arrays for `saddle_derivatives` at N nodes, N_r receive antennas, L streams (0.7 MB at
    (8, 20, 4)), for a caller that evaluates many receivers (`_newton_workspace`)."""
    n = N_r * L
    return (np.empty((2 * N, N_r, N_r), complex), np.empty(n * n, complex), np.empty((n, n), complex),
            np.empty((n, n), complex), np.empty((2 * n, 2 * n)))


_newton_work = threading.local()


def _newton_workspace(N: int, N_r: int, L: int):
    """`saddle_workspace` (N, N_r, L) and two Cholesky work arrays for `primal_dual_newton`, kept
    per thread for the last 4 shapes (1.1 MB at (8, 20, 4)). Allocated afresh per call or per
    run, arrays of this size go back to the system when freed (glibc trims the heap top and maps
    large arrays separately) and their pages are faulted in again on the next use: ~430 page
    faults per design at (8, 20, 4), ~5 % of its CPU time."""
    cache = _newton_work.__dict__
    if (N, N_r, L) not in cache:
        if len(cache) >= 4:                 # a sweep over many shapes keeps the last few only
            cache.clear()
        n2 = 2 * N_r * L
        cache[N, N_r, L] = saddle_workspace(N, N_r, L), (np.empty((n2, n2)), np.empty((n2, n2)))
    return cache[N, N_r, L]


def saddle_derivatives(H: np.ndarray, P: np.ndarray, noise_var: float, A: np.ndarray, mu: np.ndarray,
                       gram: np.ndarray | None = None, work: tuple[np.ndarray, ...] | None = None):
    """First and second derivatives of Lag(A, mu) in real coordinates x = (Re A, Im A) (row-major).

    ``H`` (N, N_r, N_t), ``P`` (N,), ``A`` (N_r, L), ``mu`` (N,) >= 0. Returns ``(g, Hxx, C, D, r)``:
    g (2 N_r L,) = d Lag / dx, Hxx (2 N_r L, 2 N_r L) = d^2 Lag / dx^2 at fixed mu, C (2 N_r L, N)
    = d^2 Lag / dx dmu_n, D (N,) = -d^2 Lag / dmu_n^2 > 0 (Lag is concave in each mu_n) and
    r (N,) = d Lag / dmu_n = tr(B_n B_n^H) - P_n (power of node n's precoder at multiplier mu_n
    minus its budget). A node with mu_n = 0 contributes nothing to g and Hxx; if its K_n is
    singular, its C, D and r are those at a placeholder multiplier (use them for mu_n > 0 only).
    ``gram`` (N, N_r, N_r), optional: the Gram matrices G_n = H_n H_n^H (constant over a design,
    so a caller that evaluates many receivers passes them; formed here otherwise). ``work``,
    optional: `saddle_workspace` (N, N_r, L), allocated here when not given; Hxx is one of its
    arrays (overwritten by the next call with the same work arrays).

    In closed form, with S_n = (K_n + mu_n I)^-1, W_n = H_n H_n^H A and G_n = H_n H_n^H, the
    Wirtinger gradient is grad = d Lag / d conj(A) = noise_var A - sum_n mu_n W_n S_n^2 and its
    differential along dA is
        d grad = noise_var dA + sum_n mu_n [(W_n S_n W_n^H - G_n) dA S_n^2 + W_n S_n^2 W_n^H dA S_n
                 + W_n S_n dA^H W_n S_n^2 + W_n S_n^2 dA^H W_n S_n],
    so both Wirtinger blocks (the dA and conj(dA) parts) are sums over nodes of Kronecker
    products, each formed by one product over the node index.
    """
    N, N_r, N_t = H.shape
    L = A.shape[1]
    n = N_r * L
    V = H.conj().swapaxes(1, 2) @ A                           # (N, N_t, L) = H_n^H A
    K = V.conj().swapaxes(1, 2) @ V
    try:
        S = np.linalg.inv(K + mu[:, None, None] * np.eye(L))  # (K_n + mu_n I)^{-1}
    except np.linalg.LinAlgError:                             # a node with mu_n = 0, K_n singular
        scale = np.max(np.real(np.trace(K, axis1=1, axis2=2)))
        S = np.linalg.inv(K + np.where(mu > 0, mu, scale)[:, None, None] * np.eye(L))
    S2 = S @ S
    S3 = S2 @ S
    mu3 = mu[:, None, None]
    W = H @ V                                                 # (N, N_r, L)
    WS, WS2 = W @ S, W @ S2
    grad = noise_var * A - np.add.reduce(mu3 * WS2, axis=0)  # d Lag / d conj(A)
    trS2 = S2.trace(0, 1, 2).real
    r = S.trace(0, 1, 2).real - mu * trS2 - P
    D = 2.0 * (trS2 - mu * S3.trace(0, 1, 2).real)
    cA = 2.0 * mu3 * (W @ S3) - WS2                           # d grad / d mu_n, (N, N_r, L)
    # Hxx = 2 [[Re(H1 + H2), -Im(H1 - H2)], [Im(H1 + H2), Re(H1 - H2)]] + 2 noise_var I with H1,
    # H2 the dA and conj(dA) blocks of d grad; the factor 2 rides on the multipliers (m2)
    if gram is None:
        gram = H @ np.conj(np.swapaxes(H, 1, 2))
    m2 = 2.0 * np.concatenate([mu, mu])[:, None, None]
    X, prod, H1, H2, Hxx = saddle_workspace(N, N_r, L) if work is None else work
    WSS = np.concatenate([WS, WS2])                                       # (2N, N_r, L)
    # dA block: H1[(r, l), (s, k)] = sum_j X_j[r, s] Y_j[k, l], over the two Kronecker terms
    np.matmul(WSS, np.conj(np.swapaxes(np.concatenate([W, W]), 1, 2)), out=X)   # (2N, N_r, N_r)
    X[:N] -= gram
    X *= m2
    Y = np.concatenate([S2, S])                                           # (2N, L, L)
    np.matmul(X.reshape(2 * N, N_r * N_r).T, Y.reshape(2 * N, L * L),
              out=prod.reshape(N_r * N_r, L * L))
    np.copyto(H1.reshape(N_r, L, N_r, L), prod.reshape(N_r, N_r, L, L).transpose(0, 3, 1, 2))
    # conj(dA) block: H2[(r, l), (s, k)] = sum_n mu_n ((W_n S_n)[r, k] (W_n S_n^2)[s, l]
    # + (W_n S_n^2)[r, k] (W_n S_n)[s, l]), one product over the node index for both terms
    np.matmul((m2 * WSS).reshape(2 * N, n).T, np.concatenate([WS2, WS]).reshape(2 * N, n),
              out=prod.reshape(n, n))
    np.copyto(H2.reshape(N_r, L, N_r, L), prod.reshape(N_r, L, N_r, L).transpose(0, 3, 2, 1))
    np.add(H1.real, H2.real, out=Hxx[:n, :n])
    np.subtract(H2.imag, H1.imag, out=Hxx[:n, n:])
    np.add(H1.imag, H2.imag, out=Hxx[n:, :n])
    np.subtract(H1.real, H2.real, out=Hxx[n:, n:])
    Hxx.reshape(-1)[::2 * n + 1] += 2.0 * noise_var                       # the diagonal
    g = 2.0 * np.concatenate([grad.real.ravel(), grad.imag.ravel()])
    C = 2.0 * np.concatenate([cA.real.reshape(N, n), cA.imag.reshape(N, n)], axis=1).T
    return g, Hxx, C, D, r


def _shifted_cholesky(M: np.ndarray, floor: float, guess: float, plain_first: bool = True,
                      start: float = 0.0, work: tuple[np.ndarray, np.ndarray] | None = None):
    """Cholesky factor of M + s I, positive definite: s = ``floor`` (a plain Newton step) if that
    works (tried first only with ``plain_first``), else the smallest s = max(guess, 4 floor) * 4^k
    (k >= 0) that works, up to 1e12 floor. The search for k begins at the largest such s <=
    ``start`` (e.g. the shift an earlier step needed) and goes down while the next smaller s
    works, else up: M + s I stays positive definite as s grows, so this finds the s of a climb
    from k = 0, in fewer tries when ``start`` is close to it. Returns ``(factor, s)``, factor
    None when M is not finite or no shift up to 1e12 floor works. M must be symmetric (up to
    rounding): its transpose, which is Fortran-ordered, is factored in place in two work arrays
    like M (``work``, allocated here when not given; no copies per try)."""
    low = max(guess, 4.0 * floor)                             # k = 0
    if not np.all(np.isfinite(M)):
        return None, floor if plain_first else low
    if work is None:
        work = (np.empty_like(M), np.empty_like(M))

    def factor(s, i):
        """Cholesky factor of M + s I in work[i], None if that is not positive definite."""
        np.copyto(work[i], M)
        work[i].reshape(-1)[::M.shape[0] + 1] += s
        c, info = dpotrf(work[i].T, lower=1, clean=0, overwrite_a=1)
        return c if info == 0 else None

    if plain_first and (c := factor(floor, 0)) is not None:
        return c, floor
    top = 1e12 * floor
    shift = low
    while shift * 4.0 <= min(start, top):                    # the largest s <= start (x4: exact)
        shift *= 4.0
    c = factor(shift, 0) if shift <= top else None
    if c is not None:                                         # down while the smaller s works
        i = 1                                                 # the buffer c is not in
        while shift > low and (c_low := factor(shift / 4.0, i)) is not None:
            c, shift, i = c_low, shift / 4.0, 1 - i
        return c, shift
    while shift <= top:                                       # up until one works
        shift *= 4.0
        if shift <= top and (c := factor(shift, 0)) is not None:
            return c, shift
    return None, shift


#: relative change of f below which it is rounding: a full Newton step is accepted up to it (near
#: the optimum the stiff directions move f by less than its rounding while the gradient still
#: drops quadratically)
ROUNDING = 1e-14


def _initial_multipliers(H: np.ndarray, P: np.ndarray, A: np.ndarray, mu: np.ndarray, activate: float):
    """Active set and multipliers to start Newton from at receiver ``A`` with exact multipliers
    ``mu`` (see `primal_dual_newton`). Returns ``(active, mu)``."""
    V = np.conj(np.swapaxes(H, 1, 2)) @ A
    K = np.conj(np.swapaxes(V, 1, 2)) @ V
    try:
        zf_power = np.real(np.trace(np.linalg.inv(K), axis1=1, axis2=2))
    except np.linalg.LinAlgError:
        zf_power = np.full(len(P), np.inf)
    act = (mu > 0) | (zf_power >= activate * P)
    return act, np.where(act, np.maximum(mu, 1e-2 * max(float(np.max(mu)), np.finfo(float).tiny)), 0.0)


def primal_dual_newton(H: np.ndarray, P: np.ndarray, noise_var: float, A0: np.ndarray, reduced, *,
                       max_iter: int = 30, tol: float = 1e-10, min_step: float = 1.0 / 64,
                       activate: float = 0.5):
    """Newton's method on the stationarity conditions of Lag (module docstring) from ``A0`` (N_r, L).

    ``reduced(A, mu0, bound=None) -> (f, mu)`` is the exact reduced error f(A) (MSE per channel
    use, linear) and its multipliers, warm-started from ``mu0``; with ``bound = (m, above)`` it
    may instead return a lower bound > above and None (the Lagrangian at multipliers m, see
    `testbed.optim.mmse._precoder_block`). A node starts active (mu_n >= 1 % of the largest)
    when its exact multiplier is positive or zero forcing would take at least ``activate`` of
    its budget (tr K_n^{-1} >= activate P_n: near its threshold, where f alone does not yet see
    it); a node whose multiplier would turn negative leaves the active set (mu_n = 0, its budget
    unconstrained), one whose exact multiplier at the new receiver is positive joins it. Each
    step is [Hxx + C D^-1 C^T] dx = -(g + C D^-1 r) on the active nodes (shifted to positive
    definite when it is not: the problem is not convex), dmu = D^-1 (C^T dx + r), halved until
    f does not increase (a full step may raise it by ``ROUNDING``, relative). When the step
    falls below ``min_step`` the multipliers restart from the exact ones at the current receiver
    (as at the start); the iteration fails when that does not help either. Converged when
    ||grad|| ||A|| <= tol f and |r_n| <= tol P_n on the active nodes. Returns ``(A, trace,
    converged)`` with f after every accepted step (non-increasing up to ``ROUNDING``).
    """
    shape, size = A0.shape, A0.size
    A = A0
    f, mu_exact = reduced(A, None)
    act, mu = _initial_multipliers(H, P, A, mu_exact, activate)
    restarted = True
    trace: list[float] = []
    shift = needed = 0.0
    gram = H @ np.conj(np.swapaxes(H, 1, 2))                  # G_n = H_n H_n^H, for every Hessian
    work, chol_work = _newton_workspace(*H.shape[:2], shape[1])
    for _ in range(2 * max_iter + 1):
        g, Hxx, C, D, r = saddle_derivatives(H, P, noise_var, A, np.where(act, mu, 0.0), gram, work)
        Ca, Da, ra = C[:, act], D[act], r[act]
        gn = math.sqrt(g @ g) * 0.5                          # = ||d Lag / d conj(A)||
        if gn * np.linalg.norm(A) <= tol * f and np.all(np.abs(ra) <= tol * P[act]):
            return A, trace, True
        if len(trace) == max_iter:
            break
        # M = Hxx + C D^-1 C^T, the product added in place by dgemm (on the transposes, which are
        # Fortran-ordered): the same numbers as forming it first, without another large array
        M = dgemm(1.0, Ca.T, (Ca / Da).T, 1.0, Hxx.T, trans_a=1, overwrite_c=1).T
        scale = max(float(np.abs(M.diagonal()).max()), _TINY)     # > 0: noise_var > 0
        # a plain step is tried first unless the last step needed a large shift (indefinite
        # region: the plain factorization would fail); the search for a shift starts one level
        # below the last one needed, also after plain steps (the same shift in fewer tries)
        floor = 1e-9 * scale
        c, shift = _shifted_cholesky(M, floor, shift / 16.0 if shift else 1e-3 * scale,
                                     plain_first=shift <= 1e-3 * scale,
                                     start=needed / 4.0 if needed else 0.25 * scale,
                                     work=chol_work)
        if c is None:
            break
        if shift > floor:
            needed = shift
        dx = dpotrs(c, -(g + Ca @ (ra / Da)), lower=1)[0]
        dmu = (Ca.T @ dx + ra) / Da
        dA = (dx[:size] + 1j * dx[size:]).reshape(shape)
        t = 1.0
        while t >= min_step:
            At = A + t * dA
            # a trial whose f exceeds the acceptance level by far more than rounding is told by a
            # lower bound, the Lagrangian at the exact multipliers of the current A
            ft, mut = reduced(At, mu, (mu_exact, f * (1.0 + 1e-10)))
            if ft <= f or (t == 1.0 and ft <= f * (1.0 + ROUNDING)):
                break
            t *= 0.5
        else:
            if restarted:
                break
            act, mu = _initial_multipliers(H, P, A, mu_exact, activate)
            restarted, shift = True, 0.0
            continue
        A, f, mu_exact, restarted = At, ft, mut, False
        trace.append(f)
        new = mu.copy()
        new[act] += t * dmu
        act = (act & (new > 0)) | (mut > 0)
        mu = np.where(act, np.where(new > 0, new, mut), 0.0)
    return A, trace, False
