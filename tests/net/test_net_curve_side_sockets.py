"""The round's side sockets on a CURVE bench (issue 16): the receiver's estimates PUB and the
controller's measurement-tap PULL admit bench keys only; a keyless subscriber gets nothing."""
from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from testbed.net.roles.common import RoleKeys
from testbed.net.roles.estimates import EstimateListener, EstimatePublisher
from testbed.net.transport import generate_keys


@pytest.fixture()
def keys(tmp_path):
    generate_keys(tmp_path / "keys", clients=["node0", "receiver", "controller"])
    return tmp_path / "keys"


def test_estimates_reach_keyed_subscribers_only(keys):
    pub = EstimatePublisher("tcp://127.0.0.1:*", RoleKeys(keys, "receiver", "receiver"))
    node = EstimateListener(pub.address, RoleKeys(keys, "node0", "receiver"))
    ctx = zmq.Context()
    stranger = ctx.socket(zmq.SUB)
    stranger.setsockopt(zmq.LINGER, 0)
    stranger.setsockopt(zmq.SUBSCRIBE, b"")
    stranger.connect(pub.address)
    try:
        got = None
        deadline = time.monotonic() + 10
        while got is None and time.monotonic() < deadline:  # PUB/SUB: wait for the join
            pub.publish(3, 0, "attn", np.arange(4.0))
            try:
                got = node.wait(3, timeout_s=0.2)
            except TimeoutError:
                pass
        np.testing.assert_array_equal(got, np.arange(4.0, dtype=np.float32))
        pub.publish(4, 0, "attn", np.arange(4.0))
        assert not stranger.poll(500)  # the keyless subscriber never completed a handshake
        assert pub._security.refused_handshakes >= 1
    finally:
        stranger.close()
        ctx.term()
        node.close()
        pub.close()
