"""Bench file schema: which nodes, which radios, where the controller listens, what the
simulated air does, and the all-reduce defaults. Loaded by `testbed.config.loader.load_bench`.

A node's or receiver's ``radio`` is either an inline radio config (a mapping with ``kind``) or
a path to a radio YAML file, relative to the bench file (resolved by the loader).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from testbed.config.radio import RadioConfig, _Strict

ASSIGNMENT_POLICIES = ("given", "equal", "compute_proportional", "ssca")
#: AirComp transceiver designs, spelled as `testbed.optim.transceiver.METHODS` (a bench file may
#: name ``aircomp-<design>``; kept here as text so loading a bench stays light).
TRANSCEIVER_DESIGNS = ("zf-sdr", "mmse", "siso-optimal", "channel-inversion", "random")
#: the old ``allreduce: {method, transceiver}`` spellings of bench files -> the one name
_OLD_DESIGNS = {"zf_sdr": "zf-sdr", "siso_optimum": "siso-optimal",
                "channel_inversion": "channel-inversion"}


class ControllerSection(_Strict):
    """Where the ZMQ controller listens (ROUTER for agents, PUB for results)."""

    host: str = "127.0.0.1"
    router_port: int = Field(5555, ge=1, le=65535)
    pub_port: int = Field(5556, ge=1, le=65535)
    heartbeat_s: float = Field(1.0, gt=0, description="agent heartbeat period, seconds")
    dead_after_s: float = Field(5.0, gt=0, description="silence after which a node is dead")
    curve: bool = Field(False, description="require CURVE authentication of agents")

    @model_validator(mode="after")
    def _ports(self) -> "ControllerSection":
        if self.router_port == self.pub_port:
            raise ValueError("router_port and pub_port must differ")
        if self.dead_after_s <= self.heartbeat_s:
            raise ValueError("dead_after_s must exceed heartbeat_s")
        return self


class NodeSection(_Strict):
    """One transmitting edge node holding a model shard."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    host: str = "127.0.0.1"
    radio: RadioConfig | str
    ratio: float | None = Field(None, ge=0, le=1, description="fraction of the model (m_n)")
    memory_bytes: int | None = Field(None, gt=0)
    flops: float | None = Field(None, gt=0, description="sustained compute, FLOP/s")
    energy_j: float | None = Field(None, gt=0, description="energy budget E_n^max, joules")


class ReceiverSection(_Strict):
    """The multi-antenna receiver that applies the aggregation beamformer."""

    id: str = "receiver"
    host: str = "127.0.0.1"
    n_antennas: int = Field(1, ge=1, le=64)
    radio: RadioConfig | str | list[RadioConfig | str]

    @property
    def primary_radio(self) -> RadioConfig | str:
        """The receiver's radio config (the first of a list): its carrier (Hz) and sample rate
        (Hz) define the air grid and the calibration's bench key."""
        return self.radio[0] if isinstance(self.radio, list) else self.radio


class ChannelSection(_Strict):
    """The simulated air of a simulated bench, or the real-time air of an emulated one."""

    seed: int = 0
    snr_db: float = 20.0
    fading: Literal["rayleigh", "rician"] = "rayleigh"
    k_factor_db: float = Field(0.0, description="Rician K factor in dB (rician only)")
    path_loss_db: dict[str, float] = Field(default_factory=dict,
                                           description="per node id, dB (default 0)")
    impairments: str | None = Field(None, description="sim_backend impairment preset name")
    realization: Literal["per_round", "fixed"] = Field(
        "per_round", description="simulated benches: a new fading block per all-reduce "
        "(per_round), or one block for the whole run (fixed: a static or cabled bench; the "
        "same draw as the emulated air of a bench with this channel section). Emulated benches "
        "always keep one block")
    time_scale: float = Field(1.0, gt=0, description="emulated benches: the real-time air "
                              "runs k times slower than the wall clock (small machines)")
    rx_headroom_db: float = Field(12.0, ge=0, le=60, description="emulated benches: the "
                                  "receive level plan, ADC full scale this many dB above the "
                                  "rms of all nodes at the reference power (the cable loss "
                                  "follows from it and the radios' gains)")


