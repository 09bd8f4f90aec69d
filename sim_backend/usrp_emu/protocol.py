"""The emulated USRP's wire format: length-prefixed frames over TCP.

A frame is ``!II`` (header bytes, payload bytes), a JSON header (an object) and a raw
payload (sample data: complex64, C order, shape in the header). Every request carries an
``id``; its reply carries the same ``id`` (a client that gave up waiting skips late replies).
"""
from __future__ import annotations

import json
import socket
import struct
import time

PREFIX = struct.Struct("!II")
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 28


class ProtocolError(ConnectionError):
    """The peer sent something that is not a frame."""


def encode(head: dict, payload: bytes = b"") -> bytes:
    """One frame: prefix + JSON header + payload."""
    h = json.dumps(head, separators=(",", ":")).encode()
    return PREFIX.pack(len(h), len(payload)) + h + payload


class FrameReader:
    """Reads frames from a socket; with a deadline, a partial frame is kept for the next
    call (a timeout never desynchronizes the stream)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def _frame(self) -> tuple[dict, bytes] | None:
        if len(self._buf) < PREFIX.size:
            return None
        nh, np_ = PREFIX.unpack_from(self._buf)
        if nh > MAX_HEADER_BYTES or np_ > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"frame too large ({nh} + {np_} bytes)")
        end = PREFIX.size + nh + np_
        if len(self._buf) < end:
            return None
        try:
            head = json.loads(bytes(self._buf[PREFIX.size:PREFIX.size + nh]))
        except ValueError as exc:
            raise ProtocolError(f"bad frame header: {exc}") from None
        payload = bytes(self._buf[PREFIX.size + nh:end])
        del self._buf[:end]
        return head, payload

    def read(self, deadline: float | None = None) -> tuple[dict, bytes] | None:
        """The next frame; None if the monotonic ``deadline`` passed first (None: wait).
        ConnectionError when the peer closed."""
        while True:
            got = self._frame()
            if got is not None:
                return got
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(None)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("connection closed by the peer")
            self._buf += chunk
