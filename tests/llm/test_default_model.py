"""The embedded default model: recipe, reproducible training, the cache, and its accuracy."""
import json
import math
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

import testbed.llm.default_model as dm
from testbed.errors import ConfigError
from testbed.llm.default_model import (DEFAULT_RECIPE, TrainingRecipe, default_cache_root,
                                       default_model_dir, ensure_default_model, is_complete,
                                       read_training_report, train_default_model)
from testbed.llm.loading import load_model_and_tokenizer
from testbed.llm.perplexity import evaluate_perplexity, hf_logits_fn
from testbed.llm.textdata import heldout_tokens, train_tokens

TINY = TrainingRecipe(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                      intermediate_size=64, seq_len=32, batch_size=4, steps=5, warmup_steps=2,
                      eval_window=512)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = train_default_model(TINY, tmp_path / "a", progress=False)
    b = train_default_model(TINY, tmp_path / "b", progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["heldout_perplexity"] == b["heldout_perplexity"]
    train_default_model(TrainingRecipe(**{**TINY.__dict__, "seed": 1}), tmp_path / "c",
                        progress=False)
    wc = _weights(tmp_path / "c")
    assert not torch.equal(wa["model.embed_tokens.weight"], wc["model.embed_tokens.weight"])


def test_checkpoint_is_self_describing(tmp_path):
    report = train_default_model(TINY, tmp_path, progress=False)
    assert json.loads((tmp_path / "training_report.json").read_text()) == report
    assert report["recipe_hash"] == TINY.fingerprint() and report["steps"] == 5
    model, tok = load_model_and_tokenizer(tmp_path, progress=False)
    assert tok.vocab_size == model.config.vocab_size == 256
    assert model.config.num_key_value_heads == 2 and model.config.eos_token_id is None
    # the reported held-out perplexity is what the saved model gives (rounding of save/load: none)
    res = evaluate_perplexity(hf_logits_fn(model), heldout_tokens(TINY.seed), window=512,
                              progress=False)
    assert res.ppl == pytest.approx(report["heldout_perplexity"], rel=1e-6)


def test_cache_trains_once_even_with_concurrent_callers(tmp_path, monkeypatch):
    calls = []
    real = dm.train_default_model

    def counting(recipe, out_dir, progress=True):
        calls.append(out_dir)
        return real(recipe, out_dir, progress=progress)

    monkeypatch.setattr(dm, "train_default_model", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        ensure_default_model(False, recipe=TINY, cache_root=tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and is_complete(results[0])
    assert results[0] == default_model_dir(TINY, tmp_path)
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []
    # force retrains in place; the directory stays complete
    ensure_default_model(False, recipe=TINY, cache_root=tmp_path, force=True)
    assert len(calls) == 2 and is_complete(results[0])


def test_failed_training_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    def broken(recipe, out_dir, progress=True):
        out_dir.joinpath("config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(dm, "train_default_model", broken)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_model(False, recipe=TINY, cache_root=tmp_path)
    assert not default_model_dir(TINY, tmp_path).exists()
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]


def test_recipe_hash_changes_with_any_field():
    assert TINY.fingerprint() == TrainingRecipe(**TINY.__dict__).fingerprint()
    assert TINY.fingerprint() != TrainingRecipe(**{**TINY.__dict__, "lr": 1e-3}).fingerprint()
    assert default_model_dir(TINY, "/x") != default_model_dir(DEFAULT_RECIPE, "/x")


def test_cache_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path / "t"))
    assert default_cache_root() == tmp_path / "t"
    monkeypatch.delenv("TESTBED_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "x" / "aircomp-testbed"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert default_cache_root() == tmp_path / "h" / ".cache" / "aircomp-testbed"


def test_lr_schedule_warms_up_then_decays_to_floor():
    r = TrainingRecipe(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert r.lr_at(0) == pytest.approx(1e-4)
    assert r.lr_at(9) == pytest.approx(1e-3)
    assert r.lr_at(10) == pytest.approx(1e-3)
    assert r.lr_at(55) == pytest.approx(0.55e-3)  # cosine midpoint between peak and floor
    assert r.lr_at(100) == pytest.approx(1e-4)
    lrs = [r.lr_at(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_bad_recipes_are_rejected():
    with pytest.raises(ConfigError, match="multiple of num_kv_heads"):
        TrainingRecipe(num_heads=8, num_kv_heads=3)
    with pytest.raises(ConfigError, match="multiple of"):
        TrainingRecipe(hidden_size=100, num_heads=8)
    with pytest.raises(ConfigError, match="max_positions"):
        TrainingRecipe(seq_len=1024)


def test_read_report_of_missing_checkpoint_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="testbed train-default"):
        read_training_report(tmp_path)


@pytest.mark.slow
def test_trained_default_model_is_far_better_than_uniform_and_cached():
    """Trains the real default model on first use (~1.5-3 min on 2 cores), else reuses the cache.
    Measured held-out perplexity: 6.29-6.54 per byte depending on the CPU's torch kernels
    (README, "What reproduces"); uniform guessing: 256, unigram: 24.4, bigram: 11.2. Bands only."""
    path = ensure_default_model(progress=False)
    report = read_training_report(path)
    assert report["recipe_hash"] == DEFAULT_RECIPE.fingerprint()
    assert report["heldout_perplexity"] < 10.0
    assert report["train_loss_final"] < report["train_loss_first"] - 2.0
    t0 = time.perf_counter()
    again = ensure_default_model(progress=False)
    assert again == path and time.perf_counter() - t0 < 1.0  # cached: no retraining
    model, _ = load_model_and_tokenizer("default", progress=False)
    res = evaluate_perplexity(hf_logits_fn(model), heldout_tokens(DEFAULT_RECIPE.seed),
                              window=DEFAULT_RECIPE.eval_window, max_windows=40, progress=False)
    assert res.ppl < 10.0
    # it must clearly beat a bigram byte model (add-0.1 smoothed counts of the training bytes)
    train, held = train_tokens(DEFAULT_RECIPE.seed), heldout_tokens(DEFAULT_RECIPE.seed)
    counts = torch.full((256, 256), 0.1, dtype=torch.float64)
    counts.index_put_((train[:-1], train[1:]), torch.ones(train.numel() - 1, dtype=torch.float64),
                      accumulate=True)
    bigram_logp = (counts / counts.sum(1, keepdim=True)).log()
    bigram_ppl = math.exp(-float(bigram_logp[held[:-1], held[1:]].mean()))  # measured: ~11.2
    assert report["heldout_perplexity"] < 0.75 * bigram_ppl


@pytest.mark.slow
def test_train_default_command_reports_the_cached_model(capsys):
    from testbed.cli import main

    ensure_default_model(progress=False)
    assert main(["train-default", "--no-progress"]) == 0
    out = capsys.readouterr().out
    ppl = read_training_report(default_model_dir())["heldout_perplexity"]
    assert "reused cached model" in out and f"{ppl:.3f}" in out
    assert str(default_model_dir()) in out
