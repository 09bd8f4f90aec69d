"""Zero-forcing transceiver with the receiver found by semidefinite relaxation (the paper's design).

With A = sqrt(alpha) G, ||G||_F = 1 and the minimum-power ZF precoders
B_n = H_n^H A (A^H H_n H_n^H A)^{-1}, the error is exactly noise_var * alpha and the budgets need

    alpha >= max_n tr[(G^H M_n G)^{-1}] / P_n,    M_n = H_n H_n^H.

So the design problem is: min ||A||_F^2 s.t. tr[(A^H M_n A)^{-1}] <= P_n for all n.

Relaxations (X stands for A A^H, rank L, relaxed to any PSD matrix):

* L = 1 (exact multicast SDR): tr[(a^H M_n a)^{-1}] <= P_n  <=>  P_n tr(M_n X) >= 1. Its optimum
  tau_1 satisfies noise_var * tau_1 <= optimal ZF MSE: a proven lower bound. Solved by the
  tailored interior-point method of `testbed.optim.multicast_ipm` (a general solver through
  cvxpy, `multicast_sdr`, is the fallback and the reference).
* L >= 2, the paper's design SDP (`eigenmode_lmi_sdp`, opt-in with ``start="paper-lmi"``):
  tr(K^{-1}) <= L / lambda_min(K) for PD K (L x L), so lambda_min(A^H M_n A) >= L / P_n suffices.
  With node n's top-L channel eigenmodes Ht_n = U_{n,L} S_{n,L} (N_r, L), the LMI
  P_n Ht_n^H X Ht_n >= L I_L implies it for rank-L X = A A^H. It only steers the search.
* Lower bound for L >= 2 (opt-in, ``compute_bound=True``): the larger of (a) tr(K^{-1}) >=
  L^2 / tr(K) (AM-HM), so a feasible ZF design has P_n tr(M_n X) >= L^2, and noise_var * L^2 *
  tau_1 <= optimal ZF MSE; (b) the single-node bound of `testbed.optim.zf_refine.single_node_bound`
  (what the weakest node alone needs). Both are loose for L >= 2.

Recovery: candidates G from the principal eigenvectors of X* (weighted by sqrt of the
eigenvalues and unweighted), Gaussian randomization G = X*^{1/2} Z, Z ~ CN(0, I) of shape
(N_r, L), and the channel-inversion direction, each scored by the EXACT alpha above; the best one
is then refined on the exact ZF problem (`testbed.optim.zf_refine`: SCA for L = 1, smoothed
minimax L-BFGS for L >= 2), which never makes it worse.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from testbed.optim.baselines import channel_inversion_direction
from testbed.optim.mse import zf_design_from_direction, zf_trace_inverse
from testbed.optim.multicast_ipm import IPMError, certified_bound, multicast_sdr_ipm
from testbed.optim.zf_refine import minimax_direction, sca_single_stream, single_node_bound

SOLVERS = ("CLARABEL", "SCS")
#: Duality gap / infeasibility at which the tailored interior-point method stops on the L = 1
#: zf-sdr path. Its X* only steers the candidates (each scored by its exact, feasible ZF design,
#: then refined by SCA) and its bound is certified at any accuracy (within ~this, relative, of
#: the SDR optimum): 1e-5 instead of the solver's 1e-7 saves ~2 of ~10 iterations, with the same
#: designs (MSE within 4e-5) on 150 draws at N = N_r = 8. L >= 2 keeps 1e-7: there the candidates
#: feed a non-convex refinement, whose result would move by a few percent either way.
SDR_TOL = 1e-5
_OK = ("optimal", "optimal_inaccurate")          # cvxpy statuses (cvxpy is imported lazily: slow)
# Clarabel's default 1e-8 gaps stall on the complex LMIs ("AlmostSolved"); 1e-6 is plenty for
# steering a randomized recovery. The bound SDP keeps the solvers' defaults (tight).
_LMI_OPTIONS = {"CLARABEL": {"tol_gap_abs": 1e-6, "tol_gap_rel": 1e-6, "tol_feas": 1e-7},
                "SCS": {"eps": 1e-6, "max_iters": 20000}}


def _solve(objective, constraints, solvers, solver_options=None):
    """Solve with the first solver that succeeds. Returns (problem, status, solver name)."""
    import cvxpy as cp
    prob = cp.Problem(objective, constraints)
    status, used = "not solved", None
    for name in solvers:
        try:
            with warnings.catch_warnings():                   # inaccuracy is reported in the status
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=name, **(solver_options or {}).get(name, {}))
        except cp.SolverError as exc:
            status = f"{name} failed: {exc}"
            continue
        status, used = prob.status, name
        if prob.status in _OK:
            break
    return prob, status, used


def multicast_sdr(H: np.ndarray, P: np.ndarray, solvers=SOLVERS) -> tuple[np.ndarray | None, float | None, dict]:
    """min tr(X) s.t. P_n tr(H_n H_n^H X) >= 1, X >= 0 (complex Hermitian, N_r x N_r).

    Returns ``(X, bound, info)``; ``X`` None when no solver succeeded. ``bound`` is a certified
    lower bound on the SDR optimum (hence on min ||a||^2 over ZF-feasible single-stream
    receivers; multiply by noise_var for the MSE bound): from the solver's multipliers lambda_n
    >= 0 of the dual max sum_n lambda_n s.t. sum_n lambda_n P_n H_n H_n^H <= I, rescaled to be
    exactly dual feasible, so solver inaccuracy can only loosen it, never invalidate it.
    ``info`` has ``status``, ``solver``, ``primal`` (tr X*). The problem is scaled internally.
    """
    import cvxpy as cp
    Q = P[:, None, None] * np.einsum("nrt,nst->nrs", H, H.conj())
    c = float(np.mean(np.real(np.einsum("nrr->n", Q))))
    Qs = Q / c
    N_r = H.shape[1]
    Y = cp.Variable((N_r, N_r), hermitian=True)
    cover = [cp.real(cp.trace(Qs[n] @ Y)) >= 1 for n in range(H.shape[0])]
    prob, status, used = _solve(cp.Minimize(cp.real(cp.trace(Y))), [Y >> 0] + cover, solvers)
    info = {"status": status, "solver": used}
    if status not in _OK:
        return None, None, info
    lam = np.array([float(np.real(con.dual_value)) for con in cover])
    bound = certified_bound(np.sqrt(P / c)[:, None, None] * H, lam) / c
    Yv = 0.5 * (Y.value + Y.value.conj().T)
    info["primal"] = float(prob.value) / c
    return Yv / c, bound, info


def eigenmode_lmi_sdp(H: np.ndarray, P: np.ndarray, L: int, solvers=SOLVERS) -> tuple[np.ndarray | None, dict]:
    """min tr(X) s.t. P_n Ht_n^H X Ht_n >= L I_L, X >= 0, with Ht_n node n's top-L eigenmodes.

    ``H`` (N, N_r, N_t), L >= 2. Returns ``(X, info)`` (X None on solver failure). See the module
    docstring for why feasibility of a rank-L X = A A^H implies ZF feasibility.
    """
    import cvxpy as cp
    U, s, _ = np.linalg.svd(H, full_matrices=False)          # U (N, N_r, k), s (N, k)
    Ht = U[:, :, :L] * (s[:, None, :L] * np.sqrt(P)[:, None, None])
    c = float(np.mean(np.sum(np.abs(Ht) ** 2, axis=(1, 2)))) / L
    Hs = Ht / np.sqrt(c)
    N_r = H.shape[1]
    Y = cp.Variable((N_r, N_r), hermitian=True)
    cons = [Y >> 0]
    for n in range(H.shape[0]):
        E = Hs[n].conj().T @ Y @ Hs[n]
        cons.append(0.5 * (E + E.H) >> L * np.eye(L))
    prob, status, used = _solve(cp.Minimize(cp.real(cp.trace(Y))), cons, solvers, _LMI_OPTIONS)
    info = {"status": status, "solver": used}
    if status not in _OK:
        return None, info
    Yv = 0.5 * (Y.value + Y.value.conj().T)
    return Yv / c, info


def _candidates(X: np.ndarray, L: int, n_random: int, rng: np.random.Generator) -> np.ndarray:
    """Receive directions (K, N_r, L) from an SDP solution X (N_r, N_r)."""
    w, V = np.linalg.eigh(X)
    w = np.clip(w[::-1], 0.0, None)
    V = V[:, ::-1]
    N_r = X.shape[0]
    G = np.empty((2 + n_random, N_r, L), dtype=complex)
    G[0] = V[:, :L] * np.sqrt(w[:L])
    G[1] = V[:, :L]
    if n_random > 0:
        root = V * np.sqrt(w)                                 # X = root root^H
        Z = (rng.standard_normal((n_random, N_r, L)) + 1j * rng.standard_normal((n_random, N_r, L))) / np.sqrt(2)
        Zm = np.transpose(Z, (1, 0, 2)).reshape(N_r, n_random * L)        # one product for all
        G[2:] = np.transpose((root @ Zm).reshape(N_r, n_random, L), (1, 0, 2))
    return G / np.linalg.norm(G, axis=(1, 2), keepdims=True)


def best_direction(H: np.ndarray, P: np.ndarray, G: np.ndarray) -> tuple[int, np.ndarray]:
    """Index of the candidate (of ``G`` (K, N_r, L)) with the smallest exact alpha, and all alphas (K,)."""
    alpha = np.max(zf_trace_inverse(H, G) / P, axis=1)
    return int(np.argmin(alpha)), alpha


def _multicast(H: np.ndarray, P: np.ndarray, solvers, tol: float = 1e-7
               ) -> tuple[np.ndarray | None, float | None, dict]:
    """Multicast SDR by the tailored interior-point method (stopping at ``tol``, relative gap and
    infeasibility); a general solver (cvxpy) if it fails.

    Returns ``(X, tau_1, info)`` in the units of `multicast_sdr` (X None if every solver failed).
    """
    F = np.sqrt(P)[:, None, None] * H
    c = float(np.mean(np.sum(np.abs(F) ** 2, axis=(1, 2))))
    Fs = F / np.sqrt(c)
    try:
        X, y, info = multicast_sdr_ipm(Fs, tol=tol)
    except IPMError as exc:
        X, tau, info = multicast_sdr(H, P, solvers)
        info["ipm_error"] = str(exc)
        return X, tau, info
    info = {"status": "optimal", "solver": "ipm", "iterations": info["iterations"]}
    return 0.5 * (X + X.conj().T) / c, certified_bound(Fs, y) / c, info


def solve_zf_sdr(H: np.ndarray, P: np.ndarray, noise_var: float, L: int, rng, *,
                 n_random: int = 100, compute_bound: bool | None = None, refine: bool = True,
                 start: str = "sdr", solvers=SOLVERS):
    """The paper's ZF + SDR design, refined on the exact ZF objective. Returns ``(A, B, lower_bound, info)``.

    Options: ``n_random`` Gaussian-randomization candidates (default 100); ``compute_bound``
    (default: True for L = 1, where the SDR's dual gives it for free, False for L >= 2, where it
    is a separate computation the all-reduce never uses); ``refine`` (default True) the local
    refinement on the exact ZF problem; ``start`` "sdr" (multicast SDR, default) or "paper-lmi"
    (the paper's eigenmode SDP for L >= 2, through cvxpy); ``solvers`` cvxpy solver names for the
    general-solver paths (default CLARABEL then SCS). ``lower_bound`` is a proven lower bound on
    the MSE of any ZF design (see module docstring), None when not computed or the SDP failed.
    ``info``: ``sdp_status``, ``solver``, ``sdp_runtime_s``, ``n_candidates``, ``chosen``
    ("eigen", "eigen-unweighted", "random", "channel-inversion" or "fallback"),
    ``alpha_unrefined`` and ``alpha`` (before / after refinement), ``bound_kind``.
    """
    if n_random < 0:
        raise ValueError(f"n_random must be >= 0, got {n_random}")
    if start not in ("sdr", "paper-lmi"):
        raise ValueError(f"zf-sdr start must be 'sdr' or 'paper-lmi', got {start!r}")
    if compute_bound is None:
        compute_bound = L == 1
    t0 = time.perf_counter()
    tau1 = None
    if L == 1 or start == "sdr" or compute_bound:
        X, tau1, sdp = _multicast(H, P, solvers, SDR_TOL if L == 1 else 1e-7)
    if L > 1 and start == "paper-lmi":
        X, sdp = eigenmode_lmi_sdp(H, P, L, solvers)
    sdp_time = time.perf_counter() - t0

    ci = channel_inversion_direction(H, P, L)[None]
    if X is None:                                             # solver failure: keep a valid design
        G = ci
    else:
        G = np.concatenate([_candidates(X, L, n_random, rng), ci / np.linalg.norm(ci)])
    k, alphas = best_direction(H, P, G)
    if not np.isfinite(alphas[k]):
        raise ValueError("zero forcing is infeasible for every candidate receiver (some node's channel "
                         f"has rank < L = {L}); use fewer streams or method='mmse'")
    if X is None:
        chosen = "fallback"
    else:
        chosen = ("eigen", "eigen-unweighted")[k] if k < 2 else \
            "channel-inversion" if k == G.shape[0] - 1 else "random"
    g = G[k] / np.linalg.norm(G[k])
    refined = {}
    if refine and L == 1:
        F = np.sqrt(P)[:, None, None] * H
        a, hist = sca_single_stream(F, g[:, 0])
        refined = {"refine_iterations": len(hist) - 1}
        g = a[:, None]
    elif refine:
        g, r = minimax_direction(H, P, g)
        refined = {"refine_evaluations": r["evaluations"]}
    A, B, alpha = zf_design_from_direction(H, P, g)
    if alpha > alphas[k] * (1.0 + 1e-12):                     # refinement never makes it worse
        A, B, alpha = zf_design_from_direction(H, P, G[k])
    bound = None
    if compute_bound and tau1 is not None:
        tau = L ** 2 * tau1
        if L > 1:
            tau = max(tau, single_node_bound(H, P, L))
        bound = noise_var * tau
    info = {"sdp_status": sdp["status"], "solver": sdp["solver"], "sdp_runtime_s": sdp_time,
            "n_candidates": int(G.shape[0]), "chosen": chosen, "alpha_unrefined": float(alphas[k]),
            "alpha": alpha, "bound_kind": "sdr" if L == 1 else "sdr-amhm+single-node", **refined}
    return A, B, bound, info
