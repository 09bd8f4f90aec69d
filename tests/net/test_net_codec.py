"""Codec: every message type round-trips exactly; every malformed input is rejected with the
right kind and a reason; encode refuses what decode would refuse."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from net_strategies import MESSAGE_STRATEGIES, canonical, malformed, messages
from testbed.net.codec import Codec, decode, encode
from testbed.net.errors import MessageError
from testbed.net.schema import (MESSAGE_TYPES, PROTOCOL_VERSION, Assignment, Partial, SoundingReport,
                                Register, Result)

SMALL = Codec(max_message_bytes=1 << 16)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_message_type_round_trips(msg):
    frames = encode(msg)
    assert all(isinstance(f, bytes) for f in frames)
    back = decode(frames)
    assert type(back) is type(msg)
    assert canonical(back) == canonical(msg)
    # the wire form is stable: re-encoding the decoded message gives the same frames
    assert encode(back) == frames


def test_all_types_are_covered_by_the_round_trip_strategy():
    seen = set()

    @settings(max_examples=5, deadline=None)
    @given(st.data())
    def collect(data):
        for strategy in MESSAGE_STRATEGIES:     # one draw from every message's builder
            seen.add(data.draw(strategy).type)

    collect()
    assert seen == set(MESSAGE_TYPES)


@settings(max_examples=400, deadline=None)
@given(malformed(max_message_bytes=SMALL.max_message_bytes))
def test_malformed_messages_are_rejected_with_kind_and_reason(case):
    frames, kind = case
    with pytest.raises(MessageError) as info:
        SMALL.decode(frames)
    assert info.value.kind == kind, info.value
    assert len(info.value.reason) > 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=6))
def test_random_frames_never_crash_the_decoder(frames):
    with pytest.raises(MessageError):
        decode(frames)


def test_empty_frame_list_is_a_frame_count_error():
    with pytest.raises(MessageError, match="frame_count"):
        decode([])


def test_array_bytes_are_little_endian_on_the_wire():
    x = np.arange(3, dtype=">f4")  # big-endian input is converted, values preserved
    frames = encode(Partial(layer=0, site="s", round_id=0, tensor=x))
    assert frames[1] == np.arange(3, dtype="<f4").tobytes()
    back = decode(frames).tensor
    np.testing.assert_array_equal(back, x)
    assert back.flags.writeable


def test_limits_apply_on_encode_too():
    big = Partial(layer=0, site="s", round_id=0, tensor=np.zeros(1 << 15, np.float32))
    with pytest.raises(MessageError, match="oversized"):
        SMALL.encode(big)
    assert len(encode(big)[1]) == 4 << 15  # the default limit (256 MiB) allows it


def test_encode_refuses_disallowed_dtypes_and_reserved_keys():
    with pytest.raises(MessageError, match="bad_array"):
        encode(Result(round_id=0, info={"mask": np.ones(3, bool)}))
    with pytest.raises(MessageError, match="reserved"):
        encode(Result(round_id=0, info={"$frame": 0}))


def test_schema_validation_messages_name_the_field():
    with pytest.raises(ValueError, match="complex"):
        SoundingReport(round_id=0, h=np.ones(2), noise_var=1.0, offset=0, rx_clock=0)
    with pytest.raises(ValueError, match="sum to 1"):
        Assignment(ratios={"a": 0.5, "b": 0.6}, model_fingerprint="x")
    frames = encode(Register(node_id="n0", role="node", protocol_version=1,
                             model_fingerprint="f"))
    h = json.loads(frames[0])
    h["body"]["role"] = "wizard"
    with pytest.raises(MessageError) as info:
        decode([json.dumps(h).encode()])
    assert info.value.kind == "invalid" and "role" in info.value.reason


def test_header_carries_version_and_type():
    h = json.loads(encode(Result(round_id=1))[0])
    assert h["v"] == PROTOCOL_VERSION and h["type"] == "result" and h["arrays"] == []
