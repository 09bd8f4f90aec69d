"""Perplexity of a causal LM over a token stream, for any logits function.

Windowing (deterministic): windows of `window` tokens start at 0, stride, 2*stride, ...; in each
window only the tokens not scored by an earlier window are scored, each conditioned on everything
before it in that window (the usual Hugging Face sliding-window recipe). With the default
``stride = window`` the windows do not overlap and the first token of each window is not scored
(it has no context). A last, shorter window covers the tail. Perplexity = exp(mean NLL) over all
scored tokens, NLL in nats, computed in float64 from the logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from testbed.errors import ConfigError

#: ``logits_fn(input_ids) -> logits``: input (1, T) int64, output (1, T, V) float.
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PerplexityResult:
    """ppl = exp(nll_per_token); nll_per_token in nats; n_tokens = number of scored tokens."""

    ppl: float
    nll_per_token: float
    n_tokens: int


def _window_plan(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """[(begin, end, first_scored)] per window: tokens [begin, end) are fed, targets at positions
    first_scored..end-1 are scored (first_scored >= begin + 1)."""
    plan, scored_until = [], 1  # token 0 can never be scored
    begin = 0
    while scored_until < n:
        end = min(begin + window, n)
        first = max(scored_until, begin + 1)
        if first < end:
            plan.append((begin, end, first))
            scored_until = end
        begin += stride
    return plan


def evaluate_perplexity(logits_fn: LogitsFn, token_ids: torch.Tensor | Sequence[int], *,
                        window: int = 256, stride: int | None = None,
                        max_windows: int | None = None, progress: bool = True) -> PerplexityResult:
    """Perplexity of `logits_fn` on the 1-D token stream `token_ids` (see module docstring).

    `window` and `stride` are in tokens (stride <= window; default stride = window);
    `max_windows` scores only the first that many windows. `logits_fn` gets (1, T) int64 ids and
    must return (1, T, V) logits where position t predicts token t+1. Runs under
    ``torch.no_grad()``. Raises ConfigError on bad sizes or a logits shape mismatch."""
    ids = torch.as_tensor(token_ids, dtype=torch.int64).reshape(-1)
    stride = window if stride is None else stride
    if window < 2:
        raise ConfigError(f"window must be >= 2 tokens (one context + one target), got {window}")
    if not 1 <= stride <= window:
        raise ConfigError(f"stride must be in 1..window={window}, got {stride}")
    if ids.numel() < 2:
        raise ConfigError(f"need at least 2 tokens to score one prediction, got {ids.numel()}")
    plan = _window_plan(ids.numel(), window, stride)
    if max_windows is not None:
        if max_windows < 1:
            raise ConfigError(f"max_windows must be >= 1 or None, got {max_windows}")
        plan = plan[:max_windows]
    total_nll, total_n = 0.0, 0
    with torch.no_grad():
        for begin, end, first in tqdm(plan, desc="perplexity", unit="win", disable=not progress):
            chunk = ids[begin:end].unsqueeze(0)
            logits = logits_fn(chunk)
            if logits.dim() != 3 or logits.shape[:2] != chunk.shape:
                raise ConfigError(f"logits_fn returned shape {tuple(logits.shape)} for input "
                                  f"{tuple(chunk.shape)}; expected (1, {chunk.shape[1]}, V)")
            # position p predicts token p+1; scored targets are positions first..end-1 (absolute)
            pred = logits[0, first - 1 - begin:end - 1 - begin].to(torch.float64)
            targets = ids[first:end]
            logp = torch.log_softmax(pred, dim=-1)
            total_nll += float(-logp.gather(1, targets[:, None]).sum())
            total_n += int(targets.numel())
    nll = total_nll / total_n
    return PerplexityResult(ppl=math.exp(nll), nll_per_token=nll, n_tokens=total_n)


def hf_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """Wrap a Hugging Face causal LM as a `LogitsFn` (no KV cache, model used as is)."""

    def logits_fn(input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, use_cache=False).logits

    return logits_fn
