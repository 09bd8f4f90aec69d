"""Eager softmax attention with GQA, and the additive causal/padding/sliding-window mask.

Pure tensor functions used by each node for its own heads. Conventions as in Hugging Face
``modeling_llama``: queries ``(batch, q_heads, q_len, head_dim)``, keys/values
``(batch, kv_heads, kv_len, head_dim)``, additive mask ``(batch, 1, q_len, kv_len)`` with 0 where
attention is allowed and the dtype's most negative value where it is not.
"""
from __future__ import annotations

import torch


def additive_attention_mask(attention_mask: torch.Tensor | None, *, batch: int, q_len: int,
                            past_len: int, sliding_window: int | None,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Causal mask for ``q_len`` new tokens after ``past_len`` cached ones.

    Query i (absolute index ``past_len + i``) may see key j iff ``j <= past_len + i``, key j is
    not padding (``attention_mask[b, j] == 1``, shape ``(batch, past_len + q_len)``), and, with a
    sliding window of W tokens, ``past_len + i - j < W`` (Mistral's rule). Returns the additive
    mask, shape ``(batch, 1, q_len, past_len + q_len)``."""
    kv_len = past_len + q_len
    q_pos = torch.arange(past_len, kv_len)[:, None]
    k_pos = torch.arange(kv_len)[None, :]
    allowed = k_pos <= q_pos
    if sliding_window is not None:
        allowed = allowed & (q_pos - k_pos < sliding_window)
    allowed = allowed[None, None].expand(batch, 1, q_len, kv_len)
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (batch, kv_len):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
                             f"(batch, past + new tokens) = {(batch, kv_len)}")
        allowed = allowed & attention_mask[:, None, None, :].bool()
    mask = torch.zeros(batch, 1, q_len, kv_len, dtype=dtype)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def grouped_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: torch.Tensor, scaling: float) -> torch.Tensor:
    """softmax(Q K^T * scaling + mask) V with each KV head shared by ``q_heads / kv_heads``
    consecutive query heads (GQA, keys/values repeated). Softmax in fp32.

    Returns ``(batch, q_len, q_heads * head_dim)``, heads concatenated in order."""
    group = query.shape[1] // key.shape[1]
    if group > 1:
        key = key.repeat_interleave(group, dim=1)
        value = value.repeat_interleave(group, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling + mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value)  # (batch, q_heads, q_len, head_dim)
    b, h, t, d = out.shape
    return out.transpose(1, 2).reshape(b, t, h * d)
