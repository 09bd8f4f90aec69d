"""Measured AirComp MSE through the simulated air vs the signal-model formula (the oracle)."""
import numpy as np
import pytest

from sim_backend.sim_allreduce import build_sim_bench
from testbed.phy.link import AirCompLink

from phy_test_designs import formula_mse, zf_design


def _designs():
    yield pytest.param(zf_design, "local-zf", id="local-zf")
    for method in ("zf-sdr", "mmse"):  # the project's designs (cvxpy / iterative): few draws
        yield pytest.param(None, method, id=method, marks=pytest.mark.slow)


def _design_fn(fn):
    if fn is not None:
        return fn
    transceiver = pytest.importorskip("testbed.optim.transceiver")
    return transceiver.design_transceiver


def _measure(bench, link, design, n_nodes, k, rng):
    L = design.A.shape[1]
    S = [(rng.standard_normal((L, k)) + 1j * rng.standard_normal((L, k))) / np.sqrt(2)
         for _ in range(n_nodes)]
    S_hat, info = link.run_round(design.A, design.B, S)
    assert info.detected_offset == 0
    return float(np.sum(np.abs(S_hat - sum(S)) ** 2) / k)


@pytest.mark.parametrize("fn,method", list(_designs()))
@pytest.mark.parametrize("n_tx", [1, 2])
@pytest.mark.parametrize("snr_db", [10.0, 20.0, 30.0])
def test_measured_mse_matches_formula_perfect_csi(fn, method, n_tx, snr_db):
    design_fn = _design_fn(fn)
    n_nodes, n_rx, k = 4, 4, 1500
    draws = 25 if fn is not None else 3
    bench = build_sim_bench(n_nodes, n_rx, n_tx, snr_db, seed=int(snr_db) + n_tx)
    link = AirCompLink(bench.tx_radios, bench.rx_radio)
    rng = np.random.default_rng(0)
    sigma2 = bench.model_noise_var
    for _ in range(draws):
        H = bench.air.new_realization()
        d = design_fn(H, np.ones(n_nodes), sigma2, method=method)
        pred = formula_mse(H, d.A, d.B, sigma2)
        assert d.mse == pytest.approx(pred, rel=1e-6)
        assert np.all(np.sum(np.abs(d.B) ** 2, axis=(1, 2)) <= 1 + 1e-6)
        meas = _measure(bench, link, d, n_nodes, k, rng)
        assert meas == pytest.approx(pred, rel=0.10)


def test_estimated_csi_mse_within_factor_of_perfect():
    """ZF designed on LS estimates (32-sample pilots): the residual misalignment adds roughly
    sum_n ||A^H dH_n B_n||^2 ~ (sigma^2 / 32) ||A||^2 sum_n ||B_n||^2; we require < 1.5x."""
    n_nodes, n_rx, n_tx, k = 4, 4, 1, 1500
    bench = build_sim_bench(n_nodes, n_rx, n_tx, 20.0, seed=9)
    link = AirCompLink(bench.tx_radios, bench.rx_radio)
    rng = np.random.default_rng(1)
    sigma2 = bench.model_noise_var
    perfect, estimated = [], []
    for _ in range(15):
        H = bench.air.new_realization()
        perfect.append(_measure(bench, link, zf_design(H, np.ones(n_nodes), sigma2), n_nodes, k, rng))
        H_hat, _ = link.estimate_channels()
        d_hat = zf_design(H_hat, np.ones(n_nodes), sigma2)
        m = _measure(bench, link, d_hat, n_nodes, k, rng)
        # the error of a design from estimates is still the formula, evaluated on the TRUE channel
        assert m == pytest.approx(formula_mse(H, d_hat.A, d_hat.B, sigma2), rel=0.10)
        estimated.append(m)
    ratio = np.mean(estimated) / np.mean(perfect)
    print(f"estimated/perfect CSI MSE ratio at 20 dB: {ratio:.3f}")
    assert 1.0 < ratio < 1.5
