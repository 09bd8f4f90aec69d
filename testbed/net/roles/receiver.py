"""`testbed receiver`: the agent owning the multi-antenna receive radio. Per AirComp round it
receives the scheduled window (the broker holds it until every node has transmitted), applies
the aggregation beamformer A from the current design, de-normalizes, and returns the sum to
the controller, which broadcasts it to the nodes."""
from __future__ import annotations

import time

import numpy as np

from testbed.net.agent import Agent
from testbed.net.roles.aircomp_phy import RoundPlan, receiver_estimate
from testbed.net.roles.common import rss_bytes
from testbed.net.schema import Message, Result
from testbed.phy.link import LinkConfig


class ReceiverAgent(Agent):
    """Receiver role. radio: a receiving `Radio` (RemoteSimRadio on simulated benches), or None
    on benches/methods without over-the-air rounds; link: frame parameters."""

    def __init__(self, config, radio=None, link: LinkConfig | None = None):
        super().__init__(config)
        self.radio = radio
        self.link = link or LinkConfig()
        self.rounds = 0
        self.wait_s = 0.0

    def handle(self, message: Message) -> Message | None:
        """RESULT(op=aircomp_rx) -> receive and aggregate; RESULT(op=stats) -> counters."""
        if isinstance(message, Result):
            op = message.info.get("op")
            if op == "aircomp_rx":
                return self._aircomp_rx(message)
            if op == "sound_rx":
                return self._sound_rx(message)
            if op == "stats":
                return Result(round_id=message.round_id,
                              info={"rss_bytes": rss_bytes(), "rounds": self.rounds,
                                    "receive_wait_s": self.wait_s})
            raise ValueError(f"unknown op {op!r} for the receiver")
        return super().handle(message)

    def _sound_rx(self, msg: Result) -> Message:
        """Receive a sounding frame and reply with the LS channel estimates ``(N, N_r, N_t)``."""
        from testbed.net.roles.aircomp_phy import (receiver_channel_estimate, sounding_layout,
                                                   sounding_window)
        if self.radio is None:
            raise RuntimeError("the receiver has no radio; start it with a broker address")
        layout = sounding_layout(int(msg.info["n_nodes"]), int(msg.info["n_tx"]), self.link)
        first, n = sounding_window(int(msg.info["start"]), layout, self.link)
        window = self.radio.receive(n, first)
        H_hat, offset = receiver_channel_estimate(window, layout, self.link)
        return Result(round_id=msg.round_id, info={"detected_offset": offset},
                      tensor=np.ascontiguousarray(H_hat, dtype=np.complex128))

    def _aircomp_rx(self, msg: Result) -> Message:
        if self.radio is None:
            raise RuntimeError("the receiver has no radio; start it with a broker address")
        plan = RoundPlan.from_info(msg.info)
        first, n = plan.window(self.link)
        t0 = time.perf_counter()
        window = self.radio.receive(n, first)
        self.wait_s += time.perf_counter() - t0
        out = receiver_estimate(window, np.asarray(msg.tensor), plan, self.link,
                                tuple(msg.info["shape"]))
        self.rounds += 1
        return Result(round_id=msg.round_id,
                      info={"detected_offset": out.detected_offset,
                            "detection_metric": out.detection_metric},
                      tensor=np.ascontiguousarray(out.z_hat, dtype=np.float64))
