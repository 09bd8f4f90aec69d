"""In-process references the multi-process bench runs are compared with."""
from __future__ import annotations

import numpy as np
import torch


def greedy_logits(sharded, prompt: list[int], n_tokens: int) -> np.ndarray:
    """Per-step last-position logits ``(n_tokens, 1, vocab)`` of greedy decoding from ``prompt``
    with a `ShardedModel` in this process (as `ShardedModel.generate`)."""
    sharded.reset_cache()
    tokens, out = torch.tensor([prompt]), []
    for _ in range(n_tokens):
        logits = sharded.forward(tokens, use_cache=True)[:, -1]
        out.append(logits.numpy())
        tokens = logits.argmax(-1, keepdim=True)
    return np.stack(out)
