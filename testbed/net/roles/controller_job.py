"""The controller's side of a bench run: shard assignment, the scale statistics pass, the
per-layer all-reduces and the jobs (greedy generation, perplexity) as generators for
`Controller.run`.

Per all-reduce, by method (`testbed.methods`):

* analog (``aircomp-*``, ``fdma``): the same round driver as in-process
  (`testbed.phy.analog_allreduce.AnalogRoundDriver`) on a `BenchExecutor`: a new fading block
  (simulated benches), sounding over the air (CSI and noise from the receiver; or the
  simulator's truth with ``--csi perfect``), the design, then the payload round: nodes transmit,
  the receiver broadcasts the estimate to them. The controller carries control only.
* ``exact``: the nodes' partials come to the controller, which returns the exact sum (the
  digital reference; the one method that moves partials through the controller).
* ``digital``: the nodes all-reduce their 8-bit quantized partials over gloo among themselves;
  a forward pass needs no controller round trip.

Scales: before the job, a statistics pass (training text; the demo's `calibrate` windows and
decode steps) runs real rounds in which the nodes report their partials' symbol powers (N
scalars per round, never the partials) and the controller records each site's scale; the job's
rounds then use those scales without any per-round exchange.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from testbed.errors import ConfigError
from testbed.methods import Method, get_method
from testbed.net.controller import Controller
from testbed.net.roles.bench_round import BenchExecutor, BenchTruth
from testbed.net.roles.common import CHANNEL_ID, bench_ratios, node_ids
from testbed.net.roles.node import CORRECTION_HALF_TAPS
from testbed.net.schema import (Aggregate, Assignment, Forward, NewRealization, NodeStep, Partial,
                                StatsQuery, StatsReport)
from testbed.phy.analog_allreduce import AnalogRoundDriver
from testbed.phy.budget import DEFAULT_BUDGET, LinkBudget
from testbed.phy.scale_policy import ScaleKeeper

log = logging.getLogger(__name__)

#: --method values (the registry's).
from testbed.methods import METHOD_NAMES as METHODS  # noqa: E402


@dataclass
class RoundRecord:
    """One all-reduce round: where, how long (s), and (analog) the design's prediction, the
    scale, the detection offset (samples) and the receiver's wait (s)."""

    layer: int
    site: str
    seconds: float
    mse_tensor_predicted: float | None = None
    scale: float | None = None
    detected_offset: int | None = None
    design_s: float | None = None
    noise_var_design: float | None = None
    csi_reused: bool = False


