"""`testbed calibrate` on a bench of role processes (hardware or emulated radios): the
controller drives the node and receiver processes over the control plane, each of which opens
only its own radio.

Steps: every role registers (reporting its radio's kind and serial); the controller sets up the
bench's common time exactly as a run does (`BenchExecutor.establish_time_base`: the agreed PPS
edge of USRPs, the receiver's beacon for Plutos); then `calibration.procedures.calibrate` runs
unchanged on two stand-ins for the radios:

* `RemoteNodeTransmitter` (one per node): a burst for receiver sample ``at`` becomes a
  `BurstCommand`; the node transmits it through its time base (the receiver's clock on its own
  stream) and nothing else, so what the sounding measures is what remains after the time base:
  fixed delays, the residual CFO, the LO phase and the TX gain.
* `RemoteReceiver`: a window of the receiver's RX clock becomes a `CaptureCommand`; the
  controller estimates every node's burst in it.

Both report as "now" the first receiver sample a new burst can still be scheduled for (the
receiver's clock extrapolated, plus the bench's lead: the radios' pipelines, the control round
trips and a slack, `BenchExecutor.lead_samples`). The bursts of a sounding go out with the
receiver's capture in one gather, so every role has its command before the window starts. The corrections are applied on top of the time base at run time
(`calibration.timebase.compose`, in each node's transmit path): the file is keyed to the
registered radios' serials and holds no clock offset that a stream restart would invalidate:
each node's residual timing is kept as a constant delay and its residual SRO (the calibration's
time base's own rate error) is dropped (`calibration.timebase.carried_over`).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from testbed.net.roles.bench_round import BenchExecutor, _expect
from testbed.net.schema import (Ack, BurstCommand, CaptureCommand, CaptureReport, ClockQuery,
                                ClockReport)
from testbed.phy.budget import DEFAULT_BUDGET
from testbed.radio.base import Radio, RadioSettings


class _BenchClock:
    """The schedulable receiver sample of a running bench, and the bursts waiting to go out
    with the next capture (shared by the stand-ins)."""

    def __init__(self, executor: BenchExecutor) -> None:
        self.executor = executor
        self.pending: dict[str, BurstCommand] = {}

    def now(self) -> int:
        """First receiver sample a burst sent now can still be scheduled for (samples)."""
        ex = self.executor
        return ex.next_start(ex.budget)


class _RemoteRadio:
    """What both stand-ins share: the role's id, its radio's ``settings`` as the controller
    knows them, and the bench's clock as "now" (no hardware timestamps: the time base maps the
    receiver's clock onto the nodes' streams)."""

    has_hardware_timestamps = False
    realtime = True

    def __init__(self, clock: _BenchClock, role_id: str, settings: RadioSettings) -> None:
        self.clock, self.role_id, self._settings = clock, role_id, settings

    @property
    def settings(self) -> RadioSettings:
        return self._settings

    def now(self) -> int:
        """First receiver sample a burst can be scheduled for (samples)."""
        return self.clock.now()

    def schedule_latency_samples(self) -> int:
        """Included in `now` (the bench's lead), so 0 here."""
        return 0

    # No TX LO from the controller (`Radio`'s defaults: 0 Hz, nothing applied): the node's own
    # `CorrectedRadio` puts its time base's CFO on its TX LO; the calibration's fine CFO on top
    # (a few Hz) stays in baseband.
    tx_lo_offset_hz = Radio.tx_lo_offset_hz
    set_tx_lo_offset = Radio.set_tx_lo_offset


class RemoteNodeTransmitter(_RemoteRadio):
    """A node's transmit path as `calibration.procedures` sees it from the controller: times
    on the receiver clock, each burst a `BurstCommand` to the node (see the module docstring).
    ``settings``: the node radio's rate and carrier, ``n_tx`` channels."""

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Burst (n_tx, K) to start at receiver sample ``at_sample``: sent to the node together
        with the receiver's next capture (one request to every role at once, as a round's
        commands: a real-time radio must have every command before the window starts)."""
        if self.role_id in self.clock.pending:
            raise RuntimeError(f"{self.role_id}: a second burst before the capture; the "
                               "procedure sends one burst per node per window")
        x = np.ascontiguousarray(np.atleast_2d(samples), dtype=np.complex64)
        self.clock.pending[self.role_id] = BurstCommand(samples=x, at_sample=int(at_sample))


class RemoteReceiver(_RemoteRadio):
    """The receiver's radio as `calibration.procedures` sees it from the controller: each
    window a `CaptureCommand` (see the module docstring). ``settings``: its rate, carrier and
    ``n_rx_channels`` antennas."""

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """The window ``[at, at + n)`` of the receiver's RX clock, ``(N_r, n)`` complex64;
        the bursts waiting for it go to their nodes in the same gather."""
        ex = self.clock.executor
        msgs = {**self.clock.pending, self.role_id: CaptureCommand(n_samples=int(n_samples),
                                                                   at_sample=int(at_sample))}
        self.clock.pending = {}
        replies = ex.ctl.gather(msgs, timeout_s=ex.timeout_s)
        for node, reply in replies.items():
            if node != self.role_id:
                _expect(reply, Ack, node)
        rep = _expect(replies[self.role_id], CaptureReport, self.role_id)
        ex.note_clock(rep.rx_clock)
        return np.asarray(rep.samples)


@dataclasses.dataclass
class BenchRadios:
    """The stand-ins of a registered bench after its time base: ``nodes`` (bench order),
    ``receiver``, the ``executor`` that set up the time base (its ``syncs`` record it) and the
    node radios' reported latencies (samples)."""

    nodes: list[RemoteNodeTransmitter]
    receiver: RemoteReceiver
    executor: BenchExecutor
    latency_samples: dict[str, int]


