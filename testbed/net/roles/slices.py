"""Shards from the controller: the controller, which holds the checkpoint, sends each node that
registered without one (`NO_CHECKPOINT`) its slice before ASSIGNMENT.

Exchange per such node, node after node: SHARD_OFFER (checkpoint fingerprint, ratios, node
index, the slice's files with size and SHA-256) -> ACK ``need``; when needed, SHARD_CHUNK
requests of at most ``chunk_bytes`` each, in order, every one acknowledged; the ack of the last
says the slice is stored. The node's ASSIGNMENT ack reports the digest of the slice it loaded,
which the controller compares with what it offered (`BenchSession.assign`). The node caches slices by checkpoint fingerprint + ratios + index
(`testbed.llm.node_slice`), checks a cached one against the offer before use and fetches it
again when the check fails. A node that brings its own checkpoint registered with its
fingerprint, which the controller compared at registration; it gets no offer.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from testbed.errors import TestbedError
from testbed.llm.manifest import WeightsIntegrityError
from testbed.llm.node_slice import (check_slice, cut_node_slice, discard_slice, slice_dir,
                                    slice_key, slice_manifest, store_slice)
from testbed.net.schema import ShardChunk, ShardOffer, SliceFile

log = logging.getLogger(__name__)

#: bytes of slice data per SHARD_CHUNK
DEFAULT_CHUNK_BYTES = 4 * 2**20


class SliceServer:
    """Controller side: cuts node slices of ``model_dir`` (checkpoint ``fingerprint``) and sends
    them to the nodes that ask, one node at a time, so at most one slice is held in memory."""

    def __init__(self, model_dir: str | Path, fingerprint: str,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        self.model_dir = Path(model_dir)
        self.fingerprint = fingerprint
        self.chunk_bytes = int(chunk_bytes)
        self._last: tuple[tuple, dict[str, bytes]] | None = None

    def files(self, ratios: Sequence[float], index: int) -> dict[str, bytes]:
        """Node ``index``'s slice files for ``ratios`` (the last one cut is kept)."""
        key = (tuple(float(r) for r in ratios), int(index))
        if self._last is None or self._last[0] != key:
            self._last = None                  # drop the previous slice before cutting
            self._last = (key, cut_node_slice(self.model_dir, list(key[0]), key[1]))
        return self._last[1]

    def offer(self, ratios: Sequence[float], index: int) -> ShardOffer:
        """The SHARD_OFFER of node ``index``'s slice."""
        manifest = slice_manifest(self.files(ratios, index))
        return ShardOffer(model_fingerprint=self.fingerprint, ratios=[float(r) for r in ratios],
                          index=index, files={n: SliceFile(**e) for n, e in manifest.items()},
                          chunk_bytes=self.chunk_bytes)

    def chunks(self, ratios: Sequence[float], index: int) -> Iterator[ShardChunk]:
        """The SHARD_CHUNKs of node ``index``'s slice, file by file, in order (made as sent)."""
        for name, data in self.files(ratios, index).items():
            buf = np.frombuffer(data, dtype=np.uint8)
            for start in range(0, len(data), self.chunk_bytes):
                yield ShardChunk(file=name, offset=start,
                                 data=buf[start:start + self.chunk_bytes].copy())

    def deliver(self, ctl, indices: dict[str, int], ratios: Sequence[float],
                timeout_s: float = 60.0) -> dict[str, dict]:
        """Offer each node in ``indices`` (node id -> bench index) its slice and send it to
        those without a verified copy, node after node. Returns per node: source
        ("controller" or "cache"), bytes sent, chunks, the slice's digest (`slice_digest`), the
        node's cache path and why a cached copy was refused (if it was)."""
        info = {}
        for n, i in indices.items():
            offer = self.offer(ratios, i)
            reply = dict(getattr(ctl.request(n, offer, timeout_s=timeout_s), "info", {}))
            need = reply.pop("need", True)
            out = info[n] = {"source": "controller" if need else "cache", "bytes_sent": 0,
                             "chunks": 0, "sha256": slice_digest(offer), **reply}
            if not need:
                continue
            done: dict = {}
            for chunk in self.chunks(ratios, i):
                done = dict(getattr(ctl.request(n, chunk, timeout_s=timeout_s), "info", {}))
                out["bytes_sent"] += int(chunk.data.size)
                out["chunks"] += 1
            if not done.pop("stored", False):
                raise RuntimeError(f"{n} did not confirm its slice after the last chunk")
            out.update(done)
        self._last = None
        return info


