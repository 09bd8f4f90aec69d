"""One analog all-reduce round, written once: the plan, a node's frame, the receiver's cut,
estimates and aggregation (pure numpy; no radio, no socket, no simulator).

A round is a `RoundPlan` (who sends what, when, with which layout) plus a `RoundDesign`
(precoders B_n and aggregation beamformers A). Every party computes its part with the
functions here:

* a node: `node_frame` (its preamble, its pilots when the plan carries them, and its
  normalized, packed, precoded partial in its payload slot) -- transmitted at ``plan.start``;
* the receiver: `cut_frame` (find the preamble in the window `plan.window` asked for, cut
  and scale the frame to signal-model units), then `estimate_channels` / `estimate_noise_var`
  (sounding) or `aggregate_payload` (payload: S_hat = sum_slots A_j^H Y_j, unpack, times the
  common scale c).

AirComp and uncoded FDMA are the same round with a different number of payload *slots*:
AirComp puts every node in slot 0 (the air adds them; one beamformer A), FDMA gives node n its
own slot n (time-orthogonal, standing in for an orthogonal sub-band; one single-node receiver
A_n per slot, the receiver sums the N estimates). For the error, time-orthogonal slots are
equivalent to orthogonal sub-bands: each symbol is sent once through its own channel with the
same per-symbol noise. Fair comparison with AirComp (bandwidth B, N nodes, K channel uses per
node): with ``fairness="energy"`` (default) every node spends AirComp's energy (P per channel
use for K uses) and FDMA needs N K channel uses (N times the airtime), its N errors adding up:
MSE = sum_n sigma^2 (sum_i 1/s_{n,i})^2 / P_n; with ``fairness="power"`` (equal power, equal
latency) a 1/N sub-band has noise sigma^2 / N per symbol, the same for the error as P_n -> N P_n.
Executors (all radios in one process,
`testbed.phy.analog_allreduce.LocalExecutor`; or the bench roles over the control plane) only
move these frames and windows.

Units: samples for times and lengths; frames in full-scale units on the radios (``amplitude``
from `testbed.phy.budget.LinkBudget`) and in signal-model units after `cut_frame`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from testbed.phy.budget import LinkBudget
from testbed.phy.estimation import ls_channel_estimate
from testbed.phy.framing import FrameLayout, detect_frame_start
from testbed.phy.packing import from_streams, n_complex, pack_streams, unpack_reals
from testbed.phy.precoding import aggregate, precode_all

SCHEMES = ("aircomp", "fdma")


@dataclass(frozen=True)
class RoundPlan:
    """What one round sends, and when.

    scheme: "aircomp" (one shared payload slot) or "fdma" (one slot per node).
    n_nodes, n_tx (antennas per node), n_streams (L), n_values (reals per partial; 0 for a
    sounding-only frame), start (frame start on the receiver's sample clock, samples),
    sounding: the frame carries pilots and a silent noise segment before any payload.
    """

    scheme: str
    n_nodes: int
    n_tx: int
    n_streams: int
    n_values: int
    start: int
    sounding: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.n_nodes < 1 or self.n_tx < 1 or self.n_streams < 1 or self.n_values < 0:
            raise ValueError(f"bad round plan {self}: need n_nodes, n_tx, n_streams >= 1 and "
                             "n_values >= 0")
        if self.n_values == 0 and not self.sounding:
            raise ValueError("a round without payload must be a sounding frame")

    @property
    def n_slots(self) -> int:
        """Payload slots: 1 for AirComp, one per node for FDMA."""
        return self.n_nodes if self.scheme == "fdma" else 1

    @property
    def channel_uses(self) -> int:
        """K: channel uses per slot, ceil(ceil(D/2) / L) (0 without payload)."""
        if self.n_values == 0:
            return 0
        return -(-n_complex(self.n_values) // self.n_streams)

    def slot_of(self, node: int) -> int:
        """Payload slot of node ``node`` (0-based)."""
        return node if self.scheme == "fdma" else 0

    def layout(self, budget: LinkBudget) -> FrameLayout:
        """The frame: preamble, guard, [pilots, silence], n_slots * K payload samples."""
        # a round asks several times with the same (immutable) budget: the last answer is kept
        # with the budget it is for (identity: hashing a budget costs more than the lookup)
        last = self.__dict__.get("_last_layout")
        if last is not None and last[0] is budget:
            return last[1]
        layout = _layout(self.n_nodes, self.n_tx, self.n_slots * self.channel_uses, budget,
                         self.sounding)
        self.__dict__["_last_layout"] = (budget, layout)
        return layout

    def window(self, budget: LinkBudget) -> tuple[int, int]:
        """Receive window (first sample, length in samples): the frame plus the search margin
        each side, on the receiver's clock."""
        m = budget.search_margin
        return self.start - m, self.layout(budget).total_len + 2 * m

    def end(self, budget: LinkBudget) -> int:
        """First sample after the receive window (receiver clock): transmitters are done
        with this round once their clocks pass it."""
        first, n = self.window(budget)
        return first + n

    def as_dict(self) -> dict:
        """JSON-able fields (for a control message)."""
        return dict(scheme=self.scheme, n_nodes=self.n_nodes, n_tx=self.n_tx,
                    n_streams=self.n_streams, n_values=self.n_values, start=self.start,
                    sounding=self.sounding)

    @classmethod
    def from_dict(cls, d: dict) -> "RoundPlan":
        """Inverse of `as_dict`."""
        return cls(str(d["scheme"]), int(d["n_nodes"]), int(d["n_tx"]), int(d["n_streams"]),
                   int(d["n_values"]), int(d["start"]), bool(d.get("sounding", False)))


@lru_cache(maxsize=256)
def _layout(n_nodes: int, n_tx: int, payload_len: int, budget: LinkBudget,
            sounding: bool) -> FrameLayout:
    # cached: a round asks for its (immutable) layout several times, every round the same one
    return FrameLayout(n_nodes, n_tx, payload_len, budget.preamble_len, budget.guard_len,
                       budget.pilot_len, sounding, budget.noise_len if sounding else 0)


@lru_cache(maxsize=32)
def _tx_preamble(layout: FrameLayout, amplitude: float) -> np.ndarray:
    """The layout's preamble times ``amplitude`` (full-scale units), complex64, read-only
    (cached: every frame sends the same one)."""
    p = (layout.preamble() * amplitude).astype(np.complex64)
    p.flags.writeable = False
    return p


@dataclass(frozen=True)
class RoundDesign:
    """Transceiver of one round (signal-model units).

    A: aggregation beamformers, complex ``(n_slots, N_r, L)`` (AirComp: one; FDMA: one per node).
    B: precoders, complex ``(N, N_t, L)``, tr(B_n B_n^H) <= P_n.
    mse: predicted error of the normalized sum per channel use (linear).
    bound: a lower bound on that error where the design gives one, else None.
    """

    A: np.ndarray
    B: np.ndarray
    mse: float
    bound: float | None = None

    @property
    def n_streams(self) -> int:
        return int(self.A.shape[-1])


def normalized_symbols(partial: np.ndarray, scale: float, n_streams: int) -> np.ndarray:
    """Node-side pre-processing: ``to_streams(pack_reals(partial / scale), L)``, complex128
    ``(L, K)``. ``scale``: the common scale c of this (layer, site), same units as the partial."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return pack_streams(np.asarray(partial, dtype=np.float64)[None], scale, n_streams)[0]


def node_frame(node: int, plan: RoundPlan, budget: LinkBudget, *,
               partial: np.ndarray | None = None, B_n: np.ndarray | None = None,
               scale: float | None = None) -> np.ndarray:
    """Node ``node``'s transmitted frame, complex64 ``(N_t, total_len)`` in full-scale units:
    the preamble on antenna 0, its pilots (sounding plans), and, with a payload,
    ``B_n @ normalized_symbols(partial, scale, L)`` in its slot. ``partial``: real, D values."""
    batch = None if partial is None else np.asarray(partial, dtype=np.float64)[None]
    return node_frames(plan, budget, [node], partials=batch,
                       B=None if B_n is None else np.asarray(B_n)[None], scale=scale)[0]


def node_frames(plan: RoundPlan, budget: LinkBudget, nodes: Sequence[int] | None = None, *,
                partials: np.ndarray | None = None, B: np.ndarray | None = None,
                scale: float | None = None) -> np.ndarray:
    """The `node_frame` of each of ``nodes`` (default: all, in order) at once, complex64
    ``(len(nodes), N_t, total_len)``. ``partials``: real ``(len(nodes), ...)`` (D values each;
    float32 partials are normalized and precoded in complex64, others in complex128), ``B``:
    their precoders ``(len(nodes), N_t, L)``."""
    nodes = list(range(plan.n_nodes)) if nodes is None else list(nodes)
    layout = plan.layout(budget)
    amp = budget.amplitude
    x = np.zeros((len(nodes), plan.n_tx, layout.total_len), dtype=np.complex64)
    x[:, 0, :layout.preamble_len] = _tx_preamble(layout, amp)
    if plan.sounding:
        pilot = layout.pilot() * amp
        for i, n in enumerate(nodes):
            for t in range(plan.n_tx):
                x[i, t, layout.pilot_slot(n, t)] = pilot
    if plan.n_values:
        if partials is None or B is None or scale is None:
            raise ValueError("a payload round needs the node's partial, B_n and the scale")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        z = np.asarray(partials)
        if z.shape[0] != len(nodes) or z[0].size != plan.n_values:
            raise ValueError(f"partials have shape {z.shape}: need {len(nodes)} of "
                             f"{plan.n_values} values (the round plan)")
        B = np.asarray(B)
        if B.shape != (len(nodes), plan.n_tx, plan.n_streams):
            raise ValueError(f"B_n has shape {B.shape[1:]}, expected "
                             f"({plan.n_tx}, {plan.n_streams})")
        S = pack_streams(z, scale, plan.n_streams)
        k, p0 = plan.channel_uses, layout.payload_start
        slots = [0] if plan.n_slots == 1 else [plan.slot_of(n) for n in nodes]
        if len(set(slots)) == 1:                 # AirComp: every node in the same slot
            slot = x[:, :, p0 + slots[0] * k:p0 + (slots[0] + 1) * k]
            if S.dtype == x.dtype:               # precoded straight into the frame
                precode_all(B * amp, S, out=slot)
            else:
                slot[...] = precode_all(B * amp, S)
        else:
            X = precode_all(B * amp, S)
            for i, j in enumerate(slots):
                x[i, :, p0 + j * k:p0 + (j + 1) * k] = X[i]
    return x


@dataclass(frozen=True)
class ReceivedFrame:
    """A frame cut out of a receive window: samples ``(N_r, total_len)`` in signal-model units
    (the window's dtype: complex64 from a radio), offset of the detected start from the schedule
    (samples, 0 = on time) and the detection metric (normalized preamble correlation, 0..1)."""

    samples: np.ndarray
    offset: int
    metric: float


def cut_frame(window: np.ndarray, plan: RoundPlan, budget: LinkBudget) -> ReceivedFrame:
    """Find the preamble in a window that starts ``search_margin`` samples before the scheduled
    start (`RoundPlan.window`), cut the frame and divide by the transmit amplitude. Raises
    `testbed.phy.framing.DetectionError` when no preamble is found."""
    layout = plan.layout(budget)
    m = budget.search_margin
    d, metric = detect_frame_start(window, layout.preamble(), 2 * m + 1, budget.detect_threshold)
    window = np.asarray(window)
    if window.dtype.char not in "FD":                  # complex64 / complex128 kept
        window = window.astype(np.complex128)
    # times 1/amplitude in the window's precision (a complex-by-real division is ~4x slower)
    real = np.float32 if window.dtype.char == "F" else np.float64
    samples = window[:, d:d + layout.total_len] * real(1.0 / budget.amplitude)
    return ReceivedFrame(samples, d - m, metric)


def estimate_channels(frame: ReceivedFrame, plan: RoundPlan, budget: LinkBudget) -> np.ndarray:
    """LS estimate of every node's channel from a sounding frame: complex ``(N, N_r, N_t)`` in
    signal-model units (error per entry sigma^2 / pilot_len)."""
    if not plan.sounding:
        raise ValueError("channel estimation needs a sounding plan (pilots)")
    return ls_channel_estimate(frame.samples, plan.layout(budget))


def estimate_noise_var(frame: ReceivedFrame, plan: RoundPlan, budget: LinkBudget) -> float:
    """sigma^2 (signal model, linear) from the frame's silent segment: mean |y|^2 over the
    receive antennas and ``noise_len`` samples (unbiased; relative std 1/sqrt(N_r noise_len))."""
    layout = plan.layout(budget)
    if layout.noise_len == 0:
        raise ValueError("this frame has no silent segment; use a sounding plan with noise_len > 0")
    y = frame.samples[:, layout.noise_slot]
    return float(np.mean(np.abs(y) ** 2, dtype=np.float64))


def aggregate_symbols(frame: ReceivedFrame, plan: RoundPlan, budget: LinkBudget,
                      A: np.ndarray) -> np.ndarray:
    """S_hat = sum_j A_j^H Y_j over the payload slots, complex ``(L, K)`` (normalized sum)."""
    A = np.asarray(A)
    if A.ndim == 2:
        A = A[None]
    if A.shape[0] != plan.n_slots:
        raise ValueError(f"{A.shape[0]} beamformers for {plan.n_slots} payload slot(s)")
    layout = plan.layout(budget)
    k = plan.channel_uses
    y = frame.samples[:, layout.payload_start:]
    return sum(aggregate(A[j], y[:, j * k:(j + 1) * k]) for j in range(plan.n_slots))


def denormalize_sum(S_hat: np.ndarray, plan: RoundPlan, scale: float,
                    shape: tuple[int, ...]) -> np.ndarray:
    """Unpack the normalized sum ``(L, K)`` to reals of ``shape`` and multiply by the scale c."""
    return unpack_reals(from_streams(S_hat, n_complex(plan.n_values)), shape) * scale


def aggregate_payload(frame: ReceivedFrame, plan: RoundPlan, budget: LinkBudget, A: np.ndarray,
                      scale: float, shape: tuple[int, ...]) -> np.ndarray:
    """The receiver's estimate of sum_n partial_n, of ``shape`` (float32 from complex64 frames,
    else float64): `aggregate_symbols` then `denormalize_sum`."""
    return denormalize_sum(aggregate_symbols(frame, plan, budget, A), plan, scale, shape)
