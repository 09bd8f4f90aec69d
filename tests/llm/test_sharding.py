"""The split model against the unsplit Hugging Face model (logits and greedy generation)."""
from __future__ import annotations

import pytest
import torch
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

from testbed.llm.allreduce import ExactAllReduce
from testbed.llm.sharding import shard_checkpoint, shard_model

VOCAB = 160
COMMON = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4,
              intermediate_size=100, vocab_size=VOCAB, max_position_embeddings=128,
              pad_token_id=None, bos_token_id=None, eos_token_id=None)

FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    # row-parallel biases (o_proj, down_proj) present: added once after the all-reduce
    "llama_bias": (LlamaConfig, LlamaForCausalLM, dict(attention_bias=True, mlp_bias=True)),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),  # q/k/v biases
    # window 6 < prompt 10 + 32 new tokens: the sliding window is exercised
    "mistral": (MistralConfig, MistralForCausalLM, dict(sliding_window=6)),
}

RATIOS = {
    "thirds": (1 / 3, 1 / 3, 1 / 3),
    "half_30_20": (0.5, 0.3, 0.2),
    "with_zero_node": (0.7, 0.2, 0.1, 0.0),
    "all_on_one": (1.0, 0.0),
    "uneven_heads": (0.45, 0.35, 0.2),  # 4 KV groups -> 2,1,1; 100 columns -> 45,35,20
}


def build_model(family: str, seed: int = 0, **overrides):
    """A tiny random fp32 model with every bias drawn non-zero (HF initializes biases to 0)."""
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**COMMON, **extra, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name else 0.0))
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(one_thread):
    return {name: build_model(name) for name in FAMILIES}


def prompt(batch=2, length=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g)


def hf_greedy(model, ids, n, attention_mask=None):
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask
    return model.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                          pad_token_id=VOCAB - 1, eos_token_id=None)


@pytest.mark.parametrize("ratios", list(RATIOS.values()), ids=list(RATIOS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_split_matches_unsplit_logits_and_greedy_generation(models, family, ratios):
    model = models[family]
    split = shard_model(model, ratios)
    ids = prompt()
    with torch.no_grad():
        expected = model(ids).logits
    got = split(ids)
    assert got.dtype == torch.float32 and got.shape == (2, 10, VOCAB)
    assert (got - expected).abs().max().item() <= 1e-4
    assert torch.equal(split.generate(ids, 32), hf_greedy(model, ids, 32))


def test_qwen2_biases_are_really_used(models):
    """Guard against a test that cannot fail: zeroing the q/k/v biases changes the logits."""
    model = models["qwen2"]
    ids = prompt()
    split = shard_model(model, RATIOS["half_30_20"])
    for layer in split.nodes[1].layers:
        layer.q_bias.zero_()
        layer.k_bias.zero_()
    with torch.no_grad():
        expected = model(ids).logits
    assert (split(ids) - expected).abs().max().item() > 1e-3


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_left_padded_batch(models, family):
    model = models[family]
    ids = prompt(batch=3, length=9, seed=5)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    ids = ids.masked_fill(mask == 0, VOCAB - 1)
    split = shard_model(model, RATIOS["half_30_20"])
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
    got = split(ids, attention_mask=mask)
    real = mask.bool()  # logits at padding positions mean nothing
    assert (got - expected)[real].abs().max().item() <= 1e-4
    assert torch.equal(split.generate(ids, 12, attention_mask=mask),
                       hf_greedy(model, ids, 12, attention_mask=mask))


class SpyAllReduce(ExactAllReduce):
    """Exact sum that records every call."""

    def __init__(self):
        self.calls = []

    def reduce(self, partials, *, layer, site):
        self.calls.append((layer, site, len(partials)))
        return super().reduce(partials, layer=layer, site=site)


def test_two_all_reduces_per_layer_per_step(models):
    model = models["llama"]
    spy = SpyAllReduce()
    split = shard_model(model, RATIOS["with_zero_node"], allreduce=spy)
    one_step = [(l, s, 4) for l in range(3) for s in ("attn", "mlp")]
    split(prompt())
    assert spy.calls == one_step
    spy.calls.clear()
    split.generate(prompt(batch=1), 5)
    assert spy.calls == one_step * 5


class PerNodeOffset(ExactAllReduce):
    """Each node receives the exact sum plus its own constant (an imperfect all-reduce)."""

    def __init__(self, offsets):
        self.offsets = offsets

    def reduce(self, partials, *, layer, site):
        total = super().reduce(partials, layer=layer, site=site)[0]
        return [total + o for o in self.offsets]


def test_each_node_keeps_its_own_residual_stream(models):
    model = models["llama"]
    ids = prompt()
    exact = shard_model(model, RATIOS["thirds"])(ids)
    offsets = (0.0, 0.5, 0.0)
    node0 = shard_model(model, RATIOS["thirds"], PerNodeOffset(offsets), output_node=0)(ids)
    node1 = shard_model(model, RATIOS["thirds"], PerNodeOffset(offsets), output_node=1)(ids)
    node2 = shard_model(model, RATIOS["thirds"], PerNodeOffset(offsets), output_node=2)(ids)
    assert (node0 - exact).abs().max() > 1e-3  # node 1's perturbed stream feeds node 0's sums
    assert (node1 - node0).abs().max() > 1e-3
    assert torch.equal(node0, node2)  # same received tensors, same stream


@pytest.mark.parametrize("tie", [False, True])
def test_checkpoint_slices_match_in_memory_split(tmp_path, tie):
    model = build_model("qwen2", seed=3, tie_word_embeddings=tie)
    model.save_pretrained(tmp_path)
    ratios = RATIOS["uneven_heads"]
    from_disk = shard_checkpoint(tmp_path, ratios)
    in_memory = shard_model(model, ratios)
    for a, b in zip(from_disk.nodes, in_memory.nodes):
        for la, lb in zip(a.layers, b.layers):
            for ta, tb in zip(la.tensors(), lb.tensors()):
                assert torch.equal(ta, tb)
    ids = prompt()
    with torch.no_grad():
        expected = model(ids).logits
    assert (from_disk(ids) - expected).abs().max().item() <= 1e-4
    one = shard_checkpoint(tmp_path, ratios, nodes=[2])
    assert len(one.nodes) == 1 and one.nodes[0].param_count() == one.plan.nodes[2].param_count
