"""Model assignment by stochastic successive convex approximation (SSCA), and its evaluation.

Problem (DESIGN.md section 3, slow timescale):

    minimize_m  f(m) = E_H[ min_{A,B} MSE(A, B; P(m)) ]
    s.t.        sum m = 1, m >= 0, m_n model_bytes <= memory_n, P_n(m) >= min_power

with P(m) from `AssignmentProblem.power` (energy budget minus compute energy, per channel use).
The constraints form the capped simplex {sum m = 1, 0 <= m <= u} (`AssignmentProblem.upper_bounds`).

SSCA iteration t = 1, 2, ...:
1. draw H_t from the channel sampler (training stream), P_t = P(m_t);
2. solve the fast problem with `design_transceiver(H_t, P_t, noise_var, method)`; its MSE is the
   sample objective;
3. gradient in m by the chain rule through the diagonal map P(m):
   g_n = dMSE*/dP_n * dP_n/dm_n, with dMSE*/dP_n from the envelope theorem
   (`testbed.optim.assign_gradient`: -mu_n of the per-node power-constrained LS at the designed A
   for non-ZF methods; the ZF max-ratio subgradient for "zf-sdr"), or by central finite differences
   of the re-solved design (``gradient="fd"``, 2N extra solves, same design seed on both sides);
4. running gradient u_t = (1 - rho_t) u_{t-1} + rho_t g_t;
5. surrogate: m_hat = argmin_{m feasible} u_t^T (m - m_t) + tau ||m - m_t||^2
   = projection of m_t - u_t / (2 tau) onto the capped simplex (exact, `project_capped_simplex`);
6. m_{t+1} = (1 - gamma_t) m_t + gamma_t m_hat (a convex combination: stays feasible).
Step sizes rho_t = t^-a_rho, gamma_t = gamma0 t^-a_gamma with 0.5 < a_rho < a_gamma <= 1, so that
rho_t -> 0, sum rho = inf, sum rho^2 < inf, sum gamma = inf, sum gamma^2 < inf and
gamma_t / rho_t -> 0 (the conditions of the SSCA convergence theorem, Liu et al., "Stochastic
successive convex approximation for non-convex constrained stochastic optimization", IEEE TSP 2019).
`tau=None` sets tau = max_n |u_1,n| (so the first unconstrained step moves each coordinate <= 0.5).

Randomness: one integer `seed` gives independent streams via numpy SeedSequence spawn keys:
(0,) training channels, (1,) held-out evaluation channels, (2,)/(3,) design randomization for
training/evaluation. Held-out draws are therefore independent of the training draws, and every
assignment evaluated with the same seed sees the same channels (paired comparison).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from testbed.optim.assign_gradient import (mmse_value_and_power_gradient, project_capped_simplex,
                                           zf_value_and_power_gradient)
from testbed.optim.assign_problem import (AssignmentProblem, ConstraintReport, check_constraints,
                                          compute_proportional_split, equal_split, rayleigh_sampler)

__all__ = ["AssignmentProblem", "AssignmentResult", "TraceEntry", "MseEvaluation", "ssca_assign",
           "evaluate_average_mse", "fast_problem", "check_step_sizes", "step_sizes", "check_constraints",
           "equal_split", "compute_proportional_split", "rayleigh_sampler", "ConstraintReport"]

TRAIN_STREAM, EVAL_STREAM, TRAIN_DESIGN_STREAM, EVAL_DESIGN_STREAM = 0, 1, 2, 3


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(stream,)))


def check_step_sizes(a_rho: float, a_gamma: float, gamma0: float = 1.0) -> None:
    """Raise ValueError unless rho_t = t^-a_rho, gamma_t = gamma0 t^-a_gamma meet the SSCA conditions.

    Needs 0.5 < a_rho < a_gamma <= 1 (rho, gamma -> 0; sum = inf; sum of squares < inf;
    gamma/rho -> 0) and 0 < gamma0 <= 1 (gamma_t in (0, 1] keeps the iterate a convex combination).
    """
    if not 0.5 < a_rho < a_gamma <= 1.0:
        raise ValueError(f"step-size exponents must satisfy 0.5 < a_rho < a_gamma <= 1, got "
                         f"a_rho={a_rho}, a_gamma={a_gamma} (e.g. a_rho=0.6, a_gamma=0.9)")
    if not 0.0 < gamma0 <= 1.0:
        raise ValueError(f"gamma0 must be in (0, 1], got {gamma0}")


def step_sizes(t: int | np.ndarray, a_rho: float = 0.6, a_gamma: float = 0.9,
               gamma0: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(rho_t, gamma_t) for iteration(s) t >= 1."""
    t = np.asarray(t, dtype=float)
    return t ** -a_rho, gamma0 * t ** -a_gamma


