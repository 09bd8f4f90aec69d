"""AirComp, uncoded FDMA and digital all-reduces: shapes, broadcast, measured vs predicted MSE."""
import numpy as np
import pytest
import torch

from sim_backend.sim_allreduce import build_sim_allreduce
from testbed.llm.allreduce import make_allreduce
from testbed.phy.allreduce_digital import DigitalAllReduce, quantize_uniform
from testbed.phy.budget import DEFAULT_BUDGET
from testbed.phy.fdma import single_node_zf
from testbed.phy.normalization import symbol_power

from phy_test_designs import formula_mse, zf_design


def _partials(n, shape=(2, 8, 64), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * (1 + n_) for n_ in range(n)]


@pytest.mark.parametrize("n_tx", [1, 2])
def test_aircomp_allreduce_shape_broadcast_and_mse(n_tx):
    ar, bench = build_sim_allreduce("aircomp", n_nodes=4, n_rx=4, n_tx=n_tx, snr_db=25.0, seed=1,
                                    design_fn=zf_design)
    err, power = 0.0, 0.0
    for r in range(8):
        parts = _partials(4, seed=r)
        out = ar(parts, layer=0, site="attn")
        assert len(out) == 4 and all(o is out[0] for o in out)
        assert out[0].shape == parts[0].shape and out[0].dtype == parts[0].dtype
        exact = sum(parts)
        err += float(torch.mean((out[0] - exact) ** 2))
        power += float(torch.mean(exact ** 2))
    assert err < 0.2 * power
    st = ar.stats()[(0, "attn")]
    assert st["rounds"] == 8
    # ZF: error is the noise term alone, whatever the symbol power -> matches the prediction
    assert st["mse_symbols"] == pytest.approx(st["mse_predicted"], rel=0.1)
    assert st["mse_tensor"] == pytest.approx(st["mse_tensor_predicted"], rel=0.1)
    assert st["clipped_fraction"] == 0.0 and st["signal_power"] <= 1.0
    ar.reset_stats()
    assert ar.stats() == {}


def test_aircomp_estimated_csi_reports_channel_error():
    ar, bench = build_sim_allreduce("aircomp", n_nodes=3, n_rx=4, snr_db=20.0, seed=2,
                                    design_fn=zf_design, csi="estimated")
    for r in range(10):
        ar(_partials(3, seed=r), layer=1, site="mlp")
    st = ar.stats()[(1, "mlp")]
    theory = bench.model_noise_var / DEFAULT_BUDGET.pilot_len
    assert st["csi_mse"] == pytest.approx(theory, rel=0.35)
    assert st["mse_symbols"] > 0.9 * st["mse_predicted"]


def test_aircomp_calibrated_scale_policy():
    ar, _ = build_sim_allreduce("aircomp", n_nodes=2, n_rx=2, snr_db=25.0, seed=3,
                                design_fn=zf_design, scale_policy="calibrated", headroom_db=1.0)
    parts = _partials(2)
    with pytest.raises(ValueError, match="statistics pass"):
        ar(parts, layer=0, site="mlp")
    ar.calibrating = True          # the statistics pass: real rounds, per-round scale
    out = ar(parts, layer=0, site="mlp")
    assert torch.mean((out[0] - parts[0] - parts[1]) ** 2) < 0.05 * torch.mean(parts[1] ** 2)
    assert ar.stats() == {}        # statistics-pass rounds are not run statistics
    ar.calibrating = False
    out = ar(parts, layer=0, site="mlp")
    powers = [symbol_power(p.double().numpy()) for p in parts]
    c2 = max(powers) * 10 ** 0.1  # calibrated on these very partials, 1 dB headroom
    assert ar.stats()[(0, "mlp")]["scale"] == pytest.approx(np.sqrt(c2))
    assert ar.stats()[(0, "mlp")]["signal_power"] == pytest.approx(np.mean(powers) / c2)
    assert torch.mean((out[0] - parts[0] - parts[1]) ** 2) < 0.05 * torch.mean(parts[1] ** 2)


@pytest.mark.slow
def test_aircomp_with_project_design():
    pytest.importorskip("testbed.optim.transceiver")
    ar, _ = build_sim_allreduce("aircomp", n_nodes=3, n_rx=4, snr_db=20.0, seed=4,
                                design_method="zf-sdr")
    for r in range(2):
        out = ar(_partials(3, shape=(1, 4, 128), seed=r), layer=0, site="attn")
    st = ar.stats()[(0, "attn")]
    assert out[0].shape == (1, 4, 128)
    assert st["mse_symbols"] == pytest.approx(st["mse_predicted"], rel=0.2)


