"""Integrity of checkpoint directories: a sha256 manifest written when the weights are saved and
checked before they are used.

`write_manifest(dir)` records the size and SHA-256 of ``config.json``, every ``*.safetensors``
file and the safetensors index (``weights_manifest.json``). `verify_checkpoint(dir, rebuild)`
checks, before any weight is read into a model: every safetensors file is as long as its own
header says (a truncated file is caught even without a manifest), and, when a manifest is there,
every listed file exists with the recorded size and hash and no unlisted weights file was added.
A failure raises `WeightsIntegrityError` naming the file and the command that rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from testbed.errors import ConfigError

MANIFEST_FILENAME = "weights_manifest.json"
_FORMAT = 1


class WeightsIntegrityError(ConfigError):
    """A checkpoint file is truncated, altered or missing (its hash or size is not the one
    recorded when it was saved)."""


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The files whose bytes define a checkpoint: config.json, the safetensors index if any,
    every ``*.safetensors`` (sorted)."""
    d = Path(directory)
    files = [d / "config.json", *sorted(d.glob("*.safetensors"))]
    index = d / "model.safetensors.index.json"
    return files + ([index] if index.is_file() else [])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_entry(data: bytes) -> dict:
    """The manifest entry (size in bytes, SHA-256 hex) of a file's contents ``data``."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_manifest(directory: str | Path) -> dict[str, dict]:
    """The ``files`` entries of ``directory``'s manifest ({} when there is none or it is
    unreadable; `verify_checkpoint` says why)."""
    try:
        files = json.loads((Path(directory) / MANIFEST_FILENAME).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def write_manifest(directory: str | Path) -> Path:
    """Record size (bytes) and SHA-256 of every `checkpoint_files` entry in
    ``directory/weights_manifest.json`` (written atomically); returns its path."""
    d = Path(directory)
    entries = {f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)}
               for f in checkpoint_files(d) if f.is_file()}
    path = d / MANIFEST_FILENAME
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"format": _FORMAT, "files": entries}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def has_manifest(directory: str | Path) -> bool:
    """True if ``directory`` has a weights manifest."""
    return (Path(directory) / MANIFEST_FILENAME).is_file()


def safetensors_problem(path: str | Path) -> str | None:
    """Why safetensors file ``path`` cannot be whole (None if its length matches its header):
    the 8-byte header length, a JSON header, and the largest tensor end offset must fit the file
    exactly."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            return f"{size} bytes, shorter than a safetensors header"
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            return f"header says {n} header bytes, the file has only {size}"
        try:
            header = json.loads(fh.read(n))
            end = max([int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"] or [0])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "its header is not valid safetensors JSON"
    if 8 + n + end != size:
        return f"{size} bytes, its header describes {8 + n + end} (truncated or padded)"
    return None


def verify_checkpoint(directory: str | Path, rebuild: str) -> None:
    """Check ``directory`` before its weights are used (see module docstring); raise
    `WeightsIntegrityError` naming the file and ``rebuild`` (the command or step that makes a
    good copy) on any mismatch."""
    d = Path(directory)
    fix = f"; rebuild it with `{rebuild}`" if rebuild.startswith("testbed ") else f"; {rebuild}"
    for f in sorted(d.glob("*.safetensors")):
        problem = safetensors_problem(f)
        if problem is not None:
            raise WeightsIntegrityError(f"weights file {f} is damaged: {problem}{fix}")
    path = d / MANIFEST_FILENAME
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("format") != _FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise WeightsIntegrityError(f"{path} is unreadable ({exc}){fix}") from None
    listed = set(files)
    for f in checkpoint_files(d):
        if f.name not in listed:
            raise WeightsIntegrityError(f"{f} is not in {path} (added after the checkpoint was "
                                        f"saved){fix}")
    for name, entry in files.items():
        f = d / name
        if not f.is_file():
            raise WeightsIntegrityError(f"{f} is missing (listed in {path}){fix}")
        size = f.stat().st_size
        if size != entry.get("bytes"):
            raise WeightsIntegrityError(f"{f} has {size} bytes, {entry.get('bytes')} when it was "
                                        f"saved (truncated or replaced){fix}")
        if _sha256(f) != entry.get("sha256"):
            raise WeightsIntegrityError(f"{f} does not match the SHA-256 recorded when it was "
                                        f"saved (altered or corrupted){fix}")
