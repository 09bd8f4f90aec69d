"""Read named weight tensors, or just a block of rows/columns of them, from where they live.

Two sources with one interface (``has(name)``, ``get(name, rows=None, cols=None)``):
`StateDictSource` (an in-memory state dict, e.g. of a loaded HF model) and `SafetensorsSource`
(a ``save_pretrained`` directory, single file or sharded with an index). The safetensors source
reads only the requested block via ``safe_open(...).get_slice(name)[...]``, so a node process
never materializes the full weights. Returned tensors own their memory (no views into others).

A *node slice* (`testbed.llm.node_slice`) is a small checkpoint directory of this format whose
tensors are blocks of the original ones: its safetensors metadata ``SLICE_METADATA_KEY`` maps
each name to the block's first (row, column) and the full tensor's shape, and `SafetensorsSource`
serves requests in full-tensor coordinates from those blocks (a request outside the stored
block is refused), so the same loaders read a full checkpoint and a node's slice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Protocol

import torch
from safetensors import safe_open

from testbed.errors import ConfigError

#: safetensors metadata key of a node slice: JSON {name: {"start": [first_row, first_col],
#: "full_shape": [rows, cols]}} (1-D tensors: one entry each).
SLICE_METADATA_KEY = "testbed_slice_offsets"


class TensorSource(Protocol):
    """Where a node's weights come from."""

    def has(self, name: str) -> bool:
        """Whether a tensor called ``name`` exists."""

    def get(self, name: str, rows: range | None = None, cols: range | None = None) -> torch.Tensor:
        """The tensor ``name`` (or its ``rows`` x ``cols`` block; ranges are contiguous)."""


def _as_slice(r: range | None) -> slice:
    return slice(None) if r is None else slice(r.start, r.stop)


class StateDictSource:
    """Tensors from a ``{name: tensor}`` mapping; blocks are copied (``clone``)."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor]):
        self.state_dict = state_dict

    def has(self, name: str) -> bool:
        """Whether ``name`` is in the state dict."""
        return name in self.state_dict

    def get(self, name, rows=None, cols=None):
        """Copy of ``state_dict[name][rows, cols]`` (1-D tensors take ``rows`` only)."""
        t = self.state_dict[name].detach()
        t = t[_as_slice(rows)] if t.dim() == 1 else t[_as_slice(rows), _as_slice(cols)]
        return t.clone().contiguous()


class SafetensorsSource:
    """Tensors from a Hugging Face checkpoint directory (``model.safetensors`` or a sharded
    ``model.safetensors.index.json``), read block by block."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        index = directory / "model.safetensors.index.json"
        single = directory / "model.safetensors"
        self.offsets: dict[str, dict] = {}
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = {name: directory / f for name, f in weight_map.items()}
        elif single.is_file():
            with safe_open(str(single), framework="pt") as f:
                self.files = {name: single for name in f.keys()}
                self.offsets = _slice_offsets(single, f.metadata())
        else:
            raise ConfigError(f"{directory} has no model.safetensors (or index); save the model "
                              "with save_pretrained(..., safe_serialization=True)")
        self.directory = directory

    def has(self, name: str) -> bool:
        """Whether the checkpoint holds ``name``."""
        return name in self.files

    def shape(self, name: str) -> list[int]:
        """The full shape of tensor ``name`` (a node slice: of the tensor it was cut from)."""
        if name in self.offsets:
            return list(self.offsets[name]["full_shape"])
        with safe_open(str(self.files[name]), framework="pt") as f:
            return list(f.get_slice(name).get_shape())

    def get(self, name, rows=None, cols=None):
        """Read ``name[rows, cols]`` from disk without loading the rest of the tensor (in a
        node slice: from the stored block, ``rows``/``cols`` in full-tensor coordinates)."""
        if name not in self.files:
            raise ConfigError(f"{self.directory}: tensor {name!r} not in the checkpoint")
        with safe_open(str(self.files[name]), framework="pt") as f:
            sl = f.get_slice(name)
            shape = sl.get_shape()
            if name in self.offsets:
                rows, cols = self._local(name, shape, rows, cols)
            if len(shape) == 1:
                t = sl[_as_slice(rows)]
            else:
                t = sl[_as_slice(rows), _as_slice(cols)]
        return t.contiguous()

    def _local(self, name: str, shape, rows, cols) -> tuple[range, range | None]:
        """Map a full-tensor request onto the stored block of a node slice."""
        entry = self.offsets[name]
        wanted = []
        for axis, r in enumerate((rows, cols)[:len(shape)]):
            lo, n = entry["start"][axis], shape[axis]
            r = range(0, entry["full_shape"][axis]) if r is None else r
            if len(r) and (r.start < lo or r.stop > lo + n):
                raise ConfigError(f"{self.directory}: {name!r} holds [{lo}, {lo + n}) on axis "
                                  f"{axis}, [{r.start}, {r.stop}) was asked for; this slice was "
                                  "cut for another assignment")
            wanted.append(range(r.start - lo, r.stop - lo) if len(r) else range(0, 0))
        return wanted[0], (wanted[1] if len(wanted) > 1 else None)


def _slice_offsets(path: Path, metadata: dict | None) -> dict[str, dict]:
    """The blocks of a node slice's tensors, {name: {"start": [row, col], "full_shape": [...]}}
    ({} for an ordinary checkpoint)."""
    raw = (metadata or {}).get(SLICE_METADATA_KEY)
    if raw is None:
        return {}
    try:
        offsets = json.loads(raw)
        for v in offsets.values():
            if (set(v) != {"start", "full_shape"} or len(v["start"]) != len(v["full_shape"])
                    or not all(isinstance(x, int) and x >= 0
                               for x in (*v["start"], *v["full_shape"]))):
                raise ValueError("entries must be {start: [...], full_shape: [...]}")
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"{path}: bad {SLICE_METADATA_KEY} metadata ({exc}); fetch the slice "
                          "again (delete it from the cache)") from None
    return offsets


def load_config(directory: str | Path):
    """The HF config of a local checkpoint directory (never downloads).

    Raises ConfigError if the directory or its config.json is missing."""
    from transformers import AutoConfig

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        what = "does not exist" if not directory.exists() else "has no config.json"
        raise ConfigError(f"model directory {directory} {what}; pass a directory written by "
                          "save_pretrained (config.json + model.safetensors)")
    return AutoConfig.from_pretrained(str(directory), local_files_only=True)
