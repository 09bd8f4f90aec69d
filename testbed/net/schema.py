"""Control-plane message schema: one pydantic model per message type, told apart by ``type``.

Every message carries ``msg_id`` (sender-chosen integer) and ``reply_to`` (the ``msg_id`` of
the request it answers, or None). Arrays (channel matrices, beamformers, tensors) are numpy
arrays in the model; on the wire they travel as raw little-endian bytes in separate ZMQ
frames (see `testbed.net.codec`). Allowed array dtypes: `ARRAY_DTYPES`.

Bump `PROTOCOL_VERSION` whenever a model changes incompatibly; peers with another version are
refused at registration (and their messages rejected by the codec).
"""
from __future__ import annotations

import functools
import itertools
import math
import os
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator

PROTOCOL_VERSION = 5

#: numpy dtypes an array field may have (names as in ``np.dtype(name).name``).
ARRAY_DTYPES = ("float32", "float64", "complex64", "complex128", "int32", "int64", "uint8")
COMPLEX_DTYPES = ("complex64", "complex128")

NODE_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
#: file names of a node slice on the wire (plain names, never a path or a dot file)
SLICE_FILE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"
#: largest slice chunk (bytes) a `ShardChunk` carries
MAX_CHUNK_BYTES = 16 * 2**20
#: ``model_fingerprint`` of a role that brings no checkpoint (a node then loads the slice the
#: controller sends it, `ShardOffer`)
NO_CHECKPOINT = "none"
ROLES = ("node", "receiver", "channel")

_ids = itertools.count(1 + (os.getpid() << 20))


def next_msg_id() -> int:
    """A fresh message id (unique within this process; pid in the high bits)."""
    return next(_ids)


