"""Property tests of the two hostile-input parsers: `testbed.strict_json.load_json` and the
broker's `sim_backend.broker_protocol.parse_request` -- valid input round-trips, anything else
raises only their own error type."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net_strategies import json_values
from sim_backend.broker_protocol import (MAX_SAMPLE, MAX_WINDOW_SAMPLES, BadRequest,
                                         RadioRequest, parse_request)
from testbed.strict_json import JsonInputError, JsonLimits, load_json

wild_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_valid_json_round_trips(value):
    assert load_json(json.dumps(value).encode()) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_json_input_error(raw):
    try:
        load_json(raw)
    except JsonInputError as exc:
        assert exc.kind in ("bad_json", "oversized") and len(str(exc)) < 600


@settings(max_examples=300, deadline=None)
@given(wild_json, st.integers(1, 6))
def test_anything_parsed_is_within_the_limits(value, depth):
    limits = JsonLimits(max_int_digits=12, max_str_chars=5, max_depth=depth)
    text = json.dumps(value)  # may contain NaN / Infinity / big integers / deep nesting
    try:
        got = load_json(text.encode(), limits)
    except JsonInputError:
        return
    _check_within(got, 1, depth)


def _check_within(v, d, depth):
    if isinstance(v, float):
        assert np.isfinite(v)
    elif isinstance(v, int) and not isinstance(v, bool):
        assert len(str(abs(v))) <= 12
    elif isinstance(v, str):
        assert len(v) <= 5
    elif isinstance(v, (list, dict)):
        assert d <= depth
        for k in (v if isinstance(v, dict) else []):
            assert len(k) <= 5
        for x in (v.values() if isinstance(v, dict) else v):
            _check_within(x, d + 1, depth)


requests = st.one_of(
    st.fixed_dictionaries({"op": st.just("hello"), "seq": st.integers(0, 2**40)},
                          optional={"node": st.integers(0, 8), "receiver": st.booleans()}),
    st.fixed_dictionaries({"op": st.just("tx_until"), "seq": st.integers(0, 9),
                           "node": st.integers(0, 8), "until": st.integers(0, MAX_SAMPLE)}),
    st.fixed_dictionaries({"op": st.just("receive"), "seq": st.integers(0, 9),
                           "n": st.integers(1, MAX_WINDOW_SAMPLES),
                           "at": st.integers(0, MAX_SAMPLE)}),
    st.fixed_dictionaries({"op": st.sampled_from(["now", "info"]), "seq": st.integers(0, 9)}))


@settings(max_examples=300, deadline=None)
@given(requests)
def test_valid_broker_requests_parse_to_their_fields(h):
    req = parse_request([json.dumps(h).encode()])
    assert isinstance(req, RadioRequest) and req.op == h["op"] and req.seq == h["seq"]
    for key in ("node", "until", "n", "at"):
        if key in h:
            assert getattr(req, key) == h[key]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=80).map(lambda b: [b]),
                 wild_json.map(lambda v: [json.dumps(v).encode()]),
                 requests.flatmap(lambda h: st.sampled_from(list(h)).flatmap(
                     lambda k: wild_json.map(lambda v: [json.dumps({**h, k: v}).encode()])))),
       st.lists(st.binary(max_size=40), max_size=2))
def test_anything_else_is_a_bad_request_or_a_checked_one(frames, extra):
    try:
        req = parse_request(frames + extra)
    except BadRequest as exc:
        assert len(str(exc)) < 600
        return
    assert req.op in ("hello", "tx_until", "receive", "now", "info", "tune", "transmit")
    for key in ("node", "until", "n", "at"):
        v = getattr(req, key)
        assert v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


@pytest.mark.parametrize("text", [b'{"op":[1]}', b'{"op":"tx_until","seq":1,"node":Infinity,'
                                  b'"until":3}', b'{"op":"now","node":' + b"9" * 5000 + b"}"])
def test_issue_16_broker_crashers_are_bad_requests(text):
    with pytest.raises(BadRequest):
        parse_request([text])
