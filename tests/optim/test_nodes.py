"""Node models: validation, presets vs their spec-sheet peaks, the torch matmul benchmark."""
import time

import pytest
import torch

from testbed.optim.nodes import (NodeModel, heterogeneous_4node, jetson_orin_nano, jetson_orin_nx,
                                 measure_compute_flops, raspberry_pi5)


def test_node_model_rejects_non_positive_fields_with_field_name():
    with pytest.raises(ValueError, match="compute_flops"):
        NodeModel("x", memory_bytes=1e9, compute_flops=0.0, energy_per_flop_j=1e-10,
                  energy_budget_per_token_j=1.0)
    with pytest.raises(ValueError, match="radio_power_limit_w"):
        NodeModel("x", 1e9, 1e9, 1e-10, 1.0, radio_power_limit_w=-1.0)


@pytest.mark.parametrize("factory, peak_flops, board_w", [
    (raspberry_pi5, 4 * 2.4e9 * 16, 7.0),           # 4 A76 cores x 2.4 GHz x 2x128-bit FMA
    (jetson_orin_nano, 1024 * 2 * 625e6, 15.0),     # 1024 CUDA cores x FMA x 625 MHz
    (jetson_orin_nx, 1024 * 2 * 918e6, 25.0),
])
def test_presets_sustained_below_peak_and_energy_is_power_over_speed(factory, peak_flops, board_w):
    node = factory()
    assert 0.2 * peak_flops < node.compute_flops < peak_flops
    assert node.energy_per_flop_j * node.compute_flops == pytest.approx(board_w)
    assert node.compute_energy_j(1e9) == pytest.approx(node.energy_per_flop_j * 1e9)


def test_heterogeneous_preset_is_heterogeneous_and_holds_llama2_7b_fp16():
    nodes = heterogeneous_4node()
    assert len(nodes) == 4 and len({n.name for n in nodes}) == 4
    assert len({n.energy_budget_per_token_j for n in nodes}) == 4
    speeds = sorted(n.compute_flops for n in nodes)
    assert speeds[-1] / speeds[0] > 10
    assert sum(n.memory_bytes for n in nodes) > 2 * 12.95e9
    assert sorted(n.memory_bytes for n in nodes)[-2] < 12.95e9
    assert nodes[0].with_budget(2.0).energy_budget_per_token_j == 2.0


def test_measure_compute_flops_matches_an_independent_timing():
    # one intra-op thread on both sides: with two, a test running beside this one on the other
    # core halves one timing and not the other
    a = torch.randn(256, 256)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def peak_rate() -> float:       # the peak of five timings: the machine may be shared
            rates = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(20):
                    a @ a
                rates.append(20 * 2 * 256 ** 3 / (time.perf_counter() - start))
            return max(rates)
        before = peak_rate()
        flops = measure_compute_flops(seconds=0.3, size=256, threads=1)
        direct = max(before, peak_rate())            # timed before and after the measurement
    finally:
        torch.set_num_threads(previous)
    assert 1e8 < flops < 1e13
    # a sustained rate cannot beat the peak by much; on a shared machine it may fall well
    # below it (other jobs take the cores), but not by orders of magnitude
    assert direct / 20 < flops < direct * 2
    with pytest.raises(ValueError):
        measure_compute_flops(seconds=0)
