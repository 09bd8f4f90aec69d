"""AirComp round split across processes: what a node sends and what the receiver computes.

Thin per-role wrappers around the pure phy pieces used in-process by
`testbed.phy.link.AirCompLink` / `testbed.phy.allreduce_aircomp.AirCompAllReduce`
(normalization by a common scale, real->complex packing, stream layout, precoding, framing,
preamble detection, aggregation), so that the same seed gives the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.phy.framing import FrameLayout, detect_frame_start
from testbed.phy.link import LinkConfig
from testbed.phy.packing import from_streams, n_complex, pack_reals, to_streams, unpack_reals
from testbed.phy.precoding import aggregate, precode


@dataclass(frozen=True)
class RoundPlan:
    """One AirComp round as the controller schedules it (all times in air samples).

    n_nodes, n_tx, n_streams (L), n_values (reals per partial), start (frame start),
    scale (common normalization scale c, same units as the partials)."""

    n_nodes: int
    n_tx: int
    n_streams: int
    n_values: int
    start: int
    scale: float

    def layout(self, link: LinkConfig) -> FrameLayout:
        """Frame layout: preamble, guard, payload of K = ceil(ceil(D/2)/L) channel uses."""
        k = max(1, -(-n_complex(self.n_values) // self.n_streams))
        return FrameLayout(self.n_nodes, self.n_tx, k, link.preamble_len, link.guard_len,
                           link.pilot_len, False)

    def window(self, link: LinkConfig) -> tuple[int, int]:
        """Receive window (first sample, length): the frame plus the search margin each side."""
        m = link.search_margin
        return self.start - m, self.layout(link).total_len + 2 * m

    def tx_done_until(self, link: LinkConfig) -> int:
        """Sample up to which transmitters must declare themselves done (the window end)."""
        first, n = self.window(link)
        return first + n

    def as_info(self) -> dict:
        """JSON-able fields for a command message."""
        return dict(n_nodes=self.n_nodes, n_tx=self.n_tx, n_streams=self.n_streams,
                    n_values=self.n_values, start=self.start, scale=self.scale)

    @classmethod
    def from_info(cls, info: dict) -> "RoundPlan":
        """Inverse of `as_info`."""
        return cls(int(info["n_nodes"]), int(info["n_tx"]), int(info["n_streams"]),
                   int(info["n_values"]), int(info["start"]), float(info["scale"]))


def node_burst(partial: np.ndarray, B_n: np.ndarray, plan: RoundPlan,
               link: LinkConfig) -> np.ndarray:
    """A node's transmitted frame, complex64 ``(N_t, total_len)`` (full scale 1.0): preamble on
    antenna 0, then ``B_n @ to_streams(pack(partial / c), L)`` at the payload start, times the
    transmit amplitude. ``partial``: real, any shape (D values); ``B_n``: ``(N_t, L)``."""
    z = np.asarray(partial, dtype=np.float64)
    if z.size != plan.n_values:
        raise ValueError(f"partial has {z.size} values, the round plan says {plan.n_values}")
    S = to_streams(pack_reals(z / plan.scale), plan.n_streams)
    layout = plan.layout(link)
    x = np.zeros((plan.n_tx, layout.total_len), dtype=np.complex128)
    x[0, :layout.preamble_len] = layout.preamble()
    payload = precode(B_n, S)
    x[:, layout.payload_start:layout.payload_start + payload.shape[1]] = payload
    x *= link.amplitude
    return x.astype(np.complex64)


@dataclass
class ReceiverOutput:
    """De-normalized sum estimate (float64, ``shape``), detected offset (samples, 0 = on time)
    and the preamble detection metric (0..1)."""

    z_hat: np.ndarray
    detected_offset: int
    detection_metric: float


def receiver_estimate(window: np.ndarray, A: np.ndarray, plan: RoundPlan, link: LinkConfig,
                      shape: tuple[int, ...]) -> ReceiverOutput:
    """From the received window ``(N_r, total_len + 2 margin)`` (full-scale units): find the
    preamble, cut the frame, divide by the transmit amplitude, aggregate ``A^H Y`` over the
    payload, unpack and multiply by c. Returns the estimate of sum_n partial_n."""
    layout = plan.layout(link)
    frame, offset, metric = detect_and_cut(window, layout, link)
    s_hat = aggregate(A, frame[:, layout.payload_start:])
    z_hat = unpack_reals(from_streams(s_hat, n_complex(plan.n_values)), shape) * plan.scale
    return ReceiverOutput(z_hat, offset, metric)


def detect_and_cut(window: np.ndarray, layout: FrameLayout,
                   link: LinkConfig) -> tuple[np.ndarray, int, float]:
    """Find the preamble in a window that starts ``search_margin`` samples before the scheduled
    frame; return the frame ``(N_r, total_len)`` in signal-model units (divided by the transmit
    amplitude), its offset from the schedule in samples (0 = on time) and the detection metric."""
    m = link.search_margin
    d, metric = detect_frame_start(window, layout.preamble(), 2 * m + 1, link.detect_threshold)
    frame = window[:, d:d + layout.total_len].astype(np.complex128) / link.amplitude
    return frame, d - m, metric


# ---------------------------------------------------------------------- channel sounding
def sounding_layout(n_nodes: int, n_tx: int, link: LinkConfig) -> FrameLayout:
    """A pilot-only frame: preamble, guard, then one time-orthogonal pilot slot per (node,
    transmit antenna) — the same layout `testbed.phy.link.AirCompLink.estimate_channels` uses."""
    return FrameLayout(n_nodes, n_tx, 0, link.preamble_len, link.guard_len, link.pilot_len, True)


def sounding_window(start: int, layout: FrameLayout, link: LinkConfig) -> tuple[int, int]:
    """Receive window (first sample, length) of a sounding frame starting at air sample
    ``start``: the frame plus the search margin each side."""
    m = link.search_margin
    return start - m, layout.total_len + 2 * m


def node_sounding_burst(node: int, layout: FrameLayout, link: LinkConfig) -> np.ndarray:
    """Node ``node``'s sounding frame, complex64 ``(N_t, total_len)`` (full scale 1.0): the
    preamble on antenna 0 and the pilot in each of its own (node, antenna) slots."""
    x = np.zeros((layout.n_tx, layout.total_len), dtype=np.complex128)
    x[0, :layout.preamble_len] = layout.preamble()
    pilot = layout.pilot()
    for t in range(layout.n_tx):
        x[t, layout.pilot_slot(node, t)] = pilot
    return (x * link.amplitude).astype(np.complex64)


def receiver_channel_estimate(window: np.ndarray, layout: FrameLayout,
                              link: LinkConfig) -> tuple[np.ndarray, int]:
    """LS estimate of every node's channel from a received sounding window: complex
    ``(N, N_r, N_t)`` in signal-model units (error per entry sigma^2 / pilot_len), and the
    detected offset of the frame in samples (0 = on time)."""
    from testbed.phy.estimation import ls_channel_estimate
    frame, offset, _ = detect_and_cut(window, layout, link)
    return ls_channel_estimate(frame, layout), offset
