"""`testbed node`: an agent holding one shard of the model, computing its partial sums layer
by layer, transmitting them (over the air on AirComp rounds) and continuing with the
aggregate it receives back.

The node runs the unchanged `testbed.llm.sharding.ShardedModel` (with itself as the only local
node) in a worker thread whose all-reduce hands each partial to the agent and blocks until the
aggregate arrives (`RelayAllReduce`); the agent replies to the controller's requests with the
next partial. With the ``digital`` method the all-reduce is gloo between the node processes
(`testbed.llm.tp_gloo.GlooAllReduce`) and a forward pass needs no controller round trips.
"""
from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np
import torch

from testbed.llm.allreduce import AllReduce
from testbed.net.agent import Agent
from testbed.net.roles.aircomp_phy import RoundPlan, node_burst
from testbed.net.roles.common import rss_bytes
from testbed.net.schema import Aggregate, Assignment, Message, Partial, Result
from testbed.phy.link import LinkConfig

log = logging.getLogger(__name__)

#: Margin (samples) of band-limited precursor/tail a calibrated node keeps around each burst.
CORRECTION_HALF_TAPS = 256


class _Abort(Exception):
    """The forward pass was abandoned (new command or shutdown)."""


class RelayAllReduce(AllReduce):
    """All-reduce whose `reduce` posts the single local partial to ``outbox`` and blocks until
    the aggregate is put into ``inbox`` (by the agent thread)."""

    name = "relay"

    def __init__(self) -> None:
        self.outbox: queue.Queue = queue.Queue()
        self.inbox: queue.Queue = queue.Queue()

    def reduce(self, partials, *, layer, site):
        if len(partials) != 1:
            raise ValueError(f"RelayAllReduce runs one node per process, got {len(partials)}")
        self.outbox.put(("partial", layer, site, partials[0]))
        item = self.inbox.get()
        if item is None:
            raise _Abort()
        return [item]


