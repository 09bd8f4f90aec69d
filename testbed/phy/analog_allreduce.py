"""The analog all-reduce (AirComp and uncoded FDMA): one round driver, two executors.

`AnalogRoundDriver` is the round logic every transport shares, per all-reduce of one
(layer, site):

1. ``on_round`` (e.g. a new fading block, a calibration check);
2. the common scale c of the site (`testbed.phy.scale_policy.ScaleKeeper`: calibrated
   statistics, or the per-round "oracle" from the nodes' symbol powers while a statistics pass
   gathers them);
3. channel state: with ``csi="estimated"`` (the product) a sounding frame (pilots + silence)
   through the executor gives the LS channel estimates and the receiver's noise estimate; with
   ``csi="perfect"`` the simulator's `truth` handle gives the true channels and noise (a
   simulator feature: no radio bench has it, and the run records that it was used);
4. the design (`design_round`: `testbed.optim.design_transceiver` for AirComp, the closed-form
   single-node ZF per node for FDMA);
5. the payload round through the executor: nodes send `testbed.phy.round.node_frame`, the
   receiver returns `aggregate_payload`.

Executors move frames only. `LocalExecutor` has every radio in one process (demo, sweeps,
tests); the bench's executor (`testbed.net.roles.bench_round`) sends the same plan to node and
receiver processes, whose roles call the same `testbed.phy.round` functions.
`AnalogAllReduce` is the in-process `AllReduce` on a `LocalExecutor`.
"""
from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from testbed.llm.allreduce import AllReduce
from testbed.phy.budget import DEFAULT_BUDGET, LinkBudget
from testbed.phy.fdma import single_node_zf
from testbed.phy.normalization import symbol_powers
from testbed.phy.phase_tracking import PhaseTracker
from testbed.phy.round import (SCHEMES, ReceivedFrame, RoundDesign, RoundPlan, aggregate_symbols,
                               cut_frame, denormalize_sum, estimate_channels, estimate_noise_var,
                               node_frames)
from testbed.phy.scale_policy import ScaleKeeper
from testbed.radio.base import Radio, peak_component

CSI_MODES = ("perfect", "estimated")
#: design methods that take a starting receiver (``init=`` array (N_r, L))
WARM_START_METHODS = ("mmse",)
#: largest relative channel change ||H - H_prev||_F / ||H_prev||_F for a warm start
WARM_START_MAX_CHANGE = 0.25
FAIRNESS = ("energy", "power")


class Truth(Protocol):
    """What only a simulator knows (`sim_backend.truth.SimTruth`): the true channels
    ``(N, N_r, N_t)`` in signal-model units and the air's noise variance (full-scale units,
    per receive antenna per sample). Code that calls it is a simulator feature."""

    def channels(self) -> np.ndarray: ...

    def air_noise_var(self) -> float: ...


# ---------------------------------------------------------------------- design
def design_round(scheme: str, H: np.ndarray, power: np.ndarray, noise_var: float, *,
                 method: str = "zf-sdr", n_streams: int | None = None,
                 fairness: str = "energy", options: dict | None = None,
                 design_fn: Callable | None = None) -> RoundDesign:
    """Transceiver of one round for channels ``H`` ``(N, N_r, N_t)``, power budgets ``power``
    ``(N,)`` (linear, per channel use) and signal-model ``noise_var`` (linear).

    aircomp: ``design_fn`` (default `testbed.optim.transceiver.design_transceiver`) with
    ``method``; fdma: `single_node_zf` per node with L = ``n_streams`` (default min(N_t, N_r));
    ``fairness="power"`` gives each node N times the power (equal power per sub-band, see
    module docstring of `testbed.phy.round`)."""
    if scheme == "fdma":
        if fairness not in FAIRNESS:
            raise ValueError(f"fairness must be one of {FAIRNESS}, got {fairness!r}")
        n = H.shape[0]
        p = power * (n if fairness == "power" else 1)
        L = n_streams or min(H.shape[1], H.shape[2])
        parts = [single_node_zf(H[i], p[i], noise_var, L) for i in range(n)]
        return RoundDesign(A=np.stack([a for a, _, _ in parts]),
                           B=np.stack([b for _, b, _ in parts]),
                           mse=float(sum(m for _, _, m in parts)))
    if scheme != "aircomp":
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if design_fn is None:
        from testbed.optim.transceiver import design_transceiver as design_fn
    kw = dict(options or {})
    if n_streams is not None:
        kw["n_streams"] = n_streams
    d = design_fn(H, power, noise_var, method=method, **kw)
    return RoundDesign(A=np.asarray(d.A)[None], B=np.asarray(d.B), mse=float(d.mse),
                       bound=getattr(d, "lower_bound", None))