def _default_design(H, P, noise_var, method, n_streams, rng, **options):
    try:
        from testbed.optim.transceiver import design_transceiver
    except ImportError as exc:  # pragma: no cover - only while the module is missing
        raise ImportError("testbed.optim.transceiver.design_transceiver is needed for the fast "
                          "problem; pass design=... to use another solver") from exc
    d = design_transceiver(H, P, noise_var, method=method, n_streams=n_streams, rng=rng, **options)
    return np.asarray(d.A), float(d.mse)


#: fast-problem solver: (H, P, noise_var, method, n_streams, rng, **design_options) -> (A (N_r, L), mse)
DesignFn = Callable[..., tuple]


def _solve(problem: AssignmentProblem, design: DesignFn, H, P, rng):
    return design(H, P, problem.noise_var, problem.method, problem.n_streams, rng,
                  **problem.design_options)


def fast_problem(problem: AssignmentProblem, H: np.ndarray, P: np.ndarray, rng: np.random.Generator,
                 gradient: str = "envelope", design: DesignFn | None = None,
                 fd_rel_step: float = 1e-4) -> tuple[float, np.ndarray]:
    """Solve min_{A,B} MSE at powers P (shape (N,)); return (mse, dMSE*/dP (N,)).

    gradient="envelope": from the designed A (module docstring); "fd": central differences
    of the re-solved design with relative step `fd_rel_step`, each side solved with the design
    seed of this call.
    """
    design = design or _default_design
    seed = int(rng.integers(2 ** 63))
    A, mse = _solve(problem, design, H, P, np.random.default_rng(seed))
    if gradient == "envelope":
        if problem.method == "zf-sdr":
            _, gP = zf_value_and_power_gradient(H, A, P, problem.noise_var)
        else:
            _, gP = mmse_value_and_power_gradient(H, A, P, problem.noise_var)
    elif gradient == "fd":
        gP = np.empty(P.size)
        for n in range(P.size):
            h = fd_rel_step * P[n]
            vals = []
            for sgn in (1.0, -1.0):
                Pp = P.copy()
                Pp[n] += sgn * h
                vals.append(_solve(problem, design, H, Pp, np.random.default_rng(seed))[1])
            gP[n] = (vals[0] - vals[1]) / (2 * h)
    else:
        raise ValueError(f"gradient must be 'envelope' or 'fd', got {gradient!r}")
    return mse, gP


@dataclass(frozen=True)
class TraceEntry:
    """One SSCA iteration: sampled MSE at m_t, running objective estimate, m_t (N,)."""

    iteration: int
    sample_mse: float
    objective_estimate: float
    m: np.ndarray


@dataclass(frozen=True)
class AssignmentResult:
    """SSCA output. `ratios` raw (N,), `ratios_rounded` after the optional rounding callable."""

    ratios: np.ndarray
    ratios_rounded: np.ndarray | None
    trace: tuple[TraceEntry, ...]
    constraints: ConstraintReport
    constraints_rounded: ConstraintReport | None
    n_iter: int
    wall_time_s: float
    tau: float

    def objective_trace(self) -> np.ndarray:
        """Running objective estimates, shape (n_iter,)."""
        return np.array([e.objective_estimate for e in self.trace])

    def ratio_trace(self) -> np.ndarray:
        """Iterates m_t, shape (n_iter, N)."""
        return np.array([e.m for e in self.trace])


