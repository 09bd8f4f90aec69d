"""Malformed messages thrown at live controller and agent sockets: nothing crashes, each one
is rejected with a logged reason and counted, and valid traffic keeps flowing afterwards."""
import logging
import time

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings

from conftest import agent_thread, pump_until
from net_strategies import malformed
from testbed.net.agent import AgentConfig
from testbed.net.codec import Codec, decode, encode
from testbed.net.controller import Controller, ControllerConfig
from testbed.net.echo import EchoAgent
from testbed.net.errors import RemoteError, RequestTimeout
from testbed.net.schema import Aggregate, Error, Heartbeat, Partial, RegisterReject

CODEC = Codec(max_message_bytes=1 << 16)
LIVE = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture
def bench():
    cfg = ControllerConfig({"n0": "node"}, "fp", codec=CODEC)
    with Controller(cfg) as ctl:
        agent = EchoAgent(AgentConfig("n0", ctl.router_address, ctl.pub_address,
                                      model_fingerprint="fp", codec=CODEC))
        with agent_thread(agent) as at:
            ctl.wait_for_peers(timeout_s=10)
            yield ctl, at
            assert at.error is None, at.error


def _recv(sock, timeout_s=2.0):
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    return decode(sock.recv_multipart())


def _logged(caplog, kind):
    return any(kind in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)


def _still_serving(ctl):
    x = np.arange(8, dtype=np.float32)
    rep = ctl.request("n0", Partial(layer=1, site="mlp", round_id=7, tensor=x), timeout_s=5)
    assert isinstance(rep, Aggregate)
    np.testing.assert_array_equal(rep.tensor, x)


@pytest.mark.slow
def test_controller_rejects_malformed_messages_and_keeps_serving(bench, caplog):
    ctl, _ = bench
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(ctl.router_address)

    @LIVE
    @given(malformed(CODEC.max_message_bytes))
    def fuzz(case):
        frames, kind = case
        before = ctl.rejections[kind]
        caplog.clear()
        raw.send_multipart(frames)
        pump_until(ctl, lambda: ctl.rejections[kind] > before)
        assert _logged(caplog, kind)
        answer = _recv(raw)  # the unregistered sender is told why
        assert isinstance(answer, RegisterReject) and kind in answer.reason

    try:
        with caplog.at_level(logging.WARNING):
            fuzz()
        # a well-formed message from an unregistered peer is refused too ...
        raw.send_multipart(encode(Heartbeat(seq=0, timestamp=0.0)))
        pump_until(ctl, lambda: ctl.rejections["unexpected"] == 1)
        assert "send REGISTER first" in _recv(raw).reason
    finally:
        raw.close()
        ctx.term()
    assert set(ctl.peers) == {"n0"}
    _still_serving(ctl)


def test_registered_peer_gets_an_error_reply_for_a_malformed_message(bench):
    ctl, at = bench
    at.agent.transport.send_frames([b"{not json"])
    pump_until(ctl, lambda: ctl.rejections["bad_json"] == 1)
    # the agent logs the controller's ERROR and keeps going
    _still_serving(ctl)


@pytest.mark.slow
def test_agent_rejects_malformed_messages_and_keeps_serving(bench, caplog):
    ctl, at = bench
    ident = ctl.peers["n0"].identity
    counter = at.agent.rejections

    @LIVE
    @given(malformed(CODEC.max_message_bytes))
    def fuzz(case):
        frames, kind = case
        for send in (lambda: ctl.transport.send_frames(ident, frames),
                     lambda: ctl.transport.publish_frames(frames)):
            before = counter[kind]
            caplog.clear()
            send()
            pump_until(ctl, lambda: counter[kind] > before)
            assert _logged(caplog, kind)

    with caplog.at_level(logging.WARNING):
        fuzz()
    assert at.error is None and not at.done()
    _still_serving(ctl)


def test_handler_exception_becomes_error_reply_and_agent_survives(bench):
    ctl, at = bench

    def boom(message):
        raise RuntimeError("disk on fire")

    at.agent.handle = boom
    with pytest.raises(RemoteError, match="disk on fire") as info:
        ctl.request("n0", Partial(layer=0, site="s", round_id=0,
                                  tensor=np.zeros(1, np.float32)), timeout_s=5)
    assert info.value.node_id == "n0" and info.value.code == "handler_failed"
    del at.agent.handle
    _still_serving(ctl)


def test_unsolicited_messages_land_in_the_inbox(bench):
    ctl, at = bench
    at.agent.transport.send(Error(code="warn", message="radio underflow", node_id="n0"))
    src, msg = ctl.receive(timeout_s=5, msg_type="error")
    assert src == "n0" and msg.message == "radio underflow"
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout):
        ctl.receive(timeout_s=0.3)
    assert time.monotonic() - t0 < 2
