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
