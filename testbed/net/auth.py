"""CURVE authentication bound to role ids, with every refused handshake logged.

`KeyedAuthenticator` is the ZAP handler of a CURVE server socket (controller ROUTER/PUB, channel
broker): it admits only the public keys found in an ``allowed/`` directory (the layout
`testbed.net.transport.generate_keys` writes, one ``<role id>.key`` per client) and gives each
connection the ZMQ User-Id = the name of its key file, i.e. the role id the key was issued for.
Receivers read it from every message (`testbed.zmq_util.frame_property`) and refuse a peer that
claims another id (`key_owner_problem`). Every refusal is logged with the peer's IP address.

`HandshakeMonitor` watches a server socket's events and logs handshakes that fail before ZAP
is asked (a peer without CURVE, or one using the wrong server key), with the peer's address
when the operating system still knows it.
"""
from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from testbed.errors import ConfigError

log = logging.getLogger(__name__)


def load_allowed_keys(allowed_dir: str | Path) -> dict[bytes, str]:
    """Map z85 public key -> role id (file name without ``.key``) of every ``*.key`` in
    ``allowed_dir``. Raises ConfigError if the directory is missing or a key appears twice."""
    d = Path(allowed_dir)
    if not d.is_dir():
        raise ConfigError(f"allowed-clients directory {d} not found; create it with "
                          "`testbed keys --out DIR`")
    names: dict[bytes, str] = {}
    for f in sorted(d.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(str(f))
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{f} is not a CURVE public key file ({exc}); regenerate it "
                              "with `testbed keys`") from None
        if public in names:
            raise ConfigError(f"{f} holds the same public key as {names[public]}.key; one key "
                              "per role id -- regenerate keys with `testbed keys`")
        names[public] = f.stem
    return names


class KeyedAuthenticator(ThreadAuthenticator):
    """ZAP handler: admit keys of ``allowed_dir`` only, User-Id = the key's role id.

    ``label`` names the server in log lines (e.g. "controller", "channel broker").
    ``refused`` counts refusals per reason (read from any thread)."""

    def __init__(self, context: zmq.Context, allowed_dir: str | Path, label: str):
        super().__init__(context, log=logging.getLogger(__name__ + ".zap"))
        self.label = label
        self.names = load_allowed_keys(allowed_dir)
        self.refused: collections.Counter[str] = collections.Counter()
        self._current: tuple[str, bytes] = ("?", b"")

    def start(self) -> None:
        super().start()
        self.configure_curve_callback("*", self)

    # pyzmq calls callback(domain, z85 key) -> bool for each CURVE handshake
    def callback(self, domain: str, z85_key: bytes) -> bool:
        return bytes(z85_key) in self.names

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.names[z85.encode(client_public_key)]

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        key = msg[6] if len(msg) > 6 else b""
        self._current = (address, key)
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "anonymous") -> None:
        address, key = self._current
        if status_code != b"200":
            shown = z85.encode(key).decode() if len(key) == 32 else "none"
            reason = status_text.decode("utf-8", "replace")
            log.warning("%s: refused CURVE handshake from %s (public key %s): %s; add the "
                        "client's key to the allowed directory if it belongs to the bench",
                        self.label, address, shown, reason)
            self.refused[reason] += 1
        else:
            log.debug("%s: CURVE client %r connected from %s", self.label, user_id, address)
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


def key_owner_problem(user_id: str | None, claimed_id: str) -> str | None:
    """Why a CURVE peer whose key belongs to ``user_id`` may not act as ``claimed_id`` (None if
    it may). ``user_id`` None means the socket has no CURVE (nothing to check)."""
    if user_id is None or user_id == claimed_id:
        return None
    return (f"the CURVE key of {user_id!r} cannot act as {claimed_id!r}; each role must use "
            f"its own key (clients/{claimed_id}.key_secret)")


#: failures before ZAP is asked (refusals by ZAP are logged, with the address, by the
#: `KeyedAuthenticator`)
_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed (no CURVE, or the wrong "
                                                 "server key)",
           zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake protocol error (no CURVE, or the "
                                                "wrong server key)"}


class HandshakeMonitor:
    """Log failed handshakes on ``sock`` (a bound server socket) from a daemon thread.

    The peer's address is looked up when the connection is accepted (by file descriptor);
    ``failures`` counts failed handshakes. Call `stop()` before closing ``sock``."""

    def __init__(self, sock: zmq.Socket, label: str):
        self.label = label
        self.failures = 0
        self._stop = threading.Event()
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
        for e in _FAILED:
            events |= e
        self._sock = sock
        self._mon = sock.get_monitor_socket(events)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"handshake-monitor-{label}")
        self._thread.start()

    def _run(self) -> None:
        by_fd: dict[int, str] = {}
        last_failure: str | None = None
        try:
            while not self._stop.is_set():
                if not self._mon.poll(50):
                    continue
                ev = recv_monitor_message(self._mon)
                event, value = ev["event"], ev["value"]
                if event == zmq.EVENT_ACCEPTED:
                    by_fd[value] = _peer_of_fd(value) or "unknown address"
                elif event in _FAILED:
                    self.failures += 1
                    last_failure = _FAILED[event]
                elif event == zmq.EVENT_DISCONNECTED:
                    peer = by_fd.pop(value, "unknown address")
                    if last_failure is not None:
                        log.warning("%s: %s from %s on %s", self.label, last_failure, peer,
                                    ev["endpoint"].decode("utf-8", "replace"))
                        last_failure = None
        except zmq.ZMQError:
            pass  # context terminated
        finally:
            self._mon.close(linger=0)

    def stop(self) -> None:
        """Stop watching (joins the thread, at most ~1 s)."""
        self._stop.set()
        self._thread.join(1.0)
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass


def _peer_of_fd(fd: int) -> str | None:
    """Remote ``ip:port`` of this process's TCP socket ``fd`` (None if already gone)."""
    import psutil
    try:
        for c in psutil.Process().net_connections(kind="tcp"):
            if c.fd == fd and c.raddr:
                return f"{c.raddr.ip}:{c.raddr.port}"
    except (psutil.Error, OSError):
        return None
    return None
