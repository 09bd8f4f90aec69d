"""`testbed experiment mse-vs-snr` and `mse-vs-nodes` --quick: exit code, files, and sane numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from testbed.cli import main


def _run(tmp_path, *argv):
    assert main(["experiment", *argv, "--quick", "--out", str(tmp_path)]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    data = json.loads((run_dir / "results.json").read_text())
    return run_dir, data


@pytest.mark.slow
def test_mse_vs_snr_quick(tmp_path):
    run_dir, data = _run(tmp_path, "mse-vs-snr", "--seed", "3")
    assert data["experiment"] == "mse-vs-snr" and data["options"]["seed"] == 3
    for name in ("mse_vs_snr_mimo.png", "mse_vs_snr_siso.png"):
        assert (run_dir / name).stat().st_size > 10_000
    res = data["results"]
    snr = np.array(res["snr_db"])
    mimo = {k: np.array(v) for k, v in res["mimo"]["mean_mse"].items()}
    assert np.all(np.diff(mimo["zf-sdr"]) < 0)                     # MSE falls with SNR
    # ZF MSE is sigma^2 ||A||^2: exactly 10 dB less MSE per 10 dB more SNR
    np.testing.assert_allclose(mimo["zf-sdr"][0] / mimo["zf-sdr"], 10 ** ((snr - snr[0]) / 10), rtol=1e-9)
    assert np.all(mimo["zf-sdr"] >= mimo["sdr-bound"] * (1 - 1e-6))  # the bound holds
    assert np.all(mimo["mmse"] <= mimo["zf-sdr"] * (1 + 1e-6))       # mmse starts from zf-sdr
    assert np.all(mimo["zf-sdr"] < mimo["random"])
    assert 1.0 - 1e-6 <= res["mimo"]["zf_over_bound"]["median"] <= res["mimo"]["zf_over_bound"]["max"]
    siso = {k: np.array(v) for k, v in res["siso"]["mean_mse"].items()}
    for name, values in siso.items():                                # closed-form optimum is best
        assert np.all(siso["siso-optimal"] <= values * (1 + 1e-6)), name


@pytest.mark.slow
def test_mse_vs_nodes_quick(tmp_path):
    run_dir, data = _run(tmp_path, "mse-vs-nodes", "--seed", "5")
    assert (run_dir / "mse_vs_nodes.png").stat().st_size > 10_000
    res = data["results"]
    nodes, nv = res["nodes"], 10 ** (-res["snr_db"] / 10)
    means = {k: np.array(v) for k, v in res["mean_mse"].items()}
    # FDMA, N_t = 1: each node's MRC + inversion error is sigma^2 / ||h_n||^2; recompute the draws
    from sim_backend.channel import rayleigh
    expected = []
    for n in nodes:
        rng = np.random.default_rng([5, n])
        vals = [np.sum(nv / np.sum(np.abs(rayleigh(rng, n, res["n_rx"], 1)) ** 2, axis=(1, 2)))
                for _ in range(res["draws"])]
        expected.append(np.mean(vals))
    np.testing.assert_allclose(means["fdma-energy"], expected, rtol=1e-9)
    np.testing.assert_allclose(means["fdma-power"], means["fdma-energy"] / np.array(nodes), rtol=1e-9)
    assert np.all(means["mmse"] <= means["zf-sdr"] * (1 + 1e-6))
    assert np.all(np.diff(means["fdma-energy"]) > 0)               # FDMA errors add up with N
    assert means["fdma-energy"][-1] > means["zf-sdr"][-1]


def test_unknown_experiment_is_refused(capsys):
    assert main(["experiment", "no-such-experiment"]) == 2      # argparse's usage error
    assert "invalid choice" in capsys.readouterr().err
    assert main(["experiment"]) == 2
