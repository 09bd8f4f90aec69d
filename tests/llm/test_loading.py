"""Loading local checkpoints: round trip, tokenizers, and the errors a user sees."""
import json

import pytest
import torch
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM)

from testbed.errors import ConfigError
from testbed.llm.loading import checkpoint_model_type, load_model_and_tokenizer, load_tokenizer
from testbed.llm.tokenizer import ByteTokenizer, HFTokenizerAdapter

TINY = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def _save_tiny_llama(path, seed=0):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=False)).eval()
    model.save_pretrained(path)
    return model


def test_tiny_llama_round_trips_weights_and_logits(tmp_path):
    original = _save_tiny_llama(tmp_path)
    ByteTokenizer().save(tmp_path)
    model, tok = load_model_and_tokenizer(tmp_path, progress=False)
    assert isinstance(tok, ByteTokenizer)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ref, got = original.state_dict(), model.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    ids = torch.tensor([tok.encode("def f(x): return x")])
    with torch.no_grad():
        assert torch.equal(original(ids).logits, model(ids).logits)


def test_hf_tokenizer_is_used_when_no_byte_tokenizer_file(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "air": 3}
    raw = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]").save_pretrained(tmp_path)
    _save_tiny_llama(tmp_path)
    _, tok = load_model_and_tokenizer(tmp_path, progress=False)
    assert isinstance(tok, HFTokenizerAdapter)
    assert tok.encode("hello air zzz") == [1, 3, 0]
    assert tok.decode([2, 1]) == "world hello"
    assert tok.vocab_size == 4


def test_qwen2_checkpoint_is_accepted(tmp_path):
    torch.manual_seed(1)
    Qwen2ForCausalLM(Qwen2Config(**TINY)).save_pretrained(tmp_path)
    ByteTokenizer().save(tmp_path)
    model, _ = load_model_and_tokenizer(str(tmp_path), progress=False)
    assert model.config.model_type == "qwen2"


def test_unsupported_architecture_is_named_and_can_be_allowed(tmp_path):
    torch.manual_seed(2)
    GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=32, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(tmp_path)
    ByteTokenizer().save(tmp_path)
    with pytest.raises(ConfigError, match=r"'gpt2'.*llama, qwen2, mistral"):
        load_model_and_tokenizer(tmp_path, progress=False)
    model, _ = load_model_and_tokenizer(tmp_path, require_shardable=False, progress=False)
    assert model.config.model_type == "gpt2"


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*nothing is downloaded"):
        load_model_and_tokenizer(tmp_path / "nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_model_and_tokenizer("meta-llama/Llama-3.2-1B")  # a hub name is not fetched


def test_file_and_directory_without_config_are_clear_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        load_model_and_tokenizer(tmp_path / "weights.bin")
    with pytest.raises(ConfigError, match="no config.json"):
        load_model_and_tokenizer(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        checkpoint_model_type(tmp_path)


def test_config_without_weights_is_a_clear_error(tmp_path):
    LlamaConfig(**TINY).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama"
    with pytest.raises(ConfigError, match="cannot load a causal LM"):
        load_model_and_tokenizer(tmp_path, progress=False)


def test_checkpoint_without_any_tokenizer_is_a_clear_error(tmp_path):
    _save_tiny_llama(tmp_path)
    with pytest.raises(ConfigError, match="no tokenizer"):
        load_tokenizer(tmp_path)
