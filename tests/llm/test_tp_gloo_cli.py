"""`testbed tp-run`: argument handling and one end-to-end run over 2 processes."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from testbed.cli import main
from testbed.commands.tp_run import parse_ratios
from testbed.errors import ConfigError
from testbed.llm.sharding import shard_model


def test_parse_ratios():
    assert parse_ratios("0.5,0.3,0.2", None) == (0.5, 0.3, 0.2)
    assert parse_ratios(None, 4) == (0.25,) * 4
    assert parse_ratios("0.5,0.5", 2) == (0.5, 0.5)
    with pytest.raises(ConfigError, match="one ratio per process"):
        parse_ratios("0.5,0.5", 3)
    with pytest.raises(ConfigError, match="comma-separated numbers"):
        parse_ratios("half,half", None)


def test_bad_model_dir_is_reported(tmp_path, capsys):
    assert main(["tp-run", "--model", str(tmp_path / "nope"), "--prompt-ids", "1,2"]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_tp_run_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=50, vocab_size=64,
                                         max_position_embeddings=32)).eval()
    model.save_pretrained(tmp_path)
    code = main(["tp-run", "--world", "2", "--ratios", "0.6,0.4", "--model", str(tmp_path),
                 "--prompt-ids", "3,1,4,1,5", "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert code == 0
    expected = shard_model(model, (0.6, 0.4)).generate(torch.tensor([[3, 1, 4, 1, 5]]), 4)
    assert f"generated ids: {expected[0, 5:].tolist()}" in out
    assert "per-token latency" in out and "RSS MiB" in out and "kv groups" in out
