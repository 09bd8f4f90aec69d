"""The model-assignment problem: nodes, the energy-to-power map P(m), feasibility and constraints.

Assignment m in R^N: fraction of the split (tensor-parallel) parameters held by node n, m >= 0,
sum m = 1. Per generated token node n spends

    compute energy  2 e_n (m_n s_tot + s_rep)   J   (e_n = energy_per_flop_j, 1 MAC = 2 FLOPs,
                                                     s_rep = replicated params, e.g. the LM head)
    transmit energy K * P_n * power_unit_j       J   (K AirComp channel uses per token)

and must stay within E_n^max. The energy left over sets the power per channel use

    P_n(m) = min( (E_n^max - 2 e_n (m_n s_tot + s_rep)) / (K power_unit_j),  P_cap_n )

in the simulator's linear power unit (`noise_var` is in the same unit; the channel is normalized,
path loss folded into `noise_var`). `power_unit_j` is the energy per channel use that equals power
1.0, J. P_cap_n = radio_power_limit_w / (symbol_rate_hz * power_unit_j) if the node's radio has a
limit. Constraints: memory m_n * model_bytes <= memory_bytes_n; energy P_n(m) >= min_power (> 0).
Both are upper bounds on m_n, so the feasible set is the capped simplex {sum m = 1, 0 <= m <= u}.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from testbed.optim.latency_shapes import LayerShapes
from testbed.optim.nodes import NodeModel

#: draws one channel realization H, complex (N, N_r, N_t), from the given generator
ChannelSampler = Callable[[np.random.Generator], np.ndarray]


def rayleigh_sampler(n_nodes: int, n_rx: int, n_tx: int,
                     gains: Sequence[float] | None = None) -> ChannelSampler:
    """I.i.d. Rayleigh block fading: H_n entries CN(0, gains_n) (linear average power gain)."""
    g = np.ones(n_nodes) if gains is None else np.asarray(gains, dtype=float)
    if g.shape != (n_nodes,) or np.any(g <= 0):
        raise ValueError(f"gains must be {n_nodes} positive linear power gains, got {gains}")
    scale = np.sqrt(g / 2.0)[:, None, None]

    def sample(rng: np.random.Generator) -> np.ndarray:
        shape = (n_nodes, n_rx, n_tx)
        return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))

    return sample


@dataclass(frozen=True)
class AssignmentProblem:
    """Everything the slow-timescale assignment needs. Units in the module docstring.

    Attributes:
        nodes: the N node models.
        split_params: s_tot, split parameters (MACs per token spread over the nodes).
        model_bytes: bytes of the split weights (memory constraint m_n * model_bytes <= memory).
        channel_uses_per_token: K, AirComp channel uses per token.
        noise_var: receiver noise variance per channel use, linear, power unit.
        power_unit_j: energy per channel use of power 1.0, J.
        replicated_params: s_rep, parameters every node computes per token regardless of m.
        symbol_rate_hz: channel uses per second (only for the radio power cap).
        min_power: smallest allowed P_n (power unit); keeps the energy constraint strict.
        n_rx, n_tx, n_streams: N_r, N_t, L.
        sampler: channel sampler; None = i.i.d. Rayleigh with unit gains.
        method: design_transceiver method for the fast problem ("mmse", "zf-sdr", ...).
        design_options: extra keyword options for design_transceiver (e.g. mmse
            ``{"init": "channel-inversion"}`` skips the SDP start and is ~100x faster).
    """

    nodes: Sequence[NodeModel]
    split_params: float
    model_bytes: float
    channel_uses_per_token: float
    noise_var: float = 1.0
    power_unit_j: float = 1e-6
    replicated_params: float = 0.0
    symbol_rate_hz: float = 1e6
    min_power: float = 1e-2
    n_rx: int = 2
    n_tx: int = 1
    n_streams: int = 1
    sampler: ChannelSampler | None = None
    method: str = "mmse"
    design_options: dict = field(default_factory=dict, compare=False)
    _sampler: ChannelSampler = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.nodes) < 1:
            raise ValueError("need at least one node")
        for name in ("split_params", "model_bytes", "channel_uses_per_token", "noise_var",
                     "power_unit_j", "symbol_rate_hz", "min_power"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AssignmentProblem.{name} must be > 0, got {getattr(self, name)}")
        if self.n_streams > self.n_rx:
            raise ValueError(f"n_streams={self.n_streams} must be <= n_rx={self.n_rx}")
        sampler = self.sampler or rayleigh_sampler(self.n_nodes, self.n_rx, self.n_tx)
        object.__setattr__(self, "_sampler", sampler)

    @classmethod
    def from_shapes(cls, nodes: Sequence[NodeModel], shapes: LayerShapes, bytes_per_param: float = 2.0,
                    include_lm_head: bool = True, **kwargs) -> "AssignmentProblem":
        """Problem for a Llama-shaped model; K = num_layers x hidden / L for one decoded token."""
        L = int(kwargs.get("n_streams", 1))
        return cls(nodes=list(nodes), split_params=float(shapes.split_params),
                   model_bytes=float(shapes.split_params * bytes_per_param),
                   channel_uses_per_token=shapes.channel_uses_per_token(n_streams=L),
                   replicated_params=float(shapes.lm_head_params if include_lm_head else 0),
                   **kwargs)

    @property
    def n_nodes(self) -> int:
        """N."""
        return len(self.nodes)

    def draw_channel(self, rng: np.random.Generator) -> np.ndarray:
        """One channel realization H, complex (N, N_r, N_t)."""
        H = np.asarray(self._sampler(rng))
        if H.shape != (self.n_nodes, self.n_rx, self.n_tx):
            raise ValueError(f"sampler returned shape {H.shape}, expected "
                             f"{(self.n_nodes, self.n_rx, self.n_tx)}")
        return H

    def _arrays(self):
        e = np.array([nd.energy_per_flop_j for nd in self.nodes])
        E = np.array([nd.energy_budget_per_token_j for nd in self.nodes])
        cap = np.array([np.inf if nd.radio_power_limit_w is None
                        else nd.radio_power_limit_w / (self.symbol_rate_hz * self.power_unit_j)
                        for nd in self.nodes])
        return e, E, cap

    def compute_energy_j(self, m: np.ndarray) -> np.ndarray:
        """Compute energy per token per node, J: 2 e_n (m_n s_tot + s_rep); shape (N,)."""
        e, _, _ = self._arrays()
        return 2.0 * e * (np.asarray(m, dtype=float) * self.split_params + self.replicated_params)

    def energy_power(self, m: np.ndarray) -> np.ndarray:
        """Power per channel use the energy budget leaves (no radio cap), power unit; shape (N,)."""
        _, E, _ = self._arrays()
        return (E - self.compute_energy_j(m)) / (self.channel_uses_per_token * self.power_unit_j)

    def power(self, m: np.ndarray) -> np.ndarray:
        """P_n(m) = min(energy_power_n, radio cap_n), power unit; shape (N,)."""
        _, _, cap = self._arrays()
        return np.minimum(self.energy_power(m), cap)

    def power_slope(self, m: np.ndarray) -> np.ndarray:
        """dP_n/dm_n (the Jacobian of P is diagonal); 0 where the radio cap binds; shape (N,)."""
        e, _, cap = self._arrays()
        slope = -2.0 * e * self.split_params / (self.channel_uses_per_token * self.power_unit_j)
        return np.where(self.energy_power(m) < cap, slope, 0.0)

    def memory_bounds(self) -> np.ndarray:
        """Largest m_n the node's memory allows: memory_bytes_n / model_bytes; shape (N,)."""
        return np.array([nd.memory_bytes for nd in self.nodes]) / self.model_bytes

    def energy_bounds(self) -> np.ndarray:
        """Largest m_n with P_n(m) >= min_power; may be negative (node cannot even run s_rep)."""
        e, E, _ = self._arrays()
        spare = E - 2.0 * e * self.replicated_params - \
            self.channel_uses_per_token * self.power_unit_j * self.min_power
        return spare / (2.0 * e * self.split_params)

    def upper_bounds(self) -> np.ndarray:
        """u_n = min(memory bound, energy bound), clipped at 0 from below; shape (N,)."""
        return np.maximum(np.minimum(self.memory_bounds(), self.energy_bounds()), 0.0)

    def validate(self) -> None:
        """Raise ValueError with the reason and the fix if no feasible assignment exists."""
        mem = self.memory_bounds()
        if mem.sum() < 1.0:
            total = sum(nd.memory_bytes for nd in self.nodes)
            raise ValueError(f"total node memory {total / 1e9:.3g} GB is smaller than the model "
                             f"{self.model_bytes / 1e9:.3g} GB: add nodes/memory or quantize the weights")
        eb = self.energy_bounds()
        for nd, b in zip(self.nodes, eb):
            if b < 0:
                raise ValueError(f"node {nd.name!r}: energy budget {nd.energy_budget_per_token_j:.3g} "
                                 "J/token does not even cover the replicated layers plus the minimum "
                                 "transmit energy; raise its budget or lower min_power")
        if self.upper_bounds().sum() < 1.0:
            raise ValueError("the energy budgets cannot cover the computation of the whole model "
                             f"(sum of per-node energy/memory bounds = {self.upper_bounds().sum():.3g} < 1); "
                             "raise energy_budget_per_token_j, lower min_power or add nodes")


