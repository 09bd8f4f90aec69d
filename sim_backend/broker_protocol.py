"""The channel broker's radio requests, checked before anything touches the air.

`parse_request(frames)` turns the frames of one request (identity already removed) into a
`RadioRequest` or raises `BadRequest` with a reason: the header must be strict JSON within
`testbed.strict_json.JsonLimits` (no NaN/Infinity, no 5000-digit integers, bounded nesting), an
object with a known ``op``, only the fields that op takes, each of its type (integers are
integers, not floats or booleans) and range, and a ``transmit`` payload whose length matches
its ``shape``. See `sim_backend.broker` for the ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from testbed.strict_json import JsonInputError, JsonLimits, clip, load_json

#: Ops a RemoteSimRadio may send, and the fields each takes (besides ``op`` and ``seq``).
OP_FIELDS = {
    "hello": {"node", "receiver"},
    "transmit": {"node", "at", "shape"},
    "tx_until": {"node", "until"},
    "receive": {"n", "at"},
    "now": {"node"},
    "tune": {"node", "receiver"},
    "info": set(),
}
RADIO_OPS = tuple(OP_FIELDS)

MAX_HEADER_BYTES = 4096
#: largest sample index / clock value a request may name (2**62: years at any sample rate)
MAX_SAMPLE = 2**62
#: most samples in one burst or receive window (rows x columns), complex64
MAX_WINDOW_SAMPLES = 2**24
MAX_NODE_INDEX = 2**16
JSON_LIMITS = JsonLimits(max_int_digits=20, max_number_chars=32, max_str_chars=64, max_depth=3)


class BadRequest(ValueError):
    """A radio request the broker refuses; ``seq`` is its sequence number when readable."""

    def __init__(self, reason: str, seq: int | None = None):
        super().__init__(reason)
        self.seq = seq


@dataclass(frozen=True)
class RadioRequest:
    """One checked request. Integers are samples (``at``, ``until``, ``n``) or indices."""

    op: str
    seq: int | None = None
    node: int | None = None
    receiver: bool = False
    at: int | None = None
    until: int | None = None
    n: int | None = None
    shape: tuple[int, int] | None = None
    payload: bytes | None = None


def _int(h: dict, key: str, lo: int, hi: int, seq, required: bool = True) -> int | None:
    value = h.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRequest(f"'{key}' must be an integer in [{lo}, {hi}], got {clip(value)}", seq)
    return value


def parse_request(frames: Sequence[bytes]) -> RadioRequest:
    """Check one request ``[header, payload?]``; raise `BadRequest` saying what is wrong."""
    if not 1 <= len(frames) <= 2:
        raise BadRequest(f"a request has a header and at most one payload frame, got "
                         f"{len(frames)} frames")
    if len(frames[0]) > MAX_HEADER_BYTES:
        raise BadRequest(f"header of {len(frames[0])} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        h: Any = load_json(frames[0], JSON_LIMITS, what="request")
    except JsonInputError as exc:
        raise BadRequest(exc.reason) from None
    if not isinstance(h, dict):
        raise BadRequest("the header must be a JSON object with 'op' and 'seq'")
    seq = h.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)
                            or not 0 <= seq < 2**63):
        raise BadRequest(f"'seq' must be a non-negative integer, got {clip(seq)}")
    op = h.get("op")
    if not isinstance(op, str) or op not in OP_FIELDS:
        raise BadRequest(f"unknown op {clip(op)}; one of {RADIO_OPS}", seq)
    extra = set(h) - OP_FIELDS[op] - {"op", "seq"}
    if extra:
        raise BadRequest(f"{op} takes no {sorted(extra)}", seq)
    receiver = h.get("receiver", False)
    if receiver is None:
        receiver = False
    if not isinstance(receiver, bool):
        raise BadRequest(f"'receiver' must be true or false, got {clip(receiver)}", seq)
    node = _int(h, "node", 0, MAX_NODE_INDEX, seq, required=op in ("transmit", "tx_until"))
    payload = frames[1] if len(frames) == 2 else None
    if (payload is not None) != (op == "transmit"):
        raise BadRequest(f"{op} {'needs' if op == 'transmit' else 'takes no'} payload frame",
                         seq)
    req = dict(op=op, seq=seq, node=node, receiver=receiver)
    if op == "transmit":
        shape = h.get("shape")
        if (not isinstance(shape, list) or len(shape) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                           for s in shape)
                or shape[0] * shape[1] > MAX_WINDOW_SAMPLES):
            raise BadRequest(f"'shape' must be [rows, cols] of positive integers with at most "
                             f"{MAX_WINDOW_SAMPLES} samples, got {clip(shape)}", seq)
        if len(payload) != 8 * shape[0] * shape[1]:
            raise BadRequest(f"payload of {len(payload)} bytes does not hold complex64 "
                             f"{tuple(shape)} ({8 * shape[0] * shape[1]} bytes)", seq)
        req.update(at=_int(h, "at", 0, MAX_SAMPLE, seq), shape=tuple(shape),
                   payload=bytes(payload))
    elif op == "tx_until":
        req.update(until=_int(h, "until", 0, MAX_SAMPLE, seq))
    elif op == "receive":
        req.update(n=_int(h, "n", 1, MAX_WINDOW_SAMPLES, seq),
                   at=_int(h, "at", 0, MAX_SAMPLE, seq))
    return RadioRequest(**req)