def bench_radios(ctl, bench, timeout_s: float = 60.0) -> BenchRadios:
    """Query every registered role's radio clock, set up the bench's common time
    (`BenchExecutor.establish_time_base`) and return the stand-ins `calibrate` runs on.
    The receiver's antennas are its registered ``n_antennas``; the carrier and rate are the
    receiver's radio config's."""
    nodes = [n.id for n in bench.nodes]
    ex = BenchExecutor(ctl, nodes, bench.receiver.id, DEFAULT_BUDGET, timeout_s=timeout_s)
    replies = ctl.gather({n: ClockQuery() for n in nodes}, timeout_s=timeout_s)
    ex.node_latency_samples = {n: _expect(r, ClockReport, n).latency_samples
                               for n, r in replies.items()}
    ex.query_clock()
    ex.establish_time_base(bench)
    ex.query_clock()
    rx_cfg = bench.receiver.primary_radio
    base = RadioSettings(sample_rate_hz=float(rx_cfg.sample_rate_hz),
                         center_freq_hz=float(rx_cfg.center_freq_hz))
    clock = _BenchClock(ex)
    n_rx = int(ctl.peers[bench.receiver.id].capabilities.n_antennas)
    txs = [RemoteNodeTransmitter(clock, n.id, dataclasses.replace(
        base, n_tx_channels=int(n.radio.n_tx_channels), n_rx_channels=0))
        for n in bench.nodes]
    rx = RemoteReceiver(clock, bench.receiver.id,
                        dataclasses.replace(base, n_tx_channels=0, n_rx_channels=n_rx))
    return BenchRadios(txs, rx, ex, dict(ex.node_latency_samples))


def retry_lost(executor: BenchExecutor, step, attempts: int = 2):
    """``step()``, again after a re-sync of the time base when a role answered
    ``timebase_lost`` (a radio slipped: underflow, overflow, stream restart), up to
    ``attempts`` times."""
    from testbed.net.errors import RemoteError
    from testbed.net.roles.bench_round import TIMEBASE_LOST
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except RemoteError as exc:
            if exc.code != TIMEBASE_LOST or attempt == attempts:
                raise
            executor.sync()
            executor.query_clock()
    raise AssertionError("unreachable")


def calibrate_bench(ctl, bench, progress=None, timeout_s: float = 60.0):
    """Calibrate a registered bench of role processes: (`calibration.procedures.CalibrationRun`,
    `BenchRadios`, seconds the time base took). Phase referred to receive antenna 0, gain not
    corrected (no reference channel on a real bench). A radio that slips during the procedure
    (``timebase_lost``) makes it re-sync and start over once (`retry_lost`)."""
    from calibration.procedures import calibrate
    t0 = time.perf_counter()
    radios = bench_radios(ctl, bench, timeout_s)
    sync_s = time.perf_counter() - t0
    run = retry_lost(radios.executor, lambda: calibrate(radios.nodes, radios.receiver,
                                                        progress=progress))
    # what carries over to a run's own time base: each node's timing at the end as a constant
    # delay, no residual SRO (`calibration.timebase.carried_over`)
    from calibration.timebase import carried_over
    run.corrections = [carried_over(c, run.end_sample) for c in run.corrections]
    for radio, c in zip(run.corrected, run.corrections):
        radio.correction = c
    return run, radios, sync_s
