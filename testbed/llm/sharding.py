"""Tensor-parallel split of a Hugging Face causal LM over N nodes with uneven shares.

Megatron-style: Q/K/V and MLP gate/up are split by output (whole KV groups with their query
heads / blocks of MLP columns), the attention o_proj and the MLP down_proj by input, and each of
the two is followed by an all-reduce (sites ``"attn"`` and ``"mlp"``), after which the
row-parallel bias is added once. Embedding, norms, rotary embedding and LM head are replicated
on every node (see `testbed.llm.replicated`; a vocab-parallel head would be the next step).
Supported: LlamaForCausalLM, Qwen2ForCausalLM (q/k/v biases), MistralForCausalLM (sliding window).

`ShardedModel` simulates the nodes in one process: at each sync point it collects every node's
partial sum, hands them to the `AllReduce`, and each node continues with what *it* received
(an imperfect all-reduce may deliver different tensors to different nodes). Logits are those of
the output node (node 0 by default). The same class runs a single node inside a separate process
when given that node alone and an all-reduce that talks to the other processes
(see `testbed.llm.tp_gloo`).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from testbed.llm.allreduce import AllReduce, make_allreduce
from testbed.llm.attention import additive_attention_mask
from testbed.llm.checkpoint_slices import load_config
from testbed.llm.node_shard import NodeShard
from testbed.llm.plan import ArchSpec, ShardPlan, make_plan
from testbed.llm.replicated import ReplicatedPart


def _each(fn: Callable, *per_node: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Apply ``fn`` node by node, computing once for inputs that are the very same objects."""
    done: dict[tuple[int, ...], torch.Tensor] = {}
    out = []
    for args in zip(*per_node):
        key = tuple(id(a) for a in args)
        if key not in done:
            done[key] = fn(*args)
        out.append(done[key])
    return out


class ShardedModel:
    """N node shards plus the replicated part, joined by an all-reduce.

    ``nodes`` are the nodes simulated in this process (all of them in-process; one per process
    across processes). Call it with token ids for logits, or use `generate`."""

    def __init__(self, replicated: ReplicatedPart, nodes: Sequence[NodeShard], allreduce: AllReduce,
                 plan: ShardPlan, output_node: int = 0):
        if not nodes:
            raise ValueError("a ShardedModel needs at least one node")
        if not 0 <= output_node < len(nodes):
            raise ValueError(f"output_node={output_node} but only {len(nodes)} node(s) run here")
        self.replicated = replicated
        self.nodes = list(nodes)
        self.allreduce = allreduce
        self.plan = plan
        self.arch: ArchSpec = plan.arch
        self.output_node = output_node
        self.past_len = 0  # tokens in the KV cache
        self.step_seconds: list[float] = []  # wall time per forward step of the last `generate`

    def format_plan(self) -> str:
        """The shard plan as a table (see `ShardPlan.format_plan`)."""
        return self.plan.format_plan()

    def reset_cache(self) -> None:
        """Forget every node's KV cache."""
        for node in self.nodes:
            node.reset_cache()
        self.past_len = 0

    # -- one decoder layer: exactly two all-reduces ----------------------------------------
    def decoder_layer(self, layer: int, hidden: list[torch.Tensor], rope, mask,
                      use_cache: bool) -> list[torch.Tensor]:
        """Layer ``layer`` on every node's residual stream ``hidden[n]`` ``(batch, tokens, hidden)``."""
        rep, cos, sin = self.replicated, *rope
        # self-attention: each node attends with its own heads, partial sums are all-reduced
        normed = _each(rep.input_norms[layer], hidden)
        partials = [node.attention_partial(layer, x, cos, sin, mask, use_cache)
                    for node, x in zip(self.nodes, normed)]
        received = self._all_reduce(partials, layer, "attn")
        hidden = _each(lambda h, r: h + rep.add_attn_bias(layer, r), hidden, received)
        # MLP: each node computes its columns, partial sums are all-reduced
        normed = _each(rep.post_attention_norms[layer], hidden)
        partials = [node.mlp_partial(layer, x) for node, x in zip(self.nodes, normed)]
        received = self._all_reduce(partials, layer, "mlp")
        return _each(lambda h, r: h + rep.add_mlp_bias(layer, r), hidden, received)

    def _all_reduce(self, partials, layer, site):
        received = self.allreduce(partials, layer=layer, site=site)
        if len(received) != len(partials):
            raise ValueError(f"{type(self.allreduce).__name__} returned {len(received)} tensors "
                             f"for {len(partials)} nodes at layer {layer} site {site!r}")
        return received

    # -- whole model ------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, use_cache: bool = False) -> torch.Tensor:
        """Logits ``(batch, tokens, vocab)`` fp32 for ``input_ids`` ``(batch, tokens)``.

        ``attention_mask`` ``(batch, cached + tokens)``: 1 for real tokens, 0 for (left) padding.
        ``position_ids`` default to ``cached .. cached + tokens - 1`` as in HF's forward.
        With ``use_cache`` the tokens are appended to the nodes' KV caches."""
        batch, n_new = input_ids.shape
        past = self.past_len if use_cache else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + n_new).unsqueeze(0)
        h = self.replicated.embed(input_ids)
        rope = self.replicated.rotary_tables(h, position_ids)
        masks = {w: additive_attention_mask(attention_mask, batch=batch, q_len=n_new, past_len=past,
                                            sliding_window=w, dtype=h.dtype)
                 for w in set(self.arch.sliding_windows)}
        hidden = [h] * len(self.nodes)
        for layer in range(self.arch.num_layers):
            hidden = self.decoder_layer(layer, hidden, rope, masks[self.arch.sliding_windows[layer]],
                                        use_cache)
        if use_cache:
            self.past_len += n_new
        return self.replicated.logits(hidden[self.output_node])

    __call__ = forward

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy decoding with per-node KV caches; returns ``(batch, tokens + max_new_tokens)``.

        Prefill the prompt once, then one token per step. With a left-padded ``attention_mask``
        positions are ``cumsum(mask) - 1`` as in HF's ``generate``. Wall time per step (prefill
        first) is left in ``self.step_seconds``."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        self.reset_cache()
        self.step_seconds = []
        batch = input_ids.shape[0]
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        tokens, out = input_ids, [input_ids]
        for _ in range(max_new_tokens):
            start = time.perf_counter()
            logits = self.forward(tokens, mask, positions, use_cache=True)
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            self.step_seconds.append(time.perf_counter() - start)
            out.append(tokens)
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            positions = positions[:, -1:] + 1
        return torch.cat(out, dim=1)


