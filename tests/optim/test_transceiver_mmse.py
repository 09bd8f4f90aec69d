"""MMSE alternation and the SISO closed form: global optimality, monotonicity, power multipliers."""
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from testbed.optim.mse import aircomp_mse
from testbed.optim.transceiver import design_transceiver


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


def brute_force_siso(h, P, noise_var):
    """min over t = |a| of the MSE with each node's best |b_n| <= sqrt(P_n), phase-aligned.

    Dense grid on t, then a bounded scalar search around the best grid point (scipy).
    """
    def mse(t):
        b = np.minimum(np.sqrt(P), 1.0 / (t * np.abs(h))) * np.conj(h) / np.abs(h)
        return aircomp_mse(h[:, None, None], np.array([[t]]), b[:, None, None], noise_var)
    grid = np.geomspace(1e-3, 1e3, 4001)
    g = grid[:, None] * np.abs(h)                             # |a h_n| on the grid
    gain = np.minimum(np.sqrt(P) * g, 1.0)                    # |conj(a) h_n b_n|, best b_n
    vals = np.sum((1.0 - gain) ** 2, axis=1) + noise_var * grid ** 2
    k = int(np.argmin(vals))
    res = minimize_scalar(mse, bounds=(grid[max(k - 1, 0)], grid[min(k + 1, 4000)]), method="bounded",
                          options={"xatol": 1e-12})
    return min(res.fun, vals[k])


def test_siso_optimal_is_the_global_optimum():
    rng = np.random.default_rng(17)
    for _ in range(25):
        N = int(rng.integers(2, 7))
        H = rayleigh(rng, N, 1, 1) * 10 ** (rng.uniform(-1.5, 0.5, N) / 2)[:, None, None]
        P = rng.uniform(0.3, 3.0, N)
        noise_var = 10 ** rng.uniform(-3, 0)
        d = design_transceiver(H, P, noise_var, "siso-optimal")
        best = brute_force_siso(H[:, 0, 0], P, noise_var)
        assert d.mse <= best * (1 + 1e-9)
        assert d.mse >= best * (1 - 1e-6)
        assert d.lower_bound == pytest.approx(d.mse, rel=1e-12)


def test_mmse_matches_siso_optimal():
    rng = np.random.default_rng(23)
    for i in range(20):
        N = int(rng.integers(2, 7))
        H = rayleigh(rng, N, 1, 1)
        H[0] *= 10 ** (-rng.uniform(0, 2))                    # a weak node in every draw
        P = rng.uniform(0.5, 2.0, N)
        noise_var = 10 ** rng.uniform(-3, 0)
        opt = design_transceiver(H, P, noise_var, "siso-optimal")
        m = design_transceiver(H, P, noise_var, "mmse", rng=i)
        assert m.mse == pytest.approx(opt.mse, rel=1e-6)
        np.testing.assert_allclose(m.info["power_multipliers"], opt.info["power_multipliers"],
                                   rtol=1e-3, atol=1e-6 * np.max(opt.info["power_multipliers"]))


def test_non_zero_forcing_designs_beat_channel_inversion_with_a_weak_node():
    rng = np.random.default_rng(31)
    for i in range(20):
        H = rayleigh(rng, 4, 1, 1)
        H[0] *= 0.1                                           # 20 dB weaker
        noise_var = 1e-2                                      # 20 dB SNR
        ci = design_transceiver(H, 1.0, noise_var, "channel-inversion")
        opt = design_transceiver(H, 1.0, noise_var, "siso-optimal")
        m = design_transceiver(H, 1.0, noise_var, "mmse", init="channel-inversion")
        assert opt.mse < 0.9 * ci.mse and m.mse < 0.9 * ci.mse
        assert opt.info["full_power"][0]                      # the weak node sits below threshold


@pytest.mark.parametrize("quasi_newton, accelerate", [(True, True), (False, True), (False, False)])
def test_mmse_history_never_increases(quasi_newton, accelerate):
    rng = np.random.default_rng(41)
    H = rayleigh(rng, 4, 3, 2)
    H[1] *= 0.2
    d = design_transceiver(H, np.array([1.0, 0.5, 2.0, 1.0]), 0.05, "mmse", init="channel-inversion",
                           quasi_newton=quasi_newton, accelerate=accelerate, max_iter=300)
    h = np.array(d.info["mse_history"])
    assert np.all(np.diff(h) <= 1e-12 * h[:-1])
    assert d.mse == pytest.approx(h[-1], rel=1e-12)
    assert h[-1] < h[0]


@pytest.mark.parametrize("N_t", [1, 2])
def test_mmse_beats_zero_forcing(N_t):
    rng = np.random.default_rng(50 + N_t)
    for i in range(3):
        H = rayleigh(rng, 4, 4, N_t)
        zf = design_transceiver(H, 1.0, 0.1, "zf-sdr", rng=i, compute_bound=False)
        m = design_transceiver(H, 1.0, 0.1, "mmse", rng=i)
        assert m.mse <= zf.mse * (1 + 1e-9)


def test_power_multipliers_are_the_mse_sensitivity():
    """Envelope theorem: d MSE* / d P_n = -mu_n (central finite differences, warm-started)."""
    rng = np.random.default_rng(61)
    H = rayleigh(rng, 3, 2, 2)
    H[0] *= 0.15
    P = np.array([1.0, 0.4, 1.5])
    noise_var = 0.05
    d = design_transceiver(H, P, noise_var, "mmse", n_streams=1, tol=1e-14)
    mu = d.info["power_multipliers"]
    assert np.all(mu >= 0) and np.any(mu > 0)
    for n in range(3):
        eps = 1e-4 * P[n]
        f = []
        for sign in (+1, -1):
            Pn = P.copy()
            Pn[n] += sign * eps
            f.append(design_transceiver(H, Pn, noise_var, "mmse", n_streams=1, init=d.A, tol=1e-14).mse)
        assert (f[0] - f[1]) / (2 * eps) == pytest.approx(-mu[n], rel=1e-3, abs=1e-6)
