"""aircomp_mse against a direct simulation of the air, and the zero-forcing closed forms."""
import numpy as np
import pytest

from testbed.optim.mse import aircomp_mse, zf_precoders
from testbed.optim.transceiver import design_transceiver


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


def cgauss(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


@pytest.mark.parametrize("N, N_r, N_t, L", [(3, 3, 2, 2), (4, 2, 1, 1), (2, 4, 3, 2)])
def test_aircomp_mse_matches_monte_carlo(N, N_r, N_t, L):
    """Y = sum H_n B_n S_n + W, S_hat = A^H Y: empirical error power vs the formula (theory)."""
    rng = np.random.default_rng(11)
    H = rayleigh(rng, N, N_r, N_t)
    A = cgauss(rng, (N_r, L))
    B = 0.7 * cgauss(rng, (N, N_t, L))
    noise_var = 0.3
    K = 40_000
    S = cgauss(rng, (N, L, K))                                # unit-power iid symbols
    W = np.sqrt(noise_var) * cgauss(rng, (N_r, K))
    Y = np.einsum("nrt,ntl,nlk->rk", H, B, S) + W
    err = A.conj().T @ Y - S.sum(axis=0)
    empirical = np.mean(np.sum(np.abs(err) ** 2, axis=0))
    assert empirical == pytest.approx(aircomp_mse(H, A, B, noise_var), rel=0.03)


@pytest.mark.parametrize("method", ["zf-sdr", "channel-inversion", "random"])
@pytest.mark.parametrize("N_t", [1, 2])
def test_zero_forcing_designs_have_only_noise_error(method, N_t):
    rng = np.random.default_rng(3)
    H = rayleigh(rng, 4, 4, N_t)
    d = design_transceiver(H, np.array([1.0, 2.0, 0.5, 1.0]), 0.05, method=method)
    sig = np.einsum("rl,nrt,ntk->nlk", d.A.conj(), H, d.B)
    np.testing.assert_allclose(sig, np.broadcast_to(np.eye(d.n_streams), sig.shape), atol=1e-9)
    assert d.mse == pytest.approx(0.05 * np.sum(np.abs(d.A) ** 2), rel=1e-9)


def test_awgn_identical_channels_closed_form():
    """Every node sees the same vector h: the best ZF receiver is a ~ h, MSE = noise_var / (||h||^2 P)."""
    rng = np.random.default_rng(5)
    h = cgauss(rng, (3, 1))
    H = np.repeat(h[None], 4, axis=0)                         # (4, 3, 1)
    P, noise_var = 2.0, 0.1
    exact = noise_var / (np.sum(np.abs(h) ** 2) * P)
    for method in ("zf-sdr", "channel-inversion"):
        d = design_transceiver(H, P, noise_var, method=method)
        assert d.mse == pytest.approx(exact, rel=1e-6)
    d = design_transceiver(H, P, noise_var, method="zf-sdr")
    assert d.lower_bound == pytest.approx(exact, rel=1e-5)


def test_zf_precoders_invert_the_effective_channel_with_minimum_power():
    rng = np.random.default_rng(8)
    H = rayleigh(rng, 3, 4, 3)
    A = cgauss(rng, (4, 2))
    B = zf_precoders(H, A)
    for n in range(3):
        F = A.conj().T @ H[n]
        np.testing.assert_allclose(F @ B[n], np.eye(2), atol=1e-10)
        np.testing.assert_allclose(B[n], np.linalg.pinv(F), atol=1e-10)   # minimum-norm inverse
