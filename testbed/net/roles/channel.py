"""`testbed channel`: the channel broker process of a simulated bench. It serves the simulated
air to remote radios (`sim_backend.broker.ChannelBroker`, own thread) and is the control-plane
agent of role ``channel``: the controller draws the next fading block through it
(`NewRealization`, the simulated stand-in for a channel that changes by itself) and, only for
``--csi perfect``, reads the simulator's truth (`TruthQuery`)."""
from __future__ import annotations

import numpy as np

from testbed.net.agent import Agent
from testbed.net.roles.common import rss_bytes
from testbed.net.schema import (Ack, Message, NewRealization, StatsQuery, StatsReport, TruthQuery,
                                TruthReport)


class ChannelAgent(Agent):
    """Control-plane face of a running `ChannelBroker` (``broker``)."""

    def __init__(self, config, broker):
        super().__init__(config)
        self.broker = broker

    def handle(self, message: Message) -> Message | None:
        """NEW_REALIZATION -> ack; TRUTH_QUERY -> true channels and noise; STATS_QUERY."""
        if isinstance(message, NewRealization):
            self.broker.new_realization()
            return Ack(info={"realization": "new"})
        if isinstance(message, TruthQuery):
            H, _ = self.broker.true_channels()
            return TruthReport(h=np.ascontiguousarray(H, dtype=np.complex128),
                               air_noise_var=float(self.broker.air.noise_var))
        if isinstance(message, StatsQuery):
            s = self.broker.stats
            return StatsReport(info={"rss_bytes": rss_bytes(), "windows": s.windows,
                                     "waited_windows": s.waited_windows,
                                     "requests": dict(s.requests),
                                     "traffic": {"controller": self.transport.traffic.table()}})
        return super().handle(message)
