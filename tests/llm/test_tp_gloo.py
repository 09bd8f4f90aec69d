"""The same split across 3 real processes with a gloo all-reduce, against the in-process split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from testbed.errors import ConfigError
from testbed.llm.allreduce import AllReduce
from testbed.llm.sharding import shard_model
from testbed.llm.tp_gloo import GlooAllReduce, run_tp_gloo

RATIOS = (0.5, 0.3, 0.2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                      num_key_value_heads=4, intermediate_size=100, vocab_size=160,
                      max_position_embeddings=64)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.2)
    directory = tmp_path_factory.mktemp("qwen2_tiny")
    model.save_pretrained(directory)
    return model, directory


@pytest.mark.slow
def test_three_gloo_ranks_match_in_process_and_hold_only_their_shard(checkpoint):
    model, directory = checkpoint
    ids = torch.randint(0, 160, (1, 8), generator=torch.Generator().manual_seed(2))
    n_new = 6
    results = run_tp_gloo(directory, RATIOS, ids, n_new, want_logits=True, timeout_s=240)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        split = shard_model(model, RATIOS)
        expected_logits = split(ids).numpy()
        expected_tokens = split.generate(ids, n_new).tolist()
    finally:
        torch.set_num_threads(before)
    assert np.abs(results[0].prefill_logits - expected_logits).max() <= 1e-4
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    for r, node_plan in zip(results, split.plan.nodes):
        assert r.tokens == expected_tokens  # every rank decodes the same tokens
        assert r.shard_param_bytes == node_plan.param_bytes
        assert r.replicated_param_bytes == split.plan.replicated_bytes
        assert r.shard_param_bytes + r.replicated_param_bytes < full_bytes
        # one prefill forward + n_new generate steps, 2 all-reduces per layer each
        assert r.allreduce_calls == (1 + n_new) * 2 * 2
        assert len(r.step_ms) == n_new and r.rss_end_bytes > 0
    assert sum(r.shard_param_bytes for r in results) + results[0].replicated_param_bytes == full_bytes


def test_gloo_all_reduce_is_an_all_reduce():
    assert isinstance(GlooAllReduce(), AllReduce)
    with pytest.raises(ValueError, match="one node per process"):
        GlooAllReduce()([torch.zeros(1), torch.zeros(1)], layer=0, site="attn")


def test_bad_ratios_are_refused_before_spawning(checkpoint):
    _, directory = checkpoint
    with pytest.raises(ValueError, match="sum to 1"):
        run_tp_gloo(directory, (0.5, 0.3), torch.zeros(1, 2, dtype=torch.long), 1)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="has no config.json"):
        run_tp_gloo(tmp_path, (0.5, 0.5), torch.zeros(1, 2, dtype=torch.long), 1)
