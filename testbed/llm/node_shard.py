"""One node's part of a tensor-parallel model: its weight slices, its KV cache, its partial sums.

Megatron-style split (column-parallel then row-parallel, no communication in between):

* attention: the node holds whole KV groups — rows of k_proj/v_proj for its KV heads, rows of
  q_proj for the query heads of those groups (with Qwen2's q/k/v biases sliced the same way) and
  the matching input columns of o_proj. Its partial sum is ``o_proj[:, cols] @ attn(own heads)``.
* MLP: the node holds a block of intermediate columns — rows of gate_proj/up_proj, input
  columns of down_proj. Its partial sum is ``down[:, cols] @ (act(gate_cols x) * up_cols x)``.

Row-parallel biases are not here: they are replicated and added once after the all-reduce.
A node with no heads (or no columns) returns a zero partial sum. The KV cache holds only the
node's own KV heads, keys after rotary embedding, shape ``(batch, own_kv_heads, tokens, head_dim)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from testbed.llm.attention import grouped_attention
from testbed.llm.checkpoint_slices import SafetensorsSource, StateDictSource, TensorSource
from testbed.llm.plan import ArchSpec, NodePlan


@dataclass
class LayerSlices:
    """A node's weights of one decoder layer (HF ``nn.Linear`` layout: ``(out, in)``).

    q: ``(own_q_heads*head_dim, hidden)``, k/v: ``(own_kv_heads*head_dim, hidden)``,
    o: ``(hidden, own_q_heads*head_dim)``, gate/up: ``(own_cols, hidden)``, down: ``(hidden, own_cols)``.
    Biases are None where the architecture has none."""

    q_weight: torch.Tensor
    q_bias: torch.Tensor | None
    k_weight: torch.Tensor
    k_bias: torch.Tensor | None
    v_weight: torch.Tensor
    v_bias: torch.Tensor | None
    o_weight: torch.Tensor
    gate_weight: torch.Tensor
    gate_bias: torch.Tensor | None
    up_weight: torch.Tensor
    up_bias: torch.Tensor | None
    down_weight: torch.Tensor

    def tensors(self) -> list[torch.Tensor]:
        """All tensors held (biases that exist included)."""
        return [t for t in vars(self).values() if t is not None]


def _layer_prefix(layer: int) -> str:
    return f"model.layers.{layer}."


def read_layer_slices(source: TensorSource, arch: ArchSpec, plan: NodePlan, layer: int,
                      dtype: torch.dtype | None = None) -> LayerSlices:
    """Read node ``plan.node``'s slices of decoder layer ``layer`` from ``source``."""
    p = _layer_prefix(layer)
    a, m = p + "self_attn.", p + "mlp."

    def get(name, rows=None, cols=None, present=True):
        if not present:
            return None
        t = source.get(name, rows, cols)
        return t if dtype is None else t.to(dtype)

    return LayerSlices(
        q_weight=get(a + "q_proj.weight", plan.q_rows),
        q_bias=get(a + "q_proj.bias", plan.q_rows, present=arch.qkv_bias),
        k_weight=get(a + "k_proj.weight", plan.kv_rows),
        k_bias=get(a + "k_proj.bias", plan.kv_rows, present=arch.qkv_bias),
        v_weight=get(a + "v_proj.weight", plan.kv_rows),
        v_bias=get(a + "v_proj.bias", plan.kv_rows, present=arch.qkv_bias),
        o_weight=get(a + "o_proj.weight", None, plan.q_rows),
        gate_weight=get(m + "gate_proj.weight", plan.mlp_columns),
        gate_bias=get(m + "gate_proj.bias", plan.mlp_columns, present=arch.mlp_bias),
        up_weight=get(m + "up_proj.weight", plan.mlp_columns),
        up_bias=get(m + "up_proj.bias", plan.mlp_columns, present=arch.mlp_bias),
        down_weight=get(m + "down_proj.weight", None, plan.mlp_columns),
    )


