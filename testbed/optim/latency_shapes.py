"""Transformer layer shapes (Llama family) as data, for the latency and energy model.

Parameter counting (bias-free Llama blocks, 1 MAC = 2 FLOPs per parameter per token):
- attention: q_proj hidden x (heads * head_dim), k_proj and v_proj hidden x (kv_heads * head_dim)
  each, o_proj (heads * head_dim) x hidden;
- MLP (SwiGLU): gate_proj and up_proj hidden x intermediate, down_proj intermediate x hidden;
these are the *split* parameters (tensor parallel, assigned by the fractions m). RMSNorm weights
(2 x hidden per layer), the embedding and the LM head are replicated on every node. Attention
score/value products against the KV cache are not counted (they grow with the context; at decode
with short contexts they are small next to the projections).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerShapes:
    """Shapes of a decoder-only Llama-style model. Sizes are element counts, not bytes."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    source: str = ""

    def __post_init__(self) -> None:
        if min(self.hidden_size, self.intermediate_size, self.num_layers, self.num_heads,
               self.num_kv_heads, self.vocab_size) < 1:
            raise ValueError(f"LayerShapes {self.name!r}: every size must be >= 1")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"LayerShapes {self.name!r}: hidden_size must be a multiple of "
                             f"num_heads and num_heads a multiple of num_kv_heads")

    @property
    def head_dim(self) -> int:
        """Per-head dimension, elements."""
        return self.hidden_size // self.num_heads

    @property
    def attention_params(self) -> int:
        """Split parameters of one attention block (q, k, v, o projections)."""
        h, d = self.hidden_size, self.head_dim
        return 2 * h * self.num_heads * d + 2 * h * self.num_kv_heads * d

    @property
    def mlp_params(self) -> int:
        """Split parameters of one SwiGLU MLP (gate, up, down)."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def params_per_layer(self) -> int:
        """Split (tensor-parallel) parameters of one decoder layer."""
        return self.attention_params + self.mlp_params

    @property
    def split_params(self) -> int:
        """s_tot: split parameters over all layers = MACs per token spread over the nodes."""
        return self.num_layers * self.params_per_layer

    @property
    def lm_head_params(self) -> int:
        """Replicated LM-head parameters (vocab x hidden), computed by every node per token."""
        return self.vocab_size * self.hidden_size

    @property
    def total_params(self) -> int:
        """Split layers + norms + input embedding + LM head (untied count)."""
        return (self.split_params + self.num_layers * 2 * self.hidden_size + self.hidden_size
                + 2 * self.vocab_size * self.hidden_size)

    def allreduce_reals(self, tokens: int = 1) -> int:
        """D: real values per all-reduce = tokens x hidden."""
        return int(tokens) * self.hidden_size

    def channel_uses_per_token(self, n_streams: int = 1, tokens: int = 1) -> float:
        """AirComp channel uses per forward pass: 2 all-reduces x layers x D / (2 L)."""
        return 2 * self.num_layers * self.allreduce_reals(tokens) / (2 * n_streams)

    @classmethod
    def from_config(cls, config: Any, name: str = "custom") -> "LayerShapes":
        """Shapes from a Hugging Face `LlamaConfig` (or any object with the same attributes)."""
        kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        return cls(name=name, hidden_size=int(config.hidden_size),
                   intermediate_size=int(config.intermediate_size),
                   num_layers=int(config.num_hidden_layers),
                   num_heads=int(config.num_attention_heads), num_kv_heads=int(kv),
                   vocab_size=int(config.vocab_size), source="LlamaConfig passed in")


#: meta-llama/Llama-2-7b-hf config.json (hidden 4096, intermediate 11008, 32 layers, 32 heads, MHA)
LLAMA2_7B = LayerShapes("Llama-2-7B", 4096, 11008, 32, 32, 32, 32000,
                        source="meta-llama/Llama-2-7b-hf config.json")
#: TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json (GQA, 4 KV heads)
TINYLLAMA_1_1B = LayerShapes("TinyLlama-1.1B", 2048, 5632, 22, 32, 4, 32000,
                             source="TinyLlama/TinyLlama-1.1B config.json")
#: meta-llama/Llama-3.2-1B config.json (GQA, 8 KV heads, tied embeddings)
LLAMA32_1B = LayerShapes("Llama-3.2-1B", 2048, 8192, 16, 32, 8, 128256,
                         source="meta-llama/Llama-3.2-1B config.json")

PRESET_SHAPES = {s.name: s for s in (LLAMA2_7B, TINYLLAMA_1_1B, LLAMA32_1B)}
