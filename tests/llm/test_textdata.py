"""The pydoc_data corpus split and byte encoding (the default model's data)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from testbed.errors import ConfigError
from testbed.llm.textdata import (SEPARATOR, corpus_topics, cut_windows, encode_bytes,
                                  heldout_tokens, random_batch, split_topics, train_tokens)
from testbed.llm.tokenizer import ByteTokenizer


def test_split_is_deterministic_under_seed_and_changes_with_it():
    assert split_topics(seed=0) == split_topics(seed=0)
    assert split_topics(seed=0).heldout_topics != split_topics(seed=1).heldout_topics


def test_split_is_disjoint_and_covers_every_topic():
    topics = corpus_topics()
    split = split_topics(seed=3)
    train, held = set(split.train_topics), set(split.heldout_topics)
    assert not train & held
    assert train | held == set(topics)


def test_heldout_is_about_the_requested_share_of_bytes():
    sizes = {k: len(v.encode()) for k, v in corpus_topics().items()}
    total = sum(sizes.values())
    for seed in range(5):
        held = sum(sizes[n] for n in split_topics(seed, 0.1).heldout_topics)
        assert 0.07 * total <= held <= 0.10 * total


def test_token_streams_are_the_utf8_bytes_of_the_joined_topics():
    topics = corpus_topics()
    split = split_topics(seed=0)
    expected = SEPARATOR.join(topics[n] for n in split.heldout_topics).encode("utf-8")
    held = heldout_tokens(seed=0)
    assert held.dtype == torch.int64
    assert bytes(held.tolist()) == expected
    assert train_tokens(seed=0).numel() + held.numel() == \
        sum(len(t.encode()) for t in topics.values()) + len(SEPARATOR) * (len(topics) - 2)


def test_cut_windows_non_overlapping_and_strided():
    tokens = torch.arange(10)
    assert cut_windows(tokens, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert cut_windows(tokens, 4, stride=3).tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    with pytest.raises(ConfigError, match="fewer than one window"):
        cut_windows(tokens, 11)


def test_random_batch_is_reproducible_and_made_of_contiguous_windows():
    tokens = torch.arange(1000)
    a = random_batch(tokens, 4, 16, torch.Generator().manual_seed(7))
    b = random_batch(tokens, 4, 16, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (4, 16)
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(4, 15, dtype=torch.int64))


def test_bad_heldout_fraction_is_rejected():
    with pytest.raises(ConfigError, match="heldout_fraction"):
        split_topics(0, 1.5)
    with pytest.raises(ConfigError, match="smaller than every topic"):
        split_topics(0, 1e-7)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_tokenizer_round_trips_any_unicode(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert ids == encode_bytes(text).tolist()


def test_byte_tokenizer_replaces_invalid_utf8_and_rejects_foreign_ids():
    tok = ByteTokenizer()
    assert tok.decode([0xFF, 0x41]) == "\ufffdA"
    with pytest.raises(ConfigError, match="0..255"):
        tok.decode([256])


def test_byte_tokenizer_file_round_trip_and_bad_file(tmp_path):
    ByteTokenizer().save(tmp_path)
    assert ByteTokenizer.load(tmp_path).vocab_size == 256
    (tmp_path / "testbed_tokenizer.json").write_text('{"format": "other", "vocab_size": 9}')
    with pytest.raises(ConfigError, match="expected format"):
        ByteTokenizer.load(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        ByteTokenizer.load(tmp_path / "missing")


#: SHA-256 of the vendored corpus (CPython 3.11.7's pydoc topics): the default model's data on
#: every Python. A change here retrains every cached model and moves every documented figure.
VENDORED_CORPUS_SHA256 = "6c7d68cee92383c2d38e91c095bc7f45b93d936d39b8d4c5fe1b718baf09dc63"


def test_the_corpus_is_the_vendored_one_whatever_the_python():
    from testbed.llm.textdata import corpus_fingerprint
    assert corpus_fingerprint() == VENDORED_CORPUS_SHA256


def test_the_vendored_corpus_is_cpython_3_11_7s_pydoc_topics():
    import platform

    from testbed.llm.textdata import corpus_topics
    if platform.python_implementation() != "CPython" or platform.python_version() != "3.11.7":
        pytest.skip(f"the oracle is CPython 3.11.7's own pydoc_data; this is "
                    f"{platform.python_implementation()} {platform.python_version()}")
    from pydoc_data.topics import topics
    assert corpus_topics() == dict(sorted(topics.items()))
