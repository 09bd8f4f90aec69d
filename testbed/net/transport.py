"""Thin pyzmq wrappers: the controller's ROUTER + PUB pair, an agent's DEALER + SUB pair.

* Every wait is a poll with a timeout; nothing blocks forever. Sockets close with linger 0.
* Frames are decoded with a `Codec`; a message that fails to decode is logged with its reason,
  counted in ``rejections`` (per `MessageError.kind`) and handed back as an `Incoming` with
  ``error`` set, so the caller can answer it -- it never raises out of ``poll``.
* Optional CURVE: the server side runs a `testbed.net.auth.KeyedAuthenticator` that accepts
  only client public keys found in an "allowed" directory and tags every message with the role
  id its key was issued for (``Incoming.user_id``); refused and failed handshakes are logged
  with the peer's address. See `generate_keys` for the layout ``testbed keys --out DIR`` writes.

ZMQ identities: an agent's DEALER identity is ``"<node_id>#<random hex>"`` -- readable in logs,
yet unique per connection, so that a second process claiming a live node id reaches the
controller (and gets a clear REGISTER_REJECT) instead of being silently dropped by the ROUTER.
"""
from __future__ import annotations

import collections
import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import zmq
import zmq.auth

from testbed.errors import ConfigError
from testbed.zmq_util import frame_property
from testbed.net.auth import HandshakeMonitor, KeyedAuthenticator
from testbed.net.codec import DEFAULT_CODEC, Codec
from testbed.net.errors import MessageError
from testbed.net.schema import Message
from testbed.net.traffic import Traffic, frames_bytes

log = logging.getLogger(__name__)

RECV_BATCH = 256  # most messages drained from one socket per poll, to stay fair


@dataclass(frozen=True)
class CurveServerKeys:
    """Server CURVE material: its certificate with secret key, and the allowed-clients dir."""

    secret_file: Path
    allowed_clients_dir: Path


@dataclass(frozen=True)
class CurveClientKeys:
    """Client CURVE material: its certificate with secret key, and the server's public one."""

    secret_file: Path
    server_public_file: Path


@dataclass(frozen=True)
class Incoming:
    """One received message: ``peer`` is the ZMQ identity (controller side) or None;
    ``channel`` is "direct" (ROUTER/DEALER) or "broadcast" (PUB/SUB); exactly one of
    ``message`` / ``error`` is set. ``user_id``: the role id of the sender's CURVE key (None
    without CURVE); ``address``: the sender's IP address when known."""

    peer: str | None
    channel: Literal["direct", "broadcast"]
    message: Message | None = None
    error: MessageError | None = None
    user_id: str | None = None
    address: str | None = None


def generate_keys(out_dir: str | Path, clients: Sequence[str] = ("client",)) -> dict[str, Path]:
    """Write CURVE certificates (via `zmq.auth.create_certificates`) into ``out_dir``.

    Layout: ``server.key`` / ``server.key_secret``; ``clients/<name>.key`` and
    ``.key_secret`` per client; ``allowed/<name>.key`` (public copies: the directory the server
    trusts). Secret files are made readable by the owner only. Returns the paths by role.
    """
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE (libsodium); install a pyzmq "
                          "wheel with CURVE support, or set controller.curve: false in the bench file")
    out = Path(out_dir)
    (out / "clients").mkdir(parents=True, exist_ok=True)
    (out / "allowed").mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    pub, sec = zmq.auth.create_certificates(str(out), "server")
    Path(sec).chmod(0o600)
    paths["server_public"], paths["server_secret"] = Path(pub), Path(sec)
    for name in clients:
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"client name {name!r} must be a plain file name")
        pub, sec = zmq.auth.create_certificates(str(out / "clients"), name)
        Path(sec).chmod(0o600)
        shutil.copy(pub, out / "allowed" / f"{name}.key")
        paths[f"client_secret:{name}"] = Path(sec)
    paths["allowed_dir"] = out / "allowed"
    return paths


