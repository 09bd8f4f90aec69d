"""The paper's ZF + SDR design against channel inversion and against its own SDR lower bound."""
import numpy as np
import pytest

from testbed.optim.mse import zf_trace_inverse
from testbed.optim.transceiver import design_transceiver


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


@pytest.mark.slow
@pytest.mark.parametrize("N_t", [1, 2])
def test_zf_sdr_beats_channel_inversion_and_nears_the_bound(N_t):
    """50 Rayleigh draws, N = 4, N_r = 4, SNR 20 dB (the ZF ratios do not depend on the SNR)."""
    rng = np.random.default_rng(2024 + N_t)
    P, noise_var = np.ones(4), 1e-2
    wins, ratios = 0, []
    draws = 50
    for i in range(draws):
        H = rayleigh(rng, 4, 4, N_t)
        zf = design_transceiver(H, P, noise_var, "zf-sdr", rng=i, compute_bound=False)  # L = N_t
        ci = design_transceiver(H, P, noise_var, "channel-inversion")
        wins += zf.mse < ci.mse
        one = design_transceiver(H, P, noise_var, "zf-sdr", n_streams=1, rng=i)
        assert one.lower_bound is not None
        ratios.append(one.mse / one.lower_bound)
    ratios = np.array(ratios)
    assert wins >= 0.95 * draws
    assert np.min(ratios) >= 1 - 1e-6
    assert np.median(ratios) <= 1.1


def test_reported_mse_is_the_exact_zf_objective():
    """mse = noise_var * max_n tr[(G^H H_n H_n^H G)^{-1}] / P_n for the returned G = A / ||A||_F."""
    rng = np.random.default_rng(9)
    H = rayleigh(rng, 5, 4, 2)
    P = rng.uniform(0.5, 2.0, 5)
    d = design_transceiver(H, P, 0.2, "zf-sdr", n_random=20)
    G = d.A / np.linalg.norm(d.A)
    alpha = np.max(zf_trace_inverse(H, G) / P)
    assert d.mse == pytest.approx(0.2 * alpha, rel=1e-9)
    assert np.max(d.info["power"] / P) == pytest.approx(1.0, rel=1e-9)  # the weakest node spends all


def test_bound_is_below_every_zero_forcing_receiver():
    """Any receiver direction (random or chosen) gives a ZF MSE above the SDR bound (L = 1 and 2)."""
    rng = np.random.default_rng(21)
    for L in (1, 2):
        H = rayleigh(rng, 4, 3, 2)
        d = design_transceiver(H, 1.0, 0.1, "zf-sdr", n_streams=L, compute_bound=True)
        assert d.mse >= d.lower_bound * (1 - 1e-9)
        for seed in range(20):
            r = design_transceiver(H, 1.0, 0.1, "random", n_streams=L, rng=seed)
            assert r.mse >= d.lower_bound * (1 - 1e-6)
        assert d.info["bound_kind"] == ("sdr" if L == 1 else "sdr-amhm+single-node")


def test_bound_is_opt_in_for_several_streams():
    """For L >= 2 the bound is a separate computation the all-reduce never uses: off by default."""
    H = rayleigh(np.random.default_rng(22), 4, 3, 2)
    assert design_transceiver(H, 1.0, 0.1, "zf-sdr", n_streams=2).lower_bound is None
    assert design_transceiver(H, 1.0, 0.1, "zf-sdr", n_streams=1).lower_bound is not None


def test_more_randomization_never_hurts():
    rng = np.random.default_rng(33)
    H = rayleigh(rng, 6, 3, 1)
    few = design_transceiver(H, 1.0, 0.1, "zf-sdr", n_random=0, refine=False)
    many = design_transceiver(H, 1.0, 0.1, "zf-sdr", n_random=200, refine=False)
    assert many.mse <= few.mse * (1 + 1e-12)
    # two eigen-candidates and the channel-inversion direction, plus the random ones
    assert few.info["n_candidates"] == 3 and many.info["n_candidates"] == 203


