"""The shard plan: rounding follows the ratios, sizes add up, bad inputs are refused clearly."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from testbed.llm.plan import ArchSpec, largest_remainder, make_plan
from testbed.llm.sharding import shard_model


def tiny_llama(**kw):
    torch.manual_seed(0)
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
               intermediate_size=100, vocab_size=64, max_position_embeddings=64)
    return LlamaForCausalLM(LlamaConfig(**{**cfg, **kw})).eval()


@pytest.mark.parametrize("ratios, total, expected", [
    ((0.5, 0.3, 0.2), 4, [2, 1, 1]),          # quotas 2, 1.2, 0.8 -> the .8 remainder wins
    ((0.5, 0.3, 0.2), 100, [50, 30, 20]),
    ((1 / 3, 1 / 3, 1 / 3), 100, [34, 33, 33]),  # tie on remainders -> lower index
    ((1 / 3, 1 / 3, 1 / 3), 4, [2, 1, 1]),
    ((0.7, 0.2, 0.1, 0.0), 4, [3, 1, 0, 0]),   # 2.8, 0.8, 0.4, 0 -> remainders .8 and .8 win
    ((0.7, 0.2, 0.1, 0.0), 100, [70, 20, 10, 0]),
    ((0.45, 0.35, 0.2), 4, [2, 1, 1]),          # 1.8, 1.4, 0.8
    ((1.0, 0.0), 4, [4, 0]),
    ((0.1, 0.9), 3, [0, 3]),                    # 0.3, 2.7 -> the small node gets nothing
])
def test_largest_remainder_by_hand(ratios, total, expected):
    assert largest_remainder(ratios, total) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=8).filter(lambda w: sum(w) > 0),
       st.integers(1, 200))
def test_largest_remainder_properties(weights, total):
    ratios = [w / sum(weights) for w in weights]
    counts = largest_remainder(ratios, total)
    assert sum(counts) == total
    for r, c in zip(ratios, counts):
        assert abs(c - r * total) < 1 + 1e-9  # within one unit of the exact quota
        if r == 0:
            assert c == 0


def test_plan_blocks_heads_columns_and_sizes():
    model = tiny_llama()
    arch = ArchSpec.from_config(model.config)
    plan = make_plan(arch, (0.5, 0.3, 0.2))
    groups = [tuple(n.kv_groups) for n in plan.nodes]
    heads = [tuple(n.query_heads) for n in plan.nodes]
    cols = [(n.mlp_columns.start, n.mlp_columns.stop) for n in plan.nodes]
    assert groups == [(0, 1), (2,), (3,)]
    assert heads == [(0, 1, 2, 3), (4, 5), (6, 7)]  # 2 query heads per KV group
    assert cols == [(0, 50), (50, 80), (80, 100)]
    n_params = sum(p.numel() for p in model.parameters())
    assert plan.total_count == n_params
    assert plan.replicated_bytes + sum(n.param_bytes for n in plan.nodes) == 4 * n_params
    split = shard_model(model, (0.5, 0.3, 0.2))
    for node, node_plan in zip(split.nodes, plan.nodes):
        assert node.param_count() == node_plan.param_count
        assert node.param_bytes() == node_plan.param_bytes
    assert split.replicated.param_bytes() == plan.replicated_bytes
    table = split.format_plan()
    assert "mlp columns" in table and "50-79" in table and "4-5" in table
    assert str(split.plan) == table


def test_zero_share_gives_zero_partials():
    model = tiny_llama()
    split = shard_model(model, (0.7, 0.2, 0.1, 0.0))
    empty = split.nodes[3]
    assert len(empty.plan.query_heads) == 0 and len(empty.plan.mlp_columns) == 0
    assert empty.param_count() == 0
    x = torch.randn(2, 5, 32)
    cos, sin = split.replicated.rotary_tables(x, torch.arange(5)[None])
    mask = torch.zeros(2, 1, 5, 5)
    assert torch.equal(empty.attention_partial(0, x, cos, sin, mask), torch.zeros_like(x))
    assert torch.equal(empty.mlp_partial(0, x), torch.zeros_like(x))
    assert split.nodes[2].n_heads == 0 and split.nodes[2].n_columns == 10  # 0.1 of 4 groups -> 0
    assert not torch.equal(split.nodes[2].mlp_partial(0, x), torch.zeros_like(x))


@pytest.mark.parametrize("ratios, message", [
    ((), "ratios is empty"),
    ((0.5, -0.1, 0.6), "non-negative"),
    ((0.5, 0.3), "sum to 1"),
    ((0.5, float("nan"), 0.5), "finite"),
    ((1 / 101,) * 101, "at most 100 nodes"),
])
def test_bad_ratios_raise_helpful_value_errors(ratios, message):
    with pytest.raises(ValueError, match=message):
        shard_model(tiny_llama(), ratios)


def test_ratio_sum_tolerance():
    shard_model(tiny_llama(), (0.5, 0.3, 0.2 + 5e-7))  # within 1e-6: accepted


def test_unsupported_architecture_names_the_supported_ones():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=32, n_positions=16))
    with pytest.raises(ValueError, match="LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM"):
        shard_model(gpt2, (0.5, 0.5))


def test_more_nodes_than_kv_groups_is_allowed():
    """8 nodes over 4 KV groups: four nodes hold attention, all hold MLP columns."""
    plan = make_plan(ArchSpec.from_config(tiny_llama().config), [1 / 8] * 8)
    assert sorted(len(n.kv_groups) for n in plan.nodes) == [0] * 4 + [1] * 4
    assert all(len(n.mlp_columns) in (12, 13) for n in plan.nodes)
    assert math.fsum(len(n.mlp_columns) for n in plan.nodes) == 100
