"""Bad inputs raise ValueError saying what to change; every design meets the power budgets."""
import numpy as np
import pytest

from testbed.optim.transceiver import METHODS, design_transceiver


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


H = rayleigh(np.random.default_rng(0), 3, 2, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(H=H[0]), "shape \\(N, N_r, N_t\\)"),
    (dict(P=np.ones(2)), "P must have shape"),
    (dict(P=np.array([1.0, 0.0, 1.0])), "> 0"),
    (dict(P=np.array([1.0, np.nan, 1.0])), "finite"),
    (dict(noise_var=0.0), "noise_var"),
    (dict(noise_var=-1.0), "noise_var"),
    (dict(noise_var=np.ones(2)), "scalar"),
    (dict(n_streams=3), "N_r = 2"),
    (dict(n_streams=0), ">= 1"),
    (dict(n_streams=1.5), "int"),
    (dict(method="zf"), "zf-sdr, mmse, siso-optimal, channel-inversion, random"),
    (dict(method="siso-optimal"), "N_r = N_t = 1"),
    (dict(method="zf-sdr", n_random=-1), "n_random"),
    (dict(method="zf-sdr", bogus=1), "unknown option"),
    (dict(method="random", bogus=1), "takes no options"),
    (dict(method="mmse", init="zf"), "init must be one of"),
    (dict(method="mmse", init=np.ones((3, 2))), "shape \\(N_r, L\\)"),
    (dict(rng="seed"), "rng must be"),
    (dict(H=np.zeros((3, 2, 2))), "all-zero channel"),
    (dict(H=np.full((3, 2, 2), np.inf)), "NaN or infinite"),
])
def test_bad_inputs_raise_value_error(kwargs, match):
    args = dict(H=H, P=np.ones(3), noise_var=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        design_transceiver(**args)


def test_more_streams_than_transmit_antennas():
    H1 = rayleigh(np.random.default_rng(1), 3, 4, 2)
    with pytest.raises(ValueError, match="N_t = 2"):
        design_transceiver(H1, 1.0, 0.1, n_streams=3)


def test_default_streams():
    rng = np.random.default_rng(2)
    assert design_transceiver(rayleigh(rng, 3, 4, 1), 1.0, 0.1, "channel-inversion").n_streams == 1
    assert design_transceiver(rayleigh(rng, 3, 4, 3), 1.0, 0.1, "channel-inversion").n_streams == 3
    assert design_transceiver(rayleigh(rng, 3, 2, 3), 1.0, 0.1, "channel-inversion").n_streams == 2


@pytest.mark.parametrize("N, N_r, N_t, L", [(4, 1, 1, 1), (4, 4, 1, 1), (3, 4, 2, 2), (3, 4, 2, 1), (3, 3, 3, 2)])
def test_every_method_meets_the_power_budgets(N, N_r, N_t, L):
    rng = np.random.default_rng(100 + N_r + N_t + L)
    for draw in range(3):
        Hd = rayleigh(rng, N, N_r, N_t)
        Hd[0] *= 0.1                                          # one weak node
        P = rng.uniform(0.2, 3.0, N)
        for method in METHODS:
            if method == "siso-optimal" and (N_r, N_t) != (1, 1):
                continue
            d = design_transceiver(Hd, P, 0.05, method=method, n_streams=L, rng=draw)
            power = np.sum(np.abs(d.B) ** 2, axis=(1, 2))
            assert np.all(power <= P * (1 + 1e-6)), (method, power / P)
            assert d.B.shape == (N, N_t, L) and d.A.shape == (N_r, L)
            assert d.method == method and d.info["runtime_s"] >= 0


def test_seeded_designs_are_reproducible():
    Hd = rayleigh(np.random.default_rng(4), 4, 3, 1)
    a = design_transceiver(Hd, 1.0, 0.1, "random", rng=7)
    b = design_transceiver(Hd, 1.0, 0.1, "random", rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.A, b.A)
    c = design_transceiver(Hd, 1.0, 0.1, "random", rng=8)
    assert not np.allclose(a.A, c.A)


@pytest.mark.parametrize("method", ["zf-sdr", "mmse"])
def test_design_is_invariant_to_path_loss_scaling(method):
    """Scaling H by s and noise_var by s^2 leaves the SNR, hence the optimal MSE, unchanged."""
    Hd = rayleigh(np.random.default_rng(12), 4, 3, 2)
    ref = design_transceiver(Hd, 1.0, 0.1, method, n_streams=1)
    far = design_transceiver(1e-4 * Hd, 1.0, 1e-9, method, n_streams=1)
    assert far.mse == pytest.approx(ref.mse, rel=1e-5)
    if method == "zf-sdr":
        assert far.lower_bound == pytest.approx(ref.lower_bound, rel=1e-5)