def test_single_node_zf_closed_form():
    rng = np.random.default_rng(0)
    for n_t, L in [(1, 1), (2, 1), (2, 2), (3, 2)]:
        h = (rng.standard_normal((4, n_t)) + 1j * rng.standard_normal((4, n_t))) / np.sqrt(2)
        A, B, mse = single_node_zf(h, 2.0, 0.1, L)
        np.testing.assert_allclose(A.conj().T @ h @ B, np.eye(L), atol=1e-10)
        assert np.linalg.norm(B) ** 2 == pytest.approx(2.0)
        assert mse == pytest.approx(formula_mse(h[None], A, B[None], 0.1))
        # no unbiased design with a different power split does better: perturb the split
        s = np.linalg.svd(h, compute_uv=False)[:L]
        for w in rng.dirichlet(np.ones(L), 5):
            assert 0.1 * np.sum(1 / (2.0 * w * s ** 2)) >= mse - 1e-12


@pytest.mark.parametrize("n_tx", [1, 2])
def test_fdma_allreduce_measured_matches_prediction(n_tx):
    ar, _ = build_sim_allreduce("fdma", n_nodes=3, n_rx=4, n_tx=n_tx, snr_db=15.0, seed=5)
    for r in range(8):
        out = ar(_partials(3, seed=r), layer=2, site="attn")
    assert out[0].shape == (2, 8, 64)
    st = ar.stats()[(2, "attn")]
    assert st["mse_symbols"] == pytest.approx(st["mse_predicted"], rel=0.1)
    assert st["mse_tensor"] == pytest.approx(st["mse_tensor_predicted"], rel=0.1)


def test_fdma_power_fairness_is_n_times_the_power():
    a, _ = build_sim_allreduce("fdma", n_nodes=3, n_rx=2, snr_db=20.0, seed=6, new_block_per_call=False)
    b, _ = build_sim_allreduce("fdma", n_nodes=3, n_rx=2, snr_db=20.0, seed=6, new_block_per_call=False,
                               fairness="power")
    a(_partials(3), layer=0, site="attn")
    b(_partials(3), layer=0, site="attn")
    assert b.stats()[(0, "attn")]["mse_predicted"] == pytest.approx(
        a.stats()[(0, "attn")]["mse_predicted"] / 3)


def test_digital_error_matches_uniform_quantization_theory():
    ar = make_allreduce("digital") if "digital" in _registered() else DigitalAllReduce()
    assert isinstance(ar, DigitalAllReduce) and ar.bits == 8
    parts = _partials(4, shape=(4, 16, 256))
    out = ar(parts, layer=0, site="mlp")
    st = ar.stats()[(0, "mlp")]
    steps = [quantize_uniform(p.double().numpy(), 8)[1] for p in parts]
    assert st["mse_tensor_predicted"] == pytest.approx(sum(s * s for s in steps) / 12)
    assert st["mse_tensor"] == pytest.approx(st["mse_tensor_predicted"], rel=0.05)
    assert out[0].shape == parts[0].shape
    assert float(torch.max(torch.abs(out[0] - sum(parts)))) <= sum(steps) / 2 + 1e-6


def test_quantizer_is_exact_on_its_grid_and_zero_safe():
    z = np.array([-1.0, -0.5, 0.0, 0.25, 1.0])
    zq, step = quantize_uniform(z, 3)  # 3 bits: levels -3..3, step 1/3
    assert step == pytest.approx(1 / 3)
    np.testing.assert_allclose(zq, [-1.0, -2 / 3, 0.0, 1 / 3, 1.0])
    assert quantize_uniform(np.zeros(4), 8)[1] == 0.0


def test_wrong_inputs_are_rejected():
    ar, _ = build_sim_allreduce("aircomp", n_nodes=2, n_rx=2, design_fn=zf_design)
    with pytest.raises(ValueError, match="2 transmitting radios"):
        ar(_partials(3), layer=0, site="attn")
    with pytest.raises(ValueError, match="csi"):
        build_sim_allreduce("aircomp", n_nodes=2, n_rx=2, csi="partial")


def _registered():
    from testbed.llm import allreduce
    return allreduce._REGISTRY


