"""Fault injection shared by every emulated radio (Pluto on iiod, USRP behind the UHD API):
unplug (drop every connection, refuse new ones), stall (stop answering for T wall seconds while
the radio keeps running on the air), throughput cap (MB/s, like a slow USB or Ethernet link).
A server calls `Faults.gate` before answering a request and `Faults.throttle` for its sample
data; `Faults.on_unplug` callbacks drop its connections."""
from __future__ import annotations

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
