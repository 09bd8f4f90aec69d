"""Tokenizers behind one small interface: ``encode(str) -> list[int]``, ``decode(list[int]) -> str``,
``vocab_size``.

`ByteTokenizer` is the tokenizer of the embedded default model: token id = UTF-8 byte value, so the
vocabulary is exactly 256 ids (0..255) and there are NO special tokens (no BOS/EOS/pad). Documents
are separated in the training stream by a blank line (bytes ``\\n\\n``), not by a special id. Every
string round-trips exactly; a byte sequence that is not valid UTF-8 decodes with U+FFFD.

`HFTokenizerAdapter` wraps a Hugging Face tokenizer to the same interface.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from testbed.errors import ConfigError

#: File written beside the Hugging Face files of a checkpoint that uses `ByteTokenizer`.
TOKENIZER_FILENAME = "testbed_tokenizer.json"
_FORMAT = "testbed-byte-tokenizer"
_FORMAT_VERSION = 1


@runtime_checkable
class TextTokenizer(Protocol):
    """What the rest of the testbed needs from a tokenizer."""

    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Text -> token ids."""

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text."""


class ByteTokenizer:
    """Byte-level tokenizer: ids are the UTF-8 bytes of the text (vocabulary 256, no specials)."""

    vocab_size: int = 256

    def encode(self, text: str) -> list[int]:
        """Return the UTF-8 bytes of `text` as a list of ints in 0..255."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of byte ids (ints 0..255); invalid UTF-8 becomes U+FFFD.

        Raises ConfigError if an id is outside 0..255 (e.g. ids from another tokenizer)."""
        values = [int(i) for i in ids]
        bad = [i for i in values if not 0 <= i < 256]
        if bad:
            raise ConfigError(f"ByteTokenizer.decode: ids must be in 0..255, got {bad[:5]}; "
                              "these ids come from a different vocabulary")
        return bytes(values).decode("utf-8", errors="replace")

    def save(self, directory: str | Path) -> Path:
        """Write `testbed_tokenizer.json` into `directory` (created if missing); return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILENAME
        path.write_text(json.dumps({"format": _FORMAT, "version": _FORMAT_VERSION,
                                    "vocab_size": self.vocab_size, "special_tokens": {}},
                                   indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ByteTokenizer":
        """Read `testbed_tokenizer.json` from `directory`.

        Raises ConfigError if the file is missing or describes another tokenizer."""
        path = Path(directory) / TOKENIZER_FILENAME
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} not found; this checkpoint has no testbed byte tokenizer") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); delete the checkpoint to retrain") from None
        if meta.get("format") != _FORMAT or meta.get("vocab_size") != cls.vocab_size:
            raise ConfigError(f"{path}: expected format {_FORMAT!r} with vocab_size 256, got "
                              f"format={meta.get('format')!r} vocab_size={meta.get('vocab_size')!r}")
        if meta.get("version") != _FORMAT_VERSION:
            raise ConfigError(f"{path}: tokenizer file version {meta.get('version')!r} is not "
                              f"supported (this testbed reads version {_FORMAT_VERSION})")
        return cls()

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"


class HFTokenizerAdapter:
    """A Hugging Face tokenizer seen through the `TextTokenizer` interface.

    `encode` adds no special tokens (so perplexity is measured on the text alone); `vocab_size`
    is ``len(tokenizer)`` (base vocabulary plus added tokens)."""

    def __init__(self, hf_tokenizer: Any):
        self.hf_tokenizer = hf_tokenizer
        self.vocab_size = len(hf_tokenizer)

    def encode(self, text: str) -> list[int]:
        """Text -> token ids, without BOS/EOS."""
        return list(self.hf_tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text (special tokens kept as text)."""
        return self.hf_tokenizer.decode([int(i) for i in ids])

    def __repr__(self) -> str:
        return f"HFTokenizerAdapter({type(self.hf_tokenizer).__name__}, vocab_size={self.vocab_size})"
