"""`testbed experiment perplexity --quick`: the exact split reproduces the unsplit HF model's
perplexity; AirComp approaches it at high SNR and is worse at 0 dB."""
from __future__ import annotations

import json

import pytest

from testbed.cli import main


@pytest.mark.slow
def test_perplexity_quick(tmp_path):
    assert main(["experiment", "perplexity", "--quick", "--out", str(tmp_path)]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    assert (run_dir / "perplexity.png").stat().st_size > 10_000
    data = json.loads((run_dir / "results.json").read_text())["results"]
    from testbed.llm.loading import load_model_and_tokenizer
    from testbed.llm.perplexity import evaluate_perplexity, hf_logits_fn
    from testbed.llm.textdata import heldout_tokens

    model, _ = load_model_and_tokenizer("default", progress=False)
    oracle = evaluate_perplexity(hf_logits_fn(model), heldout_tokens(), window=data["window"],
                                 max_windows=data["windows"], progress=False)
    assert data["reference"]["exact"]["ppl"] == pytest.approx(oracle.ppl, rel=1e-4)
    assert data["reference"]["exact"]["n_tokens"] == oracle.n_tokens
    assert data["reference"]["digital"]["ppl"] == pytest.approx(oracle.ppl, rel=0.05)
    air = [r["ppl"] for r in data["vs_snr"]["aircomp"]]            # SNRs 0 and 30 dB
    assert air[0] > air[1]
    assert air[1] == pytest.approx(oracle.ppl, rel=0.03)
    for r in data["vs_snr"]["aircomp"]:
        assert r["mse_symbols"] == pytest.approx(r["mse_predicted"], rel=0.5)
