"""Hostile multipart frames for live fuzz tests of every socket (controller, agents, broker).

`hostile_frames(rng, templates, n)` yields ``n`` messages: first the known crashers of
`KNOWN_CRASHERS` / `BROKER_CRASHERS` that fit the templates' protocol, then random
mutations of the valid ``templates`` (byte flips, truncation, hostile JSON literals spliced
at a random key, over-long ``type``/``v`` strings, frames dropped/added/garbled, random
nested JSON, random bytes). Deterministic for a given seed, so a failure can be replayed.
"""
from __future__ import annotations

import json
from typing import Iterator, Sequence

import numpy as np

from testbed.net.schema import PROTOCOL_VERSION

_V = str(PROTOCOL_VERSION).encode()

#: JSON literals no well-behaved peer sends (raw text, spliced into a header).
HOSTILE_LITERALS = [
    "9" * 4301, "-" + "9" * 5000, "9" * 41, "NaN", "Infinity", "-Infinity", "1e999", "-1e400",
    "1." + "0" * 100, '"' + "A" * 4096 + '"', '"' + "B" * 70000 + '"', "[" * 40 + "]" * 40,
    "[" * 3000 + "]" * 3000, '{"a":' * 40 + "1" + "}" * 40, "[1]", "{}", "null", "true",
    "false", "-1", "1.5", '"x"', "[" + ",".join(["1"] * 2000) + "]", '{"$frame": 0}',
    '{"$frame": 99}', '"\\ud800"', '"\\u0000"',
]


def _header_text(value_by_key: dict) -> bytes:
    return json.dumps(value_by_key).encode()


#: control-plane headers that crashed the controller before (issue 16), as raw bytes
KNOWN_CRASHERS: list[list[bytes]] = [
    [b'{"v":' + _V + b',"type":"heartbeat","body":{"seq":' + b"9" * 5000 + b',"timestamp":0}}'],
    [b'{"v":' + _V + b',"type":"heartbeat","body":{"msg_id":' + b"1" * 4301 + b',"seq":0,"timestamp":0}}'],
    [_header_text({"v": PROTOCOL_VERSION, "type": "A" * 4096, "body": {}})],
    [_header_text({"v": "A" * 4096, "type": "heartbeat", "body": {}})],
    [_header_text({"v": PROTOCOL_VERSION, "type": "heartbeat" * 500, "body": {}})],
    [b'{"op":[1]}'],
    [b'{"v":' + _V + b',"type":"heartbeat","body":{"seq":0,"timestamp":Infinity}}'],
    [b'{"v":' + _V + b',"type":"heartbeat","body":{"seq":0,"timestamp":NaN}}'],
    [b'{"v":' + _V + b',"type":"result","body":{"round_id":0,"info":' + b"[" * 5000 + b"]" * 5000
     + b"}}"],
    [b"[" * 200000 + b"]" * 200000],
    [b'{"v":' + _V + b',"type":"result","body":{"round_id":0,"info":{"op":"' + b"x" * 70000 + b'"}}}'],
    [b'{"v":' + _V + b',"type":"register","body":{"node_id":"n0","role":"node","protocol_version":'
     + b"7" * 4400 + b',"model_fingerprint":"fp"}}'],
]

#: channel-broker requests that crashed its serving thread or aborted a run before (issue 16)
BROKER_CRASHERS: list[list[bytes]] = [
    [b'{"op":[1]}'],
    [b'{"op":{"a":1},"seq":1}'],
    [b'{"op":"tx_until","seq":1,"node":Infinity,"until":5}'],
    [b'{"op":"tx_until","seq":1,"node":0,"until":NaN}'],
    [b'{"op":"now","seq":1,"node":' + b"9" * 5000 + b"}"],
    [b"[" * 200000 + b"]" * 200000],
    [b'{"op":"hello","seq":' + b"[" * 3000 + b"]" * 3000 + b"}"],
    [b'{"op":"transmit","seq":1,"node":0,"at":10,"shape":[1,4]}', b"\0" * 31],
    [b'{"op":"transmit","seq":1,"node":0,"at":10,"shape":[100000,100000]}', b"\0" * 8],
    [b'{"op":"receive","seq":1,"n":-5,"at":0}'],
    [b'{"op":"receive","seq":1,"n":1e9,"at":0}'],
    [b'{"op":"tune","seq":1,"node":true}'],
    *[[json.dumps({"op": "tx_until", "seq": k, "node": k % 4, "until": 10**12}).encode()]
      for k in range(4)],  # well-formed, from a stranger: must not touch the air
    [json.dumps({"op": "receive", "seq": 9, "n": 64, "at": 0}).encode()],
    [json.dumps({"op": "hello", "seq": 9, "node": 0}).encode()],
    [json.dumps({"op": "hello", "seq": 9, "receiver": True}).encode()],
    [json.dumps({"op": "tune", "seq": 9, "node": 1, "receiver": True}).encode()],
]


