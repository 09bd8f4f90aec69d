"""Per-socket traffic accounting: how many messages of each type, and how many bytes, each
process sent and received on each socket of a run (results.json's ``traffic`` table).

Bytes are the sum of the ZMQ frame lengths of a message (header JSON + array frames), without
ZMQ's and TCP's own framing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class _Row:
    count: int = 0
    bytes: int = 0
    max_bytes: int = 0


class Traffic:
    """Thread-safe counters keyed by (socket, direction "in"|"out", message type)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], _Row] = {}
        self._lock = threading.Lock()

    def add(self, socket: str, direction: str, msg_type: str, n_bytes: int) -> None:
        """Count one message of ``n_bytes`` bytes."""
        with self._lock:
            row = self._rows.setdefault((socket, direction, msg_type), _Row())
            row.count += 1
            row.bytes += int(n_bytes)
            row.max_bytes = max(row.max_bytes, int(n_bytes))

    def snapshot(self) -> dict:
        """The counters now, for `since`."""
        with self._lock:
            return {k: (r.count, r.bytes) for k, r in self._rows.items()}

    def since(self, snapshot: dict) -> list[dict]:
        """Rows {socket, direction, type, count, bytes} counted after ``snapshot``."""
        with self._lock:
            rows = []
            for (s, d, t), r in sorted(self._rows.items()):
                c0, b0 = snapshot.get((s, d, t), (0, 0))
                if r.count > c0:
                    rows.append({"socket": s, "direction": d, "type": t, "count": r.count - c0,
                                 "bytes": r.bytes - b0})
            return rows

    def table(self) -> list[dict]:
        """Rows {socket, direction, type, count, bytes, max_bytes}, sorted (JSON-able)."""
        with self._lock:
            return [{"socket": s, "direction": d, "type": t, "count": r.count, "bytes": r.bytes,
                     "max_bytes": r.max_bytes} for (s, d, t), r in sorted(self._rows.items())]


def frames_bytes(frames) -> int:
    """Total length of ZMQ frames (bytes)."""
    return sum(len(f) for f in frames)
