"""CURVE keys bound to role ids (issue 16): a valid key cannot register under another id, on the
controller or the channel broker; handshakes with unknown keys, without CURVE, or with the
wrong server key are logged with the peer's address and never reach a handler."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import zmq

from conftest import agent_thread, pump_until
from sim_backend.broker import BrokerRoles, ChannelBroker, air_from_bench
from sim_backend.remote_radio import RemoteSimRadio
from testbed.config.loader import find_config, load_bench
from testbed.errors import ConfigError, RadioNotFoundError
from testbed.net.agent import Agent, AgentConfig
from testbed.net.controller import Controller, ControllerConfig
from testbed.net.errors import RegistrationError
from testbed.net.transport import (CurveClientKeys, CurveServerKeys, CurveServerSecurity,
                                   curve_client, generate_keys)

PEERS = {"node0": "node", "node1": "node", "receiver": "receiver"}


@pytest.fixture()
def keys(tmp_path):
    generate_keys(tmp_path / "keys", clients=["node0", "node1", "node2", "node3", "receiver",
                                              "stranger"])
    (tmp_path / "keys" / "allowed" / "stranger.key").unlink()  # not a bench key
    generate_keys(tmp_path / "other", clients=["node0"])        # keys of another bench
    return tmp_path


def _server(tmp):
    return CurveServerKeys(tmp / "keys" / "server.key_secret", tmp / "keys" / "allowed")


def _client(tmp, name, server_dir="keys"):
    base = tmp / ("keys" if name != "foreign" else "other")
    name = "node0" if name == "foreign" else name
    return CurveClientKeys(base / "clients" / f"{name}.key_secret",
                           tmp / server_dir / "server.key")


def _agent(ctl, node_id, curve, **kw):
    return Agent(AgentConfig(node_id, ctl.router_address, ctl.pub_address,
                             model_fingerprint="fp", curve=curve, **kw))


def test_a_valid_key_cannot_register_under_another_id(keys, caplog):
    with Controller(ControllerConfig(PEERS, "fp", curve=_server(keys))) as ctl:
        with caplog.at_level(logging.WARNING), \
                agent_thread(_agent(ctl, "node0", _client(keys, "node1"))) as at:
            pump_until(ctl, at.done, timeout_s=8)
        assert isinstance(at.error, RegistrationError)
        assert "CURVE key of 'node1' cannot act as 'node0'" in str(at.error)
        assert not ctl.peers
        refusal = [r.getMessage() for r in caplog.records if "refused registration" in
                   r.getMessage()]
        assert refusal and "127.0.0.1" in refusal[0] and "node1" in refusal[0]
        # its own id with its own key is fine
        with agent_thread(_agent(ctl, "node1", _client(keys, "node1"))) as at:
            ctl.wait_for_peers(["node1"], timeout_s=8)
            assert at.error is None


@pytest.mark.parametrize("who, expect", [
    ("stranger", "refused CURVE handshake from 127.0.0.1"),   # key not in allowed/
    ("foreign", "refused CURVE handshake from 127.0.0.1"),    # another bench's key
    ("keyless", "no CURVE, or the wrong server key"),        # no CURVE at all
    ("wrong_server", "no CURVE, or the wrong server key"),   # right key, wrong server key
])
def test_failed_handshakes_are_logged_with_the_peer_and_reach_no_handler(keys, caplog, who,
                                                                         expect):
    curve = {"keyless": None,
             "wrong_server": _client(keys, "node0", server_dir="other")}.get(who)
    if who in ("stranger", "foreign"):
        curve = _client(keys, who)
    with caplog.at_level(logging.WARNING):
        with Controller(ControllerConfig(PEERS, "fp", curve=_server(keys))) as ctl:
            with agent_thread(_agent(ctl, "node0", curve, register_timeout_s=1.5)) as at:
                pump_until(ctl, at.done, timeout_s=8)
            assert isinstance(at.error, RegistrationError) and "no answer" in str(at.error)
            assert not ctl.peers and sum(ctl.rejections.values()) == 0
            pump_until(ctl, lambda: ctl.transport.refused_handshakes > 0, 3)
            pump_until(ctl, lambda: any(expect in r.getMessage() for r in caplog.records), 3)
    lines = [r.getMessage() for r in caplog.records if expect in r.getMessage()]
    assert lines and "controller" in lines[0]
    if who in ("stranger", "foreign"):
        assert "127.0.0.1" in lines[0]


@pytest.fixture()
def curve_broker(keys):
    bench = load_bench(find_config("sim_4node", "benches"))
    roles = BrokerRoles(tuple(n.id for n in bench.nodes), bench.receiver.id)
    with ChannelBroker(air_from_bench(bench), window_timeout_s=1.0,
                       security=CurveServerSecurity(_server(keys), "channel broker"),
                       roles=roles) as broker:
        yield broker, keys


def _radio(broker, keys, name, **kw):
    secure = None
    if name is not None:
        k = _client(keys, name)
        secure = lambda sock: curve_client(sock, k)  # noqa: E731
    return RemoteSimRadio(broker.address, secure=secure, timeout_s=2.0, **kw)


def test_curve_broker_binds_each_key_to_its_radio(curve_broker, caplog):
    broker, keys = curve_broker
    with caplog.at_level(logging.WARNING):
        with pytest.raises(ConfigError, match="CURVE key of 'node1' cannot act as transmitter 0"):
            _radio(broker, keys, "node1", node_index=0)
        with pytest.raises(ConfigError, match="cannot act as the receiver"):
            _radio(broker, keys, "node2", receiver=True)
        for name in (None, "stranger"):  # no reply at all: the handshake fails
            with pytest.raises(RadioNotFoundError):
                _radio(broker, keys, name, node_index=0)
    assert broker.stats.refused == 2 and sum(broker.stats.requests.values()) == 0
    txs = [_radio(broker, keys, f"node{i}", node_index=i) for i in range(4)]
    txs[0].close()  # a restarted node takes its radio back with its own key
    txs[0] = _radio(broker, keys, "node0", node_index=0)
    rx = _radio(broker, keys, "receiver", receiver=True)
    start = broker.common_now() + 20
    for t in txs:
        t.transmit(np.full((1, 8), 0.5, np.complex64), start)
        t.done_until(start + 50)
    assert rx.receive(40, start).shape == (4, 40)
    for r in (*txs, rx):
        r.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "channel broker: refused CURVE handshake from 127.0.0.1" in text


def test_curve_broker_needs_roles(keys):
    bench = load_bench(find_config("sim_4node", "benches"))
    with pytest.raises(ConfigError, match="roles="):
        ChannelBroker(air_from_bench(bench),
                      security=CurveServerSecurity(_server(keys), "channel broker"))
