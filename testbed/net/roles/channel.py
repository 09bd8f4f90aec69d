"""`testbed channel`: the channel broker process. It serves the simulated air to remote radios
(`sim_backend.broker.ChannelBroker`, own thread) and is the control-plane agent of role
``channel`` through which the controller draws fading blocks and reads true channels."""
from __future__ import annotations

import numpy as np

from testbed.net.agent import Agent
from testbed.net.roles.common import rss_bytes
from testbed.net.schema import Message, Result


class ChannelAgent(Agent):
    """Control-plane face of a running `ChannelBroker` (``broker``)."""

    def __init__(self, config, broker):
        super().__init__(config)
        self.broker = broker

    def handle(self, message: Message) -> Message | None:
        """RESULT(op=new_realization | true_channels) -> RESULT(H complex128, info now);
        RESULT(op=stats) -> broker counters."""
        if isinstance(message, Result):
            op = message.info.get("op")
            if op in ("new_realization", "true_channels"):
                H, now = (self.broker.new_realization() if op == "new_realization"
                          else self.broker.true_channels())
                return Result(round_id=message.round_id,
                              info={"now": int(now), "noise_var": self.broker.air.noise_var},
                              tensor=np.ascontiguousarray(H, dtype=np.complex128))
            if op == "stats":
                s = self.broker.stats
                return Result(round_id=message.round_id,
                              info={"rss_bytes": rss_bytes(), "windows": s.windows,
                                    "waited_windows": s.waited_windows,
                                    "requests": dict(s.requests)})
            raise ValueError(f"unknown op {op!r} for the channel agent")
        return super().handle(message)
