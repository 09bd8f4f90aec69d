"""`testbed node`: an agent holding one shard of the model. It computes its partial sums layer
by layer and, per all-reduce, either transmits its partial over the air and continues with the
receiver's broadcast estimate (AirComp, FDMA: the partial never crosses the network), or hands
it to the controller (``exact``, the digital reference), or all-reduces it with the other
nodes over gloo (``digital``: 8-bit quantized values).

The node runs the unchanged `testbed.llm.sharding.ShardedModel` (itself as the only local node)
in the agent's own thread: its all-reduce (`RelayAllReduce`) answers the pending controller
command with where the forward pass stands (`NodeStep`, or `Partial` for ``exact``), then serves
the socket (`Agent.serve_until`) until the command carrying the result arrives (AGGREGATE, or
PAYLOAD for over-the-air rounds), and the pass goes on. No thread hand-off per round: on the
project's 2-core machine each hand-off was two context switches in every node process.

Over-the-air round on this node: `PayloadCommand` -> `testbed.phy.round.node_frame` (its
partial normalized by the site scale, precoded with B_n) transmitted at the plan's start on the
receiver clock (through `CorrectedRadio` when calibrated), ``done_until`` the window end, then
the `Estimate` the receiver publishes on its own PUB socket. With ``--measure-error`` a copy of
the partial goes to the measurement sink (`TapPartial`), which the computation never reads.

Weights: from the node's own checkpoint (``--model``; its fingerprint was checked at
registration) or, without one, from the slice the controller sends before ASSIGNMENT
(`testbed.net.roles.slices`: SHARD_OFFER / SHARD_CHUNK, cached by checkpoint, ratios and index,
verified before use).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from testbed.activity import waiting_on
from testbed.llm.allreduce import AllReduce
from testbed.methods import get_method
from testbed.net.agent import Agent
from testbed.net.roles.common import (clock_report, pps_time_sync, radio_stats, rss_bytes,
                                      stream_counters)
from testbed.net.roles.estimates import EstimateListener, TapSender
from testbed.net.roles.slices import SliceReceiver
from testbed.net.schema import (Ack, Aggregate, Assignment, BurstCommand, ClockQuery,
                                Forward, Message, NodeStep, Partial, PayloadCommand, ShardChunk,
                                ShardOffer, SoundCommand, StatsQuery, StatsReport,
                                TimeSyncCommand)
from testbed.phy.budget import DEFAULT_BUDGET, LinkBudget
from testbed.phy.normalization import symbol_power
from testbed.phy.round import RoundPlan, node_frame

log = logging.getLogger(__name__)

#: Margin (samples) of band-limited precursor/tail a calibrated node keeps around each burst.
CORRECTION_HALF_TAPS = 256


class _Abort(Exception):
    """The forward pass was abandoned: a new FORWARD arrived (it is served next)."""


class RelayAllReduce(AllReduce):
    """All-reduce whose `reduce` hands the single local partial to ``exchange(layer, site,
    partial)`` (the node agent: it answers the controller and serves until the result comes)
    and returns the result it gives back."""

    name = "relay"

    def __init__(self, exchange) -> None:
        self.exchange = exchange

    def reduce(self, partials, *, layer, site):
        if len(partials) != 1:
            raise ValueError(f"RelayAllReduce runs one node per process, got {len(partials)}")
        return [self.exchange(layer, site, partials[0])]


class NodeAgent(Agent):
    """Agent of one bench node (see module docstring).

    model_dir: checkpoint directory, or None to load the slice the controller sends
    (SHARD_OFFER, cached under ``cache_root``, default the testbed cache); index: this node's position in the bench (shard index);
    node_order: all node ids in bench order; radio: this node's transmitting `Radio` (any
    driver) or None when no over-the-air method is used; estimates_address: the receiver's
    PUB socket for `Estimate` broadcasts; budget: the link budget; step_timeout_s: longest wait
    for an estimate (s). An ASSIGNMENT whose plan_summary has a
    ``correction`` (a `calibration.corrections.NodeCorrection` dict) makes the bursts go
    through `CorrectedRadio` (times on the receiver clock)."""

    def __init__(self, config, model_dir, index: int, node_order: list[str], radio=None,
                 estimates_address: str | None = None, budget: LinkBudget = DEFAULT_BUDGET,
                 step_timeout_s: float = 60.0, keys=None, cache_root=None):
        super().__init__(config)
        self.keys = keys  # RoleKeys on a CURVE bench (estimates and tap sockets)
        self.model_dir = model_dir
        self.slices = SliceReceiver(config.node_id, cache_root)
        self.index = index
        self.node_order = list(node_order)
        self.radio = radio
        self.estimates_address = estimates_address
        self.budget = budget
        self.step_timeout_s = step_timeout_s
        self.model = None
        self.method = None
        self.relay: RelayAllReduce | None = None
        self._pending: Message | None = None  # the command the running pass answers next
        self.last_partial: np.ndarray | None = None
        self.tx_radio = radio  # the radio bursts go through (CorrectedRadio with a calibration)
        self.estimates: EstimateListener | None = None
        self.tap: TapSender | None = None
        self.rss_after_load = 0
        self.rounds = 0
        self.compute_s = 0.0
        self.estimate_wait_s = 0.0
        self.clipped_components = 0
        self._report_powers = False
        self._score_ids: torch.Tensor | None = None
        self.calibration = None   # NodeCorrection from the controller's calibration file
        self.timebase = None      # calibration.timebase.TimeBase: the receiver's clock here
        self.loopback_offset: float | None = None
        self.syncs = 0
        #: the radio's stream counters when the first time base was set up (None: not yet)
        self.counters_at_timebase: dict | None = None

    # ------------------------------------------------------------------ dispatch
    def handle(self, message: Message) -> Message | None:
        """ASSIGNMENT -> load shard; FORWARD -> run a pass (PAYLOAD: transmit, continue with
        the estimate and AGGREGATE (exact): continue, are served inside it, `_exchange`);
        SOUND -> pilots; TIME_SYNC -> the time base; BURST -> a calibration burst;
        CLOCK_QUERY -> this radio's clock and latency; STATS -> counters."""
        if isinstance(message, ShardOffer):
            return Ack(info=self._slices_ready().on_offer(message))
        if isinstance(message, ShardChunk):
            return Ack(info=self._slices_ready().on_chunk(message))
        if isinstance(message, Assignment):
            return self._assign(message)
        if isinstance(message, Forward):
            return self._forward(message)
        if isinstance(message, (PayloadCommand, Aggregate)):   # inside a pass: `_exchange`
            raise RuntimeError("an all-reduce result arrived but no forward pass is running")
        if isinstance(message, SoundCommand):
            return self._sound(message)
        if isinstance(message, TimeSyncCommand):
            return self._time_sync(message)
        if isinstance(message, BurstCommand):
            return self._burst(message)
        if isinstance(message, ClockQuery):
            self._need_radio()
            return clock_report(self.radio)
        if isinstance(message, StatsQuery):
            return StatsReport(info=self._stats())
        return super().handle(message)

    def _stats(self) -> dict:
        out = {"rss_bytes": rss_bytes(), "rss_after_load_bytes": self.rss_after_load,
               "rounds": self.rounds, "compute_s": self.compute_s,
               "estimate_wait_s": self.estimate_wait_s,
               "clipped_components": self.clipped_components,
               "weights": ({"source": "own checkpoint", "path": str(self.model_dir)}
                           if self.model_dir is not None else self.slices.stats),
               "traffic": {"controller": self.transport.traffic.table() if self.transport else []}}
        if self.estimates is not None:
            out["traffic"]["estimates"] = self.estimates.traffic.table()
        if self.tap is not None:
            out["traffic"]["tap"] = self.tap.traffic.table()
        if self.model is not None:
            out["shard_param_bytes"] = self.model.nodes[0].param_bytes()
            out["replicated_param_bytes"] = self.model.replicated.param_bytes()
        if self.radio is not None:
            # resyncs: time bases established after the first (the first is the set-up)
            out["radio"] = radio_stats(self.radio, resyncs=max(self.syncs - 1, 0),
                                       before_timebase=self.counters_at_timebase)
            if self.timebase is not None:
                out["radio"]["timebase"] = {**self.timebase.details,
                                            "lost": bool(self.timebase.broken(self._radios()))}
        return out

    # ------------------------------------------------------------------ assignment
    def _assign(self, msg: Assignment) -> Message:
        from testbed.llm.sharding import shard_checkpoint
        ratios = [msg.ratios[n] for n in self.node_order]
        if self.model_dir is None:
            weights = self.slices.slice_for(msg.model_fingerprint, ratios, self.index)
        elif msg.model_fingerprint != self.config.model_fingerprint:
            raise ValueError("assignment is for another model fingerprint")
        else:
            weights = self.model_dir
        self.method = get_method(msg.plan_summary.get("method", "exact"))
        if self.method.transport == "quantized":
            from testbed.llm.tp_gloo import QuantizedGlooAllReduce, init_gloo
            import torch.distributed as dist
            if not dist.is_initialized():
                init_gloo(self.index, len(self.node_order), int(msg.plan_summary["gloo_port"]),
                          host=msg.plan_summary.get("gloo_host", "127.0.0.1"))
            allreduce: AllReduce = QuantizedGlooAllReduce(self.method.bits)
            self.relay = None
        else:
            self.relay = RelayAllReduce(self._exchange)
            allreduce = self.relay
        if self.method.analog:
            if self.radio is None:
                raise RuntimeError(f"{self.config.node_id}: method {self.method.name} needs a "
                                   "radio; this node has none")
            if self.estimates is None:
                if not self.estimates_address:
                    raise RuntimeError(f"{self.config.node_id}: no --estimates address of the "
                                       "receiver's broadcast")
                self.estimates = EstimateListener(self.estimates_address, self.keys)
            tap = msg.plan_summary.get("tap")
            if tap and self.tap is None:
                self.tap = TapSender(tap, self.keys)
        self._apply_correction(msg.plan_summary.get("correction"))
        torch.set_num_threads(int(msg.plan_summary.get("threads", 1)))
        self.model = shard_checkpoint(weights, ratios, allreduce, nodes=[self.index])
        self.rss_after_load = rss_bytes()
        log.info("%s: loaded shard %d (%d bytes), method %s", self.config.node_id, self.index,
                 self.model.nodes[0].param_bytes(), self.method.name)
        info = self._stats()
        if self.tx_radio is not None:
            info["schedule_latency_samples"] = int(self.tx_radio.schedule_latency_samples())
        return Ack(info=info)

    def _slices_ready(self) -> SliceReceiver:
        if self.model_dir is not None:
            raise RuntimeError(f"{self.config.node_id} brings its own checkpoint (--model); it "
                               "takes no slice from the controller")
        return self.slices

    def _apply_correction(self, correction: dict | None) -> None:
        """Keep ``correction`` (a `NodeCorrection` dict from the controller's calibration file,
        or None) and rebuild the transmit path (`_rebuild_tx`)."""
        if correction is not None and self.radio is None:
            raise RuntimeError(f"{self.config.node_id}: a calibration correction was sent but "
                               "this node has no radio")
        if correction is None:
            self.calibration = None
        else:
            from calibration.corrections import NodeCorrection
            self.calibration = NodeCorrection.from_dict(correction)
        self._rebuild_tx()

    def _rebuild_tx(self) -> None:
        """Bursts go through `CorrectedRadio` with the time base's clock map composed with the
        calibration (either alone when the other is missing), or straight to the radio."""
        corr = self.calibration
        if self.timebase is not None:
            from calibration.timebase import compose
            corr = compose(self.timebase.correction, self.calibration)
        if corr is None:
            self.tx_radio = self.radio
            return
        from calibration.corrections import CorrectedRadio
        self.tx_radio = CorrectedRadio(self.radio, corr, half_taps=CORRECTION_HALF_TAPS)
        log.info("%s: transmitting through correction %s", self.config.node_id, self.correction)

    def _radios(self) -> dict:
        return {self.config.node_id: self.radio}

    def _aggregate(self, message: Aggregate) -> torch.Tensor:
        """An exact all-reduce's sum, checked to be finite in float32 (the model's dtype): the
        result the forward pass continues with."""
        tensor = np.asarray(message.tensor)
        if np.iscomplexobj(tensor):
            raise ValueError(f"the aggregate of round {message.round_id} is complex "
                             f"({tensor.dtype}); an exact all-reduce sums real activations")
        with np.errstate(over="ignore", invalid="ignore"):
            total = tensor.astype(np.float32)
        if not np.all(np.isfinite(total)):
            raise ValueError(f"the aggregate of round {message.round_id} has "
                             f"{int(np.sum(~np.isfinite(total)))} values that are not finite "
                             "in float32; the sum cannot continue the forward pass")
        return torch.from_numpy(total)

    def _time_sync(self, msg: TimeSyncCommand) -> Message:
        """The time base (`calibration.timebase`): ``loopback`` measures this radio's TX->RX
        offset; ``capture`` finds the receiver's beacon (it started at receiver RX sample
        ``msg.beacon_air_sample``) in a long capture and maps the receiver's clock onto this
        node's stream from then on."""
        from calibration import timebase as tb
        self._need_radio()
        agreed = pps_time_sync(self.radio, msg)     # USRPs: one PPS edge (calibration.pps)
        if agreed is not None:
            if msg.step == "pps_latch" and self.counters_at_timebase is None:
                self.counters_at_timebase = stream_counters(self.radio)
            return agreed
        who, radios = self.config.node_id, self._radios()
        if msg.step == "loopback":
            self.timebase = None
            self._loopback_breaks = tb.TimeBase.snapshot(radios)
            self._rebuild_tx()
            self.loopback_offset = tb.guarded(radios, who, lambda: tb.measure_loopback_offset(
                self.radio))
            return Ack(info={"loopback_offset": self.loopback_offset})
        if msg.step != "capture" or msg.beacon_air_sample is None:
            raise ValueError(f"a node takes time_sync steps 'loopback' and 'capture' (with "
                             f"beacon_air_sample), got {msg.step!r}")
        if self.loopback_offset is None:
            raise RuntimeError("time_sync capture before loopback")
        breaks = self._loopback_breaks      # the loopback offset holds only while these do
        if tb.TimeBase.snapshot(radios) != breaks:
            raise tb.TimeBaseLost(f"{who}: a radio slipped since the loopback step; the "
                                  "controller measures again")

        def measure():
            y, first = tb.capture(self.radio, tb.CAPTURE_SAMPLES,
                                  back=self.radio.schedule_latency_samples())
            return tb.find_beacon(y, first, self.radio.settings.sample_rate_hz)

        fix = tb.guarded(radios, who, measure)
        corr = tb.timebase_correction(msg.beacon_air_sample, fix, self.loopback_offset,
                                      self.radio.settings.center_freq_hz)
        details = {**fix.as_dict(), "loopback_offset": self.loopback_offset,
                   "tau_samples": corr.tau_samples, "sro_ppm": corr.sro_ppm,
                   "cfo_hz": corr.cfo_hz}
        self.timebase = tb.TimeBase(corr, breaks, details)
        if self.counters_at_timebase is None:
            self.counters_at_timebase = stream_counters(self.radio)
        self.syncs += 1
        self._rebuild_tx()
        return Ack(info=details)

    @property
    def correction(self):
        """The `NodeCorrection` the transmit path applies, or None (raw radio)."""
        return self.tx_radio.correction if self.tx_radio is not self.radio else None

    def _send(self, x: np.ndarray, start: int, until: int, radio=None) -> None:
        """Burst ``x`` (n_tx, K) to arrive at receiver sample ``start`` through ``radio``
        (default: the transmit path, time base and calibration), then declare this node done
        up to receiver sample ``until`` (later by the corrected burst's margin). Components
        beyond full scale are counted here and saturated by the radio's DAC."""
        radio = self.tx_radio if radio is None else radio
        self.clipped_components += int(np.count_nonzero(np.abs(np.asarray(x).view(np.float32)) > 1.0))
        with waiting_on("waiting on radio.transmit"):
            radio.transmit(x, start)
        if radio is not self.radio:
            # the pre-corrected burst carries CORRECTION_HALF_TAPS samples of band-limited
            # tail past the end (plus the timing advance's rounding): declare past them
            until = max(until, start + x.shape[1] + CORRECTION_HALF_TAPS + 2)
        with waiting_on("waiting on radio.done_until"):
            radio.done_until(until)

    def _burst(self, msg: BurstCommand) -> Message:
        """A calibration burst (`testbed calibrate` over the control plane) at receiver sample
        ``msg.at_sample``, through the time base alone: what a calibration measures is what
        remains after it."""
        self._need_radio()
        if self.timebase is not None:    # a slipped clock: the controller re-syncs first
            self.timebase.check(self._radios(), self.config.node_id)
        x = np.asarray(msg.samples, dtype=np.complex64)
        if x.ndim != 2 or x.shape[0] != self.radio.settings.n_tx_channels:
            raise ValueError(f"a burst is (n_tx = {self.radio.settings.n_tx_channels}, samples), "
                             f"got shape {x.shape}")
        radio = self.radio
        if self.timebase is not None:
            from calibration.corrections import CorrectedRadio
            radio = CorrectedRadio(self.radio, self.timebase.correction,
                                   half_taps=CORRECTION_HALF_TAPS)
        self._send(x, int(msg.at_sample), int(msg.at_sample) + x.shape[1], radio)
        return Ack(info={"sent": int(x.shape[1])})

    # ------------------------------------------------------------------ forward pass
    def _forward(self, msg: Forward) -> None:
        """Run the forward pass of ``msg`` here; every all-reduce on the way answers the
        pending command (`_exchange`), and the last answer is the done `NodeStep` with the
        output (first node only). Answers go out from here: returns None."""
        if self.model is None:
            raise RuntimeError("no shard loaded yet (ASSIGNMENT first)")
        ids = torch.from_numpy(np.array(msg.ids, dtype=np.int64))
        if msg.reset:
            self.model.reset_cache()
        past = self.model.past_len if msg.use_cache else 0
        batch, n = ids.shape
        mask = torch.ones(batch, past + n, dtype=torch.long)
        positions = torch.arange(past, past + n).unsqueeze(0).expand(batch, n)
        self._report_powers = msg.report_powers
        self._pending = msg
        try:
            t0 = time.perf_counter()
            logits = self.model.forward(ids, mask, positions, use_cache=msg.use_cache)
            self.compute_s += time.perf_counter() - t0
            out = None
            if self.index == 0:
                if msg.score:   # log p(ids[t+1] | ids[..t]) in float64, (batch, tokens-1)
                    logp = torch.log_softmax(logits[:, :-1].double(), -1)
                    out = logp.gather(2, ids[:, 1:, None])[..., 0].numpy()
                else:
                    out = (logits[:, -1] if msg.last_only else logits).numpy()
            answer: Message = NodeStep(round_id=self._pending.round_id, done=True,
                                       output=None if out is None else np.ascontiguousarray(out))
        except _Abort:        # a new FORWARD came; it is served next
            return None
        except Exception as exc:   # answered to the command the pass was answering
            log.exception("%s: forward pass failed on %s", self.config.node_id,
                          self._pending.type)
            answer = self.error_reply(exc)
        finally:
            request, self._pending = self._pending, None
        self.send_reply(request, answer)
        return None

    def _exchange(self, layer: int, site: str, partial: torch.Tensor) -> torch.Tensor:
        """One all-reduce inside the pass: answer the pending command with this round's step
        (the partial itself for ``exact``), serve until AGGREGATE or PAYLOAD arrives (a new
        FORWARD abandons the pass), and return the round's result."""
        self.rounds += 1
        self.last_partial = partial.detach().to(torch.float32).numpy()
        round_id = self._pending.round_id
        if self.method.transport == "exact":
            step: Message = Partial(layer=layer, site=site, round_id=round_id,
                                    tensor=np.ascontiguousarray(self.last_partial))
        else:
            power = symbol_power(self.last_partial) if self._report_powers else None
            step = NodeStep(round_id=round_id, done=False, layer=layer, site=site,
                            shape=list(self.last_partial.shape), power=power)
        self.send_reply(self._pending, step)
        item = self.serve_until(lambda m: isinstance(m, (Aggregate, PayloadCommand, Forward)))
        msg = item.message
        if isinstance(msg, Forward):
            self.put_back(item)
            raise _Abort()
        self._pending = msg
        self.n_handled += 1
        with waiting_on(f"handling {msg.type}"):
            if isinstance(msg, Aggregate):
                return self._aggregate(msg)
            return self._payload(msg)

    # ------------------------------------------------------------------ over the air
    def _need_radio(self) -> None:
        if self.radio is None:
            raise RuntimeError(f"{self.config.node_id} has no radio; start it with its radio "
                               "(simulated benches: with the broker address)")

    def _sound(self, msg: SoundCommand) -> Message:
        """Send this node's preamble and pilots in the sounding frame of ``msg.plan``."""
        self._need_radio()
        if self.timebase is not None:    # a slipped clock: the controller re-syncs first
            self.timebase.check(self._radios(), self.config.node_id)
        plan = RoundPlan.from_dict(msg.plan.model_dump())
        x = node_frame(self.index, plan, self.budget)
        self._send(x, plan.start, plan.end(self.budget))
        return Ack(info={"sent": int(x.shape[1])})

    def _payload(self, msg: PayloadCommand) -> torch.Tensor:
        """Transmit the last partial over the air; the receiver's estimate is the result."""
        self._need_radio()
        if self.last_partial is None:
            raise RuntimeError("payload command before any partial was computed")
        plan = RoundPlan.from_dict(msg.plan.model_dump())
        x = node_frame(self.index, plan, self.budget, partial=self.last_partial,
                       B_n=np.asarray(msg.precoder), scale=msg.scale)
        self._send(x, plan.start, plan.end(self.budget))
        if msg.tap and self.tap is not None:
            self.tap.copy(msg.round_id, msg.layer, msg.site, self.index, self.last_partial)
        t0 = time.perf_counter()
        est = self.estimates.wait(msg.round_id, self.step_timeout_s)
        self.estimate_wait_s += time.perf_counter() - t0
        return torch.from_numpy(np.array(est, dtype=np.float32))

    def run(self) -> str:
        try:
            return super().run()
        finally:
            for part in (self.estimates, self.tap):
                if part is not None:
                    part.close()
