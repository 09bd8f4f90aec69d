"""Strict JSON from the network: bounded integers, numbers, strings and nesting; no NaN.

`load_json(raw, limits)` parses UTF-8 bytes as standard JSON and refuses, with a
`JsonInputError` (kind ``bad_json`` or ``oversized``) and a reason, anything a peer could use to
crash or stall the reader: NaN/Infinity and numbers overflowing to infinity, integers of more
digits than ``limits.max_int_digits`` (Python's own int() raises ValueError past 4300 digits),
strings longer than ``limits.max_str_chars``, nesting deeper than ``limits.max_depth``.
`clip` quotes a received value in a message with bounded length. Used by the control-plane
codec (`testbed.net.codec`) and the channel broker (`sim_backend.broker_protocol`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class JsonInputError(ValueError):
    """Received JSON refused: ``kind`` "bad_json" or "oversized", ``reason`` says why."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


#: longest quotation of a received value inside a rejection reason, characters
QUOTE_CHARS = 80


@dataclass(frozen=True)
class JsonLimits:
    """Bounds on a JSON document from the network (all counts, not bytes).

    max_int_digits: digits of an integer literal (Python refuses > 4300 with a ValueError);
    max_number_chars: characters of a number literal with fraction or exponent;
    max_str_chars: characters of any string, object keys included;
    max_depth: nesting of arrays/objects (the top-level object is depth 1)."""

    max_int_digits: int = 40
    max_number_chars: int = 64
    max_str_chars: int = 65536
    max_depth: int = 32


DEFAULT_JSON_LIMITS = JsonLimits()


def clip(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` shortened to about ``limit`` characters (for messages quoting the wire)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}...({len(value)} chars)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def load_json(raw: bytes, limits: JsonLimits = DEFAULT_JSON_LIMITS, what: str = "header") -> Any:
    """Parse UTF-8 ``raw`` as strict JSON within ``limits``; raise `JsonInputError`.

    Kinds: ``bad_json`` (not UTF-8, not JSON, NaN/Infinity or a number overflowing to
    infinity, nesting deeper than ``limits.max_depth``), ``oversized`` (an integer, number or
    string longer than its limit)."""

    def parse_int(text: str) -> int:
        if len(text.lstrip("-")) > limits.max_int_digits:
            raise JsonInputError("oversized", f"{what}: integer of {len(text.lstrip('-'))} digits "
                               f"exceeds {limits.max_int_digits} digits")
        return int(text)

    def parse_float(text: str) -> float:
        if len(text) > limits.max_number_chars:
            raise JsonInputError("oversized", f"{what}: number literal of {len(text)} characters "
                               f"exceeds {limits.max_number_chars}")
        value = float(text)
        if not math.isfinite(value):
            raise JsonInputError("bad_json", f"{what}: number {clip(text)} overflows to infinity")
        return value

    def parse_constant(name: str) -> Any:
        raise JsonInputError("bad_json", f"{what}: {name} is not standard JSON; send finite "
                           "numbers only")

    try:
        text = bytes(raw).decode("utf-8")
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float,
                           parse_constant=parse_constant)
    except JsonInputError:
        raise
    except RecursionError:
        raise JsonInputError("bad_json", f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise JsonInputError("bad_json", f"{what} is not UTF-8 JSON: {clip(str(exc), 200)}") \
            from None
    if not fits_by_size(raw, limits):
        check_shape(value, limits, what)
    return value


def fits_by_size(raw: bytes, limits: JsonLimits) -> bool:
    """Whether the JSON text ``raw`` is within ``limits``' string lengths and nesting depth by
    its size alone: no string is longer than the whole text (in characters <= bytes), and no
    nesting is deeper than its count of ``[`` and ``{``. True lets a caller skip
    `check_shape` (the common case: headers of a few hundred bytes); False says nothing."""
    return (len(raw) <= limits.max_str_chars
            and raw.count(b"[") + raw.count(b"{") <= limits.max_depth)


def check_shape(value: Any, limits: JsonLimits, what: str) -> None:
    """Iteratively check nesting depth and string lengths (values and object keys) of a parsed
    JSON value. Only containers go on the stack; scalars are checked where they are met (this
    walk runs on every control-plane message, twice per round trip)."""
    max_str, max_depth = limits.max_str_chars, limits.max_depth

    def too_long(text: str) -> JsonInputError:
        return JsonInputError("oversized", f"{what}: string of {len(text)} characters "
                              f"exceeds {max_str}")

    if isinstance(value, str):
        if len(value) > max_str:
            raise too_long(value)
        return
    if not isinstance(value, (dict, list)):
        return
    stack = [(value, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > max_depth:
            raise JsonInputError("bad_json", f"{what} is nested deeper than "
                                 f"{max_depth} levels")
        if isinstance(obj, dict):
            for k in obj:
                if isinstance(k, str) and len(k) > max_str:
                    raise too_long(k)
            items = obj.values()
        else:
            items = obj
        for v in items:
            if isinstance(v, str):
                if len(v) > max_str:
                    raise too_long(v)
            elif isinstance(v, (dict, list)):
                stack.append((v, depth + 1))