def _load_cert(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not Path(path).is_file():
        raise ConfigError(f"CURVE certificate {path} not found; create keys with "
                          "`testbed keys --out DIR`")
    public, secret = zmq.auth.load_certificate(str(path))
    if need_secret and not secret:
        raise ConfigError(f"{path} holds no secret key; pass the '.key_secret' file")
    return public, secret


class CurveServerSecurity:
    """CURVE for the server sockets of one ZMQ context (controller, channel broker).

    Calling it with ``(ctx, socks)`` (sockets not yet bound) makes every socket a CURVE server
    with ``keys``' secret key, starts a `KeyedAuthenticator` on ``ctx`` (only keys of
    ``keys.allowed_clients_dir``; User-Id = the key's role id) and a `HandshakeMonitor` on the
    first socket; ``label`` names the server in logs. `stop()` before terminating ``ctx``."""

    def __init__(self, keys: CurveServerKeys, label: str):
        self.keys = keys
        self.label = label
        self._auth: KeyedAuthenticator | None = None
        self._monitor: HandshakeMonitor | None = None

    def __call__(self, ctx: zmq.Context, socks: Sequence[zmq.Socket]) -> "CurveServerSecurity":
        public, secret = _load_cert(self.keys.secret_file, need_secret=True)
        self._auth = KeyedAuthenticator(ctx, self.keys.allowed_clients_dir, self.label)
        self._auth.start()
        for sock in socks:
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
        self._monitor = HandshakeMonitor(socks[0], self.label)
        return self

    @property
    def refused_handshakes(self) -> int:
        """Handshakes refused by ZAP (unknown keys) or failed before it (no/wrong CURVE)."""
        zap = sum(self._auth.refused.values()) if self._auth is not None else 0
        return zap + (self._monitor.failures if self._monitor is not None else 0)

    def stop_monitor(self) -> None:
        """Stop the handshake monitor (before closing the sockets)."""
        if self._monitor is not None:
            self._monitor.stop()

    def stop(self) -> None:
        """Stop the monitor and the authenticator (sockets closed or not)."""
        self.stop_monitor()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def curve_client(sock: zmq.Socket, curve: CurveClientKeys) -> None:
    """Make ``sock`` (not yet connected) a CURVE client with ``curve``'s keys."""
    public, secret = _load_cert(curve.secret_file, need_secret=True)
    server_public, _ = _load_cert(curve.server_public_file, need_secret=False)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public


def _printable(identity: str) -> str:
    """A log-safe form of a ZMQ identity (binary ones shown escaped)."""
    return identity if identity.isprintable() else ascii(identity)


# A bound socket cuts a peer whose single frame exceeds this many times the codec's message
# limit before buffering it (ZMQ's MAXMSGSIZE); anything smaller is read and rejected by the
# codec with a reason the sender is told. Only bound sockets get the cut: on a connecting socket
# libzmq treats an oversized frame as a protocol error and never reconnects, so an agent would
# be cut off from its controller for good (found by the live fuzz test).
FRAME_CEILING_FACTOR = 2


def _base_socket(ctx: zmq.Context, kind: int, max_frame_bytes: int = -1) -> zmq.Socket:
    """A socket with linger 0, bounded reconnects and, with ``max_frame_bytes`` > 0, ZMQ's
    MAXMSGSIZE: a peer sending a bigger frame is disconnected before it is buffered (use on
    bound sockets only, see `FRAME_CEILING_FACTOR`)."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if max_frame_bytes > 0:
        sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    return sock


class _Receiver:
    """Shared receive/decode/count logic."""

    def __init__(self, codec: Codec):
        self.codec = codec
        self.rejections: collections.Counter[str] = collections.Counter()
        #: messages and bytes per (socket, direction, type) (see `testbed.net.traffic`)
        self.traffic = Traffic()
        self._poller = zmq.Poller()
        self._channels: dict[zmq.Socket, Literal["direct", "broadcast"]] = {}

    @property
    def n_rejected(self) -> int:
        """Total number of received messages rejected so far."""
        return sum(self.rejections.values())

    def _register(self, sock: zmq.Socket, channel: Literal["direct", "broadcast"]) -> None:
        self._poller.register(sock, zmq.POLLIN)
        self._channels[sock] = channel

    def poll(self, timeout_s: float) -> list[Incoming]:
        """Wait up to ``timeout_s`` seconds for messages; return all that are ready (maybe [])."""
        events = dict(self._poller.poll(max(0, int(timeout_s * 1000))))
        out: list[Incoming] = []
        for sock, channel in self._channels.items():
            if sock not in events:
                continue
            for _ in range(RECV_BATCH):
                try:
                    raw = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                out.append(self._decode(raw, channel, sock.type == zmq.ROUTER))
        return out

    def _decode(self, raw: list[zmq.Frame], channel, has_identity: bool) -> Incoming:
        user_id = frame_property(raw[-1], "User-Id")
        address = frame_property(raw[-1], "Peer-Address")
        frames = [f.bytes for f in raw]
        peer = None
        if has_identity:
            # surrogateescape: any identity bytes (ZMQ's own are binary) survive the round trip
            peer = frames[0].decode("utf-8", "surrogateescape")
            frames = frames[1:]
        try:
            msg = self.codec.decode(frames)
            self.traffic.add(channel, "in", msg.type, frames_bytes(frames))
            return Incoming(peer, channel, message=msg, user_id=user_id, address=address)
        except MessageError as err:
            self.traffic.add(channel, "in", "rejected", frames_bytes(frames))
            log.warning("rejected %s message from %s (%s): %s", channel,
                        _printable(peer) if peer is not None else "controller",
                        address or "unknown address", err)
            self.rejections[err.kind] += 1  # after logging: readers of the count see the log
            return Incoming(peer, channel, error=err, user_id=user_id, address=address)


class ControllerTransport(_Receiver):
    """ROUTER (requests/replies with agents) + PUB (broadcasts), optionally CURVE-protected.

    Endpoints may use port ``*`` (e.g. ``tcp://127.0.0.1:*``); the bound addresses are in
    ``router_address`` / ``pub_address``.
    """

    def __init__(self, router_endpoint: str = "tcp://127.0.0.1:*",
                 pub_endpoint: str = "tcp://127.0.0.1:*", curve: CurveServerKeys | None = None,
                 codec: Codec = DEFAULT_CODEC):
        super().__init__(codec)
        self._ctx = zmq.Context()
        self.security: CurveServerSecurity | None = None
        try:
            self.router = _base_socket(self._ctx, zmq.ROUTER,
                                       FRAME_CEILING_FACTOR * codec.max_message_bytes)
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self.pub = _base_socket(self._ctx, zmq.PUB)
            if curve is not None:
                self.security = CurveServerSecurity(curve, "controller")(
                    self._ctx, [self.router, self.pub])
            self.router.bind(router_endpoint)
            self.pub.bind(pub_endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"cannot bind controller sockets {router_endpoint} / "
                              f"{pub_endpoint}: {exc}; pick free ports") from exc
        except BaseException:
            self.close()
            raise
        self.router_address = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.pub_address = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._register(self.router, "direct")

    @property
    def refused_handshakes(self) -> int:
        """CURVE handshakes refused by ZAP (unknown keys) or failed (no/wrong CURVE)."""
        return self.security.refused_handshakes if self.security is not None else 0

    def send(self, peer: str, msg: Message, quiet: bool = False) -> bool:
        """Send ``msg`` to the agent with ZMQ identity ``peer``; False if it is unreachable
        (logged as a warning unless ``quiet``)."""
        frames = self.codec.encode(msg)
        self.traffic.add("direct", "out", msg.type, frames_bytes(frames))
        return self.send_frames(peer, frames, quiet=quiet)

    def send_frames(self, peer: str, frames: Sequence[bytes], quiet: bool = False) -> bool:
        """Send raw frames to ``peer`` (no validation; diagnostics and tests)."""
        try:
            self.router.send_multipart([peer.encode("utf-8", "surrogateescape"), *frames],
                                       zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone) or EAGAIN (queue full)
            level = logging.DEBUG if quiet else logging.WARNING
            log.log(level, "cannot send to %s: %s", _printable(peer), exc)
            return False

    def publish(self, msg: Message) -> None:
        """Broadcast ``msg`` to every subscribed agent (dropped for slow subscribers)."""
        frames = self.codec.encode(msg)
        self.traffic.add("broadcast", "out", msg.type, frames_bytes(frames))
        self.publish_frames(frames)

    def publish_frames(self, frames: Sequence[bytes]) -> None:
        """Broadcast raw frames (no validation; diagnostics and tests)."""
        try:
            self.pub.send_multipart(list(frames), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("broadcast dropped: %s", exc)

    def close(self) -> None:
        """Close sockets (linger 0), stop the authenticator, terminate the context."""
        if self.security is not None:
            self.security.stop_monitor()
        for name in ("router", "pub"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        if self.security is not None:
            self.security.stop()
        if not self._ctx.closed:
            self._ctx.term()


class AgentTransport(_Receiver):
    """DEALER (to the controller's ROUTER) + SUB (to its PUB), optionally with CURVE keys."""

    def __init__(self, node_id: str, router_address: str, pub_address: str,
                 curve: CurveClientKeys | None = None, codec: Codec = DEFAULT_CODEC):
        super().__init__(codec)
        self.identity = f"{node_id}#{secrets.token_hex(4)}"
        self._ctx = zmq.Context()
        try:
            self.dealer = _base_socket(self._ctx, zmq.DEALER)
            self.dealer.setsockopt(zmq.IDENTITY, self.identity.encode())
            self.sub = _base_socket(self._ctx, zmq.SUB)
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            if curve is not None:
                for sock in (self.dealer, self.sub):
                    curve_client(sock, curve)
            self.dealer.connect(router_address)
            self.sub.connect(pub_address)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"cannot connect to controller {router_address} / "
                              f"{pub_address}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self._register(self.dealer, "direct")
        self._register(self.sub, "broadcast")

    def send(self, msg: Message) -> bool:
        """Send ``msg`` to the controller; False if the outgoing queue is full."""
        frames = self.codec.encode(msg)
        self.traffic.add("direct", "out", msg.type, frames_bytes(frames))
        return self.send_frames(frames)

    def send_frames(self, frames: Sequence[bytes]) -> bool:
        """Send raw frames to the controller (no validation; diagnostics and tests)."""
        try:
            self.dealer.send_multipart(list(frames), zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            log.warning("cannot send to controller: %s", exc)
            return False

    def close(self) -> None:
        """Close sockets (linger 0) and terminate the context."""
        for name in ("dealer", "sub"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()