def brute_force_zf_alpha(H, P):
    """min over unit receivers g in C^2 of max_n 1 / (P_n ||H_n^H g||^2): a grid over
    g = (cos t, sin t e^{jp}) (the common phase is irrelevant), then Nelder-Mead from the best
    grid points (scipy)."""
    from scipy.optimize import minimize

    def alpha(v):
        g = np.array([np.cos(v[0]), np.sin(v[0]) * np.exp(1j * v[1])])
        return np.max(1.0 / (P * np.sum(np.abs(np.einsum("nrt,r->nt", H.conj(), g)) ** 2, axis=1)))
    t, p = np.meshgrid(np.linspace(0, np.pi / 2, 301), np.linspace(0, 2 * np.pi, 601), indexing="ij")
    g = np.stack([np.cos(t), np.sin(t) * np.exp(1j * p)], axis=-1)           # (301, 601, 2)
    gain = np.sum(np.abs(np.einsum("nrt,abr->abnt", H.conj(), g)) ** 2, axis=-1)
    vals = np.max(1.0 / (P * gain), axis=-1)
    best = np.inf
    for idx in np.argsort(vals, axis=None)[:20]:
        i, j = np.unravel_index(idx, vals.shape)
        res = minimize(alpha, [t[i, j], p[i, j]], method="Nelder-Mead",
                       options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 4000})
        best = min(best, res.fun)
    return best


def test_single_stream_refinement_reaches_the_brute_force_optimum():
    """N_r = 2, L = 1: the exact ZF optimum by brute force over all receive directions."""
    rng = np.random.default_rng(77)
    for i in range(6):
        N, N_t = int(rng.integers(3, 7)), int(rng.integers(1, 3))
        H = rayleigh(rng, N, 2, N_t)
        P = rng.uniform(0.5, 2.0, N)
        d = design_transceiver(H, P, 1.0, "zf-sdr", n_streams=1, rng=i)
        best = brute_force_zf_alpha(H, P)
        assert d.mse <= best * (1 + 1e-4)
        assert d.mse >= best * (1 - 1e-6)
        assert d.mse >= d.lower_bound * (1 - 1e-9)


def test_one_node_reaches_its_closed_form_optimum():
    """N = 1: the ZF optimum is the single-node water-filling value (sum_i 1/s_i)^2 / P, and the
    L >= 2 bound equals it."""
    rng = np.random.default_rng(5)
    for L in (2, 3):
        H = rayleigh(rng, 1, 5, L)
        P = np.array([1.7])
        d = design_transceiver(H, P, 0.3, "zf-sdr", rng=0, compute_bound=True)
        s = np.linalg.svd(H[0], compute_uv=False)
        opt = 0.3 * np.sum(1.0 / s) ** 2 / P[0]
        assert d.lower_bound == pytest.approx(opt, rel=1e-9)
        assert opt * (1 - 1e-9) <= d.mse <= opt * (1 + 1e-4)


@pytest.mark.slow
def test_single_stream_nears_the_sdr_bound_at_eight_nodes():
    """N = 8, N_r = 8, L = 1 (20 Rayleigh draws): median MSE / SDR bound <= 1.15, never below."""
    rng = np.random.default_rng(808)
    ratios = []
    for i in range(20):
        H = rayleigh(rng, 8, 8, 1)
        d = design_transceiver(H, 1.0, 0.01, "zf-sdr", rng=i)
        ratios.append(d.mse / d.lower_bound)
    assert np.min(ratios) >= 1 - 1e-9
    assert np.median(ratios) <= 1.15


@pytest.mark.slow
def test_paper_antennas_zero_forcing_close_to_mmse():
    """The paper's setting N = 8, N_r = 20, N_t = L = 4, 20 dB: ZF MSE <= 1.5 x mmse's (5 draws),
    above its (loose) lower bound."""
    rng = np.random.default_rng(2025)
    for i in range(5):
        H = rayleigh(rng, 8, 20, 4)
        zf = design_transceiver(H, 1.0, 0.01, "zf-sdr", rng=i, compute_bound=True)
        mm = design_transceiver(H, 1.0, 0.01, "mmse", rng=i)
        assert zf.mse <= 1.5 * mm.mse
        assert zf.mse >= zf.lower_bound
