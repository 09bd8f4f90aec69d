"""The analog round over the control plane: the controller-side `RoundExecutor` of a bench.

The controller sends control only: the plan (`PlanFields`) and, per payload round, each node its
precoder B_n and the receiver its beamformers A (`PayloadCommand`, `AggregateCommand`). Nodes
build and transmit their frames, the receiver cuts, aggregates, de-normalizes and broadcasts
the estimate itself; the controller sees a `RoundReport` and the nodes' next `NodeStep`. The
schedule is computed from the receiver radio's clock (reported after every window). On radios
whose clock runs with the wall clock (hardware, emulated radios) the controller extrapolates
that clock to the moment it schedules, and the lead covers the slowest radio's pipeline
(`Radio.schedule_latency_samples`, reported by each role), the measured control round trip and
a slack for the roles' own work; on the lock-step simulator the lead is the budget's alone.

Radios without timestamps (Plutos) first get a time base (`sync`, `calibration.timebase`): the
receiver's beacon maps its clock onto every node's stream. A role whose radio slipped since
(underflow, overflow, restart) answers the next sounding with ``timebase_lost``; the executor
re-syncs and sounds again on a fresh schedule.

`BenchTruth` reads the simulator's truth through the channel agent (``--csi perfect`` on a
simulated bench only).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import numpy as np

from testbed.net.errors import RemoteError
from testbed.net.schema import (Ack, AggregateCommand, ClockQuery, ClockReport, PayloadCommand,
                                PlanFields, RoundReport, SoundCommand, SoundingReport,
                                TimeSyncCommand, TruthQuery, TruthReport)
from testbed.phy.analog_allreduce import PayloadResult, RoundExecutor, SoundingResult
from testbed.phy.budget import LinkBudget
from testbed.phy.round import RoundDesign, RoundPlan

log = logging.getLogger(__name__)

#: The error code a role answers when its radio's clock slipped since the last sync.
TIMEBASE_LOST = "timebase_lost"


def plan_fields(plan: RoundPlan) -> PlanFields:
    """The wire form of a `RoundPlan`."""
    return PlanFields(**plan.as_dict())


def _expect(reply, cls, who: str):
    if not isinstance(reply, cls):
        raise RuntimeError(f"{who} answered {type(reply).__name__} where {cls.__name__} was "
                           "expected: the roles are out of step")
    return reply


class BenchExecutor(RoundExecutor):
    """Runs rounds through the bench's role processes.

    ctl: the registered `Controller`; nodes: node ids in bench order; receiver: its id;
    budget: the link budget; extra_lead: samples added to the budget's lead (e.g. the margin
    of calibrated bursts); timeout_s: per request; slack_s: extra lead on real-time radios
    for the roles' own work (frame building), seconds. ``round_id`` is the current
    all-reduce's id (set by the session); after a payload round ``node_replies`` holds each
    node's next step; ``node_latency_samples``: the nodes' reported pipeline latencies."""

    def __init__(self, ctl, nodes: Sequence[str], receiver: str, budget: LinkBudget,
                 extra_lead: int = 0, timeout_s: float = 60.0, slack_s: float = 0.05) -> None:
        self.ctl = ctl
        self.nodes = list(nodes)
        self.receiver = receiver
        self.budget = budget
        self.extra_lead = int(extra_lead)
        self.timeout_s = timeout_s
        self.slack_s = slack_s
        self.rx_clock: int | None = None
        self._clock_t = 0.0
        self.realtime = False
        self.sample_rate_hz = 1.0e6
        self.rx_latency = 0
        self.rtt_s = 0.0
        self.node_latency_samples: dict[str, int] = {}
        self.round_id = 0
        self.layer, self.site = 0, "attn"
        self.tap = False
        self.node_replies: dict = {}
        self.timebase = False      # radios without timestamps: sync before the first round
        self.syncs: list[dict] = []

    def note_clock(self, rx_clock: int) -> None:
        """The receiver's clock (samples) as a reply reported it, now."""
        self.rx_clock, self._clock_t = int(rx_clock), time.monotonic()

    def query_clock(self) -> None:
        """Ask the receiver for its clock, rate, latency and whether it runs in real time; the
        request's round trip is the control latency estimate."""
        t0 = time.monotonic()
        rep = _expect(self.ctl.request(self.receiver, ClockQuery(), timeout_s=self.timeout_s),
                      ClockReport, self.receiver)
        self.rtt_s = time.monotonic() - t0
        self.realtime, self.sample_rate_hz = rep.realtime, rep.sample_rate_hz
        self.rx_latency = rep.latency_samples
        self.note_clock(rep.rx_clock)

    def lead_samples(self, budget: LinkBudget) -> int:
        """Samples between the receiver's (extrapolated) clock and the next frame start."""
        lead = budget.lead_samples + self.extra_lead
        if self.realtime:
            lead += max([self.rx_latency, *self.node_latency_samples.values()])
            lead += int((2 * self.rtt_s + self.slack_s) * self.sample_rate_hz)
        return lead

    def next_start(self, budget: LinkBudget) -> int:
        if self.rx_clock is None:
            self.query_clock()
        now = self.rx_clock
        if self.realtime:   # the receiver's clock moved on since it reported
            now += int((time.monotonic() - self._clock_t) * self.sample_rate_hz)
        return now + self.lead_samples(budget)

    def sync(self, attempts: int = 3) -> dict:
        """The time base across the bench's radios (`calibration.timebase`): every role
        measures its TX->RX offset (loopback), the receiver transmits its beacon, every node
        finds it and maps the receiver's clock onto its stream. Retried when a radio slipped
        during the sync itself. Returns {node: what it measured}."""
        timeout = max(self.timeout_s, 60.0)
        peers = [*self.nodes, self.receiver]
        for attempt in range(1, attempts + 1):
            t0 = time.monotonic()
            try:
                self.ctl.gather({p: TimeSyncCommand(step="loopback") for p in peers},
                                timeout_s=timeout)
                rep = _expect(self.ctl.request(self.receiver, TimeSyncCommand(step="beacon"),
                                               timeout_s=timeout), Ack, self.receiver)
                air = float(rep.info["air_sample"])
                replies = self.ctl.gather(
                    {n: TimeSyncCommand(step="capture", beacon_air_sample=air)
                     for n in self.nodes}, timeout_s=timeout)
            except RemoteError as exc:
                if exc.code != TIMEBASE_LOST or attempt == attempts:
                    raise
                log.warning("time base sync attempt %d: %s; again", attempt, exc)
                continue
            out = {n: dict(r.info) for n, r in replies.items()}
            self.syncs.append({"attempt": attempt, "seconds": time.monotonic() - t0,
                               "beacon_air_sample": air, "nodes": out})
            self.rx_clock = None       # re-read the receiver's clock before the next plan
            return out
        raise AssertionError("unreachable")

    def establish_time_base(self, bench) -> None:
        """The common time of the bench's radios, before the first round: the agreed PPS edge
        of the USRPs with ``pps_align: agreed`` (`pps_sync`), then the beacon's time base when
        the registered radios count samples from their own stream starts (`sync`; nodes then
        transmit through `CorrectedRadio`, whose precursor margin the lead covers)."""
        from testbed.net.roles.node import CORRECTION_HALF_TAPS
        agreed = pps_agreed_roles(bench)
        if agreed:
            self.pps_sync(agreed)
        if needs_timebase(self.ctl, [*self.nodes, self.receiver]):
            self.timebase = True
            self.extra_lead = max(self.extra_lead, 2 * CORRECTION_HALF_TAPS + 16)
            self.sync()

    def pps_sync(self, peers: Sequence[str], margin_s: float = 0.3) -> dict:
        """One PPS edge agreed by the USRPs of ``peers`` (``pps_align: agreed``,
        `calibration.pps`): each reports the host time of an edge it saw, the controller hands
        all of them one host time halfway between edges (at least ``margin_s`` plus two
        control round trips from now), each zeroes its device time on the edge after it.
        Returns what was agreed (recorded in ``syncs``)."""
        from calibration.pps import pps_latch_time
        t0 = time.monotonic()
        replies = self.ctl.gather({p: TimeSyncCommand(step="pps_edge") for p in peers},
                                  timeout_s=self.timeout_s)
        edges = {p: float(_expect(r, Ack, p).info["edge_host_s"]) for p, r in replies.items()}
        periods = {p: float(r.info["period_s"]) for p, r in replies.items()}
        period = max(periods.values())
        if min(periods.values()) < 0.999 * period:
            raise RuntimeError(f"the roles' PPS periods differ ({periods}); one bench runs "
                               "at one time scale")
        if self.rtt_s == 0.0:
            self.query_clock()             # measures the control round trip
        latch = pps_latch_time(edges, period, time.time() + margin_s + 2 * self.rtt_s)
        done = self.ctl.gather({p: TimeSyncCommand(step="pps_latch", latch_host_time_s=latch)
                                for p in peers}, timeout_s=self.timeout_s + 3 * period)
        record = {"kind": "pps", "seconds": time.monotonic() - t0, "latch_host_s": latch,
                  "period_s": period, "edges_host_s": edges,
                  "latched_host_s": {p: float(r.info["edge_host_s"]) for p, r in done.items()}}
        self.syncs.append(record)
        self.rx_clock = None       # the receiver's device time restarted at 0
        return record

    def sound(self, plan: RoundPlan) -> SoundingResult:
        """One sounding; a role that lost the time base makes it re-sync and sound again."""
        try:
            return self._sound(plan)
        except RemoteError as exc:
            if not self.timebase or exc.code != TIMEBASE_LOST:
                raise
            log.warning("%s; re-syncing the time base", exc)
            self.sync()
            return self._sound(dataclasses.replace(plan, start=self.next_start(self.budget)))

    def _sound(self, plan: RoundPlan) -> SoundingResult:
        fields = plan_fields(plan)
        replies = self.ctl.gather({p: SoundCommand(round_id=self.round_id, plan=fields)
                                   for p in [*self.nodes, self.receiver]},
                                  timeout_s=self.timeout_s)
        rep = _expect(replies[self.receiver], SoundingReport, self.receiver)
        self.note_clock(rep.rx_clock)
        return SoundingResult(np.asarray(rep.h), float(rep.noise_var), rep.offset)

    def payload(self, plan: RoundPlan, design: RoundDesign, scale: float,
                shape: tuple[int, ...]) -> PayloadResult:
        fields = plan_fields(plan)
        msgs = {n: PayloadCommand(round_id=self.round_id, layer=self.layer, site=self.site,
                                  plan=fields, scale=scale, tap=self.tap,
                                  precoder=np.ascontiguousarray(design.B[i], dtype=np.complex128))
                for i, n in enumerate(self.nodes)}
        msgs[self.receiver] = AggregateCommand(
            round_id=self.round_id, layer=self.layer, site=self.site, plan=fields, scale=scale,
            shape=list(shape), beamformers=np.ascontiguousarray(design.A, dtype=np.complex128))
        replies = self.ctl.gather(msgs, timeout_s=self.timeout_s)
        rep = _expect(replies.pop(self.receiver), RoundReport, self.receiver)
        self.note_clock(rep.rx_clock)
        self.node_replies = replies
        return PayloadResult(z_hat=None, offset=rep.offset, metric=rep.metric,
                             extra={"receive_wait_s": rep.receive_wait_s})


