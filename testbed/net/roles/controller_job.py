"""The controller's side of a bench run: shard assignment, the per-layer all-reduce rounds
(exact sum at the controller, AirComp over the channel broker, or gloo between the nodes),
and the jobs (greedy generation, perplexity) as generators for `Controller.run`.

AirComp round (per layer and site), mirroring `AirCompAllReduce.reduce` in-process:
the nodes' partials reach the controller (they give the common scale c -- the "oracle" policy
of `testbed.phy.scale_policy`, N scalars of side information -- and the exact sum the measured
MSE is computed against); the channel agent draws a new fading block and reports the true
channels (perfect CSI) and the bench clock (latest of air and node clocks); the controller designs (A, B) with
`testbed.optim.transceiver.design_transceiver`, schedules the frame at ``now + lead``, sends
B_n to every node and A to the receiver in one gather; the nodes transmit, the receiver
returns the de-normalized sum, which goes back to every node as AGGREGATE.
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
from testbed.net.controller import Controller
from testbed.net.roles.aircomp_phy import RoundPlan
from testbed.net.roles.common import CHANNEL_ID, bench_ratios, node_ids
from testbed.net.schema import Aggregate, Assignment, Partial, Result
from testbed.phy.link import TX_REF_POWER, LinkConfig
from testbed.phy.normalization import common_scale

log = logging.getLogger(__name__)

#: --method values: exact sum at the controller, AirComp designs, gloo between the nodes.
METHODS = ("exact", "aircomp-zf-sdr", "aircomp-mmse", "digital")


@dataclass
class RoundRecord:
    """One all-reduce round: where, how long (s), and (AirComp) measured/predicted errors."""

    layer: int
    site: str
    seconds: float
    mse_tensor: float | None = None
    mse_tensor_predicted: float | None = None
    scale: float | None = None
    detected_offset: int | None = None


@dataclass
class BenchSession:
    """Drives the bench's role processes through a registered `Controller`.

    method: one of `METHODS`; n_streams: L for AirComp (None: the design's default);
    request_timeout_s: per request (s); link: frame parameters shared with the roles;
    corrections: {node id: NodeCorrection dict} sent in each node's ASSIGNMENT (calibration)."""

    ctl: Controller
    bench: object
    fingerprint: str
    method: str = "exact"
    n_streams: int | None = None
    csi: str = "perfect"
    request_timeout_s: float = 60.0
    link: LinkConfig = field(default_factory=LinkConfig)
    rounds: list[RoundRecord] = field(default_factory=list)
    realization_id: int = 0
    #: per node id, the `NodeCorrection` dict its transmit path applies (None: raw radios)
    corrections: dict[str, dict] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: choose one of {METHODS}")
        if self.method.startswith("aircomp") and self.bench.channel is None:
            raise ConfigError(f"bench {self.bench.name!r} has no channel section; AirComp over "
                              "the broker needs a simulated bench (hardware: not wired yet)")
        if self.csi not in ("perfect", "estimated"):
            raise ConfigError(f"--csi {self.csi!r}: choose 'perfect' (true channels from the "
                              "simulated air) or 'estimated' (pilot sounding over the air)")
        self.nodes = node_ids(self.bench)
        self.receiver = self.bench.receiver.id
        # a corrected node starts its burst CORRECTION_HALF_TAPS node samples early (the
        # band-limited precursor), and a simulated impaired radio's own fractional-delay
        # filter (sim_backend `node_sample_at`, <= that many taps) moves its clock further:
        # schedule twice the margin (+ slack for the correction's error) further ahead
        from testbed.net.roles.node import CORRECTION_HALF_TAPS
        self.lead = self.link.lead_samples + (0 if self.corrections is None
                                              else 2 * CORRECTION_HALF_TAPS + 16)
        self.round_id = 0

    # ------------------------------------------------------------------ setup
    def assign(self, gloo_port: int | None = None, threads: int = 1) -> dict:
        """Send ASSIGNMENT (bench ratios) to every node; they load their shards. Returns each
        node's reply info (bytes held, RSS)."""
        summary = {"method": "digital" if self.method == "digital" else "relay",
                   "threads": threads}
        if self.method == "digital":
            if gloo_port is None:
                raise ConfigError("the digital method needs a gloo rendezvous port")
            summary["gloo_port"] = gloo_port
        if self.corrections is not None:
            missing = [n for n in self.nodes if n not in self.corrections]
            if missing:
                raise ConfigError(f"the calibration has no correction for node(s) {missing}; "
                                  "re-run `testbed calibrate` for this bench")

        def node_summary(n: str) -> dict:
            if self.corrections is None:
                return summary
            return {**summary, "correction": dict(self.corrections[n])}

        msg = {n: Assignment(ratios=bench_ratios(self.bench), plan_summary=node_summary(n),
                             model_fingerprint=self.fingerprint) for n in self.nodes}
        replies = self.ctl.gather(msg, timeout_s=max(self.request_timeout_s, 120.0))
        return {n: r.info for n, r in replies.items()}

    def stats(self, peers: Sequence[str] | None = None) -> dict:
        """RESULT(op=stats) from ``peers`` (default: every registered peer)."""
        peers = list(peers or self.ctl.peers)
        replies = self.ctl.gather({p: Result(round_id=0, info={"op": "stats"}) for p in peers},
                                  timeout_s=10.0)
        return {p: r.info for p, r in replies.items()}

    # ------------------------------------------------------------------ one forward pass
    def forward(self, input_ids: torch.Tensor, *, reset: bool, use_cache: bool,
                last_only: bool) -> np.ndarray:
        """Run the model over the bench on ``input_ids`` ``(batch, tokens)``; returns the logits
        of the first node, float32 ``(batch, vocab)`` (``last_only``) or ``(batch, tokens, vocab)``."""
        ids = np.ascontiguousarray(input_ids.numpy(), dtype=np.int64)
        info = {"op": "forward", "reset": reset, "use_cache": use_cache, "last_only": last_only}
        replies = self.ctl.gather({n: Result(round_id=self.round_id, info=info, tensor=ids)
                                   for n in self.nodes}, timeout_s=self.request_timeout_s)
        while True:
            kinds = {type(r) for r in replies.values()}
            if kinds == {Result}:
                logits = replies[self.nodes[0]].tensor
                if logits is None:
                    raise RuntimeError(f"{self.nodes[0]} returned no logits")
                return logits
            if kinds != {Partial}:
                raise RuntimeError(f"nodes are out of step: replies {sorted(k.__name__ for k in kinds)}")
            parts = [replies[n] for n in self.nodes]
            layer, site = parts[0].layer, parts[0].site
            if any((p.layer, p.site) != (layer, site) for p in parts):
                raise RuntimeError(f"nodes are out of step at layer {layer} site {site}")
            t0 = time.perf_counter()
            if self.method == "exact":
                total = self._exact([p.tensor for p in parts])
                rec = RoundRecord(layer, site, 0.0)
            else:
                total, rec = self._aircomp([p.tensor for p in parts], layer, site)
            self.round_id += 1
            replies = self.ctl.gather({n: Aggregate(layer=layer, site=site,
                                                    round_id=self.round_id, tensor=total)
                                       for n in self.nodes}, timeout_s=self.request_timeout_s)
            rec.seconds = time.perf_counter() - t0
            self.rounds.append(rec)

    @staticmethod
    def _exact(tensors: list[np.ndarray]) -> np.ndarray:
        # same operation order and dtype as testbed.llm.allreduce.ExactAllReduce
        total = torch.from_numpy(np.array(tensors[0]))
        for t in tensors[1:]:
            total = total + torch.from_numpy(np.array(t))
        return total.numpy()

    def _aircomp(self, tensors: list[np.ndarray], layer: int, site: str):
        from testbed.optim.transceiver import design_transceiver
        zs = [np.asarray(t, dtype=np.float64) for t in tensors]
        exact = np.sum(zs, axis=0)
        ch = self.ctl.request(CHANNEL_ID, Result(round_id=self.round_id,
                                                 info={"op": "new_realization"}),
                              timeout_s=self.request_timeout_s)
        self.realization_id += 1
        H = np.asarray(ch.tensor)
        now = int(ch.info["now"])
        noise_var = float(ch.info["noise_var"]) / TX_REF_POWER
        if self.csi == "estimated":
            H, now = self._sound(H.shape, now)
        c = common_scale(zs)
        kw = {} if self.n_streams is None else {"n_streams": self.n_streams}
        d = design_transceiver(H, np.ones(len(zs)), noise_var,
                               method=self.method.removeprefix("aircomp-"), **kw)
        L = d.A.shape[1]
        plan = RoundPlan(len(zs), H.shape[2], L, zs[0].size, now + self.lead, c)
        info = plan.as_info()
        msgs = {n: Result(round_id=self.round_id, info={"op": "aircomp_tx", **info},
                          tensor=np.ascontiguousarray(d.B[i], dtype=np.complex128))
                for i, n in enumerate(self.nodes)}
        msgs[self.receiver] = Result(round_id=self.round_id,
                                     info={"op": "aircomp_rx", "shape": list(zs[0].shape), **info},
                                     tensor=np.ascontiguousarray(d.A, dtype=np.complex128))
        replies = self.ctl.gather(msgs, timeout_s=self.request_timeout_s)
        rx = replies[self.receiver]
        z_hat = np.asarray(rx.tensor)
        rec = RoundRecord(layer, site, 0.0, mse_tensor=float(np.mean((z_hat - exact) ** 2)),
                          mse_tensor_predicted=float(d.mse) * c * c / (2 * L), scale=c,
                          detected_offset=int(rx.info["detected_offset"]))
        return z_hat.astype(np.float32), rec

    def _sound(self, shape: tuple[int, ...], now: int) -> tuple[np.ndarray, int]:
        """Channel sounding over the air: every node sends its time-orthogonal pilots, the
        receiver LS-estimates each H_n; returns the estimates ``(N, N_r, N_t)`` and the air
        sample after the sounding window (where the payload round may start)."""
        from testbed.net.roles.aircomp_phy import sounding_layout, sounding_window
        n_nodes, _, n_tx = shape
        layout = sounding_layout(n_nodes, n_tx, self.link)
        start = now + self.lead
        info = {"start": start, "n_nodes": n_nodes, "n_tx": n_tx}
        msgs = {n: Result(round_id=self.round_id, info={"op": "sound", **info})
                for n in self.nodes}
        msgs[self.receiver] = Result(round_id=self.round_id, info={"op": "sound_rx", **info})
        replies = self.ctl.gather(msgs, timeout_s=self.request_timeout_s)
        first, n = sounding_window(start, layout, self.link)
        return np.asarray(replies[self.receiver].tensor), first + n

    def mse_summary(self) -> dict:
        """Mean measured / predicted tensor MSE over AirComp rounds and the round timing."""
        out: dict = {"rounds": len(self.rounds)}
        if self.rounds:
            secs = np.array([r.seconds for r in self.rounds])
            out["round_ms_median"] = float(np.median(secs) * 1e3)
            out["round_ms_mean"] = float(np.mean(secs) * 1e3)
        air = [r for r in self.rounds if r.mse_tensor is not None]
        if air:
            out["mse_tensor_mean"] = float(np.mean([r.mse_tensor for r in air]))
            out["mse_tensor_predicted_mean"] = float(np.mean([r.mse_tensor_predicted for r in air]))
            out["per_round_mse_tensor"] = [r.mse_tensor for r in air]
        return out


def logits_digest(h, logits: np.ndarray) -> None:
    """Feed float32 logits into a running hash ``h`` (hashlib object)."""
    h.update(np.ascontiguousarray(logits, dtype=np.float32).tobytes())


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
    token of each is context only, as in `testbed.llm.perplexity` with stride = window);
    yields one dict per window (nll_sum in nats, n_tokens, latency_s)."""
    ids = torch.as_tensor(token_ids, dtype=torch.int64).reshape(-1)

    def job(ctl) -> Iterator[dict]:
        for w in range(n_windows):
            chunk = ids[w * window:(w + 1) * window]
            if chunk.numel() < 2:
                break
            t0 = time.perf_counter()
            logits = session.forward(chunk.unsqueeze(0), reset=True, use_cache=False,
                                     last_only=False)
            logp = torch.log_softmax(torch.from_numpy(np.asarray(logits[0])).double(), -1)
            nll = float(-logp[:-1].gather(1, chunk[1:, None]).sum())
            yield {"window": w, "nll_sum": nll, "n_tokens": int(chunk.numel() - 1),
                   "latency_s": time.perf_counter() - t0}
    return job