def power_vector(power: float | Sequence[float], n_nodes: int) -> np.ndarray:
    """Per-node power budget per channel use (linear), shape (N,); ValueError if not > 0."""
    p = np.broadcast_to(np.asarray(power, dtype=float), (n_nodes,)).copy()
    if np.any(p <= 0):
        raise ValueError(f"power budgets must be > 0 (linear), got {p}")
    return p


# ---------------------------------------------------------------------- executors
@dataclass
class SoundingResult:
    """Channel estimates ``(N, N_r, N_t)``, noise estimate (signal model, linear) and the
    detected frame offset (samples) of one sounding frame."""

    H: np.ndarray
    noise_var: float
    offset: int


@dataclass
class PayloadResult:
    """The receiver's estimate of the sum (float64, the partials' shape; None where it stays at
    the receiver, as on a bench), the normalized sum S_hat ``(L, K)`` when the executor has it,
    the detected offset (samples), the detection metric and what the executor measured (peak
    |I|/|Q| and clipped fraction of the transmitters, the receiver's wait)."""

    z_hat: np.ndarray | None
    offset: int
    metric: float
    S_hat: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


class RoundExecutor(abc.ABC):
    """Moves one round's frames: every node transmits its `node_frame` at ``plan.start`` and
    the receiver cuts, estimates or aggregates the window. Times on the receiver's clock."""

    @abc.abstractmethod
    def next_start(self, budget: LinkBudget) -> int:
        """Earliest frame start (receiver clock, samples) every radio can still meet."""

    @abc.abstractmethod
    def sound(self, plan: RoundPlan) -> SoundingResult:
        """Run a sounding frame (pilots + silence)."""

    @abc.abstractmethod
    def payload(self, plan: RoundPlan, design: RoundDesign, scale: float,
                shape: tuple[int, ...]) -> PayloadResult:
        """Run a payload round: node n sends its partial with B_n; the receiver aggregates with
        A and de-normalizes with ``scale``."""


class LocalExecutor(RoundExecutor):
    """All radios in one process. ``stage(partials)`` gives it the nodes' partials of the next
    payload round; every round's frames are built for all nodes at once (`node_frames`).
    tx_advance_samples: per-node integer advance subtracted from the burst time
    (e.g. calibration's timing offsets)."""

    def __init__(self, tx_radios: Sequence[Radio], rx_radio: Radio,
                 budget: LinkBudget = DEFAULT_BUDGET,
                 tx_advance_samples: Sequence[int] | None = None) -> None:
        if not tx_radios:
            raise ValueError("need at least one transmitting radio")
        self.tx_radios = list(tx_radios)
        self.rx_radio = rx_radio
        self.budget = budget
        self.tx_advance = list(tx_advance_samples or [0] * len(self.tx_radios))
        n_tx = {r.settings.n_tx_channels for r in self.tx_radios}
        if len(n_tx) != 1:
            raise ValueError(f"all transmitters must have the same number of antennas, got {n_tx}")
        self.n_tx = n_tx.pop()
        self.n_rx = rx_radio.settings.n_rx_channels
        self._partials: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.tx_radios)

    def stage(self, partials: Sequence[np.ndarray] | np.ndarray) -> None:
        """The nodes' partials (node order; a sequence of equal-shape arrays or one array
        ``(N, ...)``) for the next `payload`."""
        self._partials = partials if isinstance(partials, np.ndarray) else np.stack(partials)

    def next_start(self, budget: LinkBudget) -> int:
        # every radio's own clock must be past: the latest of them, plus the lead
        return max([self.rx_radio.now()] + [r.now() for r in self.tx_radios]) + budget.lead_samples

    def exchange(self, plan: RoundPlan, frames: Sequence[np.ndarray] | np.ndarray
                 ) -> tuple[ReceivedFrame, dict]:
        """Transmit ``frames[n]`` from node n at ``plan.start`` and cut the received frame;
        also returns the transmitters' peak component and clipped fraction (full scale 1)."""
        frames = np.asarray(frames, dtype=np.complex64)
        comps = frames.view(np.float32)                          # I and Q components
        peak = peak_component(comps)
        # beyond full scale (the radio's DAC); counted only when the peak says there are some
        clipped = int(np.count_nonzero(np.abs(comps) > 1.0)) if peak > 1.0 else 0
        for n, (radio, x) in enumerate(zip(self.tx_radios, frames)):
            radio.transmit(x, plan.start - self.tx_advance[n])
        first, n_samples = plan.window(self.budget)
        window = self.rx_radio.receive(n_samples, first)
        return cut_frame(window, plan, self.budget), {"peak_component": peak,
                                                      "clipped_fraction": clipped / max(comps.size, 1)}

    def sound(self, plan: RoundPlan) -> SoundingResult:
        frame, _ = self.exchange(plan, node_frames(plan, self.budget))
        return SoundingResult(estimate_channels(frame, plan, self.budget),
                              estimate_noise_var(frame, plan, self.budget), frame.offset)

    def payload(self, plan, design, scale, shape):
        if self._partials is None or len(self._partials) != self.n_nodes:
            raise RuntimeError("stage() the nodes' partials before a payload round")
        frames = node_frames(plan, self.budget, partials=self._partials, B=design.B, scale=scale)
        frame, extra = self.exchange(plan, frames)
        S_hat = aggregate_symbols(frame, plan, self.budget, design.A)
        return PayloadResult(denormalize_sum(S_hat, plan, scale, shape), frame.offset,
                             frame.metric, S_hat, extra)