class AllReduceSection(_Strict):
    """Defaults of the all-reduce; command line flags override them.

    ``method``: the method's one name, as on the command line (`testbed.methods`: exact,
    digital, fdma, aircomp-zf-sdr, aircomp-mmse), or ``aircomp-<design>`` for another AirComp
    design of `TRANSCEIVER_DESIGNS`. The old form ``method: aircomp`` + ``transceiver: zf_sdr``
    (and ``analog_fdma``) still loads, with a `DeprecatedSpellingWarning` naming the new one."""

    method: str = "aircomp-zf-sdr"
    streams: int = Field(1, ge=1, description="symbol streams L per channel use")
    quant_bits: int = Field(8, ge=1, le=32, description="digital baseline quantization")

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data):
        if not isinstance(data, dict) or ("transceiver" not in data
                                          and data.get("method") not in ("aircomp", "analog_fdma")):
            return data
        import warnings

        from testbed.errors import DeprecatedSpellingWarning
        data = dict(data)
        design = str(data.pop("transceiver", "zf_sdr"))
        old = data.get("method", "aircomp")
        if old == "aircomp":
            new = f"aircomp-{_OLD_DESIGNS.get(design, design.replace('_', '-'))}"
        else:
            new = "fdma" if old == "analog_fdma" else old
        warnings.warn_explicit(
            f"bench file allreduce: method: {old}" + (f", transceiver: {design}" if old ==
                                                      "aircomp" else "")
            + f" is an old spelling; write allreduce: method: {new}", DeprecatedSpellingWarning,
            filename="bench file", lineno=0, module="testbed.config")
        data["method"] = new
        return data

    @model_validator(mode="after")
    def _known_method(self) -> "AllReduceSection":
        from testbed.methods import METHOD_NAMES
        designs = tuple(f"aircomp-{d}" for d in TRANSCEIVER_DESIGNS)
        if self.method not in METHOD_NAMES and self.method not in designs:
            raise ValueError(f"allreduce.method {self.method!r}: use one of "
                             f"{', '.join(dict.fromkeys(METHOD_NAMES + designs))}")
        return self

    @property
    def design(self) -> str | None:
        """The AirComp transceiver design of ``method`` (None for other methods)."""
        return self.method.removeprefix("aircomp-") if self.method.startswith("aircomp-") else None


class BenchConfig(_Strict):
    """A whole bench: controller, nodes, receiver, (simulated) channel, all-reduce defaults."""

    name: str = Field(min_length=1)
    description: str = ""
    controller: ControllerSection = ControllerSection()
    assignment: Literal["given", "equal", "compute_proportional", "ssca"] = "given"
    nodes: list[NodeSection] = Field(min_length=1)
    receiver: ReceiverSection
    channel: ChannelSection | None = None
    allreduce: AllReduceSection = AllReduceSection()

    @model_validator(mode="after")
    def _consistent(self) -> "BenchConfig":
        ids = [n.id for n in self.nodes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"node ids must be unique; repeated: {dup}")
        if self.receiver.id in ids:
            raise ValueError(f"receiver id {self.receiver.id!r} clashes with a node id")
        if self.assignment == "given":
            missing = [n.id for n in self.nodes if n.ratio is None]
            if missing:
                raise ValueError(f"assignment 'given' needs a ratio on every node; missing on "
                                 f"{missing} (or set assignment: equal | compute_proportional "
                                 "| ssca)")
            total = sum(n.ratio for n in self.nodes)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(f"node ratios must sum to 1, they sum to {total:.6g}")
        if self.assignment == "compute_proportional":
            missing = [n.id for n in self.nodes if n.flops is None]
            if missing:
                raise ValueError(f"assignment 'compute_proportional' needs flops on {missing}")
        rx = self.receiver.radio if isinstance(self.receiver.radio, list) \
            else [self.receiver.radio]
        if all(not isinstance(r, str) for r in rx):       # file references: after loading
            have = sum(r.n_rx_channels for r in rx)
            if have != self.receiver.n_antennas:
                raise ValueError(
                    f"receiver.n_antennas is {self.receiver.n_antennas} but its radio(s) "
                    f"receive on {have} channel(s) ({' + '.join(str(r.n_rx_channels) for r in rx)}"
                    f" n_rx_channels); set n_antennas: {have} or list/configure the radios "
                    "that give the antennas you want (e.g. two 2R2T Plutos for 4)")
        if self.channel is not None:
            unknown = sorted(set(self.channel.path_loss_db) - set(ids))
            if unknown:
                raise ValueError(f"channel.path_loss_db names unknown node ids {unknown}; "
                                 f"known: {ids}")
        return self

    @property
    def simulated(self) -> bool:
        """True for a bench on the lock-step simulator: a channel section and only simulated
        radios (an emulated bench's channel section describes its real-time air instead)."""
        return self.channel is not None and self.radio_kinds() <= {"sim"}

    @property
    def new_channel_every_round(self) -> bool:
        """True for a simulated bench that draws a new fading block per all-reduce
        (``channel.realization: per_round``); radios and a fixed simulated block keep theirs."""
        return self.simulated and self.channel.realization == "per_round"

    def radio_kinds(self) -> set[str]:
        """The radio kinds used on this bench (after the loader resolved file references)."""
        radios = [n.radio for n in self.nodes]
        rx = self.receiver.radio
        radios += rx if isinstance(rx, list) else [rx]
        return {r.kind for r in radios if not isinstance(r, str)}
