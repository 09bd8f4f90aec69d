"""`testbed receiver`: the agent owning the multi-antenna receive radio.

Sounding (`SoundCommand`): receive the scheduled window, cut the frame, LS channel estimates and
the noise estimate from its silent samples (`testbed.phy.round`), report them with the radio's
clock. Payload (`AggregateCommand`): receive the window, aggregate with the beamformers A,
de-normalize with the site scale and publish the estimate to the nodes on the receiver's own
PUB socket (`EstimatePublisher`); the controller gets only a `RoundReport`. Nothing here needs
the simulator: channel, noise and clock all come from the radio.
"""
from __future__ import annotations

import time

import numpy as np

from testbed.activity import waiting_on
from testbed.net.agent import Agent
from testbed.net.roles.common import (clock_report, pps_time_sync, radio_stats, rss_bytes,
                                      stream_counters)
from testbed.net.roles.estimates import EstimatePublisher
from testbed.net.schema import (Ack, AggregateCommand, CaptureCommand, CaptureReport, ClockQuery,
                                Message, RoundReport, SoundCommand, SoundingReport,
                                StatsQuery, StatsReport, TimeSyncCommand)
from testbed.phy.budget import DEFAULT_BUDGET, LinkBudget
from testbed.phy.round import (RoundPlan, aggregate_payload, cut_frame, estimate_channels,
                               estimate_noise_var)


#: |I| or |Q| at or above this (full scale 1.0) counts as the ADC's full scale (clipped): a
#: 12-bit ADC's largest code is 2047/2048 of full scale.
ADC_FULL_SCALE_LEVEL = 0.999


