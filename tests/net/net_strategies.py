"""Hypothesis strategies for control-plane tests: valid messages of every type, and
malformed multipart frames paired with the rejection kind the codec must report."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from testbed.net.codec import encode
from testbed.net.schema import (ARRAY_DTYPES, MESSAGE_TYPES, NODE_ID_PATTERN, PROTOCOL_VERSION,
                                Ack, Aggregate, AggregateCommand, Assignment, Capabilities,
                                ClockQuery, ClockReport, Error, Estimate, Forward, Heartbeat,
                                Message, NewRealization, NodeStep, Partial, PayloadCommand,
                                PlanFields, Register, RegisterAck, RegisterReject, Result,
                                RoundReport, Shutdown, SoundCommand, SoundingReport, StatsQuery,
                                StatsReport, TapPartial, TimeSyncCommand, TruthQuery,
                                TruthReport)
from testbed.net.schema import (MAX_CAPTURE_SAMPLES, MAX_CHUNK_BYTES, SLICE_FILE_PATTERN,
                                BurstCommand, CaptureCommand, CaptureReport, ShardChunk,
                                ShardOffer, SliceFile)

node_ids = st.from_regex(NODE_ID_PATTERN, fullmatch=True)
texts = st.text(max_size=24)
small_ints = st.integers(0, 2**40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


def arrays(dtypes=ARRAY_DTYPES):
    """Small numpy arrays of any whitelisted dtype (NaN/inf included: bytes must survive)."""
    return st.sampled_from(dtypes).flatmap(lambda d: hnp.arrays(np.dtype(d), shapes))


complex_arrays = arrays(("complex64", "complex128"))
json_leaf = st.none() | st.booleans() | st.integers(-2**53, 2**53) | finite | texts
json_values = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=3)
    | st.dictionaries(texts.filter(lambda k: k != "$frame"), c, max_size=3), max_leaves=8)
json_dicts = st.dictionaries(texts.filter(lambda k: k != "$frame"), json_values, max_size=4)


@st.composite
def ratios(draw):
    ids = draw(st.lists(node_ids, min_size=1, max_size=5, unique=True))
    w = draw(st.lists(st.floats(0.01, 1.0), min_size=len(ids), max_size=len(ids)))
    return {i: x / sum(w) for i, x in zip(ids, w)}


capabilities = st.builds(Capabilities, memory_bytes=small_ints,
                         compute_flops=st.floats(0, 1e15), radio_kind=texts,
                         radio_serial=texts, n_antennas=st.integers(1, 16))
common = dict(msg_id=small_ints, reply_to=st.none() | small_ints)
tensor_kw = dict(layer=st.integers(0, 200), site=texts, round_id=small_ints, tensor=arrays(),
                 **common)

plans = st.builds(PlanFields, scheme=st.sampled_from(["aircomp", "fdma"]),
                  n_nodes=st.integers(1, 16), n_tx=st.integers(1, 4), n_streams=st.integers(1, 4),
                  n_values=st.integers(0, 10**6), start=st.integers(-10**6, 10**12),
                  sounding=st.booleans())

MESSAGE_STRATEGIES: list[st.SearchStrategy[Message]] = [
    st.builds(Register, node_id=node_ids, role=st.sampled_from(["node", "receiver", "channel"]),
              protocol_version=st.integers(-5, 5), model_fingerprint=texts,
              capabilities=capabilities, **common),
    st.builds(RegisterAck, node_id=node_ids, heartbeat_interval_s=st.floats(0.01, 10),
              peer_timeout_s=st.floats(0.01, 60), **common),
    st.builds(RegisterReject, reason=texts, **common),
    st.builds(Heartbeat, seq=small_ints, timestamp=finite, status=texts, **common),
    st.builds(Assignment, ratios=ratios(), plan_summary=json_dicts, model_fingerprint=texts,
              **common),
    st.builds(ShardOffer, model_fingerprint=texts, ratios=st.lists(st.floats(0, 1), min_size=1,
                                                                   max_size=5),
              index=st.integers(0, 64), chunk_bytes=st.integers(1, MAX_CHUNK_BYTES),
              files=st.dictionaries(st.from_regex(SLICE_FILE_PATTERN, fullmatch=True),
                                    st.builds(SliceFile, bytes=small_ints,
                                              sha256=st.from_regex(r"[0-9a-f]{64}",
                                                                   fullmatch=True)),
                                    min_size=1, max_size=3), **common),
    st.builds(ShardChunk, file=st.from_regex(SLICE_FILE_PATTERN, fullmatch=True),
              offset=small_ints, data=hnp.arrays(np.uint8, st.integers(0, 64)), **common),
    st.builds(Forward, round_id=small_ints, ids=arrays(("int64",)), reset=st.booleans(),
              use_cache=st.booleans(), last_only=st.booleans(), score=st.booleans(),
              report_powers=st.booleans(), **common),
    st.builds(NodeStep, round_id=small_ints, done=st.booleans(),
              layer=st.none() | st.integers(0, 200), site=st.none() | texts,
              shape=st.none() | st.lists(st.integers(0, 4096), max_size=4),
              power=st.none() | st.floats(0, 1e6), output=st.none() | arrays(), **common),
    st.builds(SoundCommand, round_id=small_ints, plan=plans, **common),
    st.builds(SoundingReport, round_id=small_ints, h=complex_arrays,
              noise_var=st.floats(1e-9, 10), offset=st.integers(-100, 100),
              rx_clock=small_ints, **common),
    st.builds(PayloadCommand, round_id=small_ints, layer=st.integers(0, 200), site=texts,
              plan=plans, scale=st.floats(1e-6, 1e6), precoder=complex_arrays,
              tap=st.booleans(), **common),
    st.builds(AggregateCommand, round_id=small_ints, layer=st.integers(0, 200), site=texts,
              plan=plans, scale=st.floats(1e-6, 1e6),
              shape=st.lists(st.integers(0, 4096), max_size=4), beamformers=complex_arrays,
              **common),
    st.builds(RoundReport, round_id=small_ints, offset=st.integers(-100, 100),
              metric=st.floats(0, 1), rx_clock=small_ints,
              receive_wait_s=st.floats(0, 100), **common),
    st.builds(ClockQuery, **common),
    st.builds(ClockReport, rx_clock=small_ints, realtime=st.booleans(),
              sample_rate_hz=st.floats(1e3, 1e9), latency_samples=small_ints, **common),
    st.builds(TimeSyncCommand, step=st.sampled_from(["loopback", "beacon", "capture",
                                                      "pps_edge", "pps_latch"]),
              beacon_air_sample=st.none() | st.floats(-1e12, 1e12),
              latch_host_time_s=st.none() | st.floats(0, 1e10), **common),
    st.builds(BurstCommand, samples=complex_arrays, at_sample=st.integers(-10**6, 10**12),
              **common),
    st.builds(CaptureCommand, n_samples=st.integers(1, MAX_CAPTURE_SAMPLES),
              at_sample=st.integers(-10**6, 10**12), **common),
    st.builds(CaptureReport, samples=complex_arrays, rx_clock=small_ints, **common),
    st.builds(NewRealization, **common),
    st.builds(TruthQuery, **common),
    st.builds(TruthReport, h=complex_arrays, air_noise_var=st.floats(0, 10), **common),
    st.builds(StatsQuery, **common),
    st.builds(StatsReport, info=json_dicts, **common),
    st.builds(Ack, info=json_dicts, **common),
    st.builds(Partial, **tensor_kw),
    st.builds(Aggregate, **tensor_kw),
    st.builds(Estimate, **tensor_kw),
    st.builds(TapPartial, node=st.integers(0, 64), **tensor_kw),
    st.builds(Result, round_id=small_ints, info=json_dicts, tensor=st.none() | arrays(),
              **common),
    st.builds(Error, code=texts, message=texts, node_id=st.none() | node_ids, **common),
    st.builds(Shutdown, reason=texts, **common),
]
messages: st.SearchStrategy[Message] = st.one_of(*MESSAGE_STRATEGIES)


def canonical(value):
    """Comparable form of a message: arrays become (dtype, shape, raw bytes)."""
    if isinstance(value, Message):
        value = value.model_dump(mode="python")
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def _header(frames):
    return json.loads(frames[0])


def _with_header(frames, header):
    return [json.dumps(header).encode(), *frames[1:]]


def _with_literal(frames, header, path, literal):
    """Frames whose header has the raw JSON text ``literal`` at ``path`` (keys): for values
    json.dumps cannot write (e.g. integers of more than 4300 digits)."""
    obj = header
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = "@@LITERAL@@"
    return [json.dumps(header).replace('"@@LITERAL@@"', literal).encode(), *frames[1:]]


tensor_msgs = st.builds(Partial, layer=st.integers(0, 5), site=st.just("attn"),
                        round_id=st.integers(0, 5),
                        tensor=hnp.arrays(np.float32, st.integers(1, 16)))


@st.composite
def malformed(draw, max_message_bytes: int = 1 << 16):
    """(frames, expected_kind): a message that must be rejected with that kind.

    ``max_message_bytes`` is the receiving codec's limit (for the oversized case)."""
    good = encode(draw(tensor_msgs))
    case = draw(st.sampled_from([
        "garbage", "truncated_header", "truncated_array", "extra_array_bytes", "not_object",
        "version", "unknown_type", "drop_frame", "add_frame", "too_many_frames", "bad_dtype",
        "wrong_itemsize", "bad_shape", "shape_mismatch", "bad_ref", "unreferenced",
        "oversized", "invalid_field", "extra_field", "empty_header", "huge_int", "non_finite",
        "long_type", "long_string", "deep",
    ]))
    h = _header(good)
    if case == "garbage":
        junk = draw(st.binary(min_size=1, max_size=64).filter(lambda b: not b.strip()[:1]
                                                              in (b"{",)))
        return [junk, *draw(st.lists(st.binary(max_size=16), max_size=3))], "bad_json"
    if case == "truncated_header":
        cut = draw(st.integers(0, len(good[0]) - 1))
        return [good[0][:cut], *good[1:]], "bad_json"
    if case == "truncated_array":
        cut = draw(st.integers(0, len(good[1]) - 1))
        return [good[0], good[1][:cut]], "bad_array"
    if case == "extra_array_bytes":
        return [good[0], good[1] + draw(st.binary(min_size=1, max_size=8))], "bad_array"
    if case == "not_object":
        return [json.dumps(draw(st.lists(st.integers(), max_size=3)) if draw(st.booleans())
                           else draw(texts)).encode()], "bad_json"
    if case == "empty_header":
        return [b""], "bad_json"
    if case == "version":
        h["v"] = draw(st.one_of(st.integers().filter(lambda v: v != PROTOCOL_VERSION),
                                st.text(max_size=4), st.none(), st.just(True)))
        return _with_header(good, h), "version"
    if case == "unknown_type":
        h["type"] = draw(st.one_of(texts.filter(lambda t: t not in MESSAGE_TYPES),
                                   st.integers(), st.none()))
        return _with_header(good, h), "unknown_type"
    if case == "drop_frame":
        return [good[0]], "frame_count"
    if case == "add_frame":
        return [*good, draw(st.binary(max_size=16))], "frame_count"
    if case == "too_many_frames":
        return [*good, *([b""] * 80)], "frame_count"
    if case == "bad_dtype":
        h["arrays"][0]["dtype"] = draw(st.sampled_from(
            ["object", "bool", "<U4", "float16", "O", "uint16", "", "V4"]) | st.integers())
        return _with_header(good, h), "bad_array"
    if case == "wrong_itemsize":
        h["arrays"][0]["dtype"] = draw(st.sampled_from(["float64", "complex64", "complex128",
                                                        "int64"]))
        return _with_header(good, h), "bad_array"
    if case == "bad_shape":
        h["arrays"][0]["shape"] = draw(st.sampled_from([[-1], "4", [1.5], [[2]], [True],
                                                        [1] * 9, None]))
        return _with_header(good, h), "bad_array"
    if case == "shape_mismatch":
        n = h["arrays"][0]["shape"][0]
        h["arrays"][0]["shape"] = [draw(st.integers(0, 64).filter(lambda k: k != n))]
        return _with_header(good, h), "bad_array"
    if case == "bad_ref":
        h["body"]["tensor"] = {"$frame": draw(st.sampled_from([1, -1, "0", None, 0.0]))}
        return _with_header(good, h), "bad_array"
    if case == "unreferenced":
        h["body"]["tensor"] = [1, 2]
        return _with_header(good, h), "bad_array"
    if case == "oversized":
        return [good[0], good[1], b"\0" * (max_message_bytes + 1)], "oversized"
    if case == "huge_int":  # > 4300 digits: Python's int() itself refuses these
        key = draw(st.sampled_from(["layer", "msg_id", "reply_to", "round_id"]))
        digits = draw(st.sampled_from([41, 4301, 5000]))
        return _with_literal(good, h, ("body", key), "9" * digits), "oversized"
    if case == "non_finite":
        key = draw(st.sampled_from(["layer", "msg_id", "round_id"]))
        lit = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]))
        return _with_literal(good, h, ("body", key), lit), "bad_json"
    if case == "long_type":  # a reply quoting it must still fit its own limits
        key = draw(st.sampled_from(["type", "v"]))
        h[key] = "A" * draw(st.sampled_from([4097, 5000, 60000]))
        return _with_header(good, h), "unknown_type" if key == "type" else "version"
    if case == "long_string":
        h["body"][draw(st.sampled_from(["site", "extra"]))] = "s" * 65537
        return _with_header(good, h), "oversized"
    if case == "deep":
        depth = draw(st.sampled_from([33, 200, 5000]))
        lit = "[" * depth + "]" * depth
        return _with_literal(good, h, ("body", "site"), lit), "bad_json"
    if case == "invalid_field":
        key, val = draw(st.sampled_from([("layer", -1), ("round_id", "x"), ("site", None),
                                         ("msg_id", -5), ("layer", 1.5)]))
        h["body"][key] = val
        return _with_header(good, h), "invalid"
    h["body"][draw(st.sampled_from(["bogus", "extra", "tensor2"]))] = 1
    return _with_header(good, h), "invalid"