def ssca_assign(problem: AssignmentProblem, n_iter: int = 200, seed: int = 0,
                m0: Sequence[float] | None = None, tau: float | None = None,
                a_rho: float = 0.6, a_gamma: float = 0.9, gamma0: float = 0.5,
                gradient: str = "envelope", design: DesignFn | None = None,
                rounding: Callable[[np.ndarray], np.ndarray] | None = None) -> AssignmentResult:
    """Run SSCA for `n_iter` iterations (module docstring) and return the assignment.

    m0 defaults to the equal split projected onto the feasible set. `rounding` maps ratios to
    ratios the sharding can realize (KV groups, MLP columns); its output is checked too.
    Raises ValueError if the problem is infeasible or the step sizes break the SSCA conditions.
    """
    problem.validate()
    check_step_sizes(a_rho, a_gamma, gamma0)
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    upper = problem.upper_bounds()
    start = equal_split(problem.n_nodes) if m0 is None else np.asarray(m0, dtype=float)
    m = project_capped_simplex(start, upper)
    chan_rng, design_rng = _rng(seed, TRAIN_STREAM), _rng(seed, TRAIN_DESIGN_STREAM)
    u = np.zeros(problem.n_nodes)
    obj = 0.0
    trace = []
    t0 = time.perf_counter()
    for t in range(1, n_iter + 1):
        H = problem.draw_channel(chan_rng)
        P = problem.power(m)
        mse, gP = fast_problem(problem, H, P, design_rng, gradient=gradient, design=design)
        g = gP * problem.power_slope(m)
        rho, gamma = step_sizes(t, a_rho, a_gamma, gamma0)
        u = (1 - rho) * u + rho * g
        obj = (1 - rho) * obj + rho * mse
        trace.append(TraceEntry(t, float(mse), float(obj), m.copy()))
        if tau is None:
            tau = float(np.max(np.abs(u))) or 1.0
        m_hat = project_capped_simplex(m - u / (2.0 * tau), upper)
        m = (1 - gamma) * m + gamma * m_hat
    wall = time.perf_counter() - t0
    rounded = None if rounding is None else np.asarray(rounding(m.copy()), dtype=float)
    return AssignmentResult(ratios=m, ratios_rounded=rounded, trace=tuple(trace),
                            constraints=check_constraints(m, problem),
                            constraints_rounded=None if rounded is None else check_constraints(rounded, problem),
                            n_iter=n_iter, wall_time_s=wall, tau=float(tau))


@dataclass(frozen=True)
class MseEvaluation:
    """Average MSE of one assignment over held-out channel draws (linear)."""

    mean: float
    stderr: float
    values: np.ndarray  #: per-draw MSE, shape (n_draws,)


def evaluate_average_mse(problem: AssignmentProblem, m: Sequence[float], n_draws: int = 500,
                         seed: int = 0, design: DesignFn | None = None) -> MseEvaluation:
    """Average optimal MSE of assignment m over `n_draws` held-out channel draws.

    Uses the evaluation streams of `seed` (independent of `ssca_assign`'s training draws); the
    same seed gives the same channels for every m. Raises ValueError if m violates a constraint.
    """
    report = check_constraints(m, problem)
    if not report.ok:
        raise ValueError("assignment violates its constraints: " + "; ".join(report.violations))
    design = design or _default_design
    P = report.power
    chan_rng, design_rng = _rng(seed, EVAL_STREAM), _rng(seed, EVAL_DESIGN_STREAM)
    vals = np.empty(n_draws)
    for i in range(n_draws):
        H = problem.draw_channel(chan_rng)
        vals[i] = _solve(problem, design, H, P, np.random.default_rng(int(design_rng.integers(2 ** 63))))[1]
    return MseEvaluation(mean=float(vals.mean()), stderr=float(vals.std(ddof=1) / np.sqrt(n_draws))
                         if n_draws > 1 else float("nan"), values=vals)
