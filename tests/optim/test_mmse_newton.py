"""Primal-dual Newton for the multi-stream MMSE design: exact derivatives and convergence."""
import numpy as np

from testbed.optim.mmse import _channel_inversion_start, quasi_newton_receiver, reduced_mse
from testbed.optim.mmse_newton import (_shifted_cholesky, primal_dual_newton, saddle_derivatives,
                                      saddle_workspace)


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


def lagrangian(H, P, noise_var, A, mu):
    """noise_var ||A||^2 + sum_n [mu_n tr (K_n + mu_n I)^-1 - mu_n P_n], directly."""
    K = np.einsum("rl,nrt,nst,sk->nlk", A.conj(), H, H.conj(), A)
    L = A.shape[1]
    tr = np.array([np.trace(np.linalg.inv(K[n] + mu[n] * np.eye(L))).real for n in range(len(P))])
    return noise_var * np.sum(np.abs(A) ** 2) + np.sum(mu * tr - mu * P)


def test_saddle_derivatives_match_finite_differences():
    rng = np.random.default_rng(5)
    for N, N_r, N_t, L in [(3, 5, 3, 2), (4, 6, 2, 2), (2, 4, 4, 3)]:
        H = rayleigh(rng, N, N_r, N_t)
        P = rng.uniform(0.5, 2.0, N)
        A = rayleigh(rng, 1, N_r, L)[0]
        mu = rng.uniform(0.05, 0.5, N)
        mu[0] = 0.0                                            # an inactive node too
        g, Hxx, C, D, r = saddle_derivatives(H, P, 0.1, A, mu)
        n = A.size

        def unpack(x):
            return (x[:n] + 1j * x[n:]).reshape(A.shape)

        x = np.concatenate([A.real.ravel(), A.imag.ravel()])
        eps = 1e-6
        E = np.eye(2 * n)
        g_fd = np.array([(lagrangian(H, P, 0.1, unpack(x + eps * e), mu)
                          - lagrangian(H, P, 0.1, unpack(x - eps * e), mu)) / (2 * eps) for e in E])
        np.testing.assert_allclose(g, g_fd, atol=1e-7 * np.max(np.abs(g)))
        H_fd = np.array([(saddle_derivatives(H, P, 0.1, unpack(x + eps * e), mu)[0]
                          - saddle_derivatives(H, P, 0.1, unpack(x - eps * e), mu)[0]) / (2 * eps) for e in E])
        np.testing.assert_allclose(Hxx, 0.5 * (H_fd + H_fd.T), atol=1e-6 * np.max(np.abs(Hxx)))
        for k in range(N):
            dm = np.zeros(N)
            dm[k] = eps
            up = saddle_derivatives(H, P, 0.1, A, mu + dm)
            dn = saddle_derivatives(H, P, 0.1, A, np.maximum(mu - dm, 0.0))
            h = dm[k] + min(mu[k], eps)
            rel = 1e-6 if mu[k] > eps else 1e-4                # one-sided at mu = 0: first order
            np.testing.assert_allclose(C[:, k], (up[0] - dn[0]) / h, atol=rel * np.max(np.abs(C)))
            np.testing.assert_allclose(-D[k], (up[4][k] - dn[4][k]) / h, rtol=10 * rel)
            lag = (lagrangian(H, P, 0.1, A, mu + dm) - lagrangian(H, P, 0.1, A, np.maximum(mu - dm, 0.0))) / h
            np.testing.assert_allclose(r[k], lag, rtol=10 * rel, atol=1e-8)


def test_saddle_derivatives_in_a_workspace_are_the_same():
    """Work arrays reused across calls give the numbers of fresh ones."""
    rng = np.random.default_rng(3)
    H = rayleigh(rng, 5, 6, 3)
    P = rng.uniform(0.5, 2.0, 5)
    work = saddle_workspace(5, 6, 3)
    for _ in range(3):
        A = rayleigh(rng, 1, 6, 3)[0]
        mu = rng.uniform(0.0, 1.0, 5)
        for x, y in zip(saddle_derivatives(H, P, 0.1, A, mu), saddle_derivatives(H, P, 0.1, A, mu, work=work)):
            assert np.array_equal(x, y)