class ReceiverAgent(Agent):
    """Receiver role. radio: the receiving `Radio` (any driver), or None on benches/methods
    without over-the-air rounds; estimates_address: where to bind the estimates PUB socket
    (None: no over-the-air rounds); budget: the link budget; keys: `RoleKeys` on a CURVE bench
    (the estimates PUB then admits bench keys only)."""

    def __init__(self, config, radio=None, estimates_address: str | None = None,
                 budget: LinkBudget = DEFAULT_BUDGET, keys=None):
        super().__init__(config)
        self.radio = radio
        self.budget = budget
        self.publisher = (EstimatePublisher(estimates_address, keys) if estimates_address
                          else None)
        self.rounds = 0
        self.wait_s = 0.0
        self.loopback_offset: float | None = None
        self.timebase = None      # calibration.timebase.TimeBase of the last beacon
        self.syncs = 0
        #: the radio's stream counters when the first time base was set up (None: not yet)
        self.counters_at_timebase: dict | None = None
        self.adc_full_scale = 0   # I/Q components of round windows at the ADC's full scale
        self.window_components = 0

    def handle(self, message: Message) -> Message | None:
        """SOUND -> estimates; AGGREGATE_CMD -> aggregate and broadcast; TIME_SYNC -> the time
        base; CAPTURE -> a calibration window; CLOCK_QUERY -> clock; STATS_QUERY -> counters."""
        if isinstance(message, SoundCommand):
            return self._sound(message)
        if isinstance(message, CaptureCommand):
            return self._capture(message)
        if isinstance(message, AggregateCommand):
            return self._aggregate(message)
        if isinstance(message, TimeSyncCommand):
            return self._time_sync(message)
        if isinstance(message, ClockQuery):
            self._need_radio()
            return clock_report(self.radio)
        if isinstance(message, StatsQuery):
            info = {"rss_bytes": rss_bytes(), "rounds": self.rounds, "receive_wait_s": self.wait_s,
                    "adc_full_scale_components": self.adc_full_scale,
                    "window_components": self.window_components,
                    "traffic": {"controller": self.transport.traffic.table()}}
            if self.publisher is not None:
                info["traffic"]["estimates"] = self.publisher.traffic.table()
            if self.radio is not None:
                info["radio"] = radio_stats(self.radio, resyncs=max(self.syncs - 1, 0),
                                            before_timebase=self.counters_at_timebase)
            return StatsReport(info=info)
        return super().handle(message)

    def _need_radio(self) -> None:
        if self.radio is None:
            raise RuntimeError("the receiver has no radio; start it with its radio "
                               "(simulated benches: with the broker address)")

    def _radios(self) -> dict:
        return {self.config.node_id: self.radio}

    def _beacon_radio(self):
        """The radio that transmits the beacon (an array's first radio)."""
        return getattr(self.radio, "radios", [self.radio])[0]

    def _time_sync(self, msg: TimeSyncCommand) -> Message:
        """The time base (`calibration.timebase`): ``loopback`` measures the beacon radio's
        TX->RX offset; ``beacon`` transmits the beacon and replies with its start on this
        radio's RX clock (``air_sample``), the clock every round is planned on."""
        from calibration import timebase as tb
        from calibration.corrections import NodeCorrection
        self._need_radio()
        agreed = pps_time_sync(self.radio, msg)     # USRPs: one PPS edge (calibration.pps)
        if agreed is not None:
            if msg.step == "pps_latch" and self.counters_at_timebase is None:
                self.counters_at_timebase = stream_counters(self.radio)
            return agreed
        radio = self._beacon_radio()
        who, radios = self.config.node_id, self._radios()
        if msg.step == "loopback":
            self.timebase = None
            self._loopback_breaks = tb.TimeBase.snapshot(radios)
            self.loopback_offset = tb.guarded(radios, who, lambda: tb.measure_loopback_offset(
                radio))
            info = {"loopback_offset": self.loopback_offset}
            if len(getattr(self.radio, "radios", [])) > 1:   # an array: align its radios
                self.radio.set_offsets(tb.guarded(radios, who, lambda: tb.align_array(
                    self.radio.radios, self.loopback_offset)))
                info["array_offsets"] = list(self.radio.offsets)
            return Ack(info=info)
        if msg.step != "beacon":
            raise ValueError(f"the receiver takes time_sync steps 'loopback' and 'beacon', got "
                             f"{msg.step!r}")
        if self.loopback_offset is None:
            raise RuntimeError("time_sync beacon before loopback")
        breaks = self._loopback_breaks      # the loopback offset holds only while these do
        if tb.TimeBase.snapshot(radios) != breaks:
            raise tb.TimeBaseLost(f"{who}: a radio slipped since the loopback step; the "
                                  "controller measures again")
        t_b = tb.send_beacon(radio, radio.now() + radio.schedule_latency_samples())
        air = t_b + self.loopback_offset
        self.timebase = tb.TimeBase(NodeCorrection(), breaks,
                                    {"beacon_tx_sample": t_b, "air_sample": air,
                                     "loopback_offset": self.loopback_offset})
        if self.counters_at_timebase is None:
            self.counters_at_timebase = stream_counters(self.radio)
        self.syncs += 1
        return Ack(info={"air_sample": air, "beacon_tx_sample": t_b})

    def _window(self, plan: RoundPlan) -> np.ndarray:
        """The plan's receive window; I/Q components at the ADC's full scale are counted
        (``adc_full_scale_components`` in STATS: the ADC clipped the air's sum there)."""
        self._need_radio()
        first, n = plan.window(self.budget)
        t0 = time.perf_counter()
        with waiting_on("waiting on radio.receive"):
            window = self.radio.receive(n, first)
        self.wait_s += time.perf_counter() - t0
        comps = np.abs(np.ascontiguousarray(window, dtype=np.complex64).view(np.float32))
        self.adc_full_scale += int(np.count_nonzero(comps >= ADC_FULL_SCALE_LEVEL))
        self.window_components += comps.size
        return window

    def _capture(self, msg: CaptureCommand) -> Message:
        """The window ``[at, at + n)`` of this radio's RX clock, every antenna (`testbed
        calibrate` over the control plane: the controller measures the soundings in it)."""
        from calibration.timebase import guarded
        self._need_radio()
        if self.timebase is not None:    # a slipped clock: the controller re-syncs first
            self.timebase.check(self._radios(), self.config.node_id)
        t0 = time.perf_counter()
        with waiting_on("waiting on radio.receive"):
            # a slip during the window (an overflow) spoils it: timebase_lost, measured again
            y = guarded(self._radios(), self.config.node_id, lambda: self.radio.receive(
                int(msg.n_samples), int(msg.at_sample)))
        self.wait_s += time.perf_counter() - t0
        return CaptureReport(samples=np.ascontiguousarray(y, dtype=np.complex64),
                             rx_clock=int(self.radio.now()))

    def _sound(self, msg: SoundCommand) -> Message:
        if self.timebase is not None:    # a slipped clock: the controller re-syncs first
            self.timebase.check(self._radios(), self.config.node_id)
        plan = RoundPlan.from_dict(msg.plan.model_dump())
        frame = cut_frame(self._window(plan), plan, self.budget)
        return SoundingReport(round_id=msg.round_id,
                              h=np.ascontiguousarray(estimate_channels(frame, plan, self.budget)),
                              noise_var=max(estimate_noise_var(frame, plan, self.budget), 1e-30),
                              offset=frame.offset, rx_clock=int(self.radio.now()))

    def _aggregate(self, msg: AggregateCommand) -> Message:
        if self.publisher is None:
            raise RuntimeError("the receiver has no --estimates address to broadcast on")
        plan = RoundPlan.from_dict(msg.plan.model_dump())
        t0 = self.wait_s
        frame = cut_frame(self._window(plan), plan, self.budget)
        z_hat = aggregate_payload(frame, plan, self.budget, np.asarray(msg.beamformers),
                                  msg.scale, tuple(msg.shape))
        self.publisher.publish(msg.round_id, msg.layer, msg.site, z_hat)
        self.rounds += 1
        return RoundReport(round_id=msg.round_id, offset=frame.offset, metric=frame.metric,
                           rx_clock=int(self.radio.now()), receive_wait_s=self.wait_s - t0)

    def run(self) -> str:
        try:
            return super().run()
        finally:
            if self.publisher is not None:
                self.publisher.close()
