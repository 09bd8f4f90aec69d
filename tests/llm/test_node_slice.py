"""A node's slice of a checkpoint (what the controller sends a node that has none): loaded with
the ordinary loader it gives the very weights of the full checkpoint, holds only that node's
blocks, refuses requests outside them, and a damaged or altered copy is caught before use."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from testbed.errors import ConfigError
from testbed.llm.allreduce import make_allreduce
from testbed.llm.checkpoint_slices import SafetensorsSource
from testbed.llm.manifest import WeightsIntegrityError, write_manifest
from testbed.llm.node_slice import (check_slice, cut_node_slice, slice_dir, slice_key,
                                    slice_manifest, store_slice)
from testbed.llm.sharding import ShardedModel, shard_checkpoint

COMMON = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
              intermediate_size=100, vocab_size=96, max_position_embeddings=64,
              pad_token_id=None, bos_token_id=None, eos_token_id=None)
FAMILIES = {
    # o_proj / down_proj biases (replicated, added after the all-reduce), untied LM head
    "llama_bias": (LlamaConfig, LlamaForCausalLM, dict(attention_bias=True, mlp_bias=True,
                                                       tie_word_embeddings=False)),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),   # q/k/v biases
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def checkpoint(request, tmp_path_factory):
    config_cls, model_cls, extra = FAMILIES[request.param]
    torch.manual_seed(3)
    model = model_cls(config_cls(**COMMON, **extra)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.2)
    d = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(d, safe_serialization=True)
    write_manifest(d)
    return d


def _store(files, dest):
    return store_slice(files, slice_manifest(files), dest)


@pytest.mark.parametrize("ratios", [(0.45, 0.35, 0.2), (0.7, 0.3, 0.0)])
def test_slices_give_the_full_checkpoints_logits_bit_for_bit(checkpoint, tmp_path, ratios):
    full = shard_checkpoint(checkpoint, ratios)
    dirs = [_store(cut_node_slice(checkpoint, ratios, i), tmp_path / f"n{i}")
            for i in range(len(ratios))]
    parts = [shard_checkpoint(d, ratios, nodes=[i]) for i, d in enumerate(dirs)]
    model = ShardedModel(parts[0].replicated, [p.nodes[0] for p in parts],
                         make_allreduce("exact"), full.plan)
    ids = torch.tensor([[5, 17, 3, 88, 41, 9]])
    mask, pos = torch.ones_like(ids), torch.arange(ids.shape[1])[None]
    assert torch.equal(model.forward(ids, mask, pos), full.forward(ids, mask, pos))
    # each slice holds that node's blocks only: together barely more than the checkpoint
    # plus one replicated part per extra node
    full_bytes = (checkpoint / "model.safetensors").stat().st_size
    sizes = [(d / "model.safetensors").stat().st_size for d in dirs]
    rep = full.replicated.param_bytes()
    assert all(s < full_bytes for s in sizes)
    assert sum(sizes) < full_bytes + (len(ratios) - 1) * rep + 64 * 1024


def test_a_slice_refuses_blocks_it_does_not_hold(checkpoint, tmp_path):
    ratios = (0.5, 0.5)
    d = _store(cut_node_slice(checkpoint, ratios, 1), tmp_path / "n1")
    src, whole = SafetensorsSource(d), SafetensorsSource(checkpoint)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert src.shape(name) == whole.shape(name)
    rows = range(32, 64)                                          # node 1's heads
    assert torch.equal(src.get(name, rows), whole.get(name, rows))
    with pytest.raises(ConfigError, match="another assignment"):
        src.get(name, range(0, 32))                               # node 0's heads
    with pytest.raises(ConfigError, match="another assignment"):
        src.get(name)                                             # the whole tensor
    with pytest.raises(ConfigError, match="another assignment"):  # same dir, other split
        shard_checkpoint(d, (0.25, 0.75), nodes=[1])


def test_damaged_or_altered_slices_are_caught_before_use(checkpoint, tmp_path):
    files = cut_node_slice(checkpoint, (0.6, 0.4), 0)
    offer = slice_manifest(files)
    bad = dict(files, **{"model.safetensors": bytearray(files["model.safetensors"])})
    bad["model.safetensors"][-1] ^= 0x01
    with pytest.raises(WeightsIntegrityError, match="does not match"):
        store_slice({k: bytes(v) for k, v in bad.items()}, offer, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    d = store_slice(files, offer, tmp_path / "ok")
    check_slice(d, offer)
    w = d / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-3] ^= 0x40                                   # one bit of one weight
    w.write_bytes(bytes(raw))
    with pytest.raises(WeightsIntegrityError, match="SHA-256"):
        check_slice(d, offer)
    write_manifest(d)                                 # a manifest rewritten to fit: still not
    with pytest.raises(WeightsIntegrityError, match="differ from the controller's offer"):
        check_slice(d, offer)                         # what the controller offered


def test_cache_key_separates_checkpoint_ratios_and_index(tmp_path):
    keys = {slice_key("sha256:a", (0.5, 0.5), 0), slice_key("sha256:b", (0.5, 0.5), 0),
            slice_key("sha256:a", (0.6, 0.4), 0), slice_key("sha256:a", (0.5, 0.5), 1)}
    assert len(keys) == 4
    assert slice_dir(next(iter(keys)), tmp_path).parent == tmp_path / "slices"


def test_cut_is_deterministic(checkpoint):
    a, b = cut_node_slice(checkpoint, (0.3, 0.7), 1), cut_node_slice(checkpoint, (0.3, 0.7), 1)
    assert a == b and a["config.json"] == (checkpoint / "config.json").read_bytes()
