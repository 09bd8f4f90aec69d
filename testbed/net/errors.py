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


#: What a failed round is blamed on: a role process (dead, frozen or unreachable), or a live
#: role's radio, or the channel broker it waits on.
CULPRIT_KINDS = ("node", "receiver", "channel", "controller", "radio", "broker")


class PeerLostError(TestbedError):
    """A registered peer stopped answering (died, froze, or its link dropped).

    ``node_id`` names the peer, ``role`` its role ("node", "receiver", "channel" = the channel
    broker's process; None if unknown), ``last_seen_age_s`` is the time since anything was last
    received from it (seconds), ``timeout_s`` the configured dead-after limit (seconds).
    """

    def __init__(self, node_id: str, last_seen_age_s: float, timeout_s: float,
                 detail: str = "no heartbeat", role: str | None = None):
        self.node_id = node_id
        self.role = role
        self.last_seen_age_s = float(last_seen_age_s)
        self.timeout_s = float(timeout_s)
        self.detail = detail
        who = f"{_ROLE_NAMES.get(role, role)} {node_id!r}" if role else f"peer {node_id!r}"
        super().__init__(
            f"{who} lost: {detail}; last heard {self.last_seen_age_s:.2f} s ago "
            f"(dead after {self.timeout_s:.2f} s). Check that its process is running and not "
            f"frozen (e.g. stopped with Ctrl-Z/SIGSTOP), that its host is reachable, then "
            f"restart that role and rerun; partial results up to this point were handed to "
            f"the run's callback.")

    @property
    def culprit(self) -> str:
        """What to blame (one of `CULPRIT_KINDS`): the lost peer's role (the channel role's
        process is the channel broker)."""
        return "broker" if self.role == "channel" else (self.role or "node")


_ROLE_NAMES = {"node": "node", "receiver": "receiver", "channel": "channel broker"}


class RegistrationError(TestbedError):
    """An agent could not register: the controller refused it, or never answered."""


class ControllerLostError(TestbedError):
    """An agent stopped hearing the controller (no heartbeat within its timeout)."""


class RequestTimeout(TestbedError, TimeoutError):
    """A request got no reply within its timeout although the peer is still alive.

    ``waiting`` maps each peer that did not reply to what its last heartbeat said it was doing
    ("ok", or e.g. "waiting on the channel broker ... (receive) for 12.0 s"); ``culprit`` says
    what to blame (one of `CULPRIT_KINDS`) and ``culprit_id`` the peer."""

    def __init__(self, message: str, waiting: dict[str, str] | None = None,
                 culprit: str | None = None, culprit_id: str | None = None):
        super().__init__(message)
        self.waiting = dict(waiting or {})
        self.culprit = culprit
        self.culprit_id = culprit_id


class RemoteError(TestbedError):
    """A peer answered a request with an ERROR message; ``node_id`` and ``code`` say which."""

    def __init__(self, node_id: str, code: str, message: str):
        self.node_id = node_id
        self.code = code
        super().__init__(f"peer {node_id!r} reported {code}: {message}")