@dataclass
class BenchSession:
    """Drives the bench's role processes through a registered `Controller`.

    method: a registry name; n_streams: L for AirComp (None: the design's default); csi:
    "estimated" (pilots; the product) or "perfect" (simulator truth through the channel agent);
    request_timeout_s: per request (s); budget: the link budget shared with the roles;
    corrections: {node id: NodeCorrection dict} sent in each node's ASSIGNMENT (calibration);
    measure_error: nodes copy their partials to the measurement sink at ``tap_address``;
    model_dir: the checkpoint, whose slices go to the nodes that registered without one
    (`testbed.net.roles.slices`; None: every node must bring its own); csi_interval_samples:
    one sounding and design per interval of the receiver clock (`AnalogRoundDriver`)."""

    ctl: Controller
    bench: object
    fingerprint: str
    method: str = "exact"
    n_streams: int | None = None
    csi: str = "estimated"
    request_timeout_s: float = 60.0
    budget: LinkBudget = DEFAULT_BUDGET
    rounds: list[RoundRecord] = field(default_factory=list)
    corrections: dict[str, dict] | None = None
    measure_error: bool = False
    tap_address: str | None = None
    #: extra lead on real-time radios for the roles' own work (s); see `BenchExecutor`
    slack_s: float = 0.05
    model_dir: object = None
    csi_interval_samples: int = 0
    #: predict each node's phase at the payload from successive soundings (None: on for
    #: benches whose channel stays put -- radios, or a simulated bench with a fixed block)
    phase_tracking: bool | None = None

    def __post_init__(self) -> None:
        try:
            self.spec: Method = get_method(self.method)
        except ValueError as exc:
            raise ConfigError(f"--method: {exc}") from None
        self.method = self.spec.name
        if self.csi not in ("perfect", "estimated"):
            raise ConfigError(f"--csi {self.csi!r}: choose 'estimated' (pilot sounding over the "
                              "air) or 'perfect' (true channels of the simulated air)")
        simulated = self.bench.simulated
        if self.spec.analog and self.csi == "perfect" and not simulated:
            raise ConfigError(f"--csi perfect needs a simulated bench (the simulator's true "
                              f"channels); bench {self.bench.name!r} has radios: use "
                              "--csi estimated")
        if self.measure_error and not self.spec.analog:
            raise ConfigError("--measure-error measures over-the-air rounds; method "
                              f"{self.method!r} has none")
        self.nodes = node_ids(self.bench)
        self.receiver = self.bench.receiver.id
        # a corrected node starts its burst CORRECTION_HALF_TAPS node samples early (the
        # band-limited precursor), and a simulated impaired radio's own fractional-delay
        # filter moves its clock further: schedule twice the margin (+ slack) further ahead
        extra = 0 if self.corrections is None else 2 * CORRECTION_HALF_TAPS + 16
        self.round_id = 0
        self.driver: AnalogRoundDriver | None = None
        self.executor: BenchExecutor | None = None
        self.truth: BenchTruth | None = None
        if self.spec.analog:
            self.executor = BenchExecutor(self.ctl, self.nodes, self.receiver, self.budget,
                                          extra_lead=extra, timeout_s=self.request_timeout_s,
                                          slack_s=self.slack_s)
            self.executor.tap = self.measure_error
            self.truth = BenchTruth(self.ctl, CHANNEL_ID) if self.csi == "perfect" else None
            n_tx = 1
            self.driver = AnalogRoundDriver(
                self.executor, scheme=self.spec.transport, n_nodes=len(self.nodes), n_tx=n_tx,
                design_method=self.spec.design or "zf-sdr", budget=self.budget, csi=self.csi,
                truth=self.truth, scales=ScaleKeeper(self.spec.scale_policy or "calibrated"),
                n_streams=self.n_streams, design_options=self.spec.design_options,
                csi_interval_samples=self.csi_interval_samples,
                phase_tracking=not self.bench.new_channel_every_round
                if self.phase_tracking is None else self.phase_tracking,
                on_round=self._new_realization if self.bench.new_channel_every_round else None)

    def _new_realization(self) -> None:
        self.ctl.request(CHANNEL_ID, NewRealization(), timeout_s=self.request_timeout_s)

    # ------------------------------------------------------------------ setup
    def assign(self, gloo_port: int | None = None, gloo_host: str = "127.0.0.1",
               threads: int = 1) -> dict:
        """Send ASSIGNMENT (bench ratios, method) to every node; they load their shards.
        Returns each node's reply info (bytes held, RSS)."""
        summary = {"method": self.method, "threads": threads}
        if self.spec.transport == "quantized":
            if gloo_port is None:
                raise ConfigError("the digital method needs a gloo rendezvous port")
            summary.update(gloo_port=gloo_port, gloo_host=gloo_host)
        if self.measure_error:
            summary["tap"] = self.tap_address
        if self.corrections is not None:
            missing = [n for n in self.nodes if n not in self.corrections]
            if missing:
                raise ConfigError(f"the calibration has no correction for node(s) {missing}; "
                                  "re-run `testbed calibrate`")

        def node_summary(n: str) -> dict:
            if self.corrections is None:
                return summary
            return {**summary, "correction": dict(self.corrections[n])}

        ratios = bench_ratios(self.bench)
        slices = self.send_slices(ratios)
        msg = {n: Assignment(ratios=ratios, plan_summary=node_summary(n),
                             model_fingerprint=self.fingerprint) for n in self.nodes}
        replies = self.ctl.gather(msg, timeout_s=max(self.request_timeout_s, 120.0))
        info = {n: getattr(r, "info", {}) for n, r in replies.items()}
        for n, s in slices.items():
            loaded = (info[n].get("weights") or {}).get("sha256")
            if loaded != s["sha256"]:
                raise ConfigError(f"{n} loaded a slice with digest {str(loaded)[:16]}..., the "
                                  f"controller offered {s['sha256'][:16]}...; restart {n} (its "
                                  "slice cache is re-checked and refilled)")
            info[n]["slice"] = s
        if self.executor is not None:
            self.executor.node_latency_samples = {
                n: int(i.get("schedule_latency_samples", 0)) for n, i in info.items()}
            self.executor.establish_time_base(self.bench)
        return info

    def send_slices(self, ratios: dict[str, float]) -> dict[str, dict]:
        """Send their slices to the nodes that registered without a checkpoint; returns per
        node how it got it (`SliceServer.deliver`)."""
        from testbed.net.roles.slices import SliceServer
        from testbed.net.schema import NO_CHECKPOINT
        bare = {n: i for i, n in enumerate(self.nodes)
                if self.ctl.peers[n].model_fingerprint == NO_CHECKPOINT}
        if not bare:
            return {}
        if self.model_dir is None:
            raise ConfigError(f"node(s) {sorted(bare)} brought no checkpoint and this controller "
                              "has none to slice; give the controller --model")
        if getattr(self, "_slice_server", None) is None:
            self._slice_server = SliceServer(self.model_dir, self.fingerprint)
        return self._slice_server.deliver(self.ctl, bare, [ratios[n] for n in self.nodes],
                                          timeout_s=max(self.request_timeout_s, 120.0))

    def statistics_pass(self, train_ids: torch.Tensor, *, window: int, n_windows: int = 4,
                        decode_steps: int = 8) -> dict:
        """The scale statistics pass (analog methods; no-op otherwise) on training token ids
        (1-D): ``n_windows`` windows of ``window`` tokens spread over the text, then
        ``decode_steps`` KV-cache steps from its first 16 tokens -- the in-process demo's
        `testbed.experiments.demo.calibrate`. Returns the site scales {"layer/site": c}."""
        if self.driver is None:
            return {}
        scales = self.driver.scales
        scales.calibrating = True
        self.executor.tap = False            # the tap measures the job's rounds only
        n_rounds = len(self.rounds)
        try:
            n = min(n_windows, train_ids.numel() // window)
            for s in np.linspace(0, train_ids.numel() - window, n).astype(int):
                self.forward(train_ids[s:s + window].unsqueeze(0), reset=True, use_cache=False,
                             last_only=True)
            if decode_steps:
                tokens = train_ids[:16].unsqueeze(0)
                for step in range(decode_steps):
                    logits = self.forward(tokens, reset=step == 0, use_cache=True, last_only=True)
                    tokens = torch.tensor([[int(np.argmax(logits[0]))]], dtype=torch.int64)
        finally:
            scales.calibrating = False
            self.executor.tap = self.measure_error
        del self.rounds[n_rounds:]   # statistics-pass rounds are not the job's
        return scales.table()

    def stats(self, peers: Sequence[str] | None = None) -> dict:
        """STATS from ``peers`` (default: every registered peer)."""
        peers = list(peers or self.ctl.peers)
        replies = self.ctl.gather({p: StatsQuery() for p in peers}, timeout_s=10.0)
        return {p: (r.info if isinstance(r, StatsReport) else {}) for p, r in replies.items()}

    # ------------------------------------------------------------------ one forward pass
    def forward(self, input_ids: torch.Tensor, *, reset: bool, use_cache: bool,
                last_only: bool, score: bool = False) -> np.ndarray:
        """Run the model over the bench on ``input_ids`` ``(batch, tokens)``; returns the first
        node's output: logits float32 ``(batch, vocab)`` (``last_only``) or ``(batch, tokens,
        vocab)``, or with ``score`` the log-probabilities of ``input_ids[:, 1:]``."""
        ids = np.ascontiguousarray(input_ids.numpy(), dtype=np.int64)
        report = self.driver is not None and self.driver.scales.needs_powers
        replies = self.ctl.gather({n: Forward(round_id=self.round_id, ids=ids, reset=reset,
                                              use_cache=use_cache, last_only=last_only,
                                              score=score, report_powers=report)
                                   for n in self.nodes}, timeout_s=self.request_timeout_s)
        while True:
            steps = [replies[n] for n in self.nodes]
            kinds = {type(r) for r in steps}
            if kinds == {NodeStep} and all(r.done for r in steps):
                out = steps[0].output
                if out is None:
                    raise RuntimeError(f"{self.nodes[0]} returned no output")
                return np.asarray(out)
            self.round_id += 1
            t0 = time.perf_counter()
            if kinds == {Partial}:
                replies, rec = self._exact(steps)
            elif kinds == {NodeStep} and not any(r.done for r in steps):
                replies, rec = self._analog(steps)
            else:
                raise RuntimeError(f"nodes are out of step: replies "
                                   f"{sorted(type(r).__name__ for r in steps)}")
            rec.seconds = time.perf_counter() - t0
            self.rounds.append(rec)

    def _site(self, steps) -> tuple[int, str]:
        layer, site = steps[0].layer, steps[0].site
        if any((s.layer, s.site) != (layer, site) for s in steps):
            raise RuntimeError(f"nodes are out of step at layer {layer} site {site}")
        return layer, site

    def _exact(self, parts: list[Partial]):
        layer, site = self._site(parts)
        # same operation order and dtype as testbed.llm.allreduce.ExactAllReduce
        total = torch.from_numpy(np.array(parts[0].tensor))
        for p in parts[1:]:
            total = total + torch.from_numpy(np.array(p.tensor))
        replies = self.ctl.gather({n: Aggregate(layer=layer, site=site, round_id=self.round_id,
                                                tensor=total.numpy()) for n in self.nodes},
                                  timeout_s=self.request_timeout_s)
        return replies, RoundRecord(layer, site, 0.0)

    def _analog(self, steps: list[NodeStep]):
        layer, site = self._site(steps)
        ex = self.executor
        ex.round_id, ex.layer, ex.site = self.round_id, layer, site
        powers = [s.power for s in steps] if steps[0].power is not None else None
        out, rec = self.driver.round(layer, site, tuple(steps[0].shape), powers=powers)
        return ex.node_replies, RoundRecord(
            layer, site, 0.0, mse_tensor_predicted=rec["mse_tensor_predicted"],
            scale=rec["scale"], detected_offset=out.offset, design_s=rec["design_s"],
            noise_var_design=rec["noise_var_design"], csi_reused=bool(rec.get("csi_reused")))

    def summary(self) -> dict:
        """Round timing and the design's predicted error over the job's rounds."""
        out: dict = {"rounds": len(self.rounds), "method": self.method,
                     "transport": self.spec.transport}
        if self.rounds:
            secs = np.array([r.seconds for r in self.rounds])
            out["round_ms_median"] = float(np.median(secs) * 1e3)
            out["round_ms_mean"] = float(np.mean(secs) * 1e3)
        air = [r for r in self.rounds if r.mse_tensor_predicted is not None]
        if air:
            out["mse_tensor_predicted_mean"] = float(np.mean([r.mse_tensor_predicted for r in air]))
            out["design_ms_median"] = float(np.median([r.design_s for r in air]) * 1e3)
            out["detected_offsets"] = sorted({int(r.detected_offset) for r in air})
            # rounds that sounded and designed (the others reused them: --csi-interval-ms)
            out["soundings"] = sum(1 for r in air if not r.csi_reused)
        if self.executor is not None and self.executor.syncs:
            out["timebase_syncs"] = self.executor.syncs
        if self.driver is not None:
            out["phase_tracking"] = self.driver.tracker is not None
            out["scales"] = self.driver.scales.table()
            out["simulator_truth_used"] = sorted(self.driver.truth_used)
        return out


#: how long a failed run waits for the roles' counters (s)
STATS_AFTER_FAILURE_S = 2.0


def stats_after_failure(ctl: Controller, timeout_s: float = STATS_AFTER_FAILURE_S) -> dict:
    """STATS from every role that still answers within ``timeout_s`` seconds (a failed run
    saves what it can: radio counters, RSS, traffic); lost or busy roles are left out."""
    now = time.monotonic()
    live = [p for p, info in ctl.peers.items()
            if now - info.last_seen <= ctl.config.peer_timeout_s]
    replies = ctl.gather_available({p: StatsQuery() for p in live}, timeout_s)
    return {p: r.info for p, r in replies.items() if isinstance(r, StatsReport)}


def generate_job(session: BenchSession, prompt_ids: torch.Tensor, max_new_tokens: int,
                 keep_logits: bool = False):
    """Greedy decoding over the bench as a `Controller.run` job: yields one dict per token
    (step, token, latency_s, logits sha256 of the step, optionally the logits)."""
    def job(ctl) -> Iterator[dict]:
        tokens = prompt_ids
        for step in range(max_new_tokens):
            t0 = time.perf_counter()
            logits = session.forward(tokens, reset=step == 0, use_cache=True, last_only=True)
            nxt = int(np.argmax(logits[0]))
            item = {"step": step, "token": nxt, "latency_s": time.perf_counter() - t0,
                    "logits_sha256": hashlib.sha256(np.ascontiguousarray(
                        logits, dtype=np.float32).tobytes()).hexdigest()}
            if keep_logits:
                item["logits"] = np.asarray(logits, dtype=np.float32)
            yield item
            tokens = torch.tensor([[nxt]], dtype=torch.int64)
    return job


def perplexity_job(session: BenchSession, token_ids: torch.Tensor, window: int,
                   n_windows: int):
    """Perplexity over the bench: non-overlapping windows of ``window`` tokens (the first
    token of each is context only, as in `testbed.llm.perplexity` with stride = window); the
    output node scores the window itself (log-probabilities, not logits, come back); yields one
    dict per window (nll_sum in nats, n_tokens, latency_s)."""
    ids = torch.as_tensor(token_ids, dtype=torch.int64).reshape(-1)

    def job(ctl) -> Iterator[dict]:
        for w in range(n_windows):
            chunk = ids[w * window:(w + 1) * window]
            if chunk.numel() < 2:
                break
            t0 = time.perf_counter()
            logp = session.forward(chunk.unsqueeze(0), reset=True, use_cache=False,
                                   last_only=False, score=True)
            yield {"window": w, "nll_sum": float(-np.sum(logp)), "n_tokens": int(chunk.numel() - 1),
                   "latency_s": time.perf_counter() - t0}
    return job
