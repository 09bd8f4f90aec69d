"""Per-token latency and energy of tensor-parallel inference with AirComp, digital or FDMA all-reduce.

Model (one forward pass over `tokens` tokens; decode = 1 token):

    latency = sum over layers [ max_n compute_n(m) + 2 x allreduce_time ] + max_n head_n

- compute_n(m) = 2 * m_n * params_per_layer * tokens / compute_flops_n seconds (1 MAC = 2 FLOPs;
  parameter counting in `testbed.optim.latency_shapes`); head_n = 2 * vocab * hidden * tokens /
  compute_flops_n for the replicated LM head (set ``include_lm_head=False`` to drop it).
- D = tokens x hidden real values per all-reduce; 2 all-reduces per layer (attention output and
  MLP down projection).
- Air interface: bandwidth B Hz carries B complex symbols per second (1 symbol/s/Hz, no roll-off);
  digital links carry B_sub * log2(1 + SNR) bits/s on a sub-band of width B_sub (Shannon rate).
- Frame overhead: every transmission phase (an uplink, a downlink, one ring step) sends the frame
  the code really sends (`testbed.phy.framing`, `testbed.phy.budget.LinkBudget`): a preamble and a
  guard (`overhead_symbols` = 63 + 16) and, with per-frame CSI, one pilot slot of `pilot_symbols`
  (32) per transmitting antenna, all at the symbol rate of the band the transmitter uses (B for
  AirComp and the broadcast, B/N for a node's OFDMA/FDMA sub-band, so N x longer there). AirComp:
  N x N_t pilot slots share the band (time-orthogonal); a sub-band node sends its own N_t. Plus
  the radio pipeline latency, `pipeline_samples` / B seconds per phase (default 64 samples: the
  lead with which the round schedules a frame ahead of the radios' clock, LinkBudget.lead_samples).

All-reduce schemes (`scheme=`):
- ``"aircomp"``: all N nodes send D/2 complex symbols on L streams at once on the full band:
  uplink D / (2 L B) s; then the receiver broadcasts the aggregate (see `downlink`).
- ``"digital"`` with ``pattern="star"`` (default): OFDMA uplink, node n on B/N Hz, sends D values
  quantized to `bits` bits at (B/N) log2(1 + SNR_n); all in parallel, so the uplink lasts
  max_n D b / ((B/N) log2(1+SNR_n)). The receiver sums, re-quantizes the sum to `bits` bits and
  broadcasts it (see `downlink`).
- ``"digital"`` with ``pattern="ring"``: ring reduce-scatter + all-gather between the nodes,
  2 (N-1) steps; in each step every node sends D/N values (b bits each) to its ring neighbour on
  its own B/N sub-band at (B/N) log2(1 + SNR_n), where SNR_n is node n's link to its neighbour; a
  step lasts as long as its slowest link. No receiver and no downlink: every node ends with the sum.
- ``"fdma"``: uncoded analog FDMA, node n on B/N Hz sends its D/2 complex symbols on L streams:
  N D / (2 L B) s; the receiver sums the N separately received signals and broadcasts.

Downlink broadcast of the aggregate (`downlink=`, same for every receiver-based scheme):
``"digital"`` (default): D x `bits` bits at B log2(1 + SNR_dl); ``"analog"``: D/2 uncoded complex
symbols on `downlink_streams` streams, D / (2 L_dl B) s; ``"none"``: 0 (receiver is the only
consumer, or the broadcast is not counted).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from testbed.optim.latency_shapes import LayerShapes
from testbed.optim.nodes import NodeModel

SCHEMES = ("aircomp", "digital", "fdma")
#: Preamble (Zadoff-Chu, 63) + guard (16) symbols of the frame the link sends (testbed.phy.budget.LinkBudget).
FRAME_OVERHEAD_SYMBOLS = 63.0 + 16.0
#: Pilot symbols per transmitting antenna per frame (testbed.phy.budget.LinkBudget.pilot_len).
PILOT_SYMBOLS = 32.0
#: Radio pipeline latency per transmission phase, samples (testbed.phy.budget.LinkBudget.lead_samples).
PIPELINE_SAMPLES = 64.0
PATTERNS = ("star", "ring")
DOWNLINKS = ("digital", "analog", "none")


@dataclass(frozen=True)
class LinkConfig:
    """Air-interface parameters of the latency model.

    Attributes:
        bandwidth_hz: total bandwidth B, Hz (= complex symbols/s).
        snr_db: uplink SNR of each node, dB; a float (all nodes) or one value per node.
        downlink_snr_db: SNR of the receiver's broadcast at the worst node, dB.
        bits: quantization bits per real value for digital transmission.
        n_streams: L, AirComp/FDMA streams per node per channel use.
        pattern: digital all-reduce pattern, "star" (through the receiver) or "ring".
        downlink: "digital", "analog" or "none" (see module docstring).
        downlink_streams: streams of an analog downlink broadcast.
        overhead_symbols: preamble + guard per transmission phase, symbols (default 63 + 16, the
            real frame's).
        pilot_symbols: pilot symbols per transmitting antenna per phase (default 32, per-frame
            CSI as a hardware bench needs; 0 for no pilots).
        n_tx: transmit antennas per node N_t (pilot slots per node).
        pipeline_samples: radio pipeline latency per phase, samples at rate B (default 64).
    """

    bandwidth_hz: float = 1e6
    snr_db: float | Sequence[float] = 20.0
    downlink_snr_db: float = 20.0
    bits: int = 8
    n_streams: int = 1
    pattern: str = "star"
    downlink: str = "digital"
    downlink_streams: int = 1
    overhead_symbols: float = FRAME_OVERHEAD_SYMBOLS
    pilot_symbols: float = PILOT_SYMBOLS
    n_tx: int = 1
    pipeline_samples: float = PIPELINE_SAMPLES

    def __post_init__(self) -> None:
        if not self.bandwidth_hz > 0:
            raise ValueError(f"bandwidth_hz must be > 0, got {self.bandwidth_hz}")
        if self.bits < 1 or self.n_streams < 1 or self.downlink_streams < 1:
            raise ValueError("bits, n_streams and downlink_streams must be >= 1")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if self.downlink not in DOWNLINKS:
            raise ValueError(f"downlink must be one of {DOWNLINKS}, got {self.downlink!r}")
        if self.overhead_symbols < 0 or self.pilot_symbols < 0 or self.pipeline_samples < 0:
            raise ValueError("overhead_symbols, pilot_symbols and pipeline_samples must be >= 0, got "
                             f"{self.overhead_symbols}, {self.pilot_symbols}, {self.pipeline_samples}")
        if self.n_tx < 1:
            raise ValueError(f"n_tx must be >= 1, got {self.n_tx}")

    def snr_per_node_db(self, n_nodes: int) -> np.ndarray:
        """Uplink SNR per node, dB, shape (n_nodes,)."""
        snr = np.atleast_1d(np.asarray(self.snr_db, dtype=float))
        if snr.size == 1:
            return np.full(n_nodes, float(snr[0]))
        if snr.size != n_nodes:
            raise ValueError(f"snr_db has {snr.size} values but there are {n_nodes} nodes")
        return snr


def spectral_efficiency(snr_db: float | np.ndarray) -> np.ndarray | float:
    """Shannon spectral efficiency log2(1 + SNR), bit/s/Hz, for SNR given in dB."""
    return np.log2(1.0 + 10.0 ** (np.asarray(snr_db, dtype=float) / 10.0))


def phase_overhead_time(link: LinkConfig, band_hz: float, pilot_antennas: int) -> float:
    """Seconds one transmission phase adds to its payload: preamble + guard + pilot slots of
    ``pilot_antennas`` antennas at the symbol rate ``band_hz`` of the band used, plus the radio
    pipeline latency (pipeline_samples / B)."""
    frame = link.overhead_symbols + link.pilot_symbols * pilot_antennas
    return frame / band_hz + link.pipeline_samples / link.bandwidth_hz


def downlink_time(n_reals: float, link: LinkConfig) -> float:
    """Seconds for the receiver to broadcast `n_reals` aggregated reals (mode `link.downlink`),
    frame overhead included (pilots: one per broadcast stream)."""
    b = link.bandwidth_hz
    if link.downlink == "none":
        return 0.0
    if link.downlink == "analog":
        return n_reals / (2.0 * link.downlink_streams * b) + phase_overhead_time(link, b, link.downlink_streams)
    return n_reals * link.bits / (b * float(spectral_efficiency(link.downlink_snr_db))) + \
        phase_overhead_time(link, b, 1)


def aircomp_uplink_time(n_reals: float, link: LinkConfig, n_nodes: int = 1) -> float:
    """AirComp uplink airtime D / (2 L B) + frame overhead (N x N_t pilot slots), seconds."""
    return n_reals / (2.0 * link.n_streams * link.bandwidth_hz) + \
        phase_overhead_time(link, link.bandwidth_hz, n_nodes * link.n_tx)


def digital_node_uplink_times(n_reals: float, n_nodes: int, link: LinkConfig) -> np.ndarray:
    """Star pattern: seconds node n needs for D b bits on B/N Hz at log2(1+SNR_n); shape (N,)."""
    rates = (link.bandwidth_hz / n_nodes) * spectral_efficiency(link.snr_per_node_db(n_nodes))
    return n_reals * link.bits / rates + phase_overhead_time(link, link.bandwidth_hz / n_nodes, link.n_tx)


def ring_step_times(n_reals: float, n_nodes: int, link: LinkConfig) -> np.ndarray:
    """Ring pattern: seconds node n needs per step for D/N values of b bits on B/N Hz; shape (N,)."""
    rates = (link.bandwidth_hz / n_nodes) * spectral_efficiency(link.snr_per_node_db(n_nodes))
    return (n_reals / n_nodes) * link.bits / rates + \
        phase_overhead_time(link, link.bandwidth_hz / n_nodes, link.n_tx)


def fdma_uplink_time(n_reals: float, n_nodes: int, link: LinkConfig) -> float:
    """Uncoded analog FDMA uplink: D/2 symbols on L streams over B/N Hz = N D / (2 L B) + frame
    overhead on the sub-band, s."""
    return n_nodes * n_reals / (2.0 * link.n_streams * link.bandwidth_hz) + \
        phase_overhead_time(link, link.bandwidth_hz / n_nodes, link.n_tx)


def allreduce_time(scheme: str, n_reals: float, n_nodes: int, link: LinkConfig = LinkConfig()) -> float:
    """Seconds for one all-reduce of `n_reals` reals among `n_nodes` nodes (see module docstring)."""
    if n_nodes < 1 or n_reals < 0:
        raise ValueError(f"need n_nodes >= 1 and n_reals >= 0, got {n_nodes}, {n_reals}")
    if scheme == "aircomp":
        return aircomp_uplink_time(n_reals, link, n_nodes) + downlink_time(n_reals, link)
    if scheme == "fdma":
        return fdma_uplink_time(n_reals, n_nodes, link) + downlink_time(n_reals, link)
    if scheme == "digital":
        if link.pattern == "ring":
            if n_nodes == 1:
                return 0.0
            return 2 * (n_nodes - 1) * float(ring_step_times(n_reals, n_nodes, link).max())
        return float(digital_node_uplink_times(n_reals, n_nodes, link).max()) + downlink_time(n_reals, link)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _as_ratios(m: Sequence[float], nodes: Sequence[NodeModel]) -> np.ndarray:
    m = np.asarray(m, dtype=float)
    if m.shape != (len(nodes),):
        raise ValueError(f"assignment has shape {m.shape}, expected ({len(nodes)},) (one per node)")
    if np.any(m < -1e-12):
        raise ValueError(f"assignment fractions must be >= 0, got {m}")
    return m


def compute_time_per_layer(m: Sequence[float], nodes: Sequence[NodeModel], shapes: LayerShapes,
                           tokens: int = 1) -> np.ndarray:
    """Seconds each node computes its share of one layer: 2 m_n W_layer tokens / F_n; shape (N,)."""
    m = _as_ratios(m, nodes)
    flops = np.array([nd.compute_flops for nd in nodes])
    return 2.0 * m * shapes.params_per_layer * tokens / flops


@dataclass(frozen=True)
class LatencyBreakdown:
    """Per-forward-pass latency, seconds: compute (layers + head), all-reduce, total."""

    compute_s: float
    allreduce_s: float
    head_s: float
    total_s: float
    allreduce_each_s: float


def per_token_latency(m: Sequence[float], nodes: Sequence[NodeModel], shapes: LayerShapes,
                      scheme: str = "aircomp", link: LinkConfig = LinkConfig(), tokens: int = 1,
                      include_lm_head: bool = True) -> LatencyBreakdown:
    """Latency of one forward pass over `tokens` tokens (1 = one decoded token), seconds.

    sum over layers [max_n compute_n(m) + 2 allreduce] + max_n LM-head time (replicated).
    """
    n = len(nodes)
    layer_compute = float(compute_time_per_layer(m, nodes, shapes, tokens).max())
    each = allreduce_time(scheme, shapes.allreduce_reals(tokens), n, link)
    head = 0.0
    if include_lm_head:
        head = max(2.0 * shapes.lm_head_params * tokens / nd.compute_flops for nd in nodes)
    compute = shapes.num_layers * layer_compute
    comm = shapes.num_layers * 2 * each
    return LatencyBreakdown(compute_s=compute, allreduce_s=comm, head_s=head,
                            total_s=compute + comm + head, allreduce_each_s=each)


@dataclass(frozen=True)
class EnergyBreakdown:
    """Per-forward-pass energy per node, joules; arrays of shape (N,)."""

    compute_j: np.ndarray
    transmit_j: np.ndarray

    @property
    def total_j(self) -> np.ndarray:
        """compute + transmit, J, shape (N,)."""
        return self.compute_j + self.transmit_j


def node_transmit_airtime(scheme: str, n_reals: float, n_nodes: int, link: LinkConfig) -> np.ndarray:
    """Seconds each node's radio transmits during one all-reduce; shape (N,)."""
    if scheme == "aircomp":
        return np.full(n_nodes, aircomp_uplink_time(n_reals, link))
    if scheme == "fdma":
        return np.full(n_nodes, fdma_uplink_time(n_reals, n_nodes, link))
    if scheme == "digital":
        if link.pattern == "ring":
            return 2 * (n_nodes - 1) * ring_step_times(n_reals, n_nodes, link)
        return digital_node_uplink_times(n_reals, n_nodes, link)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def energy_per_token(m: Sequence[float], nodes: Sequence[NodeModel], shapes: LayerShapes,
                     scheme: str = "aircomp", link: LinkConfig = LinkConfig(),
                     tx_power_w: float | Sequence[float] = 0.01, tokens: int = 1,
                     include_lm_head: bool = True) -> EnergyBreakdown:
    """Energy per forward pass per node, J.

    Computation: energy_per_flop_n x 2 x tokens x (m_n s_tot [+ vocab x hidden]). Transmission:
    tx_power_w_n (RF output, W; scalar or per node) x the node's own airtime over the
    2 x num_layers all-reduces (the receiver's downlink energy is not charged to the nodes).
    """
    m = _as_ratios(m, nodes)
    n = len(nodes)
    params = m * shapes.split_params + (shapes.lm_head_params if include_lm_head else 0.0)
    e_flop = np.array([nd.energy_per_flop_j for nd in nodes])
    compute = e_flop * 2.0 * tokens * params
    power = np.broadcast_to(np.asarray(tx_power_w, dtype=float), (n,))
    airtime = node_transmit_airtime(scheme, shapes.allreduce_reals(tokens), n, link)
    transmit = power * airtime * 2 * shapes.num_layers
    return EnergyBreakdown(compute_j=compute, transmit_j=transmit)


# --- speed-up helpers ------------------------------------------------------------------------------

def speedup(m: Sequence[float], nodes: Sequence[NodeModel], shapes: LayerShapes,
            link: LinkConfig = LinkConfig(), baseline: str = "digital", tokens: int = 1,
            include_lm_head: bool = True) -> float:
    """Per-token latency ratio baseline / AirComp (> 1: AirComp is faster)."""
    kw = dict(link=link, tokens=tokens, include_lm_head=include_lm_head)
    return (per_token_latency(m, nodes, shapes, baseline, **kw).total_s
            / per_token_latency(m, nodes, shapes, "aircomp", **kw).total_s)


def speedup_sweep(param: str, values: Sequence[float], nodes_for: Callable[[int], Sequence[NodeModel]],
                  shapes: LayerShapes, link: LinkConfig = LinkConfig(), baseline: str = "digital",
                  n_nodes: int = 4, tokens: int = 1, include_lm_head: bool = True) -> np.ndarray:
    """Speed-up (baseline / AirComp) as one parameter varies; shape (len(values),).

    `param` is ``"n_nodes"`` or a `LinkConfig` field (``"bandwidth_hz"``, ``"snr_db"``, ``"bits"``,
    ...). `nodes_for(N)` returns N node models; the assignment is the equal split.
    """
    out = []
    for v in values:
        n = int(v) if param == "n_nodes" else n_nodes
        lk = link if param == "n_nodes" else replace(link, **{param: v})
        nodes = list(nodes_for(n))
        out.append(speedup(np.full(n, 1.0 / n), nodes, shapes, lk, baseline, tokens, include_lm_head))
    return np.array(out)


def first_crossing(values: Sequence[float], ratios: Sequence[float], level: float) -> float | None:
    """First parameter value where `ratios` crosses `level` (linear interpolation), or None.

    Scans the grid in order and returns where the ratio first changes side of `level` (values[0]
    if ratios[0] equals `level`); None if it never does on the grid. Use level=5 for the 5x point
    and level=1 for the crossover where the baseline starts to win.
    """
    values = np.asarray(values, dtype=float)
    ratios = np.asarray(ratios, dtype=float)
    if values.shape != ratios.shape or values.size == 0:
        raise ValueError("values and ratios must be non-empty and of equal length")
    side = np.sign(ratios - level)
    if side[0] == 0:
        return float(values[0])
    for i in range(1, values.size):
        if side[i] == 0:
            return float(values[i])
        if side[i] != side[i - 1]:
            r0, r1 = ratios[i - 1], ratios[i]
            return float(values[i - 1] + (level - r0) * (values[i] - values[i - 1]) / (r1 - r0))
    return None


def speedup_closed_form_star(n_nodes: int, link: LinkConfig) -> float:
    """All-reduce-only speed-up digital-star / AirComp for equal SNRs, no overhead (for checks).

    digital = (N b / s + t_dl), aircomp = (1 / (2L) + t_dl), t_dl the downlink time per real x B.
    """
    s = float(spectral_efficiency(link.snr_per_node_db(n_nodes)[0]))
    if link.downlink == "digital":
        dl = link.bits / float(spectral_efficiency(link.downlink_snr_db))
    elif link.downlink == "analog":
        dl = 1.0 / (2 * link.downlink_streams)
    else:
        dl = 0.0
    return (n_nodes * link.bits / s + dl) / (1.0 / (2 * link.n_streams) + dl)


__all__ = [
    "LinkConfig", "LatencyBreakdown", "EnergyBreakdown", "spectral_efficiency", "downlink_time",
    "aircomp_uplink_time", "digital_node_uplink_times", "ring_step_times", "fdma_uplink_time",
    "allreduce_time", "compute_time_per_layer", "per_token_latency", "energy_per_token",
    "node_transmit_airtime", "speedup", "speedup_sweep", "first_crossing",
    "speedup_closed_form_star",
]
