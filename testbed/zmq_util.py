"""Small pyzmq helpers shared by every ZMQ server (control-plane transport, channel broker)."""
from __future__ import annotations

import zmq


def frame_property(frame: zmq.Frame, name: str) -> str | None:
    """ZMQ message property ``name`` of a received ``frame`` (``recv(copy=False)``), or None
    when the connection has none: "User-Id" (the ZAP user id of a CURVE connection; on our
    servers the role id its key was issued for), "Peer-Address" (the peer's IP address)."""
    try:
        return frame.get(name) or None
    except (zmq.ZMQError, KeyError):
        return None
