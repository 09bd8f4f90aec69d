"""The text corpus of the default model: the standard library's documentation topics.

Source: CPython 3.11.7's ``pydoc_data.topics.topics`` (a dict topic name -> text, 79 topics /
~0.48 MB), vendored as ``testbed/llm/data/pydoc_topics.json.gz`` (`tools/vendor_corpus.py`;
Python Software Foundation License). Every Python's own copy differs a little (3.11.2's trains a
model with held-out perplexity 4.92 instead of 6.38, on a different split), so the default model
reads the vendored copy, never the interpreter's. `corpus_fingerprint` enters the training
recipe's hash.

Split (by topic, never inside a topic): the topic names are sorted, shuffled with
``random.Random(seed)``, and walked in that order; a topic goes to held-out if it still fits under
``heldout_fraction`` x total bytes, otherwise to train. So held-out is a little under the target
(about 10 % of the bytes by default), train and held-out are disjoint and cover every topic, and the
same seed always gives the same split.

Encoding: byte level (see `testbed.llm.tokenizer.ByteTokenizer`): the topics of a split are joined
in sorted-name order with the separator ``\\n\\n`` and encoded as UTF-8; ids are 0..255.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from testbed.errors import ConfigError

#: Bytes put between two topics in a token stream.
SEPARATOR = "\n\n"


#: The vendored corpus (gzip JSON: {"source": ..., "topics": {name: text}}).
CORPUS_FILE = Path(__file__).resolve().parent / "data" / "pydoc_topics.json.gz"


@lru_cache(maxsize=1)
def _topics_cached() -> tuple[tuple[str, str], ...]:
    try:
        with gzip.open(CORPUS_FILE, "rt", encoding="utf-8") as f:
            topics = json.load(f)["topics"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"the default model's corpus {CORPUS_FILE} is missing or damaged "
                          f"({exc}); restore it from the repository (git checkout -- "
                          "testbed/llm/data) or rewrite it with tools/vendor_corpus.py") from None
    return tuple(sorted(topics.items()))


def corpus_topics() -> dict[str, str]:
    """Return the corpus as {topic name: text}, names in sorted order."""
    return dict(_topics_cached())


def corpus_fingerprint() -> str:
    """SHA-256 (hex) of the corpus (names and texts); changes only with the vendored file."""
    h = hashlib.sha256()
    for name, text in _topics_cached():
        h.update(name.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class TextSplit:
    """A train/held-out split of the corpus by topic (names sorted within each part)."""

    train_topics: tuple[str, ...]
    heldout_topics: tuple[str, ...]
    seed: int
    heldout_fraction: float

    def train_text(self) -> str:
        """The training topics joined with `SEPARATOR`."""
        return _join(self.train_topics)

    def heldout_text(self) -> str:
        """The held-out topics joined with `SEPARATOR`."""
        return _join(self.heldout_topics)


def _join(names: tuple[str, ...]) -> str:
    topics = corpus_topics()
    return SEPARATOR.join(topics[name] for name in names)


def split_topics(seed: int = 0, heldout_fraction: float = 0.1) -> TextSplit:
    """Split the corpus into train/held-out by topic, deterministically under `seed`.

    `heldout_fraction` is the target share of held-out UTF-8 bytes, in (0, 1); see the module
    docstring for the rule. Raises ConfigError if the fraction is out of range or so small that
    no topic fits."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ConfigError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    topics = corpus_topics()
    sizes = {name: len(text.encode("utf-8")) for name, text in topics.items()}
    budget = heldout_fraction * sum(sizes.values())
    order = sorted(topics)
    random.Random(seed).shuffle(order)
    heldout, used = [], 0
    for name in order:
        if used + sizes[name] <= budget:
            heldout.append(name)
            used += sizes[name]
    if not heldout:
        raise ConfigError(f"heldout_fraction={heldout_fraction} is smaller than every topic; "
                          "raise it (0.1 is the default)")
    held = set(heldout)
    train = tuple(name for name in sorted(topics) if name not in held)
    return TextSplit(train_topics=train, heldout_topics=tuple(sorted(heldout)), seed=seed,
                     heldout_fraction=heldout_fraction)


def encode_bytes(text: str) -> torch.Tensor:
    """UTF-8 bytes of `text` as a 1-D int64 tensor of ids 0..255, shape (n_bytes,)."""
    data = text.encode("utf-8")
    if not data:
        return torch.zeros(0, dtype=torch.int64)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64)


def train_tokens(seed: int = 0, heldout_fraction: float = 0.1) -> torch.Tensor:
    """Byte ids of the training split, 1-D int64 tensor (n_tokens,)."""
    return encode_bytes(split_topics(seed, heldout_fraction).train_text())


def heldout_tokens(seed: int = 0, heldout_fraction: float = 0.1) -> torch.Tensor:
    """Byte ids of the held-out split, 1-D int64 tensor (n_tokens,)."""
    return encode_bytes(split_topics(seed, heldout_fraction).heldout_text())


def cut_windows(tokens: torch.Tensor, window: int, stride: int | None = None) -> torch.Tensor:
    """Cut a 1-D token tensor into windows of `window` tokens starting every `stride` tokens
    (default `stride = window`: non-overlapping). A tail shorter than `window` is dropped.

    Returns shape (n_windows, window), a copy. Raises ConfigError for non-positive sizes or a
    token stream shorter than one window."""
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise ConfigError(f"window and stride must be >= 1 token, got window={window}, stride={stride}")
    if tokens.dim() != 1:
        raise ConfigError(f"tokens must be 1-D (n_tokens,), got shape {tuple(tokens.shape)}")
    if tokens.numel() < window:
        raise ConfigError(f"{tokens.numel()} tokens are fewer than one window of {window}; "
                          "use a smaller window")
    return tokens.unfold(0, window, stride).clone()


def random_batch(tokens: torch.Tensor, batch_size: int, seq_len: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Draw `batch_size` windows of `seq_len` tokens at uniformly random offsets from `generator`.

    Returns shape (batch_size, seq_len) int64. Deterministic given the generator's state."""
    if tokens.numel() <= seq_len:
        raise ConfigError(f"{tokens.numel()} tokens cannot fill a window of {seq_len}")
    starts = torch.randint(0, tokens.numel() - seq_len + 1, (batch_size,), generator=generator)
    idx = starts[:, None] + torch.arange(seq_len)[None, :]
    return tokens[idx]