# ---------------------------------------------------------------------- the round driver
class AnalogRoundDriver:
    """The round logic shared by every transport (see the module docstring).

    executor: a `RoundExecutor`; scheme: "aircomp" | "fdma"; design_method: for AirComp
    (`testbed.optim.transceiver.METHODS`); power: P_n (scalar or (N,), linear); n_nodes,
    n_tx, n_rx: the bench's shape; csi: "estimated" (pilots + noise estimate, the product) or
    "perfect" (needs ``truth``, simulator only); scales: the site scales; n_streams: L (None:
    the design's default); fairness: FDMA's; design_options: passed to the design;
    on_round: called at the start of each round; warm_start: pass the previous round's
    receiver as the start (``init=``) to designs that take one (`WARM_START_METHODS`) when the
    channel has the same shape and moved by at most `WARM_START_MAX_CHANGE` (relative
    Frobenius norm: the same fading block, estimation noise only), else design from scratch;
    csi_interval_samples: the frame structure's CSI interval (receiver clock, samples): the
    receiver clock is cut into intervals [k T, (k + 1) T), and a round that starts in the same
    interval as the last sounding reuses its estimate and design (no sounding frame, no
    design): one pilot sounding at the start of each coherence block, the usual block-fading
    frame. 0 (default): every round. With ``csi="perfect"`` a design is reused whenever the
    true channels and noise are unchanged; phase_tracking: with ``csi="estimated"``, turn each
    node's precoder by the phase its channel is predicted to turn between the sounding and the
    payload (`testbed.phy.phase_tracking.PhaseTracker`: the residual CFO from successive
    soundings of a static channel); for benches whose channel stays put (radios, a fixed
    simulated block), not for a new fading block per round.
    """

    def __init__(self, executor: RoundExecutor, *, scheme: str, n_nodes: int, n_tx: int,
                 design_method: str = "zf-sdr", power: float | Sequence[float] = 1.0,
                 budget: LinkBudget = DEFAULT_BUDGET, csi: str = "estimated",
                 truth: Truth | None = None, scales: ScaleKeeper | None = None,
                 n_streams: int | None = None, fairness: str = "energy",
                 design_options: dict | None = None, design_fn: Callable | None = None,
                 on_round: Callable[[], object] | None = None, warm_start: bool = True,
                 csi_interval_samples: int = 0, phase_tracking: bool = False) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        if csi not in CSI_MODES:
            raise ValueError(f"csi must be one of {CSI_MODES}, got {csi!r}")
        if csi == "perfect" and truth is None:
            raise ValueError("csi='perfect' needs the simulator's truth handle "
                             "(sim_backend.truth.SimTruth); a radio bench has none: use 'estimated'")
        if fairness not in FAIRNESS:
            raise ValueError(f"fairness must be one of {FAIRNESS}, got {fairness!r}")
        self.executor = executor
        self.scheme = scheme
        self.n_nodes, self.n_tx = int(n_nodes), int(n_tx)
        self.design_method = design_method
        self.power = power_vector(power, self.n_nodes)
        self.budget = budget
        self.csi = csi
        self.truth = truth
        self.scales = scales or ScaleKeeper("calibrated")
        self.n_streams = n_streams
        self.fairness = fairness
        self.design_options = dict(design_options or {})
        self.design_fn = design_fn
        self.on_round = on_round
        self.warm_start = bool(warm_start)
        if csi_interval_samples < 0:
            raise ValueError(f"csi_interval_samples must be >= 0, got {csi_interval_samples}")
        self.csi_interval_samples = int(csi_interval_samples)
        #: (receiver sample of the sounding, H, noise_var, design) of the channel state in force
        self._state: tuple[int, np.ndarray, float, RoundDesign] | None = None
        self.tracker = PhaseTracker() if phase_tracking and csi == "estimated" else None
        self.last_design: RoundDesign | None = None
        self._last_H: np.ndarray | None = None
        #: (H of the state, true H, their csi_mse) of the last report (see `csi_mse`)
        self._csi_mse: tuple[np.ndarray, np.ndarray, float] | None = None
        #: which simulator truths this driver used (recorded in results)
        self.truth_used: set[str] = set()

    def channel_state(self) -> tuple[np.ndarray, float, dict]:
        """(H ``(N, N_r, N_t)``, signal-model sigma^2, record) for this round: sounding
        (estimated) or the truth handle (perfect)."""
        if self.csi == "perfect":
            self.truth_used.update(("channels", "noise_var"))
            return (np.asarray(self.truth.channels()),
                    self.budget.signal_noise_var(self.truth.air_noise_var()), {})
        plan = RoundPlan(self.scheme, self.n_nodes, self.n_tx, 1, 0,
                         self.executor.next_start(self.budget), sounding=True)
        s = self.executor.sound(plan)
        return s.H, s.noise_var, {"detected_offset_pilots": s.offset,
                                  "noise_var_estimated": s.noise_var}

    def warm_start_receiver(self, H: np.ndarray) -> np.ndarray | None:
        """The previous round's receiver ``(N_r, L)`` if this round's design may start from it
        (see the class docstring), else None."""
        prev, H_prev = self.last_design, self._last_H
        if (not self.warm_start or self.scheme != "aircomp" or prev is None or H_prev is None
                or self.design_method not in WARM_START_METHODS or self.design_fn is not None
                or "init" in self.design_options
                or H_prev.shape != H.shape):
            return None
        if np.linalg.norm(H - H_prev) > WARM_START_MAX_CHANGE * np.linalg.norm(H_prev):
            return None
        return np.asarray(prev.A[0])

    def design(self, H: np.ndarray, noise_var: float) -> RoundDesign:
        """The design of this round (see `design_round`), warm-started when allowed."""
        options = self.design_options
        A0 = self.warm_start_receiver(H)
        if A0 is not None:
            options = dict(options, init=A0)
        d = design_round(self.scheme, H, self.power, noise_var, method=self.design_method,
                         n_streams=self.n_streams, fairness=self.fairness,
                         options=options, design_fn=self.design_fn)
        self._last_H = np.array(H, copy=True)
        return d

    def channel_and_design(self) -> tuple[RoundDesign, float, dict]:
        """(design, signal-model sigma^2, record) of this round: the state in force when it may
        be reused (see the class docstring; record ``csi_reused`` 1, ``design_s`` 0), else
        `channel_state` and `design`."""
        state = self._state
        at = self.executor.next_start(self.budget)
        T = self.csi_interval_samples
        if state is not None and self.csi == "estimated" and T and at // T == state[0] // T:
            return state[3], state[2], {"csi_reused": 1, "design_s": 0.0}
        H, noise_var, rec = self.channel_state()
        if (state is not None and self.csi == "perfect" and noise_var == state[2]
                and H.shape == state[1].shape and np.array_equal(H, state[1])):
            return state[3], state[2], dict(rec, csi_reused=1, design_s=0.0)
        if self.tracker is not None:     # the time base's generation: a re-sync turns phases
            self.tracker.update(at, H, epoch=len(getattr(self.executor, "syncs", ())))
        t0 = time.perf_counter()
        d = self.design(H, noise_var)
        rec["design_s"] = time.perf_counter() - t0
        rec["csi_reused"] = 0
        H = np.array(H, copy=True)
        H.flags.writeable = False
        self._state = (at, H, float(noise_var), d)
        return d, noise_var, rec

    def csi_mse(self) -> float:
        """mean |H - H_true|^2 of the channel state in force against the truth handle's channels
        (signal-model units; a simulator report). Kept while both arrays are the same read-only
        objects (the state is, `SimTruth.channels` is while the air's channels stay)."""
        H, T = self._state[1], np.asarray(self.truth.channels())
        last = self._csi_mse
        if last is None or last[0] is not H or last[1] is not T or T.flags.writeable:
            last = (H, T, float(np.mean(np.abs(H - T) ** 2)))
            self._csi_mse = last
        return last[2]

    def round(self, layer: int, site: str, shape: tuple[int, ...],
              powers: Sequence[float] | None = None) -> tuple[PayloadResult, dict]:
        """One all-reduce of a (layer, site) tensor of ``shape``. ``powers``: the nodes' symbol
        powers this round (only needed while the scales are being gathered or with the
        "oracle" policy). Returns the executor's result and a record of the round."""
        if self.on_round is not None:
            self.on_round()
        c = self.scales.scale_for((layer, site), powers)
        d, noise_var, rec = self.channel_and_design()
        self.last_design = d
        n_values = math.prod(shape)
        plan = RoundPlan(self.scheme, self.n_nodes, self.n_tx, d.n_streams, n_values,
                         self.executor.next_start(self.budget))
        rot = None if self.tracker is None else self.tracker.rotation(plan.start)
        if rot is not None:
            # the channel at the payload is H_n e^{j phi_n}: precoders B_n e^{-j phi_n}
            d = RoundDesign(d.A, d.B * np.conj(rot)[:, None, None], d.mse, d.bound)
            rec["phase_predicted_deg_max"] = float(np.degrees(np.max(np.abs(np.angle(rot)))))
        out = self.executor.payload(plan, d, c, tuple(shape))
        rec.update(mse_predicted=d.mse,
                   mse_tensor_predicted=d.mse * c * c / (2 * d.n_streams),
                   scale=c, channel_uses=plan.n_slots * plan.channel_uses,
                   detected_offset=out.offset, detection_metric=out.metric,
                   noise_var_design=noise_var, **out.extra)
        if self.truth is not None and self.csi == "estimated":
            rec["csi_mse"] = self.csi_mse()
            self.truth_used.add("channels (reported only)")
        return out, rec


