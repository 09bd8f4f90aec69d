"""Registration: wrong protocol version, wrong model fingerprint, unknown id, wrong role and
duplicate ids are refused with a clear reason; with CURVE, only allowed keys get through."""
import json

import pytest
import zmq

from conftest import agent_thread, pump_until
from testbed.cli import main as cli_main
from testbed.net.agent import Agent, AgentConfig
from testbed.net.codec import decode, encode
from testbed.net.controller import Controller, ControllerConfig
from testbed.net.errors import RegistrationError
from testbed.net.schema import PROTOCOL_VERSION, Capabilities, Register, RegisterReject
from testbed.net.transport import CurveClientKeys, CurveServerKeys

PEERS = {"node0": "node", "node1": "node", "rx": "receiver"}


@pytest.fixture
def ctl():
    with Controller(ControllerConfig(PEERS, "sha256:abc")) as c:
        yield c


def _agent(ctl, node_id="node0", **kw):
    kw.setdefault("model_fingerprint", "sha256:abc")
    kw.setdefault("register_timeout_s", 5.0)
    return Agent(AgentConfig(node_id, ctl.router_address, ctl.pub_address, **kw))


def _refusal(ctl, agent) -> str:
    """Run ``agent`` until it gives up; return its RegistrationError message."""
    before = set(ctl.peers)
    with agent_thread(agent) as at:
        pump_until(ctl, at.done, timeout_s=8)
    assert isinstance(at.error, RegistrationError), at.error
    assert set(ctl.peers) == before
    return str(at.error)


def test_good_agent_registers_with_its_capabilities(ctl):
    caps = Capabilities(memory_bytes=8 << 30, compute_flops=2e11, radio_kind="pluto",
                        radio_serial="104473", n_antennas=2)
    with agent_thread(_agent(ctl, capabilities=caps)) as at:
        peers = ctl.wait_for_peers(["node0"], timeout_s=8)
        assert peers["node0"].capabilities == caps and peers["node0"].role == "node"
        pump_until(ctl, lambda: ctl.peers["node0"].last_seq >= 1)  # heartbeats arrive
        assert at.error is None


@pytest.mark.parametrize("kw, words", [
    (dict(protocol_version=PROTOCOL_VERSION + 1),
     [f"protocol version {PROTOCOL_VERSION + 1}", "same testbed version"]),
    (dict(model_fingerprint="sha256:zzz"), ["fingerprint", "sha256:zzz", "sha256:abc"]),
    (dict(node_id="node9"), ["'node9' is not in the bench", "node0"]),
    (dict(node_id="rx"), ["receiver in the bench but registered as node"]),
])
def test_bad_registration_is_refused_with_a_clear_reason(ctl, kw, words):
    reason = _refusal(ctl, _agent(ctl, **kw))
    for w in words:
        assert w in reason


def test_wrong_wire_version_is_refused(ctl):
    frames = encode(Register(node_id="node0", role="node", protocol_version=1,
                             model_fingerprint="sha256:abc"))
    header = json.loads(frames[0])
    header["v"] = 99
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(ctl.router_address)
    try:
        sock.send_multipart([json.dumps(header).encode()])
        pump_until(ctl, lambda: ctl.rejections["version"] == 1)
        assert sock.poll(2000)
        answer = decode(sock.recv_multipart())
    finally:
        sock.close()
        ctx.term()
    assert isinstance(answer, RegisterReject) and "protocol version 99" in answer.reason
    assert not ctl.peers


def test_duplicate_live_node_id_is_refused(ctl):
    with agent_thread(_agent(ctl)):
        ctl.wait_for_peers(["node0"], timeout_s=8)
        reason = _refusal(ctl, _agent(ctl))
    assert "already registered by another live process" in reason


def test_missing_peers_are_named_when_registration_times_out(ctl):
    with agent_thread(_agent(ctl)):
        with pytest.raises(RegistrationError, match=r"\['node1', 'rx'\]"):
            ctl.wait_for_peers(timeout_s=1.0)


@pytest.mark.slow
def test_curve_admits_only_allowed_client_keys(tmp_path):
    assert cli_main(["keys", "--out", str(tmp_path), "--clients", "node0", "intruder"]) == 0
    (tmp_path / "allowed" / "intruder.key").unlink()  # revoke
    server = CurveServerKeys(tmp_path / "server.key_secret", tmp_path / "allowed")
    cfg = ControllerConfig(PEERS, "sha256:abc", curve=server)

    def client(name):
        return CurveClientKeys(tmp_path / "clients" / f"{name}.key_secret",
                               tmp_path / "server.key")

    with Controller(cfg) as ctl:
        # a client without an allowed key: the handshake fails, the controller never sees it
        for curve in (client("intruder"), None):
            bad = _agent(ctl, node_id="node1", curve=curve, register_timeout_s=1.5)
            with agent_thread(bad) as at:
                pump_until(ctl, at.done, timeout_s=8)
            assert isinstance(at.error, RegistrationError) and "no answer" in str(at.error)
            assert not ctl.peers and sum(ctl.rejections.values()) == 0
        # the allowed key registers and is served normally
        with agent_thread(_agent(ctl, curve=client("node0"))) as at:
            ctl.wait_for_peers(["node0"], timeout_s=8)
            pump_until(ctl, lambda: ctl.peers["node0"].last_seq >= 1)
            assert at.error is None


def test_keys_command_writes_secret_files_private(tmp_path):
    assert cli_main(["keys", "--out", str(tmp_path / "k")]) == 0
    secret = tmp_path / "k" / "server.key_secret"
    assert secret.stat().st_mode & 0o077 == 0
    assert (tmp_path / "k" / "allowed" / "client.key").is_file()