def pps_agreed_roles(bench) -> list[str]:
    """The roles of ``bench`` whose USRP zeroes its time on the PPS edge the controller agrees
    (``pps_align: agreed`` in the bench file; `BenchExecutor.pps_sync`)."""
    def agreed(radio) -> bool:
        radios = radio if isinstance(radio, list) else [radio]
        return any(getattr(r, "pps_align", None) == "agreed" for r in radios)
    out = [n.id for n in bench.nodes if agreed(n.radio)]
    if agreed(bench.receiver.radio):
        out.append(bench.receiver.id)
    return out


def needs_timebase(ctl, peers: Sequence[str]) -> bool:
    """Whether the radios ``peers`` registered with count samples from their own stream start
    (Plutos: no timestamps), so the rounds need the beacon's time base (`BenchExecutor.sync`);
    not when every role reports the same radio (one Pluto with a TX->RX cable: one clock)."""
    caps = [ctl.peers[p].capabilities for p in peers if p in ctl.peers]
    kinds = {c.radio_kind for c in caps}
    serials = {(c.radio_kind, c.radio_serial) for c in caps}
    return "pluto" in kinds and len(serials) > 1


class BenchTruth:
    """The simulator's truth of a simulated bench, through its channel agent (a simulator
    feature: only for ``--csi perfect``)."""

    def __init__(self, ctl, channel_id: str, timeout_s: float = 30.0) -> None:
        self.ctl, self.channel_id, self.timeout_s = ctl, channel_id, timeout_s
        self._last: TruthReport | None = None

    def _query(self) -> TruthReport:
        rep = self.ctl.request(self.channel_id, TruthQuery(), timeout_s=self.timeout_s)
        self._last = _expect(rep, TruthReport, self.channel_id)
        return self._last

    def channels(self) -> np.ndarray:
        """True channels ``(N, N_r, N_t)`` of the current block."""
        return np.asarray(self._query().h)

    def air_noise_var(self) -> float:
        """The air's noise variance (full-scale units)."""
        return float((self._last or self._query()).air_noise_var)
