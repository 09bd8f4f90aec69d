"""Exception types of the control plane. All derive from `testbed.errors.TestbedError`."""
from __future__ import annotations

from testbed.errors import TestbedError

#: Reasons a received message can be rejected (the ``kind`` of a `MessageError`); the
#: controller and agents count rejections per kind.
REJECT_KINDS = (
    "oversized",      # total bytes or header bytes above the configured limit
    "frame_count",    # no frames, too many frames, or frame count != array descriptors + 1
    "bad_json",       # header is not UTF-8 JSON object
    "version",        # header protocol version differs from PROTOCOL_VERSION
    "unknown_type",   # header names no known message type
    "bad_array",      # dtype not allowed, bad shape, size mismatch, bad frame reference
    "invalid",        # body fails the message model's validation
    "unexpected",     # a well-formed message the receiver does not accept in its state
)


#: longest `MessageError.reason` kept (characters): replies quoting it stay within the
#: schema's string limits whatever a peer sent.
MAX_REASON_CHARS = 1024


class MessageError(TestbedError, ValueError):
    """A message could not be encoded or decoded.

    ``kind`` is one of `REJECT_KINDS`; ``reason`` is a human-readable explanation that says
    what was wrong (and, where it helps, what the sender must change), at most
    `MAX_REASON_CHARS` characters.
    """

    def __init__(self, kind: str, reason: str):
        if kind not in REJECT_KINDS:
            raise ValueError(f"unknown MessageError kind {kind!r}; use one of {REJECT_KINDS}")
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS - 20] + f"...({len(reason)} chars)"
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class PeerLostError(TestbedError):
    """A registered peer stopped answering (died, froze, or its link dropped).

    ``node_id`` names the peer, ``last_seen_age_s`` is the time since anything was last
    received from it (seconds), ``timeout_s`` the configured dead-after limit (seconds).
    """

    def __init__(self, node_id: str, last_seen_age_s: float, timeout_s: float,
                 detail: str = "no heartbeat"):
        self.node_id = node_id
        self.last_seen_age_s = float(last_seen_age_s)
        self.timeout_s = float(timeout_s)
        self.detail = detail
        super().__init__(
            f"peer {node_id!r} lost: {detail}; last heard {self.last_seen_age_s:.2f} s ago "
            f"(dead after {self.timeout_s:.2f} s). Check that its process is running and not "
            f"frozen (e.g. stopped with Ctrl-Z/SIGSTOP), that its host is reachable, then "
            f"restart that role and rerun; partial results up to this point were handed to "
            f"the run's callback.")


class RegistrationError(TestbedError):
    """An agent could not register: the controller refused it, or never answered."""


class ControllerLostError(TestbedError):
    """An agent stopped hearing the controller (no heartbeat within its timeout)."""


class RequestTimeout(TestbedError, TimeoutError):
    """A request got no reply within its timeout although the peer is still alive."""


class RemoteError(TestbedError):
    """A peer answered a request with an ERROR message; ``node_id`` and ``code`` say which."""

    def __init__(self, node_id: str, code: str, message: str):
        self.node_id = node_id
        self.code = code
        super().__init__(f"peer {node_id!r} reported {code}: {message}")
