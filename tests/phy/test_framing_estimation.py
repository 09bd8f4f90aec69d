"""Preamble detection and LS channel estimation, through the simulated air."""
import numpy as np
import pytest

from sim_backend.sim_allreduce import build_sim_bench
from testbed.phy.estimation import ls_error_variance
from testbed.phy.framing import DetectionError, FrameLayout, detect_frame_start, zadoff_chu
from testbed.phy.analog_allreduce import LocalExecutor
from testbed.phy.budget import DEFAULT_BUDGET
from testbed.phy.round import RoundPlan


def test_zadoff_chu_constant_amplitude_ideal_periodic_autocorrelation():
    x = zadoff_chu(63, 5)
    assert np.allclose(np.abs(x), 1.0)
    ac = np.array([np.vdot(x, np.roll(x, k)) for k in range(63)])
    assert abs(ac[0]) == pytest.approx(63)
    assert np.max(np.abs(ac[1:])) < 1e-9


def test_detection_finds_exact_start_at_10_db():
    rng = np.random.default_rng(0)
    p = zadoff_chu(63, 1)
    for _ in range(200):
        n_r, lag = 2, int(rng.integers(0, 40))
        h = (rng.standard_normal(n_r) + 1j * rng.standard_normal(n_r)) / np.sqrt(2)
        y = np.zeros((n_r, 200), complex)
        y[:, lag:lag + 63] = np.outer(h, p)
        y += np.sqrt(0.1 / 2) * (rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape))
        d, _ = detect_frame_start(y, p, 41)
        assert d == lag


def test_detection_raises_on_noise_only():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((2, 200)) + 1j * rng.standard_normal((2, 200))
    with pytest.raises(DetectionError, match="no preamble"):
        detect_frame_start(y, zadoff_chu(63, 1), 41, threshold=0.5)


def test_layout_offsets():
    lay = FrameLayout(3, 2, 100, preamble_len=63, guard_len=16, pilot_len=32, with_pilots=True)
    assert lay.pilot_slot(0, 0) == slice(79, 111)
    assert lay.pilot_slot(2, 1) == slice(79 + 5 * 32, 79 + 6 * 32)
    assert lay.payload_start == 79 + 6 * 32 and lay.total_len == lay.payload_start + 100


@pytest.mark.parametrize("n_tx", [1, 2])
def test_ls_estimate_error_matches_theory(n_tx):
    bench = build_sim_bench(3, 4, n_tx, snr_db=10.0, seed=2)
    ex = LocalExecutor(bench.tx_radios, bench.rx_radio)
    errs = []
    for _ in range(60):
        H = bench.air.new_realization()
        plan = RoundPlan("aircomp", 3, n_tx, 1, 0, ex.next_start(DEFAULT_BUDGET), sounding=True)
        s = ex.sound(plan)
        assert s.offset == 0
        errs.append(np.mean(np.abs(s.H - H) ** 2))
    theory = ls_error_variance(bench.model_noise_var, DEFAULT_BUDGET.pilot_len)
    # mean of 60 x 12*n_tx exponential entries: relative std < 4 %
    assert np.mean(errs) == pytest.approx(theory, rel=0.15)
