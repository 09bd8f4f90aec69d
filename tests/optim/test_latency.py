"""Latency/energy model: closed forms, the rate formula, monotonicity, star vs ring, layer shapes."""
import numpy as np
import pytest
from transformers import LlamaConfig

from testbed.optim.latency import (LinkConfig, allreduce_time, energy_per_token, first_crossing,
                                   per_token_latency, spectral_efficiency, speedup,
                                   speedup_closed_form_star, speedup_sweep)
from testbed.optim.latency_shapes import LLAMA2_7B, LLAMA32_1B, TINYLLAMA_1_1B, LayerShapes
from testbed.optim.nodes import NodeModel, heterogeneous_4node, jetson_orin_nano

#: No frame overhead, no pilots, no pipeline latency: the closed forms of the airtime alone.
IDEAL = dict(overhead_symbols=0.0, pilot_symbols=0.0, pipeline_samples=0.0)


def Ideal(**kw) -> LinkConfig:
    return LinkConfig(**{**IDEAL, **kw})


NO_DL = Ideal(downlink="none")


def test_aircomp_airtime_closed_form():
    assert allreduce_time("aircomp", 4096, 4, NO_DL) == pytest.approx(2.048e-3, rel=1e-12)
    two = Ideal(downlink="none", n_streams=2, bandwidth_hz=10e6)
    assert allreduce_time("aircomp", 4096, 4, two) == pytest.approx(4096 / (2 * 2 * 10e6))
    # overhead symbols are paid once per phase at the full-band rate
    oh = Ideal(downlink="none", overhead_symbols=100)
    assert allreduce_time("aircomp", 4096, 4, oh) == pytest.approx(2.048e-3 + 100e-6)


def test_digital_star_is_the_slowest_ofdma_subband_plus_broadcast():
    link = Ideal(bandwidth_hz=2e6, snr_db=[10.0, 20.0, 30.0], downlink_snr_db=15.0, bits=8)
    D, N = 4096, 3
    slowest = D * 8 / ((2e6 / N) * np.log2(1 + 10.0))          # node at 10 dB limits the uplink
    dl = D * 8 / (2e6 * np.log2(1 + 10 ** 1.5))
    assert allreduce_time("digital", D, N, link) == pytest.approx(slowest + dl, rel=1e-12)
    assert spectral_efficiency(0.0) == pytest.approx(1.0)


def test_ring_pattern_and_star_vs_ring():
    link = Ideal(pattern="ring", snr_db=20.0, bits=8)
    D = 4096
    s = np.log2(1 + 100.0)
    for N in (2, 3, 5, 8):
        ring = allreduce_time("digital", D, N, link)
        assert ring == pytest.approx(2 * (N - 1) * (D / N) * 8 / ((1e6 / N) * s), rel=1e-12)
        star = allreduce_time("digital", D, N, Ideal(snr_db=20.0, downlink_snr_db=20.0))
        # star: (N + 1) D b / (B s); ring: 2 (N - 1) D b / (B s) -> equal at N = 3
        assert star == pytest.approx((N + 1) * D * 8 / (1e6 * s), rel=1e-12)
        assert np.sign(ring - star) == np.sign(N - 3) or ring == pytest.approx(star)
    assert allreduce_time("digital", D, 1, link) == 0.0


def test_fdma_is_n_times_the_aircomp_uplink():
    for N in (2, 4, 7):
        assert allreduce_time("fdma", 4096, N, NO_DL) == pytest.approx(N * 2.048e-3)


@pytest.mark.parametrize("scheme", ["aircomp", "digital", "fdma"])
def test_monotone_in_bandwidth_and_node_count(scheme):
    times_b = [allreduce_time(scheme, 4096, 4, Ideal(bandwidth_hz=b)) for b in (1e6, 5e6, 20e6)]
    assert times_b[0] > times_b[1] > times_b[2]
    times_n = [allreduce_time(scheme, 4096, n, Ideal()) for n in (2, 4, 8)]
    if scheme == "aircomp":
        assert times_n[0] == times_n[1] == times_n[2]   # superposition: independent of N
    else:
        assert times_n[0] < times_n[1] < times_n[2]


def test_per_token_latency_sums_layers_compute_and_two_allreduces():
    nodes = heterogeneous_4node()
    m = np.array([0.1, 0.1, 0.3, 0.5])
    lat = per_token_latency(m, nodes, LLAMA2_7B, "aircomp", NO_DL)
    layer_compute = max(2 * mi * LLAMA2_7B.params_per_layer / n.compute_flops for mi, n in zip(m, nodes))
    head = 2 * 32000 * 4096 / min(n.compute_flops for n in nodes)
    expected = 32 * (layer_compute + 2 * 2.048e-3) + head
    assert lat.total_s == pytest.approx(expected, rel=1e-12)
    assert lat.compute_s + lat.allreduce_s + lat.head_s == pytest.approx(lat.total_s)


def test_speedup_matches_closed_form_when_compute_is_free():
    fast = [NodeModel(f"n{i}", 1e12, 1e30, 1e-12, 1.0) for i in range(4)]
    for link in (Ideal(), Ideal(downlink="analog"), Ideal(downlink="none")):
        got = speedup(np.full(4, 0.25), fast, LLAMA2_7B, link)
        assert got == pytest.approx(speedup_closed_form_star(4, link), rel=1e-9)


