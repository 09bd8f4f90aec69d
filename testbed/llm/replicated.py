"""The part of a tensor-parallel model that every node holds whole (replicated, not split).

Token embedding, the two RMSNorms of each layer and the final one, the rotary embedding, the LM
head (the embedding matrix when tied), and the biases of the row-parallel projections (o_proj,
down_proj), which are added once to the all-reduced sum. Norms and rotary embedding are Hugging
Face's own modules for the architecture. The LM head is replicated; a vocab-parallel head would
split ``lm_head_weight`` by rows and gather the logits instead.
"""
from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F

from testbed.llm.checkpoint_slices import SafetensorsSource, StateDictSource, TensorSource
from testbed.llm.plan import ArchSpec

_HF_MODULES = {  # model_type -> (modeling module, class name prefix)
    "llama": ("transformers.models.llama.modeling_llama", "Llama"),
    "qwen2": ("transformers.models.qwen2.modeling_qwen2", "Qwen2"),
    "mistral": ("transformers.models.mistral.modeling_mistral", "Mistral"),
}


def _hf_classes(model_type: str):
    module_name, prefix = _HF_MODULES[model_type]
    module = importlib.import_module(module_name)
    return getattr(module, prefix + "RMSNorm"), getattr(module, prefix + "RotaryEmbedding")


class ReplicatedPart:
    """Embedding, norms, rotary embedding, LM head and row-parallel biases (see module doc)."""

    def __init__(self, config, arch: ArchSpec, source: TensorSource, dtype: torch.dtype | None = None):
        rms_cls, rope_cls = _hf_classes(arch.model_type)

        def get(name):
            t = source.get(name)
            return t if dtype is None else t.to(dtype)

        def norm(name):
            module = rms_cls(arch.hidden_size, eps=arch.rms_norm_eps)
            module.weight.data = get(name)
            module.requires_grad_(False)
            return module

        self.arch = arch
        self.embed_weight = get("model.embed_tokens.weight")  # (vocab, hidden)
        if arch.tie_word_embeddings or not source.has("lm_head.weight"):
            self.lm_head_weight = self.embed_weight
        else:
            self.lm_head_weight = get("lm_head.weight")  # (vocab, hidden)
        p = "model.layers.{}."
        self.input_norms = [norm(p.format(l) + "input_layernorm.weight") for l in range(arch.num_layers)]
        self.post_attention_norms = [norm(p.format(l) + "post_attention_layernorm.weight")
                                     for l in range(arch.num_layers)]
        self.final_norm = norm("model.norm.weight")
        self.o_biases = [get(p.format(l) + "self_attn.o_proj.bias") if arch.o_bias else None
                         for l in range(arch.num_layers)]
        self.down_biases = [get(p.format(l) + "mlp.down_proj.bias") if arch.down_bias else None
                            for l in range(arch.num_layers)]
        self.rotary = rope_cls(config=config)
        if dtype is not None:
            self.rotary.to(dtype)

    @classmethod
    def from_state_dict(cls, config, arch: ArchSpec, state_dict, dtype=None) -> "ReplicatedPart":
        """Copy the replicated tensors out of a full HF state dict."""
        return cls(config, arch, StateDictSource(state_dict), dtype)

    @classmethod
    def from_checkpoint(cls, config, arch: ArchSpec, directory, dtype=torch.float32) -> "ReplicatedPart":
        """Read the replicated tensors from a ``save_pretrained`` safetensors directory."""
        return cls(config, arch, SafetensorsSource(directory), dtype)

    def tensors(self) -> list[torch.Tensor]:
        """Every distinct tensor held (a tied LM head counted once)."""
        out = [self.embed_weight]
        if self.lm_head_weight is not self.embed_weight:
            out.append(self.lm_head_weight)
        out += [m.weight for m in (*self.input_norms, *self.post_attention_norms, self.final_norm)]
        out += [b for b in (*self.o_biases, *self.down_biases) if b is not None]
        return out

    def param_bytes(self) -> int:
        """Bytes of the replicated weights."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(batch, tokens)`` -> embeddings ``(batch, tokens, hidden)``."""
        return F.embedding(input_ids, self.embed_weight)

    def rotary_tables(self, hidden: torch.Tensor, position_ids: torch.Tensor):
        """HF rotary embedding: ``(cos, sin)``, each ``(batch, tokens, head_dim)``."""
        return self.rotary(hidden, position_ids)

    def add_attn_bias(self, layer: int, reduced: torch.Tensor) -> torch.Tensor:
        """All-reduced attention output plus o_proj's bias (if the model has one)."""
        b = self.o_biases[layer]
        return reduced if b is None else reduced + b

    def add_mlp_bias(self, layer: int, reduced: torch.Tensor) -> torch.Tensor:
        """All-reduced MLP output plus down_proj's bias (if the model has one)."""
        b = self.down_biases[layer]
        return reduced if b is None else reduced + b

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: ``(batch, tokens, hidden)`` -> fp32 ``(batch, tokens, vocab)``."""
        return F.linear(self.final_norm(hidden), self.lm_head_weight).float()
