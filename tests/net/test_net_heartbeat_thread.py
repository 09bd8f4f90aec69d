"""Heartbeats that do not stop while a role waits: an agent whose handler blocks on its "radio"
(or the channel broker) for longer than the controller's dead-after limit stays alive, its
heartbeats say what it waits on, and a request that times out blames the radio or the broker,
not the role. The blocking is a real wait (an Event), marked with testbed.activity."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from testbed.activity import describe, waiting_on
from testbed.net.agent import Agent, AgentConfig
from testbed.net.controller import Controller, ControllerConfig
from testbed.net.errors import RequestTimeout
from testbed.net.schema import Aggregate, Message, Partial

from conftest import agent_thread, pump_until


class StuckAgent(Agent):
    """Answers PARTIAL with AGGREGATE after waiting on ``what`` until ``release`` is set."""

    def __init__(self, config: AgentConfig, what: str):
        super().__init__(config)
        self.what = what
        self.release = threading.Event()

    def handle(self, message: Message) -> Message | None:
        with waiting_on(self.what):
            self.release.wait(30)
        return Aggregate(layer=message.layer, site=message.site, round_id=message.round_id,
                         tensor=message.tensor)


@pytest.mark.parametrize("what, culprit", [("waiting on radio.receive", "radio"),
                                           ("waiting on the channel broker tcp://x (receive)",
                                            "broker")])
def test_a_role_stuck_on_its_radio_keeps_heartbeating_and_the_timeout_blames_the_radio(
        what, culprit):
    cfg = ControllerConfig({"rx": "receiver"}, "fp", heartbeat_interval_s=0.25, peer_timeout_s=2.0)
    with Controller(cfg) as ctl:
        agent = StuckAgent(AgentConfig("rx", ctl.router_address, ctl.pub_address, role="receiver",
                                       model_fingerprint="fp"), what)
        with agent_thread(agent) as at:
            ctl.wait_for_peers(timeout_s=10)
            x = np.arange(4, dtype=np.float32)
            t0 = time.monotonic()
            with pytest.raises(RequestTimeout) as err:      # 3 x the dead-after limit
                ctl.request("rx", Partial(layer=0, site="mlp", round_id=1, tensor=x), 6.0)
            assert time.monotonic() - t0 >= 6.0             # no PeerLostError before that
            assert err.value.culprit == culprit and err.value.culprit_id == "rx"
            assert what in ctl.peers["rx"].status and "(in handling partial)" in \
                ctl.peers["rx"].status
            assert culprit in str(err.value)
            agent.release.set()
            pump_until(ctl, lambda: ctl.peers["rx"].status == "ok", 5)
            assert at.error is None and not at.done()


def test_describe_names_the_innermost_wait_and_its_age():
    tid = threading.get_ident()
    assert describe(tid) == "ok"
    with waiting_on("handling forward"):
        with waiting_on("waiting on radio.transmit"):
            text = describe(tid, now=time.monotonic() + 2.0)
    assert text.startswith("waiting on radio.transmit for 2.")
    assert text.endswith("(in handling forward)")
    assert describe(tid) == "ok"