def test_newton_workspace_keeps_a_few_shapes_only():
    """A sweep over many shapes does not accumulate work arrays (they are ~1 MB each)."""
    from testbed.optim.mmse_newton import _newton_work, _newton_workspace
    for n in range(2, 12):
        work, chol = _newton_workspace(n, 6, 2)
        assert work[0].shape == (2 * n, 6, 6) and chol[0].shape == (24, 24)
        assert len(_newton_work.__dict__) <= 4
    assert _newton_workspace(11, 6, 2) is _newton_workspace(11, 6, 2)      # kept while in use


def test_shifted_cholesky_finds_the_same_shift_from_any_start():
    """The search may start anywhere on the grid of shifts: the shift found (the smallest that
    works) and its factor do not depend on where it starts."""
    rng = np.random.default_rng(5)
    for trial in range(30):
        X = rng.standard_normal((40, 40))
        M = X @ X.T - 10.0 ** rng.uniform(-2, 2) * np.eye(40)          # indefinite
        floor = 1e-9 * np.abs(M.diagonal()).max()
        guess = floor * 10.0 ** rng.uniform(-2, 7)
        c0, s0 = _shifted_cholesky(M, floor, guess, plain_first=bool(trial % 2))
        assert c0 is not None and s0 > floor
        assert np.allclose(np.tril(c0) @ np.tril(c0).T, M + s0 * np.eye(40))
        for start in floor * 10.0 ** np.arange(-1.0, 13.0):
            c, s = _shifted_cholesky(M, floor, guess, plain_first=bool(trial % 2), start=start)
            assert s == s0 and np.array_equal(np.tril(c), np.tril(c0))


def test_primal_dual_newton_reaches_a_stationary_point():
    rng = np.random.default_rng(11)
    H = rayleigh(rng, 6, 8, 3)
    P = np.ones(6)
    noise_var = 0.01

    def reduced(A, mu0, bound=None):                                     # exact f always allowed
        f, _, _, mu = reduced_mse(H, P, noise_var, A)
        return f, mu

    A0 = _channel_inversion_start(H, P, noise_var, 3)
    A1, tr = quasi_newton_receiver(H, P, noise_var, A0, max_iter=40)
    A, trace, converged = primal_dual_newton(H, P, noise_var, A1, reduced, max_iter=30)
    assert converged
    assert np.all(np.diff([tr[-1]] + trace) <= 1e-14 * tr[-1])         # non-increasing up to rounding
    f, g, _, _ = reduced_mse(H, P, noise_var, A)
    assert np.linalg.norm(g) * np.linalg.norm(A) <= 1e-8 * f              # at the exact multipliers


def test_mmse_with_rank_deficient_node_channels():
    """A rank-1 node can invert its one live direction (mu_n = 0 with K_n singular)."""
    from testbed.optim.transceiver import design_transceiver
    rng = np.random.default_rng(7)
    for _ in range(3):
        H = rayleigh(rng, 6, 8, 4)
        H[0] = np.outer(H[0][:, 0], H[0][0, :])
        H[2] = 0.5 * np.outer(H[2][:, 1], H[2][1, :])
        A0 = rayleigh(rng, 1, 8, 4)[0]
        d = design_transceiver(H, 1.0, 0.01, "mmse", init=A0)
        h = np.array(d.info["mse_history"])
        assert np.isfinite(d.mse) and d.mse <= h[0]
        assert np.all(np.diff(h) <= 1e-12 * h[:-1])
        f, g, _, _ = reduced_mse(H, np.ones(6), 0.01, d.A)
        assert np.linalg.norm(g) * np.linalg.norm(d.A) <= 1e-8 * f
