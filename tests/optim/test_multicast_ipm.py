"""The tailored multicast-SDR interior-point solver against cvxpy (Clarabel) on the same SDPs."""
import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from testbed.optim.multicast_ipm import certified_bound, multicast_sdr_ipm


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


def cvxpy_sdr(F):
    """min tr X s.t. tr(F_n^H X F_n) >= 1, X >= 0, written directly in cvxpy (the oracle)."""
    N, N_r, _ = F.shape
    X = cp.Variable((N_r, N_r), hermitian=True)
    Q = np.einsum("nrt,nst->nrs", F, F.conj())
    prob = cp.Problem(cp.Minimize(cp.real(cp.trace(X))),
                      [X >> 0] + [cp.real(cp.trace(Q[n] @ X)) >= 1 for n in range(N)])
    prob.solve(solver="CLARABEL")
    return prob.value


@pytest.mark.parametrize("N, N_r, N_t", [(8, 8, 1), (4, 4, 2), (3, 2, 1), (12, 3, 1), (8, 20, 4)])
def test_matches_cvxpy(N, N_r, N_t):
    rng = np.random.default_rng(N * 100 + N_r * 10 + N_t)
    for _ in range(3):
        F = rayleigh(rng, N, N_r, N_t) * np.sqrt(rng.uniform(0.3, 3.0, N))[:, None, None]
        F /= np.sqrt(np.mean(np.sum(np.abs(F) ** 2, axis=(1, 2))))
        X, y, info = multicast_sdr_ipm(F)
        ref = cvxpy_sdr(F)
        bound = certified_bound(F, y)
        # primal feasible (to the solver tolerance), optimal, and the bound certified below it
        assert np.min(np.linalg.eigvalsh(X)) >= -1e-9
        assert np.min(np.real(np.einsum("nrt,rs,nst->n", F.conj(), X, F))) >= 1 - 1e-6
        assert np.real(np.trace(X)) == pytest.approx(ref, rel=1e-6)
        assert bound == pytest.approx(ref, rel=1e-6)
        assert bound <= np.real(np.trace(X)) * (1 + 1e-12)
        assert info["iterations"] < 40


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 10), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**32 - 1),
       st.floats(-3, 3))
def test_certified_bound_is_below_every_feasible_point(N, N_r, N_t, seed, log_scale):
    """Weak duality for any multipliers: the bound never exceeds tr X of a feasible rank-one X."""
    rng = np.random.default_rng(seed)
    F = rayleigh(rng, N, N_r, N_t) * 10 ** log_scale
    y = rng.uniform(-0.5, 2.0, N)                             # arbitrary, even infeasible, multipliers
    b = certified_bound(F, y)
    a = rayleigh(rng, 1, N_r, 1)[0, :, 0]
    a /= np.sqrt(np.min(np.sum(np.abs(np.einsum("nrt,r->nt", F.conj(), a)) ** 2, axis=1)))
    assert b <= np.vdot(a, a).real * (1 + 1e-9)
