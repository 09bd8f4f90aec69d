"""One node's slice of a checkpoint as a small checkpoint directory of its own, and its cache.

The controller, which holds the checkpoint, cuts node ``index``'s slice for ``ratios``
(`cut_node_slice`): it runs the very loaders a node runs (`NodeShard.from_source`,
`ReplicatedPart`) on a recording source, so the slice holds exactly the blocks the node will
ask for -- its Q/K/V, o_proj, MLP blocks and the replicated part -- stored as a
``model.safetensors`` whose metadata places each block in its full tensor (see
`testbed.llm.checkpoint_slices`), plus the checkpoint's ``config.json``. A node writes the files
into its cache (`store_slice`: received bytes checked against the offered SHA-256, the weights
manifest of `testbed.llm.manifest` written, atomic rename) and loads them with
`testbed.llm.sharding.shard_checkpoint` like any checkpoint. A cached slice is verified against
its manifest and the controller's offer before every use (`check_slice`).

Cache layout: ``<cache root>/slices/<slice_key>/`` where the key hashes the checkpoint
fingerprint, the ratios and the node index.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import torch

from testbed.llm.checkpoint_slices import SLICE_METADATA_KEY, SafetensorsSource, load_config
from testbed.llm.manifest import (WeightsIntegrityError, manifest_entry, read_manifest,
                                  verify_checkpoint, write_manifest)

#: the files of a node slice, in the order they travel
SLICE_FILES = ("config.json", "model.safetensors")


class _RecordingSource:
    """A `TensorSource` that keeps every block it hands out and where it sits."""

    def __init__(self, inner: SafetensorsSource):
        self.inner = inner
        self.blocks: dict[str, torch.Tensor] = {}
        self.offsets: dict[str, dict] = {}

    def has(self, name: str) -> bool:
        return self.inner.has(name)

    def get(self, name, rows=None, cols=None):
        if name in self.blocks:
            raise ValueError(f"{name!r} was read twice; a node slice holds one block per tensor")
        t = self.inner.get(name, rows, cols)
        full = self.inner.shape(name)
        starts = [0 if r is None else r.start for r in (rows, cols)[:len(full)]]
        self.blocks[name] = t.contiguous()
        self.offsets[name] = {"start": starts, "full_shape": full}
        return t


def cut_node_slice(directory: str | Path, ratios: Sequence[float], index: int) -> dict[str, bytes]:
    """Node ``index``'s slice of the checkpoint in ``directory`` for the split ``ratios``, as
    file contents {name: bytes} (`SLICE_FILES`); weights keep the checkpoint's dtype."""
    from safetensors.torch import save

    from testbed.llm.node_shard import NodeShard
    from testbed.llm.plan import ArchSpec, make_plan
    from testbed.llm.replicated import ReplicatedPart
    config = load_config(directory)
    arch = ArchSpec.from_config(config)
    plan = make_plan(arch, ratios)
    if not 0 <= index < plan.world_size:
        raise ValueError(f"node index {index} out of range for {plan.world_size} ratios")
    rec = _RecordingSource(SafetensorsSource(directory))
    NodeShard.from_source(rec, arch, plan.nodes[index])
    ReplicatedPart(config, arch, rec)
    weights = save(rec.blocks, metadata={SLICE_METADATA_KEY: json.dumps(rec.offsets,
                                                                         sort_keys=True)})
    return {"config.json": (Path(directory) / "config.json").read_bytes(),
            "model.safetensors": weights}


def slice_manifest(files: Mapping[str, bytes]) -> dict[str, dict]:
    """{name: {bytes, sha256}} of a slice's files (the entries of its weights manifest)."""
    return {name: manifest_entry(data) for name, data in files.items()}


def slice_key(fingerprint: str, ratios: Sequence[float], index: int) -> str:
    """Cache key (hex) of node ``index``'s slice of checkpoint ``fingerprint`` for ``ratios``."""
    raw = json.dumps({"fingerprint": fingerprint, "ratios": [float(r) for r in ratios],
                      "index": int(index)}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def slice_dir(key: str, cache_root: str | Path | None = None) -> Path:
    """Where the slice with ``key`` lives in the cache (not created here)."""
    from testbed.llm.default_model import default_cache_root
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    return root / "slices" / key[:32]


def check_slice(directory: str | Path, expected: Mapping[str, dict]) -> None:
    """Verify a stored slice before use: every file whole and matching its manifest
    (`verify_checkpoint`) and the manifest equal to ``expected`` (the controller's offer).
    Raises `WeightsIntegrityError` naming what differs."""
    d = Path(directory)
    hint = "it is fetched from the controller again on the next assignment"
    verify_checkpoint(d, hint)
    got = read_manifest(d)
    if got != dict(expected):
        differ = sorted(n for n in set(got) | set(expected) if got.get(n) != expected.get(n))
        raise WeightsIntegrityError(f"cached slice {d}: file(s) {differ} differ from the "
                                    f"controller's offer; {hint}")


def store_slice(files: Mapping[str, bytes], expected: Mapping[str, dict],
                dest: str | Path) -> Path:
    """Write a received slice to ``dest`` atomically (temp dir + rename) after checking each
    file's size and SHA-256 against ``expected``; returns ``dest``. A slice already at ``dest``
    (another process won the race) is kept if it checks out."""
    dest = Path(dest)
    if set(files) != set(expected):
        raise WeightsIntegrityError(f"received files {sorted(files)}, offered {sorted(expected)}")
    for name, data in files.items():
        if manifest_entry(data) != dict(expected[name]):
            raise WeightsIntegrityError(f"received {name} ({len(data)} bytes) does not match the "
                                        "size/SHA-256 the controller offered; fetch it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        write_manifest(tmp)
        check_slice(tmp, expected)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            check_slice(dest, expected)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def discard_slice(directory: str | Path) -> None:
    """Remove a cached slice that failed its check (renamed away first, so a reader never sees
    half of it)."""
    d = Path(directory)
    if not d.exists():
        return
    trash = d.with_name(f"{d.name}.bad-{os.getpid()}")
    try:
        os.rename(d, trash)
    except OSError:
        trash = d
    shutil.rmtree(trash, ignore_errors=True)