def _keys(obj, path=()) -> list[tuple]:
    """Every key path inside a parsed JSON object (dicts only)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(path + (k,))
            out.extend(_keys(v, path + (k,)))
    return out


def _splice(header: bytes, rng: np.random.Generator) -> bytes:
    obj = json.loads(header)
    paths = _keys(obj) or [("x",)]
    path = paths[rng.integers(len(paths))]
    target = obj
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = "@@HOSTILE@@"
    literal = HOSTILE_LITERALS[rng.integers(len(HOSTILE_LITERALS))]
    return json.dumps(obj).replace('"@@HOSTILE@@"', literal).encode()


def _random_json(rng: np.random.Generator, depth: int = 0):
    kind = rng.integers(7 if depth < 6 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return int(rng.integers(-2**62, 2**62))
    if kind == 2:
        return float(rng.standard_normal() * 10.0 ** int(rng.integers(-5, 300)))
    if kind == 3:
        return "".join(chr(c) for c in rng.integers(32, 0x2FF, rng.integers(0, 12)))
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    keys = ["v", "type", "body", "arrays", "op", "seq", "node", "at", "n", "until", "shape",
            "msg_id", "info", "$frame"]
    return {keys[rng.integers(len(keys))]: _random_json(rng, depth + 1)
            for _ in range(rng.integers(0, 5))}


def mutate(frames: Sequence[bytes], rng: np.random.Generator) -> list[bytes]:
    """One random hostile variant of the valid message ``frames``."""
    frames = [bytes(f) for f in frames]
    head = frames[0]
    case = rng.integers(9)
    if case == 0:  # flip bytes of the header
        b = bytearray(head)
        for i in rng.integers(0, len(b), rng.integers(1, 6)):
            b[i] = rng.integers(256)
        return [bytes(b), *frames[1:]]
    if case == 1:  # truncate the header
        return [head[:rng.integers(len(head))], *frames[1:]]
    if case in (2, 3):  # a hostile literal at a random key
        return [_splice(head, rng), *frames[1:]]
    if case == 4:  # an over-long type / v / op
        obj = json.loads(head)
        key = ["type", "v", "op"][rng.integers(3)]
        obj[key] = "Z" * int(rng.choice([4095, 4097, 9000]))
        return [json.dumps(obj).encode(), *frames[1:]]
    if case == 5:  # frames dropped or added
        if len(frames) > 1 and rng.integers(2):
            return frames[:-1]
        return [*frames, rng.bytes(int(rng.integers(0, 40)))]
    if case == 6:  # the array / payload frame garbled in length
        if len(frames) > 1:
            return [head, *frames[1:-1], frames[-1][:-1] + rng.bytes(int(rng.integers(0, 3)))]
        return [head, rng.bytes(16)]
    if case == 7:  # random nested JSON
        return [json.dumps(_random_json(rng)).encode()]
    return [rng.bytes(int(rng.integers(0, 200)))]  # random bytes


def hostile_frames(rng: np.random.Generator, templates: Sequence[Sequence[bytes]], n: int,
                   crashers: Sequence[Sequence[bytes]] = KNOWN_CRASHERS
                   ) -> Iterator[list[bytes]]:
    """``n`` hostile messages: ``crashers`` first, then mutations of random ``templates``."""
    for k in range(n):
        if k < len(crashers):
            yield list(crashers[k])
        else:
            yield mutate(templates[rng.integers(len(templates))], rng)