def test_speedup_sweep_finds_the_5x_point_and_no_crossover_at_sane_snr():
    nodes_for = lambda n: [jetson_orin_nano(f"o{i}") for i in range(n)]
    ns = np.arange(2, 13)
    ratios = speedup_sweep("n_nodes", ns, nodes_for, LLAMA2_7B, Ideal(bandwidth_hz=20e6))
    assert np.all(np.diff(ratios) > 0)
    n5 = first_crossing(ns, ratios, 5.0)
    assert n5 is not None and ratios[ns <= n5].max() <= 5.0 <= ratios[ns >= n5].min()
    # digital wins only at absurd SNR: b/s < 1/(2N) needs log2(1+SNR) > 2 N b
    snrs = np.arange(0.0, 200.0, 10.0)
    r = speedup_sweep("snr_db", snrs, nodes_for, LLAMA2_7B,
                      Ideal(downlink="none", downlink_snr_db=300), n_nodes=2)
    cross = first_crossing(snrs, r, 1.0)
    assert cross is not None and 10 * np.log10(2 ** 32 - 1) - 10 < cross < 10 * np.log10(2 ** 32 - 1) + 10
    assert first_crossing([1, 2, 3], [2, 3, 4], 10.0) is None


def test_energy_per_token_compute_and_transmit_parts():
    nodes = heterogeneous_4node()
    m = np.full(4, 0.25)
    en = energy_per_token(m, nodes, LLAMA2_7B, "aircomp", NO_DL, tx_power_w=0.1)
    e = np.array([n.energy_per_flop_j for n in nodes])
    assert np.allclose(en.compute_j, e * 2 * (0.25 * LLAMA2_7B.split_params + LLAMA2_7B.lm_head_params))
    assert np.allclose(en.transmit_j, 0.1 * 2.048e-3 * 64)
    star = energy_per_token(m, nodes, LLAMA2_7B, "digital", Ideal(), tx_power_w=0.1)
    assert np.all(star.transmit_j > en.transmit_j)


def test_layer_shapes_match_public_parameter_counts_and_llama_config():
    assert LLAMA2_7B.total_params == 6_738_415_616                 # "7B": 6.74e9 parameters
    assert TINYLLAMA_1_1B.total_params == pytest.approx(1.1e9, rel=0.01)
    assert LLAMA32_1B.total_params - LLAMA32_1B.lm_head_params == pytest.approx(1.236e9, rel=0.01)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, vocab_size=256)
    shapes = LayerShapes.from_config(cfg, "tiny")
    assert shapes.head_dim == 16
    assert shapes.params_per_layer == 2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 384
    assert LLAMA2_7B.channel_uses_per_token(n_streams=1) == 32 * 4096
    with pytest.raises(ValueError, match="num_kv_heads"):
        LayerShapes("bad", 96, 10, 1, 8, 3, 10)


@pytest.mark.parametrize("shapes, tied", [(LLAMA2_7B, False), (TINYLLAMA_1_1B, False), (LLAMA32_1B, True)])
def test_parameter_counts_match_the_hugging_face_model(shapes, tied):
    import torch
    from transformers import LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=shapes.hidden_size, intermediate_size=shapes.intermediate_size,
                      num_hidden_layers=shapes.num_layers, num_attention_heads=shapes.num_heads,
                      num_key_value_heads=shapes.num_kv_heads, vocab_size=shapes.vocab_size,
                      tie_word_embeddings=tied)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    n_hf = sum(p.numel() for p in model.parameters())
    assert n_hf == shapes.total_params - (shapes.lm_head_params if tied else 0)
    layer = model.model.layers[0]
    split = sum(p.numel() for name, p in layer.named_parameters() if "proj" in name)
    assert split == shapes.params_per_layer


def test_frame_overhead_defaults_are_the_frame_the_link_sends():
    """Defaults: preamble + guard, 32-symbol pilots per antenna, scheduling lead (testbed.phy.budget.LinkBudget)."""
    from testbed.phy.budget import LinkBudget as PhyLink
    phy, link = PhyLink(), LinkConfig()
    assert link.overhead_symbols == phy.preamble_len + phy.guard_len == 79
    assert link.pilot_symbols == phy.pilot_len
    assert link.pipeline_samples == phy.lead_samples


def test_frame_overhead_closed_forms():
    """Each phase pays (preamble + guard + pilots) at its band's symbol rate + the pipeline lead."""
    B, D, b = 1e6, 4096, 8
    s = np.log2(1 + 100.0)
    for N in (2, 4, 8):
        link = LinkConfig(bandwidth_hz=B, snr_db=20.0, downlink_snr_db=20.0, bits=b)
        dl = D * b / (B * s) + (79 + 32) / B + 64 / B
        # AirComp: N pilot slots share the full band with the payload
        assert allreduce_time("aircomp", D, N, link) == pytest.approx(
            D / (2 * B) + (79 + 32 * N) / B + 64 / B + dl, rel=1e-12)
        # digital star: each node's frame on B/N takes N times longer
        assert allreduce_time("digital", D, N, link) == pytest.approx(
            D * b / ((B / N) * s) + (79 + 32) * N / B + 64 / B + dl, rel=1e-12)
        assert allreduce_time("fdma", D, N, link) == pytest.approx(
            N * D / (2 * B) + (79 + 32) * N / B + 64 / B + dl, rel=1e-12)
        ring = LinkConfig(bandwidth_hz=B, snr_db=20.0, bits=b, pattern="ring")
        assert allreduce_time("digital", D, N, ring) == pytest.approx(
            2 * (N - 1) * ((D / N) * b / ((B / N) * s) + (79 + 32) * N / B + 64 / B), rel=1e-12)
    # a decode-step all-reduce (D = hidden size 4096 reals) at 1 MHz: the overhead is a real share
    one = LinkConfig(downlink="none")
    assert allreduce_time("aircomp", D, 8, one) / allreduce_time("aircomp", D, 8, Ideal(downlink="none")) > 1.1
