"""The controller: registers agents, watches their heartbeats, runs a pluggable job.

Usage (the LLM / experiment integration supplies the job)::

    cfg = ControllerConfig(expected_peers={"node0": "node", "node1": "node",
                                           "receiver": "receiver"},
                           model_fingerprint=fingerprint)
    with Controller(cfg) as ctl:
        ctl.wait_for_peers(timeout_s=60)
        results = ctl.run(job, on_partial=recorder)   # job(ctl) yields one item per step

Inside the job, talk to agents with ``send`` / ``broadcast`` / ``request`` / ``gather`` /
``receive``; every one of them keeps pumping the sockets (heartbeats in and out, liveness
checks) and raises `PeerLostError` as soon as a registered peer has been silent for
``peer_timeout_s``. A job doing long local work should call ``ctl.pump(0)`` now and then so
agents keep hearing the controller's heartbeat.
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from pydantic import ValidationError

from testbed.errors import ConfigError, TestbedError
from testbed.net.auth import key_owner_problem
from testbed.net.codec import DEFAULT_CODEC, Codec
from testbed.net.errors import (MessageError, PeerLostError, RemoteError, RequestTimeout,
                                RegistrationError)
from testbed.net.schema import (NO_CHECKPOINT, PROTOCOL_VERSION, ROLES, Capabilities, Error,
                                Heartbeat, Message, Register, RegisterAck, RegisterReject,
                                Shutdown, reply)
from testbed.net.transport import ControllerTransport, CurveServerKeys, Incoming

log = logging.getLogger(__name__)

#: A job: called with the controller, yields one result per completed step (round, token...).
Job = Callable[["Controller"], Iterable[Any]]


@dataclass(frozen=True)
class ControllerConfig:
    """What the controller needs.

    expected_peers: node id -> role ("node" | "receiver" | "channel") of every agent of the
        bench; others are refused.
    model_fingerprint: hash string every peer bringing a checkpoint must report (same
        model/checkpoint); a peer without one reports `NO_CHECKPOINT` (nodes then get their
        slice from the controller, which verifies it by hash).
    router_endpoint / pub_endpoint: ZMQ bind addresses (port ``*`` = ephemeral).
    heartbeat_interval_s: period of heartbeats, seconds (told to agents at registration).
    peer_timeout_s: silence after which a registered peer is declared lost, seconds.
    curve: CURVE server keys, or None for plain TCP.
    """

    expected_peers: Mapping[str, str]
    model_fingerprint: str
    router_endpoint: str = "tcp://127.0.0.1:*"
    pub_endpoint: str = "tcp://127.0.0.1:*"
    heartbeat_interval_s: float = 0.5
    peer_timeout_s: float = 2.5
    curve: CurveServerKeys | None = None
    codec: Codec = DEFAULT_CODEC

    def __post_init__(self) -> None:
        if not self.expected_peers:
            raise ConfigError("expected_peers is empty; list the bench's node ids and roles")
        bad = {k: v for k, v in self.expected_peers.items() if v not in ROLES}
        if bad:
            raise ConfigError(f"unknown roles {bad}; use one of {ROLES}")
        if not 0 < self.heartbeat_interval_s < self.peer_timeout_s:
            raise ConfigError(f"need 0 < heartbeat_interval_s ({self.heartbeat_interval_s}) < "
                              f"peer_timeout_s ({self.peer_timeout_s})")

    @classmethod
    def from_bench(cls, bench: Any, model_fingerprint: str,
                   curve: CurveServerKeys | None = None) -> "ControllerConfig":
        """Build from a `testbed.config.bench.BenchConfig` (nodes, receiver, controller)."""
        c = bench.controller
        peers = {n.id: "node" for n in bench.nodes}
        peers[bench.receiver.id] = "receiver"
        if getattr(bench, "simulated", False):     # the lock-step air's channel agent
            peers.setdefault("channel", "channel")
        return cls(expected_peers=peers, model_fingerprint=model_fingerprint,
                   router_endpoint=f"tcp://{c.host}:{c.router_port}",
                   pub_endpoint=f"tcp://{c.host}:{c.pub_port}",
                   heartbeat_interval_s=c.heartbeat_s, peer_timeout_s=c.dead_after_s,
                   curve=curve)


@dataclass
class PeerInfo:
    """A registered agent. Times are `time.monotonic()` seconds."""

    node_id: str
    role: str
    identity: str
    capabilities: Capabilities
    registered_at: float
    last_seen: float
    last_seq: int = -1
    status: str = "ok"
    model_fingerprint: str = ""   #: what it registered with (`NO_CHECKPOINT`: brings none)


class Controller:
    """ROUTER/PUB controller with registration, heartbeats and request/response helpers."""

    def __init__(self, config: ControllerConfig):
        self.config = config
        self.transport = ControllerTransport(config.router_endpoint, config.pub_endpoint,
                                             curve=config.curve, codec=config.codec)
        self.peers: dict[str, PeerInfo] = {}
        self.inbox: collections.deque[tuple[str, Message]] = collections.deque()
        self._by_identity: dict[str, str] = {}
        self._pending: dict[int, str] = {}
        self._replies: dict[int, Message] = {}
        self._hb_seq = 0
        self._next_hb = 0.0
        self._closed = False

    # ----------------------------------------------------------------- addresses, lifecycle
    @property
    def router_address(self) -> str:
        """Bound ROUTER address agents connect their DEALER to."""
        return self.transport.router_address

    @property
    def pub_address(self) -> str:
        """Bound PUB address agents subscribe to."""
        return self.transport.pub_address

    @property
    def rejections(self) -> collections.Counter[str]:
        """Rejected incoming messages counted per `MessageError` kind (and "unexpected")."""
        return self.transport.rejections

    def __enter__(self) -> "Controller":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close sockets (without sending anything)."""
        if not self._closed:
            self._closed = True
            self.transport.close()

    # ----------------------------------------------------------------- pumping
    def pump(self, timeout_s: float = 0.0, check_liveness: bool = True) -> None:
        """Wait up to ``timeout_s`` s for traffic, handle what is there (for at most one
        heartbeat period: a flood of frames cannot keep the controller here), send a heartbeat
        if due, then raise `PeerLostError` if a registered peer is silent beyond
        ``peer_timeout_s``. ZMQ queues every peer's messages fairly, so a flooding stranger
        does not hide the registered peers' heartbeats."""
        now = time.monotonic()
        self._heartbeat_if_due(now)
        wait = min(timeout_s, max(0.0, self._next_hb - now))
        batch = self.transport.poll(wait)
        busy_until = time.monotonic() + self.config.heartbeat_interval_s
        while batch:
            for item in batch:
                try:
                    self._handle(item)
                except Exception:  # a frame must never stop the controller
                    self.rejections["unexpected"] += 1
                    log.exception("failed handling a %s message from %s; ignored it",
                                  item.message.type if item.message else "malformed",
                                  _who(item))
            self._heartbeat_if_due(time.monotonic())
            if time.monotonic() > busy_until:
                break
            batch = self.transport.poll(0)
        self._heartbeat_if_due(time.monotonic())
        if check_liveness:
            self.check_liveness()

    def check_liveness(self) -> None:
        """Raise `PeerLostError` naming the registered peer silent the longest beyond limit."""
        now = time.monotonic()
        lost = [(now - p.last_seen, p) for p in self.peers.values()
                if now - p.last_seen > self.config.peer_timeout_s]
        if lost:
            age, peer = max(lost, key=lambda t: t[0])
            said = "" if peer.status == "ok" else f" (its last heartbeat said: {peer.status})"
            raise PeerLostError(peer.node_id, age, self.config.peer_timeout_s,
                                detail=f"no heartbeat or message after seq {peer.last_seq}{said}",
                                role=peer.role)

    def _heartbeat_if_due(self, now: float) -> None:
        if now >= self._next_hb:
            self.transport.publish(Heartbeat(seq=self._hb_seq, timestamp=time.time(),
                                             status="ok"))
            self._hb_seq += 1
            self._next_hb = now + self.config.heartbeat_interval_s

    # ----------------------------------------------------------------- incoming
    def _answer(self, ident: str, build: Callable[[], Message], registered: bool) -> None:
        """Send ``build()`` to ``ident``; a reply that fails its own validation or encoding is
        logged and replaced by a generic one -- never raises."""
        try:
            self.transport.send(ident, build(), quiet=True)
            return
        except (ValidationError, MessageError) as exc:
            log.error("reply to %r failed its own validation (%s); sent a generic one",
                      ident[:80], str(exc)[:300])
        generic = (Error(code="rejected", message="message rejected; see the controller log")
                   if registered else
                   RegisterReject(reason="message rejected; see the controller log"))
        self.transport.send(ident, generic, quiet=True)

    def _handle(self, item: Incoming) -> None:
        ident = item.peer or ""
        node_id = self._by_identity.get(ident)
        if node_id is not None and key_owner_problem(item.user_id, node_id) is not None:
            node_id = None  # cannot happen with per-connection identities; refuse anyway
        if item.error is not None:
            if node_id is not None:
                self.peers[node_id].last_seen = time.monotonic()
                self._answer(ident, lambda: Error(code=f"rejected_{item.error.kind}",
                                                  message=item.error.reason), True)
            else:
                self._answer(ident, lambda: RegisterReject(reason=f"message rejected: "
                                                           f"{item.error}"), False)
            return
        msg = item.message
        if isinstance(msg, Register):
            self._register(item, msg)
            return
        if node_id is None:
            self.rejections["unexpected"] += 1
            log.warning("rejected %s from unregistered %s: register first", msg.type,
                        _who(item))
            self._answer(ident, lambda: reply(msg, RegisterReject(
                reason=f"{msg.type} from an unregistered peer; send REGISTER first")), False)
            return
        peer = self.peers[node_id]
        peer.last_seen = time.monotonic()
        if isinstance(msg, Heartbeat):
            peer.last_seq, peer.status = msg.seq, msg.status
        elif msg.reply_to is not None and self._pending.get(msg.reply_to) == node_id:
            del self._pending[msg.reply_to]
            self._replies[msg.reply_to] = msg
        else:
            if isinstance(msg, Error):
                log.warning("peer %s reported %s: %s", node_id, msg.code, msg.message)
            self.inbox.append((node_id, msg))

    def _register(self, item: Incoming, msg: Register) -> None:
        ident = item.peer or ""
        reason = (key_owner_problem(item.user_id, msg.node_id)
                  or self._registration_problem(ident, msg))
        if reason is not None:
            self.rejections["unexpected"] += 1
            log.warning("refused registration of %r from %s: %s", msg.node_id, _who(item),
                        reason)
            self._answer(ident, lambda: reply(msg, RegisterReject(reason=reason)), False)
            return
        now = time.monotonic()
        if msg.node_id not in self.peers:
            log.info("registered %s %r (%r)", msg.role, msg.node_id, ident)
        self.peers[msg.node_id] = PeerInfo(msg.node_id, msg.role, ident, msg.capabilities,
                                           registered_at=now, last_seen=now,
                                           model_fingerprint=msg.model_fingerprint)
        self._by_identity[ident] = msg.node_id
        self._answer(ident, lambda: reply(msg, RegisterAck(
            node_id=msg.node_id, heartbeat_interval_s=self.config.heartbeat_interval_s,
            peer_timeout_s=self.config.peer_timeout_s)), True)

    def _registration_problem(self, ident: str, msg: Register) -> str | None:
        cfg = self.config
        if msg.protocol_version != PROTOCOL_VERSION:
            return (f"protocol version {msg.protocol_version} != controller's "
                    f"{PROTOCOL_VERSION}; run the same testbed version on every machine")
        if msg.node_id not in cfg.expected_peers:
            return (f"node id {msg.node_id!r} is not in the bench (known: "
                    f"{sorted(cfg.expected_peers)}); fix the role's --id or the bench file")
        if cfg.expected_peers[msg.node_id] != msg.role:
            return (f"{msg.node_id!r} is a {cfg.expected_peers[msg.node_id]} in the bench but "
                    f"registered as {msg.role}; start it with the matching role command")
        if msg.model_fingerprint not in (cfg.model_fingerprint, NO_CHECKPOINT):
            return (f"model fingerprint {msg.model_fingerprint[:100]!r} != controller's "
                    f"{cfg.model_fingerprint!r}; load the same model/checkpoint everywhere, or "
                    "start the node without --model (it gets its slice from the controller)")
        known = self.peers.get(msg.node_id)
        if known is not None and known.identity != ident:
            return (f"node id {msg.node_id!r} is already registered by another live process "
                    f"({known.identity}); stop the duplicate or give it another id")
        return None

    # ----------------------------------------------------------------- registration wait
    def wait_for_peers(self, node_ids: Iterable[str] | None = None,
                       timeout_s: float = 60.0,
                       watch: Callable[[], None] | None = None) -> dict[str, PeerInfo]:
        """Pump until every peer in ``node_ids`` (default: all expected) has registered.

        Raises `RegistrationError` naming the missing ones after ``timeout_s`` seconds.
        ``watch()`` is called about every 0.1 s while waiting; whatever it raises (e.g. a local
        role process that died while starting) ends the wait at once."""
        wanted = set(self.config.expected_peers if node_ids is None else node_ids)
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.peers.keys():
            if watch is not None:
                watch()
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(wanted - self.peers.keys())
                raise RegistrationError(
                    f"peers {missing} did not register within {timeout_s:g} s; start them "
                    f"(pointing at {self.router_address}) and check their logs for a "
                    "REGISTER_REJECT reason or CURVE key problem")
            self.pump(min(left, 0.1))
        return {k: self.peers[k] for k in wanted}

    # ----------------------------------------------------------------- sending
    def _identity(self, node_id: str) -> str:
        try:
            return self.peers[node_id].identity
        except KeyError:
            raise TestbedError(f"{node_id!r} is not registered (registered: "
                               f"{sorted(self.peers)})") from None

    def send(self, node_id: str, msg: Message) -> None:
        """Send ``msg`` to one registered peer; raise `PeerLostError` if it is unreachable."""
        if not self.transport.send(self._identity(node_id), msg):
            peer = self.peers[node_id]
            raise PeerLostError(node_id, time.monotonic() - peer.last_seen,
                                self.config.peer_timeout_s,
                                detail="connection gone (or its send queue is full)",
                                role=peer.role)

    def broadcast(self, msg: Message) -> None:
        """Publish ``msg`` to every agent on the PUB socket."""
        self.transport.publish(msg)

    def request(self, node_id: str, msg: Message, timeout_s: float = 10.0) -> Message:
        """Send ``msg`` to ``node_id`` and return its reply (the message with ``reply_to`` ==
        ``msg.msg_id``). Raises `PeerLostError`, `RequestTimeout`, or `RemoteError`."""
        return self.gather({node_id: msg}, timeout_s)[node_id]

    def gather(self, msgs_by_node: Mapping[str, Message],
               timeout_s: float = 10.0) -> dict[str, Message]:
        """Send one request per node, wait for all replies; same errors as `request`. The
        first ERROR reply raises `RemoteError` at once, naming its peer (the others may be
        waiting on what that peer failed to do, e.g. nodes on the receiver's estimate)."""
        for node_id, msg in msgs_by_node.items():
            self._pending[msg.msg_id] = node_id
            self.send(node_id, msg)
        ids = {node_id: msg.msg_id for node_id, msg in msgs_by_node.items()}
        deadline = time.monotonic() + timeout_s
        try:
            while not all(i in self._replies for i in ids.values()):
                for n, i in ids.items():
                    rep = self._replies.get(i)
                    if isinstance(rep, Error):
                        raise RemoteError(n, rep.code, rep.message)
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = sorted(n for n, i in ids.items() if i not in self._replies)
                    raise self._timeout_error(waiting, timeout_s)
                self.pump(min(left, self.config.heartbeat_interval_s))
            out = {n: self._replies.pop(i) for n, i in ids.items()}
        finally:
            for i in ids.values():
                self._pending.pop(i, None)
                self._replies.pop(i, None)
        for n, rep in out.items():
            if isinstance(rep, Error):
                raise RemoteError(n, rep.code, rep.message)
        return out

    def gather_available(self, msgs_by_node: Mapping[str, Message],
                         timeout_s: float = 2.0) -> dict[str, Message]:
        """Best-effort `gather` (e.g. counters after a failure): send to every peer still
        reachable and return the replies that arrive within ``timeout_s`` seconds; lost,
        silent or failing peers are left out. Never raises `PeerLostError`."""
        ids: dict[str, int] = {}
        for node_id, msg in msgs_by_node.items():
            self._pending[msg.msg_id] = node_id
            try:
                self.send(node_id, msg)
                ids[node_id] = msg.msg_id
            except TestbedError:          # lost or not registered
                self._pending.pop(msg.msg_id, None)
        deadline = time.monotonic() + timeout_s
        try:
            while not all(i in self._replies for i in ids.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.pump(min(left, self.config.heartbeat_interval_s), check_liveness=False)
            return {n: self._replies[i] for n, i in ids.items()
                    if i in self._replies and not isinstance(self._replies[i], Error)}
        finally:
            for i in ids.values():
                self._pending.pop(i, None)
                self._replies.pop(i, None)

    def _timeout_error(self, waiting: list[str], timeout_s: float) -> RequestTimeout:
        """A `RequestTimeout` naming who did not reply and what their heartbeats say they wait
        on: a peer stuck on the channel broker blames the broker, one stuck on its radio the
        radio, otherwise the peer itself (its handler is slow or stuck)."""
        said = {n: self.peers[n].status if n in self.peers else "unknown" for n in waiting}
        culprit_id = waiting[0]
        stuck = [n for n in waiting if "channel broker" in said[n]]
        radio = [n for n in waiting if "radio." in said[n]]
        if stuck:
            culprit, culprit_id = "broker", stuck[0]
            hint = ("the channel broker does not answer although its process heartbeats: its "
                    "serving thread may have failed (see logs/channel.log); restart the bench")
        elif radio:
            culprit, culprit_id = "radio", radio[0]
            hint = (f"{radio[0]}'s radio does not complete a call: check the device (stream "
                    "counters, cabling, `testbed devices`) and its log")
        else:
            culprit = self.peers[culprit_id].role if culprit_id in self.peers else "node"
            hint = ("their handler is slow or stuck -- raise the timeout or check their logs")
        detail = "; ".join(f"{n}: {said[n]}" for n in waiting)
        return RequestTimeout(f"no reply from {waiting} within {timeout_s:g} s although they "
                              f"still send heartbeats ({detail}); blamed on the {culprit}: "
                              f"{hint}", waiting=said, culprit=culprit, culprit_id=culprit_id)

    def receive(self, timeout_s: float = 10.0, node_id: str | None = None,
                msg_type: str | None = None) -> tuple[str, Message]:
        """Return the oldest unsolicited message (optionally from ``node_id`` / of
        ``msg_type``), pumping up to ``timeout_s`` s; raise `RequestTimeout` if none came."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, (src, msg) in enumerate(self.inbox):
                if (node_id is None or src == node_id) and (msg_type is None
                                                             or msg.type == msg_type):
                    del self.inbox[i]
                    return src, msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout(f"no {msg_type or 'message'} from {node_id or 'any peer'}"
                                     f" within {timeout_s:g} s")
            self.pump(min(left, self.config.heartbeat_interval_s))

    # ----------------------------------------------------------------- runs
    def run(self, job: Job | Iterable[Any],
            on_partial: Callable[[Any], None] | None = None) -> list[Any]:
        """Run ``job`` (a callable taking this controller and returning an iterable, or an
        iterable) to the end. Each yielded step result goes to ``on_partial`` right away
        (so it is saved even if a later step fails) and into the returned list.

        Any failure (e.g. `PeerLostError`) or Ctrl-C broadcasts SHUTDOWN with the reason and
        re-raises; a normal end broadcasts SHUTDOWN("run finished")."""
        results: list[Any] = []
        try:
            steps: Iterator[Any] = iter(job(self) if callable(job) else job)
            for item in steps:
                results.append(item)
                if on_partial is not None:
                    on_partial(item)
        except BaseException as exc:
            log.error("run aborted after %d steps: %s", len(results), exc)
            self.shutdown(f"run aborted: {exc or type(exc).__name__}")
            raise
        self.shutdown("run finished")
        return results

    def shutdown(self, reason: str, flush_s: float = 0.2) -> None:
        """Tell every agent to stop (broadcast and direct), then keep the sockets open for
        ``flush_s`` seconds so the message leaves before the caller closes them."""
        msg = Shutdown(reason=reason[:4000])
        for peer in self.peers.values():  # direct first: the broadcast never fails
            self.transport.send(peer.identity, msg, quiet=True)
        self.transport.publish(msg)
        end = time.monotonic() + flush_s
        while (left := end - time.monotonic()) > 0:
            self.pump(left, check_liveness=False)


def _who(item: Incoming) -> str:
    """Log form of a message's sender: ZMQ identity, IP address, CURVE key owner."""
    ident = item.peer or ""
    text = repr(ident if len(ident) <= 80 else ident[:80] + "...")
    text += f" at {item.address or 'unknown address'}"
    if item.user_id is not None:
        text += f" (CURVE key of {item.user_id!r})"
    return text