class NodeAgent(Agent):
    """Agent of one bench node (see module docstring).

    model_dir: checkpoint directory; index: this node's position in the bench (shard index);
    node_order: all node ids in bench order; radio: a transmitting `Radio` with ``tx_until``
    (RemoteSimRadio) or None when AirComp is not used; link: frame parameters;
    step_timeout_s: longest wait for the worker thread (s). An ASSIGNMENT whose plan_summary
    has a ``correction`` (a `calibration.corrections.NodeCorrection` dict) makes the AirComp and
    sounding bursts go through `CorrectedRadio` (times on the receiver clock)."""

    def __init__(self, config, model_dir, index: int, node_order: list[str], radio=None,
                 link: LinkConfig | None = None, step_timeout_s: float = 60.0):
        super().__init__(config)
        self.model_dir = model_dir
        self.index = index
        self.node_order = list(node_order)
        self.radio = radio
        self.link = link or LinkConfig()
        self.step_timeout_s = step_timeout_s
        self.model = None
        self.relay: RelayAllReduce | None = None
        self.worker: threading.Thread | None = None
        self.last_partial: np.ndarray | None = None
        self.tx_radio = radio  # the radio bursts go through (CorrectedRadio with a calibration)
        self.rss_after_load = 0
        self.rounds = 0
        self.compute_s = 0.0

    # ------------------------------------------------------------------ dispatch
    def handle(self, message: Message) -> Message | None:
        """ASSIGNMENT -> load shard; RESULT(op) -> forward / aircomp_tx / stats; AGGREGATE ->
        continue the forward pass."""
        if isinstance(message, Assignment):
            return self._assign(message)
        if isinstance(message, Aggregate):
            if self.worker is None or not self.worker.is_alive():
                raise RuntimeError("AGGREGATE received but no forward pass is running")
            self.relay.inbox.put(torch.from_numpy(np.array(message.tensor, dtype=np.float32)))
            return self._next_event(message.round_id)
        if isinstance(message, Result):
            op = message.info.get("op")
            if op == "forward":
                return self._forward(message)
            if op == "aircomp_tx":
                return self._aircomp_tx(message)
            if op == "sound":
                return self._sound(message)
            if op == "stats":
                return Result(round_id=message.round_id, info=self._stats())
            raise ValueError(f"unknown op {op!r} for a node")
        return super().handle(message)

    def _stats(self) -> dict:
        out = {"rss_bytes": rss_bytes(), "rss_after_load_bytes": self.rss_after_load,
               "rounds": self.rounds, "compute_s": self.compute_s}
        if self.model is not None:
            out["shard_param_bytes"] = self.model.nodes[0].param_bytes()
            out["replicated_param_bytes"] = self.model.replicated.param_bytes()
        if self.radio is not None:
            out["sent_samples"] = self.radio.sent_samples
        return out

    # ------------------------------------------------------------------ assignment
    def _assign(self, msg: Assignment) -> Message:
        from testbed.llm.sharding import shard_checkpoint
        if msg.model_fingerprint != self.config.model_fingerprint:
            raise ValueError("assignment is for another model fingerprint")
        ratios = [msg.ratios[n] for n in self.node_order]
        method = msg.plan_summary.get("method", "exact")
        if method == "digital":
            from testbed.llm.tp_gloo import GlooAllReduce, init_gloo
            import torch.distributed as dist
            if not dist.is_initialized():
                init_gloo(self.index, len(self.node_order), int(msg.plan_summary["gloo_port"]))
            allreduce: AllReduce = GlooAllReduce()
            self.relay = None
        else:
            self.relay = RelayAllReduce()
            allreduce = self.relay
        self._apply_correction(msg.plan_summary.get("correction"))
        torch.set_num_threads(int(msg.plan_summary.get("threads", 1)))
        self.model = shard_checkpoint(self.model_dir, ratios, allreduce, nodes=[self.index])
        self.rss_after_load = rss_bytes()
        log.info("%s: loaded shard %d (%d bytes), method %s", self.config.node_id, self.index,
                 self.model.nodes[0].param_bytes(), method)
        return Result(round_id=0, info=self._stats())

    def _apply_correction(self, correction: dict | None) -> None:
        """Wrap the radio in `CorrectedRadio` for ``correction`` (a `NodeCorrection` dict from
        the controller's calibration file), or use the raw radio when None."""
        if correction is None:
            self.tx_radio = self.radio
            return
        if self.radio is None:
            raise RuntimeError(f"{self.config.node_id}: a calibration correction was sent but "
                               "this node has no radio")
        from calibration.corrections import CorrectedRadio, NodeCorrection
        self.tx_radio = CorrectedRadio(self.radio, NodeCorrection.from_dict(correction),
                                       half_taps=CORRECTION_HALF_TAPS)
        log.info("%s: transmitting through calibration correction %s", self.config.node_id,
                 self.correction)

    @property
    def correction(self):
        """The `NodeCorrection` the transmit path applies, or None (raw radio)."""
        return self.tx_radio.correction if self.tx_radio is not self.radio else None

    def _send(self, x: np.ndarray, start: int, until: int) -> None:
        """Burst ``x`` (n_tx, K) to arrive at air sample ``start``, then declare this node done
        up to air sample ``until`` (later by the corrected burst's margin when corrected)."""
        self.tx_radio.transmit(x, start)
        if self.correction is not None:
            # the pre-corrected burst carries CORRECTION_HALF_TAPS samples of band-limited
            # tail past the end (plus the timing advance's rounding): declare past them
            until = max(until, start + x.shape[1] + CORRECTION_HALF_TAPS + 2)
        self.radio.tx_until(until)

    # ------------------------------------------------------------------ forward pass
    def _forward(self, msg: Result) -> Message:
        if self.model is None:
            raise RuntimeError("no shard loaded yet (ASSIGNMENT first)")
        self._abort_worker()
        info = msg.info
        ids = torch.from_numpy(np.array(msg.tensor, dtype=np.int64))
        use_cache = bool(info.get("use_cache", True))
        if info.get("reset", True):
            self.model.reset_cache()
        past = self.model.past_len if use_cache else 0
        batch, n = ids.shape
        mask = torch.ones(batch, past + n, dtype=torch.long)
        positions = torch.arange(past, past + n).unsqueeze(0).expand(batch, n)
        last_only = bool(info.get("last_only", False))
        want_logits = self.index == 0
        self._events: queue.Queue = self.relay.outbox if self.relay else queue.Queue()
        events = self._events

        def work():
            try:
                t0 = time.perf_counter()
                logits = self.model.forward(ids, mask, positions, use_cache=use_cache)
                self.compute_s += time.perf_counter() - t0
                if last_only:
                    logits = logits[:, -1]
                events.put(("done", logits.numpy() if want_logits else None))
            except _Abort:
                pass
            except BaseException as exc:  # reported to the controller as handler_failed
                events.put(("error", exc))

        self.worker = threading.Thread(target=work, name="forward", daemon=True)
        self.worker.start()
        return self._next_event(msg.round_id)

    def _next_event(self, round_id: int) -> Message:
        try:
            kind, *rest = self._events.get(timeout=self.step_timeout_s)
        except queue.Empty:
            raise TimeoutError(f"forward pass produced nothing in {self.step_timeout_s:g} s")
        if kind == "error":
            raise rest[0]
        if kind == "done":
            logits = rest[0]
            return Result(round_id=round_id, info={"done": True},
                          tensor=None if logits is None else np.ascontiguousarray(logits))
        layer, site, partial = rest
        self.rounds += 1
        self.last_partial = partial.detach().to(torch.float32).numpy()
        return Partial(layer=layer, site=site, round_id=round_id,
                       tensor=np.ascontiguousarray(self.last_partial))

    def _abort_worker(self) -> None:
        if self.worker is not None and self.worker.is_alive() and self.relay is not None:
            self.relay.inbox.put(None)
            self.worker.join(timeout=5.0)
        if self.relay is not None:  # drop stale events
            while not self.relay.outbox.empty():
                self.relay.outbox.get_nowait()
            while not self.relay.inbox.empty():
                self.relay.inbox.get_nowait()

    # ------------------------------------------------------------------ over the air
    def _sound(self, msg: Result) -> Message:
        """Send this node's pilots in a sounding frame at ``info["start"]`` (air samples)."""
        from testbed.net.roles.aircomp_phy import (node_sounding_burst, sounding_layout,
                                                   sounding_window)
        if self.radio is None:
            raise RuntimeError(f"{self.config.node_id} has no radio; start it with a broker")
        layout = sounding_layout(int(msg.info["n_nodes"]), int(msg.info["n_tx"]), self.link)
        start = int(msg.info["start"])
        x = node_sounding_burst(self.index, layout, self.link)
        first, n = sounding_window(start, layout, self.link)
        self._send(x, start, first + n)
        return Result(round_id=msg.round_id, info={"sent": int(x.shape[1])})

    def _aircomp_tx(self, msg: Result) -> Message:
        if self.radio is None:
            raise RuntimeError(f"{self.config.node_id} has no radio; start it with a broker")
        if self.last_partial is None:
            raise RuntimeError("aircomp_tx before any partial was computed")
        plan = RoundPlan.from_info(msg.info)
        x = node_burst(self.last_partial, np.asarray(msg.tensor), plan, self.link)
        self._send(x, plan.start, plan.tx_done_until(self.link))
        return Result(round_id=msg.round_id, info={"sent": int(x.shape[1])})
