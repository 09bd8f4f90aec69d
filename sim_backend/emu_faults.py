"""Fault injection shared by every emulated radio (Pluto on iiod, USRP behind the UHD API):
unplug (drop every connection, refuse new ones), stall (stop answering for T wall seconds while
the radio keeps running on the air), throughput cap (MB/s, like a slow USB or Ethernet link).
A server calls `Faults.gate` before answering a request and `Faults.throttle` for its sample
data; `Faults.on_unplug` callbacks drop its connections. `RadioServer` is the TCP server both
emulated radios serve on (accept, sessions, unplug, close)."""
from __future__ import annotations

import socket
import threading
import time


class Unplugged(Exception):
    """The radio was unplugged: the session ends."""


class Faults:
    """Fault state of one emulated radio (thread-safe): unplug, stall, throughput cap."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.unplugged = False
        self.stall_until = 0.0
        self.cap_bytes_s: float | None = None
        self._tokens_t = time.monotonic()
        self.on_unplug: list = []

    def unplug(self) -> None:
        """Drop every connection now; refuse new ones until `replug`."""
        with self._cond:
            self.unplugged = True
            self._cond.notify_all()
        for fn in list(self.on_unplug):
            fn()

    def replug(self) -> None:
        with self._cond:
            self.unplugged = False

    def stall(self, seconds: float) -> None:
        """Stop answering for ``seconds`` wall seconds from now."""
        with self._cond:
            self.stall_until = time.monotonic() + float(seconds)

    def cap(self, mbytes_s: float | None) -> None:
        """Limit buffer data to ``mbytes_s`` MB/s (None: no limit)."""
        with self._cond:
            self.cap_bytes_s = None if not mbytes_s else float(mbytes_s) * 1e6
            self._tokens_t = time.monotonic()

    def gate(self) -> None:
        """Wait out a stall; raise `Unplugged` when unplugged."""
        while True:
            with self._cond:
                if self.unplugged:
                    raise Unplugged()
                wait = self.stall_until - time.monotonic()
                if wait <= 0:
                    return
                self._cond.wait(min(wait, 0.2))

    def throttle(self, nbytes: int) -> None:
        """Sleep as a link of the capped throughput would for ``nbytes`` bytes."""
        with self._cond:
            if not self.cap_bytes_s:
                return
            now = time.monotonic()
            self._tokens_t = max(self._tokens_t, now) + nbytes / self.cap_bytes_s
            wait = self._tokens_t - now
        if wait > 0:
            time.sleep(wait)
        self.gate()


class RadioServer:
    """A TCP server for one emulated radio with fault injection: accepts on ``host:port``
    (port 0: a free one, see `port`), one thread per connection running
    ``session_class(self, sock).run()`` (a session has ``sock`` and a ``cancel`` event);
    refuses connections while unplugged; `close` stops accepting and drops every client.
    ``device`` is the emulated radio (it has a ``name``)."""

    session_class: type
    thread_name = "radio"

    def __init__(self, device, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None) -> None:
        self.device = device
        self.faults = faults or Faults()
        self.faults.on_unplug.append(self._drop_all)
        self._sock = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = self._sock.getsockname()[:2]
        self._sessions: set = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"{self.thread_name}-{device.name}")
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                break
            if self.faults.unplugged:
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = self.session_class(self, sock)
            with self._lock:
                self._sessions.add(session)
            threading.Thread(target=self._serve, args=(session,), daemon=True,
                             name=f"{self.thread_name}-{self.device.name}-client").start()

    def _serve(self, session) -> None:
        try:
            session.run()
        finally:
            with self._lock:
                self._sessions.discard(session)

    def _drop_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.cancel.set()
            try:
                s.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop accepting, drop every client."""
        self._closed = True
        for fn in (lambda: self._sock.shutdown(socket.SHUT_RDWR), self._sock.close):
            try:
                fn()
            except OSError:
                pass
        self._drop_all()
        self._thread.join(timeout=2.0)
