"""Windowed perplexity against theory: uniform logits give V, a perfect predictor gives 1."""
import math

import pytest
import torch

from testbed.errors import ConfigError
from testbed.llm.perplexity import _window_plan, evaluate_perplexity


def uniform_logits_fn(vocab):
    def fn(ids):
        return torch.randn(1, 1, 1).expand(1, ids.shape[1], vocab).clone()  # constant per row
    return fn


@pytest.mark.parametrize("vocab,window,stride", [(256, 64, None), (50, 17, 5), (7, 2, 1)])
def test_uniform_logits_give_perplexity_equal_to_vocab(vocab, window, stride):
    ids = torch.randint(0, vocab, (301,), generator=torch.Generator().manual_seed(0))
    res = evaluate_perplexity(uniform_logits_fn(vocab), ids, window=window, stride=stride,
                              progress=False)
    assert res.ppl == pytest.approx(vocab, rel=1e-12)
    assert res.nll_per_token == pytest.approx(math.log(vocab), rel=1e-12)
    # overlapping windows score every token but the very first once; non-overlapping windows
    # also skip the first token of each later window (it has no context)
    n_windows = math.ceil(301 / window)
    assert res.n_tokens == (300 if stride else 300 - (n_windows - 1))


def test_oracle_next_token_logits_give_perplexity_one():
    ids = torch.randint(0, 100, (500,), generator=torch.Generator().manual_seed(1))
    full = ids.tolist()

    def oracle(chunk):
        # find where the chunk sits in the stream and put all mass on the true next token
        t = chunk.shape[1]
        start = next(s for s in range(len(full)) if full[s:s + t] == chunk[0].tolist())
        logits = torch.full((1, t, 100), -1e4)
        for p in range(t):
            if start + p + 1 < len(full):
                logits[0, p, full[start + p + 1]] = 1e4
        return logits

    res = evaluate_perplexity(oracle, ids, window=64, stride=48, progress=False)
    assert res.ppl == pytest.approx(1.0, abs=1e-9)
    assert res.n_tokens == 499


def test_known_bigram_model_matches_hand_computed_nll():
    # logits depend only on the current token: p(next | cur) = softmax(W[cur]); exact NLL by hand
    vocab = 5
    w = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ids = torch.randint(0, vocab, (97,), generator=torch.Generator().manual_seed(3))
    logp = torch.log_softmax(w, dim=-1)
    expected = -sum(float(logp[ids[i], ids[i + 1]]) for i in range(96)) / 96
    res = evaluate_perplexity(lambda x: w[x], ids, window=10, stride=4, progress=False)
    assert res.nll_per_token == pytest.approx(expected, rel=1e-12)
    assert res.n_tokens == 96


def test_non_overlapping_windows_skip_each_window_first_token():
    plan = _window_plan(10, 4, 4)
    assert plan == [(0, 4, 1), (4, 8, 5), (8, 10, 9)]
    assert sum(e - f for _, e, f in plan) == 7  # tokens 4 and 8 start a window, 0 is never scored


def test_max_windows_limits_scored_tokens():
    ids = torch.randint(0, 10, (100,), generator=torch.Generator().manual_seed(4))
    res = evaluate_perplexity(uniform_logits_fn(10), ids, window=20, max_windows=2, progress=False)
    assert res.n_tokens == 19 + 19


def test_errors_name_the_problem():
    ids = torch.arange(10)
    with pytest.raises(ConfigError, match="stride"):
        evaluate_perplexity(uniform_logits_fn(10), ids, window=4, stride=5, progress=False)
    with pytest.raises(ConfigError, match="expected"):
        evaluate_perplexity(lambda x: torch.zeros(1, 3, 10), ids, window=4, progress=False)
    with pytest.raises(ConfigError, match="window"):
        evaluate_perplexity(uniform_logits_fn(10), ids, window=1, progress=False)