def shard_model(model, ratios: Sequence[float], allreduce: str | AllReduce = "exact",
                output_node: int = 0) -> ShardedModel:
    """Split a loaded HF ``LlamaForCausalLM``/``Qwen2ForCausalLM``/``MistralForCausalLM`` over
    ``len(ratios)`` simulated nodes (``ratios``: non-negative fractions summing to 1).

    Rounding is largest-remainder at KV-group (attention) and column (MLP) granularity; see
    `testbed.llm.plan`. The nodes copy their slices; the model itself is not modified.
    Raises ValueError for unsupported architectures or bad ratios."""
    arch = ArchSpec.from_config(model.config)
    dtype = next(model.parameters()).dtype
    plan = make_plan(arch, ratios, dtype)
    state = model.state_dict()
    nodes = [NodeShard.from_state_dict(state, arch, p) for p in plan.nodes]
    replicated = ReplicatedPart.from_state_dict(model.config, arch, state)
    return ShardedModel(replicated, nodes, make_allreduce(allreduce), plan, output_node)


def shard_checkpoint(directory, ratios: Sequence[float], allreduce: str | AllReduce = "exact", *,
                     nodes: Sequence[int] | None = None, dtype: torch.dtype = torch.float32,
                     output_node: int = 0) -> ShardedModel:
    """Build a `ShardedModel` straight from a ``save_pretrained`` safetensors directory.

    Only the slices of the nodes listed in ``nodes`` (default: all) are read from disk, plus
    the replicated part; a process running one node passes ``nodes=[its_index]`` and an
    all-reduce that reaches the other processes. ``output_node`` indexes into ``nodes``.
    Weights are cast to ``dtype``."""
    config = load_config(directory)
    arch = ArchSpec.from_config(config)
    plan = make_plan(arch, ratios, dtype)
    indices = range(plan.world_size) if nodes is None else list(nodes)
    bad = [i for i in indices if not 0 <= i < plan.world_size]
    if bad:
        raise ValueError(f"node indices {bad} out of range for {plan.world_size} ratios")
    shards = [NodeShard.from_checkpoint(directory, arch, plan.nodes[i], dtype) for i in indices]
    replicated = ReplicatedPart.from_checkpoint(config, arch, directory, dtype)
    return ShardedModel(replicated, shards, make_allreduce(allreduce), plan, output_node)