class NodeShard:
    """A node: its `LayerSlices` for every layer, its KV cache, and its two partial sums.

    Build with `from_source` / `from_state_dict` / `from_checkpoint`; only this node's slices
    are ever read."""

    def __init__(self, arch: ArchSpec, plan: NodePlan, layers: list[LayerSlices]):
        if len(layers) != arch.num_layers:
            raise ValueError(f"got {len(layers)} layers of slices, the model has {arch.num_layers}")
        self.arch = arch
        self.plan = plan
        self.layers = layers
        self.n_heads = len(plan.query_heads)
        self.n_columns = len(plan.mlp_columns)
        self.scaling = arch.head_dim ** -0.5
        self.act = ACT2FN[arch.hidden_act]
        self.cache: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * arch.num_layers

    @classmethod
    def from_source(cls, source: TensorSource, arch: ArchSpec, plan: NodePlan,
                    dtype: torch.dtype | None = None) -> "NodeShard":
        """Read this node's slices of every layer from ``source`` (cast to ``dtype`` if given)."""
        layers = [read_layer_slices(source, arch, plan, l, dtype) for l in range(arch.num_layers)]
        return cls(arch, plan, layers)

    @classmethod
    def from_state_dict(cls, state_dict, arch: ArchSpec, plan: NodePlan,
                        dtype: torch.dtype | None = None) -> "NodeShard":
        """Copy this node's slices out of a full HF state dict."""
        return cls.from_source(StateDictSource(state_dict), arch, plan, dtype)

    @classmethod
    def from_checkpoint(cls, directory, arch: ArchSpec, plan: NodePlan,
                        dtype: torch.dtype | None = torch.float32) -> "NodeShard":
        """Read only this node's slices from a ``save_pretrained`` safetensors directory."""
        return cls.from_source(SafetensorsSource(directory), arch, plan, dtype)

    # -- size -------------------------------------------------------------------------------
    def param_count(self) -> int:
        """Number of weight/bias elements this node holds (all layers)."""
        return sum(t.numel() for layer in self.layers for t in layer.tensors())

    def param_bytes(self) -> int:
        """Bytes of the weights/biases this node holds."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.tensors())

    # -- KV cache ---------------------------------------------------------------------------
    def reset_cache(self) -> None:
        """Drop the cached keys/values of every layer."""
        self.cache = [None] * self.arch.num_layers

    # -- the two partial sums ---------------------------------------------------------------
    def attention_partial(self, layer: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          mask: torch.Tensor, use_cache: bool = False) -> torch.Tensor:
        """This node's share of ``o_proj(attention(x))`` for layer ``layer`` (no o_proj bias).

        ``x``: normalized hidden state ``(batch, new_tokens, hidden)``; ``cos``/``sin``:
        rotary tables ``(batch, new_tokens, head_dim)``; ``mask``: additive
        ``(batch, 1, new_tokens, cached + new_tokens)``. With ``use_cache`` the new keys/values
        are appended to this node's cache and attention covers cache + new tokens.
        Returns ``(batch, new_tokens, hidden)`` (zeros if the node holds no heads)."""
        if self.n_heads == 0:
            return torch.zeros_like(x)
        w = self.layers[layer]
        b, t, _ = x.shape
        d = self.arch.head_dim
        q = F.linear(x, w.q_weight, w.q_bias).view(b, t, -1, d).transpose(1, 2)
        k = F.linear(x, w.k_weight, w.k_bias).view(b, t, -1, d).transpose(1, 2)
        v = F.linear(x, w.v_weight, w.v_bias).view(b, t, -1, d).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if use_cache:
            if self.cache[layer] is not None:
                k_past, v_past = self.cache[layer]
                k, v = torch.cat([k_past, k], dim=2), torch.cat([v_past, v], dim=2)
            self.cache[layer] = (k, v)
        heads = grouped_attention(q, k, v, mask, self.scaling)
        return F.linear(heads, w.o_weight)

    def mlp_partial(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """This node's share of ``down_proj(act(gate_proj(x)) * up_proj(x))`` (no down bias).

        ``x``: normalized hidden state ``(batch, tokens, hidden)``; returns the same shape
        (zeros if the node holds no MLP columns)."""
        if self.n_columns == 0:
            return torch.zeros_like(x)
        w = self.layers[layer]
        inner = self.act(F.linear(x, w.gate_weight, w.gate_bias)) * F.linear(x, w.up_weight, w.up_bias)
        return F.linear(inner, w.down_weight)

    def __repr__(self) -> str:
        return (f"NodeShard(node={self.plan.node}, q_heads={self.n_heads}, "
                f"mlp_columns={self.n_columns}, params={self.param_count():,})")