# ---------------------------------------------------------------------- in process
def partials_to_numpy(partials: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Detach partial tensors to float64 numpy arrays; ValueError if shapes differ."""
    shapes = {tuple(p.shape) for p in partials}
    if len(shapes) != 1:
        raise ValueError(f"all partials must have the same shape, got {shapes}")
    return [p.detach().to(torch.float64).cpu().numpy() for p in partials]


def stack_partials(partials: Sequence[torch.Tensor]) -> np.ndarray:
    """The partial tensors as one numpy array ``(N, *shape)`` (one copy): float32 partials stay
    float32 (their precision), others become float64; ValueError if shapes differ."""
    shape = partials[0].shape
    for p in partials:
        if p.shape != shape:
            raise ValueError("all partials must have the same shape, got "
                             f"{ {tuple(p.shape) for p in partials} }")
    z = torch.stack(partials)
    if z.requires_grad:
        z = z.detach()
    if not z.is_cpu:
        z = z.cpu()
    if z.dtype != torch.float32:
        z = z.to(torch.float64)
    return z.numpy()


def as_partial_tensor(z: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``z`` as a tensor of ``like``'s dtype and device (sharing ``z``'s memory when it already
    has that dtype on the CPU, as `torch.as_tensor` would)."""
    t = torch.from_numpy(z)
    if t.dtype != like.dtype or not like.is_cpu:
        t = t.to(device=like.device, dtype=like.dtype)
    return t


def tap_errors(S_hat: np.ndarray, exact: np.ndarray, scale: float) -> tuple[float, float]:
    """(mse_symbols, mse_tensor) of one round against the exact sum ``exact`` (D reals):
    sum |S_hat - S|^2 / K over the ``(L, K)`` symbols (stream padding included, S =
    `normalized_symbols` of the exact sum: the normalization is linear) and mean
    (z_hat - exact)^2 over the D reals (z_hat = scale x the unpacked S_hat)."""
    L, k = S_hat.shape
    got = np.ascontiguousarray(S_hat).view(np.float32 if S_hat.dtype == np.complex64
                                            else np.float64).reshape(-1).astype(np.float64)
    d = exact.size
    got[:d] -= exact.reshape(-1) / scale           # the packed reals of S_hat - S
    sq = float(np.dot(got, got))
    sq_d = sq if d == got.size else float(np.dot(got[:d], got[:d]))   # no stream padding: same
    mse_symbols = sq / k
    mse_tensor = sq_d * scale * scale / d
    return mse_symbols, mse_tensor


#: the record values `RunningStats` averages
_NUMBERS = (int, float, np.floating, np.integer)


class RunningStats:
    """Per-(layer, site) means of per-round records (dicts of floats)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[int, str], dict[str, float]] = {}
        self._n: dict[tuple[int, str], int] = {}

    def add(self, key: tuple[int, str], record: dict[str, float]) -> None:
        s = self._sums.setdefault(key, {})
        for k, v in record.items():
            if type(v) is float:
                s[k] = s.get(k, 0.0) + v
            elif isinstance(v, _NUMBERS):
                s[k] = s.get(k, 0.0) + float(v)
        self._n[key] = self._n.get(key, 0) + 1

    def as_dict(self) -> dict:
        return {key: {**{k: v / self._n[key] for k, v in s.items()}, "rounds": self._n[key]}
                for key, s in self._sums.items()}


class AnalogAllReduce(AllReduce):
    """In-process analog all-reduce: an `AnalogRoundDriver` on a `LocalExecutor`.

    tx_radios / rx_radio: node transmitters (node order) and the receiver. scheme: "aircomp"
    or "fdma". truth: the simulator's handle (needed for csi="perfect"; with "estimated" only
    used to report the CSI error). scale_policy / headroom_db: `ScaleKeeper`. Other keywords
    go to `AnalogRoundDriver`. While ``calibrating`` is True, rounds use the per-round scale
    from the nodes' symbol powers and gather the site statistics (the statistics pass a bench
    runs at assignment). The measured errors (``mse_tensor``) come from the partials this
    process holds anyway: the measurement tap of an in-process run.
    """

    name = "analog"

    def __init__(self, tx_radios: Sequence[Radio], rx_radio: Radio, *, scheme: str = "aircomp",
                 truth: Truth | None = None, csi: str = "perfect",
                 scale_policy: str | float = "oracle", headroom_db: float = 0.0,
                 budget: LinkBudget = DEFAULT_BUDGET,
                 tx_advance_samples: Sequence[int] | None = None, **driver_kw) -> None:
        self.executor = LocalExecutor(tx_radios, rx_radio, budget, tx_advance_samples)
        self.scales = ScaleKeeper(scale_policy, headroom_db)
        self.driver = AnalogRoundDriver(self.executor, scheme=scheme,
                                        n_nodes=self.executor.n_nodes, n_tx=self.executor.n_tx,
                                        budget=budget, csi=csi, truth=truth, scales=self.scales,
                                        **driver_kw)
        self.name = scheme
        self._stats = RunningStats()

    @property
    def calibrating(self) -> bool:
        """While True, rounds gather the scale statistics (see the class docstring)."""
        return self.scales.calibrating

    @calibrating.setter
    def calibrating(self, value: bool) -> None:
        self.scales.calibrating = bool(value)

    @property
    def last_design(self) -> RoundDesign | None:
        return self.driver.last_design

    @property
    def truth_used(self) -> set[str]:
        return self.driver.truth_used

    def reduce(self, partials, *, layer, site):
        zs = stack_partials(partials)
        if len(zs) != self.executor.n_nodes:
            raise ValueError(f"got {len(zs)} partials for {self.executor.n_nodes} transmitting radios")
        self.executor.stage(zs)
        z64 = zs.astype(np.float64, copy=False)
        powers = symbol_powers(z64)
        out, rec = self.driver.round(layer, site, zs.shape[1:], powers=powers)
        if not self.calibrating:
            # the measurement tap: errors against the exact sum, which this process holds
            mse_symbols, mse_tensor = tap_errors(out.S_hat, np.add.reduce(z64, axis=0), rec["scale"])
            rec.update(mse_tensor=mse_tensor, mse_symbols=mse_symbols,
                       signal_power=float(np.add.reduce(powers)) / len(powers) / rec["scale"] ** 2)
            self._stats.add((layer, site), rec)
        return [as_partial_tensor(out.z_hat, partials[0])] * len(partials)

    def stats(self) -> dict:
        """{(layer, site): means over rounds of mse_symbols (per channel use, normalized
        domain), mse_predicted (design), mse_tensor (per real value), mse_tensor_predicted
        (c^2 mse / 2L), signal_power, scale, channel_uses, clipped_fraction, csi_mse
        (estimated CSI on a simulator), 'rounds'}."""
        return self._stats.as_dict()

    def reset_stats(self) -> None:
        self._stats = RunningStats()