@functools.lru_cache(maxsize=256)
def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name`` remembered per dtype (numpy computes it in Python, ~5 us a call; every
    array of every message asks)."""
    return dtype.name


def _check_array(value: Any, *, complex_only: bool) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(value).__name__}")
    if dtype_name(value.dtype) not in ARRAY_DTYPES:
        raise ValueError(f"array dtype {value.dtype.name} not allowed; use one of "
                         f"{ARRAY_DTYPES}")
    if complex_only and dtype_name(value.dtype) not in COMPLEX_DTYPES:
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


class SliceFile(_Model):
    """One file of a node slice: its size (bytes) and SHA-256 (hex)."""

    bytes: Annotated[int, Field(ge=0, le=2**40)]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ShardOffer(Message):
    """Controller -> node, before ASSIGNMENT: node ``index``'s slice of checkpoint
    ``model_fingerprint`` for ``ratios`` (bench order) is ``files`` (a small checkpoint
    directory, `testbed.llm.node_slice`). The node's `Ack` info ``need`` says whether to send
    it (False: the node brings its own checkpoint, or has this slice cached and verified)."""

    type: Literal["shard_offer"] = "shard_offer"
    model_fingerprint: str = Field(max_length=256)
    ratios: list[Annotated[float, Field(ge=0, le=1)]] = Field(min_length=1, max_length=1024)
    index: NonNegInt
    files: dict[Annotated[str, Field(pattern=SLICE_FILE_PATTERN)], SliceFile] = Field(
        min_length=1, max_length=16)
    chunk_bytes: Annotated[int, Field(ge=1, le=MAX_CHUNK_BYTES)]


class ShardChunk(Message):
    """Controller -> node: bytes ``[offset, offset + len(data))`` of slice file ``file`` of the
    last `ShardOffer` (``data`` 1-D uint8, at most the offer's ``chunk_bytes``). The node
    acknowledges each; its ack of the last chunk says the slice is stored and verified."""

    type: Literal["shard_chunk"] = "shard_chunk"
    file: str = Field(pattern=SLICE_FILE_PATTERN)
    offset: Annotated[int, Field(ge=0, le=2**40)]
    data: Array

    @field_validator("data")
    @classmethod
    def _bytes(cls, v: np.ndarray) -> np.ndarray:
        if v.dtype != np.uint8 or v.ndim != 1 or v.size > MAX_CHUNK_BYTES:
            raise ValueError(f"data must be 1-D uint8 of at most {MAX_CHUNK_BYTES} bytes")
        return v


class PlanFields(_Model):
    """A `testbed.phy.round.RoundPlan` on the wire (times in samples on the receiver clock)."""

    scheme: Literal["aircomp", "fdma"]
    n_nodes: Annotated[int, Field(ge=1, le=1024)]
    n_tx: Annotated[int, Field(ge=1, le=64)]
    n_streams: Annotated[int, Field(ge=1, le=64)]
    n_values: Annotated[int, Field(ge=0, le=2**31)]
    start: Annotated[int, Field(ge=-(2**62), le=2**62)]
    sounding: bool = False


class Forward(Message):
    """Controller -> node: run the model on ``ids`` (int64 ``(batch, tokens)``) until the next
    all-reduce or the end. ``score``: the output node returns the log-probabilities of
    ``ids[:, 1:]`` (perplexity) instead of logits; ``last_only``: only the last position's
    logits; ``report_powers``: report each partial's symbol power (scale statistics pass)."""

    type: Literal["forward"] = "forward"
    round_id: NonNegInt
    ids: Array
    reset: bool = True
    use_cache: bool = True
    last_only: bool = False
    score: bool = False
    report_powers: bool = False


class NodeStep(Message):
    """Node -> controller: where the node's forward pass stands. ``done`` False: it waits at
    the all-reduce of (layer, site) with a partial of ``shape`` (and its symbol ``power`` when
    asked); True: the pass finished and ``output`` holds the output node's logits or scores."""

    type: Literal["node_step"] = "node_step"
    round_id: NonNegInt
    done: bool
    layer: NonNegInt | None = None
    site: str | None = Field(None, max_length=64)
    shape: list[NonNegInt] | None = Field(None, max_length=8)
    power: float | None = Field(None, ge=0)
    output: Array | None = None


class SoundCommand(Message):
    """Controller -> nodes and receiver: a sounding frame (pilots + silence) at ``plan.start``."""

    type: Literal["sound"] = "sound"
    round_id: NonNegInt
    plan: PlanFields


class SoundingReport(Message):
    """Receiver -> controller: LS channel estimates ``h`` ``(N, N_r, N_t)`` (signal model), the
    noise estimate (signal model, linear), the detected offset (samples) and the receiver's
    clock after the window (samples)."""

    type: Literal["sounding_report"] = "sounding_report"
    round_id: NonNegInt
    h: ComplexArray
    noise_var: float = Field(gt=0)
    offset: int
    rx_clock: int


class PayloadCommand(Message):
    """Controller -> node: transmit the partial of (layer, site) normalized by ``scale`` and
    precoded with ``precoder`` B_n ``(N_t, L)`` at ``plan.start``; then continue with the
    receiver's estimate and reply with the next `NodeStep`."""

    type: Literal["payload"] = "payload"
    round_id: NonNegInt
    layer: NonNegInt
    site: str = Field(max_length=64)
    plan: PlanFields
    scale: float = Field(gt=0)
    precoder: ComplexArray
    tap: bool = False


class AggregateCommand(Message):
    """Controller -> receiver: receive the payload frame of ``plan``, aggregate with
    ``beamformers`` A ``(n_slots, N_r, L)``, de-normalize with ``scale`` to ``shape`` and
    broadcast the estimate to the nodes."""

    type: Literal["aggregate_cmd"] = "aggregate_cmd"
    round_id: NonNegInt
    layer: NonNegInt
    site: str = Field(max_length=64)
    plan: PlanFields
    scale: float = Field(gt=0)
    shape: list[NonNegInt] = Field(max_length=8)
    beamformers: ComplexArray


class RoundReport(Message):
    """Receiver -> controller: a payload round was received and its estimate broadcast."""

    type: Literal["round_report"] = "round_report"
    round_id: NonNegInt
    offset: int
    metric: float = Field(ge=0)
    rx_clock: int
    receive_wait_s: float = Field(0.0, ge=0)


class ClockQuery(Message):
    """Controller -> receiver: what is your radio's sample clock?"""

    type: Literal["clock_query"] = "clock_query"


class ClockReport(Message):
    """Receiver -> controller: its radio's sample clock (samples), whether that clock runs with
    the wall clock (hardware, emulated radios) or lock-step (simulator), its sample rate (Hz)
    and its scheduling latency (samples)."""

    type: Literal["clock_report"] = "clock_report"
    rx_clock: int
    realtime: bool = False
    sample_rate_hz: float = Field(1.0e6, gt=0)
    latency_samples: NonNegInt = 0


class TimeSyncCommand(Message):
    """Controller -> roles: one step of the time base across radios.

    Radios without timestamps (Plutos, `calibration.timebase`): ``loopback``: measure your
    radio's TX->RX offset; ``beacon`` (receiver): transmit the beacon and reply
    ``Ack(info={"air_sample": M})`` (its start on your RX clock); ``capture`` (node): find the
    beacon that started at receiver RX sample ``beacon_air_sample`` in a long capture and
    transmit on the receiver's clock from now on.

    USRPs with ``pps_align: agreed`` (`calibration.pps`): ``pps_edge``: reply
    ``Ack(info={"edge_host_s": t, "period_s": p})``, the host wall time of a PPS edge your
    device saw and the PPS period (wall s); ``pps_latch``: zero your device time on the first
    edge after host wall time ``latch_host_time_s``."""

    type: Literal["time_sync"] = "time_sync"
    step: Literal["loopback", "beacon", "capture", "pps_edge", "pps_latch"]
    beacon_air_sample: float | None = None
    latch_host_time_s: float | None = None


#: largest window (samples per antenna) a `CaptureCommand` may ask for
MAX_CAPTURE_SAMPLES = 1 << 18


class BurstCommand(Message):
    """Controller -> node (``testbed calibrate`` over the control plane): transmit
    ``samples`` ``(n_tx, K)`` (full scale 1.0) to start at receiver RX sample ``at_sample``,
    through the node's time base only (never through a loaded calibration: the burst measures
    what a calibration corrects)."""

    type: Literal["burst"] = "burst"
    samples: ComplexArray
    at_sample: int


class CaptureCommand(Message):
    """Controller -> receiver (``testbed calibrate``): receive ``n_samples`` samples per
    antenna starting at its RX sample ``at_sample`` and reply with a `CaptureReport`."""

    type: Literal["capture"] = "capture"
    n_samples: int = Field(gt=0, le=MAX_CAPTURE_SAMPLES)
    at_sample: int


class CaptureReport(Message):
    """Receiver -> controller: the window ``samples`` ``(N_r, n)`` complex64 and the
    receiver's clock after it (samples)."""

    type: Literal["capture_report"] = "capture_report"
    samples: ComplexArray
    rx_clock: int


class NewRealization(Message):
    """Controller -> channel agent (simulated benches): draw the next fading block."""

    type: Literal["new_realization"] = "new_realization"


class TruthQuery(Message):
    """Controller -> channel agent: the simulator's truth (only for ``--csi perfect``)."""

    type: Literal["truth_query"] = "truth_query"


class TruthReport(Message):
    """Channel agent -> controller: true channels ``(N, N_r, N_t)`` (signal model) and the air's
    noise variance (full-scale units, linear)."""

    type: Literal["truth_report"] = "truth_report"
    h: ComplexArray
    air_noise_var: float = Field(ge=0)


class StatsQuery(Message):
    """Controller -> any role: report your counters."""

    type: Literal["stats_query"] = "stats_query"


class StatsReport(Message):
    """Role -> controller: memory, rounds, radio counters, traffic table (JSON-able)."""

    type: Literal["stats_report"] = "stats_report"
    info: dict[str, Any] = Field(default_factory=dict)


class Ack(Message):
    """Any role -> controller: a command was carried out; ``info`` what it did."""

    type: Literal["ack"] = "ack"
    info: dict[str, Any] = Field(default_factory=dict)


class _TensorMessage(Message):
    layer: NonNegInt
    site: str = Field(max_length=64)
    round_id: NonNegInt
    tensor: Array


class Partial(_TensorMessage):
    """Node -> controller: this node's partial sum for (layer, site, round); only the
    ``exact`` reference method (a perfect digital network) sends partials to the controller."""

    type: Literal["partial"] = "partial"


class Aggregate(_TensorMessage):
    """Controller -> node: the exact sum (``exact`` method)."""

    type: Literal["aggregate"] = "aggregate"


class Estimate(_TensorMessage):
    """Receiver -> nodes (the receiver's own PUB socket): the de-normalized estimate of the sum
    of one over-the-air round, float32."""

    type: Literal["estimate"] = "estimate"


class TapPartial(_TensorMessage):
    """Node -> measurement sink (``--measure-error`` only): a copy of the partial the node sent
    over the air, for measuring the all-reduce error. The computation never reads it."""

    type: Literal["tap_partial"] = "tap_partial"
    node: NonNegInt


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
    for cls in (Register, RegisterAck, RegisterReject, Heartbeat, Assignment, ShardOffer,
                ShardChunk, Forward, NodeStep,
                SoundCommand, SoundingReport, PayloadCommand, AggregateCommand, RoundReport,
                ClockQuery, ClockReport, TimeSyncCommand, BurstCommand, CaptureCommand,
                CaptureReport, NewRealization, TruthQuery, TruthReport,
                StatsQuery, StatsReport, Ack, Partial, Aggregate, Estimate, TapPartial, Result, Error,
                Shutdown)
}

AnyMessage = Annotated[Union[tuple(MESSAGE_TYPES.values())], Field(discriminator="type")]


def reply(request: Message, response: Message) -> Message:
    """Return ``response`` with ``reply_to`` set to ``request.msg_id``."""
    return response.model_copy(update={"reply_to": request.msg_id})