@dataclass(frozen=True)
class ConstraintReport:
    """Constraint check of one assignment. Slacks >= 0 mean satisfied (shapes (N,))."""

    ok: bool
    simplex_error: float          #: |sum m - 1|
    min_fraction: float           #: min_n m_n (must be >= 0)
    memory_slack_bytes: np.ndarray  #: memory_n - m_n model_bytes
    energy_slack_j: np.ndarray      #: E_n^max - compute_n - K power_unit_j P_n(m)
    power: np.ndarray               #: P_n(m), power unit
    violations: tuple[str, ...]


def check_constraints(m: Sequence[float], problem: AssignmentProblem, tol: float = 1e-9) -> ConstraintReport:
    """Check simplex, memory and energy constraints of assignment m (shape (N,)); never raises."""
    m = np.asarray(m, dtype=float)
    if m.shape != (problem.n_nodes,):
        raise ValueError(f"assignment has shape {m.shape}, expected ({problem.n_nodes},)")
    violations = []
    simplex_error = abs(float(m.sum()) - 1.0)
    if simplex_error > tol:
        violations.append(f"fractions sum to {m.sum():.9g}, not 1")
    if m.min() < -tol:
        violations.append(f"negative fraction {m.min():.3g}")
    mem_slack = np.array([nd.memory_bytes for nd in problem.nodes]) - m * problem.model_bytes
    P = problem.power(m)
    E = np.array([nd.energy_budget_per_token_j for nd in problem.nodes])
    energy_slack = E - problem.compute_energy_j(m) - \
        problem.channel_uses_per_token * problem.power_unit_j * P
    for nd, ms, p in zip(problem.nodes, mem_slack, P):
        if ms < -tol * problem.model_bytes:
            violations.append(f"node {nd.name!r}: memory exceeded by {-ms / 1e9:.3g} GB")
        if p < problem.min_power * (1 - 1e-9):
            violations.append(f"node {nd.name!r}: energy budget leaves P={p:.3g} < min_power "
                              f"{problem.min_power:.3g}")
    return ConstraintReport(ok=not violations, simplex_error=simplex_error, min_fraction=float(m.min()),
                            memory_slack_bytes=mem_slack, energy_slack_j=energy_slack, power=P,
                            violations=tuple(violations))