def test_mmse_rounds_warm_start_within_a_fading_block():
    """The driver hands the previous receiver to mmse only for a channel of the same shape that
    barely moved; the warm design reaches the cold design's MSE."""
    from testbed.optim.transceiver import design_transceiver
    ar, bench = build_sim_allreduce("aircomp", n_nodes=3, n_rx=4, snr_db=20.0, seed=5,
                                    design_method="mmse", csi="estimated", new_block_per_call=False)
    d = ar.driver
    assert d.warm_start_receiver(bench.truth.channels()) is None        # no previous round
    ar(_partials(3), layer=0, site="attn")
    H_prev, A_prev = d._last_H, d.last_design.A[0]
    rng = np.random.default_rng(0)
    small = H_prev + 0.01 * np.linalg.norm(H_prev) / np.sqrt(H_prev.size) * rng.standard_normal(H_prev.shape)
    np.testing.assert_array_equal(d.warm_start_receiver(small), A_prev)
    other = rng.standard_normal(H_prev.shape) + 1j * rng.standard_normal(H_prev.shape)
    assert d.warm_start_receiver(other) is None                           # a new fading block
    assert d.warm_start_receiver(small[:, :2]) is None                    # another shape
    warm = d.design(small, 0.01)
    cold = design_transceiver(small, d.power, 0.01, "mmse")
    assert warm.mse == pytest.approx(cold.mse, rel=1e-6)
    d.warm_start = False
    assert d.warm_start_receiver(small) is None


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_tap_errors_are_the_symbol_and_tensor_errors(dtype):
    """The measurement tap: sum |S_hat - S|^2 / K (stream padding included) and
    mean (z_hat - exact)^2, S and z_hat as `normalized_symbols` / `denormalize_sum` give them."""
    from testbed.phy.analog_allreduce import tap_errors
    from testbed.phy.round import RoundPlan, denormalize_sum, normalized_symbols
    rng = np.random.default_rng(4)
    exact = rng.standard_normal((1, 3, 7))                 # D = 21: odd, padded to L K = 12
    plan = RoundPlan("aircomp", 2, 2, 2, exact.size, 0)
    S = normalized_symbols(exact, 1.7, 2)
    S_hat = (S + 0.1 * (rng.standard_normal(S.shape) + 1j * rng.standard_normal(S.shape))).astype(dtype)
    z_hat = denormalize_sum(S_hat, plan, 1.7, exact.shape)
    mse_symbols, mse_tensor = tap_errors(S_hat, exact, 1.7)
    assert mse_symbols == pytest.approx(np.sum(np.abs(S_hat - S) ** 2) / S.shape[1], rel=1e-6)
    assert mse_tensor == pytest.approx(np.mean((z_hat - exact) ** 2), rel=1e-5)


def _block_counter(bench):
    """A fading-block source that counts its draws (the air's own generator)."""
    drawn = []

    def draw():
        drawn.append(bench.rx_radio.now())
        return bench.air.new_realization()
    return drawn, draw


def test_coherence_blocks_follow_the_receiver_clock():
    """`coherence_blocks` draws a block whenever the receiver's clock has entered another block
    of ``coherence_s``: as many draws as distinct blocks the rounds start in."""
    from sim_backend.sim_allreduce import build_sim_bench, coherence_blocks
    bench = build_sim_bench(2, 2, seed=3)
    drawn, draw = _block_counter(bench)
    on_round = coherence_blocks(bench, 1e-3, draw)           # 1000 samples at 1 MS/s
    seen = set()
    for step in [0, 300, 300, 300, 2500, 100, 999, 1]:
        bench.rx_radio.receive(step, bench.rx_radio.now()) if step else None
        on_round()
        seen.add(bench.rx_radio.now() // 1000)
    assert len(drawn) == len(seen)
    with pytest.raises(ValueError, match="coherence_s"):
        coherence_blocks(bench, 0.0, draw)


@pytest.mark.parametrize("csi", ["estimated", "perfect"])
def test_one_sounding_and_design_per_coherence_block(csi):
    """Block fading in air time (a block of 5 ms, rounds of ~0.8 ms of air): the driver sounds
    and designs once per block (``csi_interval_samples`` = the block; with perfect CSI whenever
    the true channels are unchanged), and the error is the one its design predicts (the channel
    is constant within a block: reusing its estimate loses nothing). Reusing it across blocks
    (an interval 40x the block) makes the error many times the prediction: stale CSI."""
    kw = dict(csi_interval_samples=5_000) if csi == "estimated" else {}
    ar, bench = build_sim_allreduce("aircomp", n_nodes=3, n_rx=4, snr_db=20.0, seed=2,
                                    design_method="mmse", csi=csi, coherence_s=5e-3,
                                    scale_policy="oracle", **kw)
    designs = []
    design = ar.driver.design
    ar.driver.design = lambda H, nv: designs.append(1) or design(H, nv)
    blocks = set()
    for r in range(40):
        ar(_partials(3, shape=(1, 4, 256), seed=r), layer=0, site="attn")
        blocks.add(bench.rx_radio.now() // 5_000)
    st = ar.stats()[(0, "attn")]
    assert 4 <= len(designs) <= len(blocks) + 1 < 20            # ~6 rounds per block
    assert st["csi_reused"] == pytest.approx(1 - len(designs) / 40)
    assert 0.75 < st["mse_symbols"] / st["mse_predicted"] < 1.35
    if csi == "estimated":
        stale, _ = build_sim_allreduce("aircomp", n_nodes=3, n_rx=4, snr_db=20.0, seed=2,
                                       design_method="mmse", csi=csi, coherence_s=5e-3,
                                       scale_policy="oracle", csi_interval_samples=200_000)
        for r in range(40):
            stale(_partials(3, shape=(1, 4, 256), seed=r), layer=0, site="attn")
        s = stale.stats()[(0, "attn")]
        assert s["mse_symbols"] / s["mse_predicted"] > 10


def test_csi_interval_must_not_be_negative():
    with pytest.raises(ValueError, match="csi_interval_samples"):
        build_sim_allreduce("aircomp", n_nodes=2, n_rx=2, csi="estimated", csi_interval_samples=-1)
