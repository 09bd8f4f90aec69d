"""The round's pure functions (`testbed.phy.round`) against exact arithmetic: on a noiseless
identity air the receiver's estimate is the exact sum, for AirComp (one slot) and FDMA (one
slot per node); the plan's layout and wire form."""
import numpy as np
import pytest

from testbed.phy.analog_allreduce import design_round
from testbed.phy.budget import LinkBudget
from testbed.phy.normalization import common_scale
from testbed.phy.round import (RoundPlan, aggregate_payload, cut_frame, estimate_channels,
                               estimate_noise_var, node_frame, node_frames)

BUDGET = LinkBudget()


def _air(frames, plan, delay=0, H=None, noise=0.0, rng=None):
    """Superpose node frames through channels H (N, N_r, N_t) into the receiver's window."""
    first, n = plan.window(BUDGET)
    n_r = 1 if H is None else H.shape[1]
    y = np.zeros((n_r, n), complex)
    for i, x in enumerate(frames):
        h = np.ones((n_r, x.shape[0])) if H is None else H[i]
        at = plan.start - first + delay
        y[:, at:at + x.shape[1]] += h @ x
    if noise:
        y += np.sqrt(noise / 2) * (rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape))
    return y.astype(np.complex64)


@pytest.mark.parametrize("scheme", ["aircomp", "fdma"])
@pytest.mark.parametrize("delay", [0, 3, -5])
def test_noiseless_identity_air_returns_the_exact_sum(scheme, delay):
    rng = np.random.default_rng(1)
    zs = [rng.standard_normal((1, 3, 16)) for _ in range(3)]
    c = common_scale(zs)
    plan = RoundPlan(scheme, 3, 1, 1, zs[0].size, 40)
    B = np.ones((3, 1, 1), complex)
    A = np.ones((plan.n_slots, 1, 1), complex)
    frames = [node_frame(i, plan, BUDGET, partial=z, B_n=B[i], scale=c) for i, z in enumerate(zs)]
    frame = cut_frame(_air(frames, plan, delay), plan, BUDGET)
    assert frame.offset == delay
    z_hat = aggregate_payload(frame, plan, BUDGET, A, c, zs[0].shape)
    np.testing.assert_allclose(z_hat, sum(zs), atol=1e-5)


def test_sounding_estimates_channels_and_noise():
    rng = np.random.default_rng(2)
    H = (rng.standard_normal((2, 4, 2)) + 1j * rng.standard_normal((2, 4, 2))) / np.sqrt(2)
    noise_sig = 0.01                                   # signal-model sigma^2
    plan = RoundPlan("aircomp", 2, 2, 1, 0, 100, sounding=True)
    frames = [node_frame(i, plan, BUDGET) for i in range(2)]
    y = _air(frames, plan, H=H, noise=BUDGET.air_noise_var(noise_sig), rng=rng)
    frame = cut_frame(y, plan, BUDGET)
    H_hat = estimate_channels(frame, plan, BUDGET)
    # LS error per entry: sigma^2 / pilot_len
    assert np.mean(np.abs(H_hat - H) ** 2) == pytest.approx(noise_sig / BUDGET.pilot_len, rel=0.5)
    # 4 antennas x 64 silent samples: relative std 1/16
    assert estimate_noise_var(frame, plan, BUDGET) == pytest.approx(noise_sig, rel=0.3)


def test_fdma_design_is_one_single_node_zf_per_slot():
    rng = np.random.default_rng(3)
    H = (rng.standard_normal((3, 4, 1)) + 1j * rng.standard_normal((3, 4, 1))) / np.sqrt(2)
    d = design_round("fdma", H, np.ones(3), 0.1)
    assert d.A.shape == (3, 4, 1) and d.B.shape == (3, 1, 1)
    for n in range(3):   # unbiased per node: a_n^H h_n b_n = 1
        assert (d.A[n].conj().T @ H[n] @ d.B[n])[0, 0] == pytest.approx(1.0)
    # closed form: sum_n sigma^2 / (P ||h_n||^2)
    assert d.mse == pytest.approx(sum(0.1 / np.linalg.norm(H[n]) ** 2 for n in range(3)))


def test_plan_layout_and_wire_form():
    plan = RoundPlan("fdma", 4, 2, 2, 1000, 12345)
    assert plan.n_slots == 4 and plan.channel_uses == 250   # ceil(500 / 2)
    lay = plan.layout(BUDGET)
    assert lay.payload_len == 4 * 250 and lay.total_len == 63 + 16 + 1000
    assert RoundPlan.from_dict(plan.as_dict()) == plan
    sounding = RoundPlan("aircomp", 4, 2, 1, 0, 0, sounding=True).layout(BUDGET)
    assert sounding.payload_start == 63 + 16 + 8 * 32 + BUDGET.noise_len
    with pytest.raises(ValueError, match="sounding"):
        RoundPlan("aircomp", 2, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="scheme"):
        RoundPlan("tdma", 2, 1, 1, 10, 0)


@pytest.mark.parametrize("scheme,n_tx,L", [("aircomp", 1, 1), ("aircomp", 2, 2), ("fdma", 2, 1)])
def test_node_frames_are_each_nodes_node_frame(scheme, n_tx, L):
    """All nodes' frames at once equal the per-node frames (float64 partials), and float32
    partials give the same frames to complex64 precision."""
    rng = np.random.default_rng(3)
    zs = rng.standard_normal((3, 2, 9))
    B = rng.standard_normal((3, n_tx, L)) + 1j * rng.standard_normal((3, n_tx, L))
    c = common_scale(list(zs))
    plan = RoundPlan(scheme, 3, n_tx, L, zs[0].size, 40)
    each = np.stack([node_frame(i, plan, BUDGET, partial=zs[i], B_n=B[i], scale=c) for i in range(3)])
    np.testing.assert_array_equal(node_frames(plan, BUDGET, partials=zs, B=B, scale=c), each)
    f32 = node_frames(plan, BUDGET, partials=zs.astype(np.float32), B=B, scale=c)
    assert f32.dtype == np.complex64
    np.testing.assert_allclose(f32, each, rtol=0, atol=1e-6)
    sounding = RoundPlan(scheme, 3, n_tx, L, 0, 40, sounding=True)
    np.testing.assert_array_equal(node_frames(sounding, BUDGET, [2, 0]),
                                  np.stack([node_frame(i, sounding, BUDGET) for i in (2, 0)]))
