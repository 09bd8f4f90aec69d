"""Control-plane message schema: one pydantic model per message type, told apart by ``type``.

Every message carries ``msg_id`` (sender-chosen integer) and ``reply_to`` (the ``msg_id`` of
the request it answers, or None). Arrays (channel matrices, beamformers, tensors) are numpy
arrays in the model; on the wire they travel as raw little-endian bytes in separate ZMQ
frames (see `testbed.net.codec`). Allowed array dtypes: `ARRAY_DTYPES`.

Bump `PROTOCOL_VERSION` whenever a model changes incompatibly; peers with another version are
refused at registration (and their messages rejected by the codec).
"""
from __future__ import annotations

import itertools
import math
import os
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator

PROTOCOL_VERSION = 1

#: numpy dtypes an array field may have (names as in ``np.dtype(name).name``).
ARRAY_DTYPES = ("float32", "float64", "complex64", "complex128", "int32", "int64")
COMPLEX_DTYPES = ("complex64", "complex128")

NODE_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
ROLES = ("node", "receiver", "channel")

_ids = itertools.count(1 + (os.getpid() << 20))


def next_msg_id() -> int:
    """A fresh message id (unique within this process; pid in the high bits)."""
    return next(_ids)


def _check_array(value: Any, *, complex_only: bool) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(value).__name__}")
    if value.dtype.name not in ARRAY_DTYPES:
        raise ValueError(f"array dtype {value.dtype.name} not allowed; use one of "
                         f"{ARRAY_DTYPES}")
    if complex_only and value.dtype.name not in COMPLEX_DTYPES:
        raise ValueError(f"array must be complex ({COMPLEX_DTYPES}), got {value.dtype.name}")
    return value


#: Any whitelisted numpy array (a tensor).
Array = Annotated[np.ndarray, PlainValidator(lambda v: _check_array(v, complex_only=False))]
#: A complex64/complex128 numpy array (channel matrices, beamformers).
ComplexArray = Annotated[np.ndarray, PlainValidator(lambda v: _check_array(v, complex_only=True))]
NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
NonNegInt = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True,
                              arbitrary_types_allowed=True)


class Message(_Model):
    """Base of all messages: ``msg_id`` identifies it, ``reply_to`` names the request answered."""

    type: str
    msg_id: NonNegInt = Field(default_factory=next_msg_id)
    reply_to: NonNegInt | None = None


class Capabilities(_Model):
    """What a node offers: memory in bytes, sustained compute in FLOP/s, its radio, antennas."""

    memory_bytes: NonNegInt = 0
    compute_flops: float = Field(0.0, ge=0)
    radio_kind: str = Field("sim", max_length=64)
    radio_serial: str = Field("", max_length=128)
    n_antennas: int = Field(1, ge=1, le=1024)


class Register(Message):
    """Agent -> controller: who I am, which protocol and model I speak, what I can do."""

    type: Literal["register"] = "register"
    node_id: NodeId
    role: Literal["node", "receiver", "channel"]
    protocol_version: int
    model_fingerprint: str = Field(max_length=256)
    capabilities: Capabilities = Capabilities()


class RegisterAck(Message):
    """Controller -> agent: registered; heartbeat period and the controller's dead-after (s)."""

    type: Literal["register_ack"] = "register_ack"
    node_id: NodeId
    heartbeat_interval_s: float = Field(gt=0)
    peer_timeout_s: float = Field(gt=0)


class RegisterReject(Message):
    """Controller -> agent: refused, with the reason and what to change."""

    type: Literal["register_reject"] = "register_reject"
    reason: str = Field(max_length=4096)


class Heartbeat(Message):
    """Liveness, both ways. ``timestamp`` is the sender's wall clock (Unix seconds)."""

    type: Literal["heartbeat"] = "heartbeat"
    seq: NonNegInt
    timestamp: float
    status: str = Field("ok", max_length=256)


class Assignment(Message):
    """Controller -> node: model split. ``ratios`` per node id (fractions summing to 1)."""

    type: Literal["assignment"] = "assignment"
    ratios: dict[NodeId, float]
    plan_summary: dict[str, Any] = Field(default_factory=dict)
    model_fingerprint: str = Field(max_length=256)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("ratios must name at least one node")
        if any(r < 0 or r > 1 for r in v.values()):
            raise ValueError("every ratio must lie in [0, 1]")
        if not math.isclose(sum(v.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"ratios must sum to 1, they sum to {sum(v.values()):.6g}")
        return v


class Design(Message):
    """Controller -> all: transceiver design for one channel realization.

    ``a``: transmit precoders, complex, shape (n_nodes, n_tx, L) or as the phy layer defines;
    ``b``: receive aggregation beamformer, complex, shape (n_rx_antennas, L).
    ``node_order`` gives the node id of each leading index of ``a``.
    """

    type: Literal["design"] = "design"
    realization_id: NonNegInt
    node_order: list[NodeId] = Field(default_factory=list)
    a: ComplexArray
    b: ComplexArray


class ChannelEstimate(Message):
    """Receiver -> controller: estimated channel of one node for one realization (complex)."""

    type: Literal["channel_estimate"] = "channel_estimate"
    node_id: NodeId
    realization_id: NonNegInt
    h: ComplexArray


class Slot(_Model):
    """One node's transmit window: first sample on its radio's sample clock, and length."""

    start_sample: NonNegInt
    n_samples: Annotated[int, Field(ge=1)]


class RoundSchedule(Message):
    """Controller -> all: when each node transmits its partial for (layer, site, round)."""

    type: Literal["round_schedule"] = "round_schedule"
    round_id: NonNegInt
    layer: NonNegInt
    site: str = Field(max_length=64)
    slots: dict[NodeId, Slot]


class _TensorMessage(Message):
    layer: NonNegInt
    site: str = Field(max_length=64)
    round_id: NonNegInt
    tensor: Array


class Partial(_TensorMessage):
    """Node -> controller/receiver: this node's partial sum for (layer, site, round)."""

    type: Literal["partial"] = "partial"


class Aggregate(_TensorMessage):
    """Receiver/controller -> node: the aggregated (all-reduced) tensor."""

    type: Literal["aggregate"] = "aggregate"


class Result(Message):
    """Broadcast of a finished step (e.g. generated tokens, metrics); ``tensor`` optional."""

    type: Literal["result"] = "result"
    round_id: NonNegInt
    info: dict[str, Any] = Field(default_factory=dict)
    tensor: Array | None = None


class Error(Message):
    """Either way: something went wrong handling a message. ``code`` is machine-readable."""

    type: Literal["error"] = "error"
    code: str = Field(max_length=64)
    message: str = Field(max_length=8192)
    node_id: NodeId | None = None


class Shutdown(Message):
    """Controller -> all (broadcast): stop now; ``reason`` says why."""

    type: Literal["shutdown"] = "shutdown"
    reason: str = Field("", max_length=4096)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.model_fields["type"].default: cls
    for cls in (Register, RegisterAck, RegisterReject, Heartbeat, Assignment, Design,
                ChannelEstimate, RoundSchedule, Partial, Aggregate, Result, Error, Shutdown)
}

AnyMessage = Annotated[Union[tuple(MESSAGE_TYPES.values())], Field(discriminator="type")]


def reply(request: Message, response: Message) -> Message:
    """Return ``response`` with ``reply_to`` set to ``request.msg_id``."""
    return response.model_copy(update={"reply_to": request.msg_id})