def equal_split(n_nodes: int) -> np.ndarray:
    """Baseline: m_n = 1/N; shape (N,)."""
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
    return np.full(n_nodes, 1.0 / n_nodes)


def compute_proportional_split(nodes: Sequence[NodeModel]) -> np.ndarray:
    """Baseline: m_n proportional to compute_flops_n (equal compute time per node); shape (N,)."""
    f = np.array([nd.compute_flops for nd in nodes], dtype=float)
    return f / f.sum()


_FAST_OPTIONS = {"mmse": {"init": "channel-inversion"}}


def heterogeneous_4node_problem(n_rx: int = 2, n_tx: int = 1, n_streams: int = 1,
                                noise_var: float = 0.1, method: str = "mmse",
                                sampler: ChannelSampler | None = None,
                                design_options: dict | None = None) -> AssignmentProblem:
    """Llama-2-7B (fp16 weights, LM head replicated) on `testbed.optim.nodes.heterogeneous_4node`.

    K = 32 layers x 4096 / L channel uses per token, power_unit_j = 1 uJ (1 W at 1 Msym/s),
    min_power 0.01. At the equal split the per-node powers are about (3.1, 1.6, 1.5, 1.8); the
    Pis' power falls ~8x faster with m than the Orins', so neither the equal nor the
    compute-proportional split balances the nodes. `design_options` None picks fast settings
    (mmse: a single channel-inversion start, ~3 ms per solve for N = 4, N_r = 2).
    """
    from testbed.optim.latency_shapes import LLAMA2_7B
    from testbed.optim.nodes import heterogeneous_4node
    return AssignmentProblem.from_shapes(heterogeneous_4node(), LLAMA2_7B, bytes_per_param=2.0,
                                         n_rx=n_rx, n_tx=n_tx, n_streams=n_streams,
                                         noise_var=noise_var, method=method, sampler=sampler,
                                         design_options=dict(design_options if design_options is not None
                                                             else _FAST_OPTIONS.get(method, {})))