def slice_digest(offer: ShardOffer) -> str:
    """One SHA-256 (hex) for an offered slice: over its files' names, sizes and hashes."""
    import hashlib
    import json
    files = {n: f.model_dump() for n, f in offer.files.items()}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


class SliceReceiver:
    """Node side: answers SHARD_OFFER from the cache or by receiving SHARD_CHUNKs, and hands the
    verified slice directory to the assignment. cache_root: the testbed cache (default
    ``$TESTBED_CACHE_DIR`` or ~/.cache/aircomp-testbed)."""

    def __init__(self, node_id: str, cache_root: str | Path | None = None):
        self.node_id = node_id
        self.cache_root = cache_root
        self.offer: ShardOffer | None = None
        self.expected: dict[str, dict] = {}
        self.dest: Path | None = None
        self.ready: Path | None = None
        self.parts: dict[str, bytearray] = {}
        self.stats: dict = {"source": None, "bytes_received": 0, "cache_rejected": None}

    def on_offer(self, msg: ShardOffer) -> dict:
        """Take an offer; returns the ACK info (``need``: send me the chunks)."""
        self.offer, self.ready, self.parts = msg, None, {}
        self.expected = {n: f.model_dump() for n, f in msg.files.items()}
        self.dest = slice_dir(slice_key(msg.model_fingerprint, msg.ratios, msg.index),
                              self.cache_root)
        if self.dest.exists():
            try:
                check_slice(self.dest, self.expected)
            except WeightsIntegrityError as exc:
                log.warning("%s: cached slice refused, fetching it again: %s", self.node_id, exc)
                self.stats["cache_rejected"] = str(exc)
                discard_slice(self.dest)
            else:
                self.ready = self.dest
                self.stats["source"] = "cache"
                return {"need": False, "path": str(self.dest)}
        self.parts = {n: bytearray() for n in self.expected}
        return {"need": True, "cache_rejected": self.stats["cache_rejected"]}

    def on_chunk(self, msg: ShardChunk) -> dict:
        """Append a chunk; after the last one store and verify the slice (ACK info ``stored``)."""
        if self.offer is None or msg.file not in self.parts:
            raise ValueError(f"slice chunk for {msg.file!r} without a matching SHARD_OFFER")
        buf = self.parts[msg.file]
        size = self.expected[msg.file]["bytes"]
        if msg.offset != len(buf) or len(buf) + msg.data.size > size:
            raise ValueError(f"slice chunk {msg.file}@{msg.offset} (+{msg.data.size} bytes) out "
                             f"of order: have {len(buf)} of {size} bytes")
        if msg.data.size > self.offer.chunk_bytes:
            raise ValueError(f"slice chunk of {msg.data.size} bytes exceeds the offered "
                             f"{self.offer.chunk_bytes}")
        buf += msg.data.tobytes()
        self.stats["bytes_received"] += int(msg.data.size)
        if any(len(self.parts[n]) < self.expected[n]["bytes"] for n in self.parts):
            return {"stored": False}
        try:
            store_slice({n: bytes(b) for n, b in self.parts.items()}, self.expected, self.dest)
        except OSError as exc:
            raise TestbedError(f"{self.node_id}: cannot write its slice to {self.dest} ({exc}); "
                               "set TESTBED_CACHE_DIR to a writable directory") from None
        self.parts = {}
        self.ready = self.dest
        self.stats["source"] = "controller"
        log.info("%s: slice stored at %s (%d bytes)", self.node_id, self.dest,
                 self.stats["bytes_received"])
        return {"stored": True, "path": str(self.dest)}

    def slice_for(self, fingerprint: str, ratios: Sequence[float], index: int) -> Path:
        """The slice directory for this assignment, verified again now (before use). Raises
        RuntimeError when no matching slice was offered and completed."""
        o = self.offer
        if (self.ready is None or o is None or o.model_fingerprint != fingerprint
                or o.index != index or len(o.ratios) != len(ratios)
                or not all(math.isclose(a, b, abs_tol=1e-12) for a, b in zip(o.ratios, ratios))):
            raise RuntimeError(f"{self.node_id} has no checkpoint (started without --model) and "
                               "no slice for this assignment arrived from the controller")
        check_slice(self.ready, self.expected)
        self.stats["sha256"] = slice_digest(o)
        return self.ready
