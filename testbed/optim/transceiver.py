"""One entry point for the over-the-air all-reduce transceiver: `design_transceiver`.

Methods (DESIGN.md section 3):

* ``"zf-sdr"``: the paper's zero-forcing design, receiver by semidefinite relaxation
  (`testbed.optim.zf_sdr`); reports a provable lower bound on the ZF MSE.
* ``"mmse"``: alternating Wiener receiver / power-constrained least-squares precoders
  (`testbed.optim.mmse`); not zero-forcing, better with weak nodes; exposes power multipliers.
* ``"siso-optimal"``: closed-form global optimum for N_t = N_r = 1 (`testbed.optim.siso`).
* ``"channel-inversion"``: MRC-style receiver, every node inverts, weakest node sets the scale.
* ``"random"``: random receiver direction with zero-forcing precoders (seeded).

Every returned design satisfies tr(B_n B_n^H) <= P_n (checked; rounding excess is scaled away).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from testbed.optim.baselines import solve_channel_inversion, solve_random
from testbed.optim.mse import aircomp_mse, enforce_power, node_powers

METHODS = ("zf-sdr", "mmse", "siso-optimal", "channel-inversion", "random")


@dataclasses.dataclass(frozen=True)
class TransceiverDesign:
    """A designed transceiver and its figures.

    ``A`` (N_r, L) receive beamformer, ``B`` (N, N_t, L) precoders, ``mse`` = aircomp_mse(H, A, B,
    noise_var) (linear, summed over the L streams, per channel use), ``lower_bound`` a proven lower
    bound on the MSE of the method's design class (zf-sdr: on any ZF design; siso-optimal: the
    global optimum itself) or None, ``method`` the method name, ``info`` method details plus
    ``runtime_s`` (wall seconds) and ``power`` (N,) the power each node uses.
    """

    A: np.ndarray
    B: np.ndarray
    mse: float
    lower_bound: float | None
    method: str
    info: dict[str, Any]

    @property
    def n_streams(self) -> int:
        """Streams per channel use, L."""
        return int(self.A.shape[1])


def _solve_zf_sdr(*args, **options):
    from testbed.optim.zf_sdr import solve_zf_sdr             # cvxpy import only when used
    return solve_zf_sdr(*args, **options)


def _solve_mmse(*args, **options):
    from testbed.optim.mmse import solve_mmse
    return solve_mmse(*args, **options)


def _solve_siso(*args, **options):
    from testbed.optim.siso import solve_siso_optimal
    return solve_siso_optimal(*args, **options)


_SOLVERS = {"zf-sdr": _solve_zf_sdr, "mmse": _solve_mmse, "siso-optimal": _solve_siso,
            "channel-inversion": solve_channel_inversion, "random": solve_random}


def default_n_streams(N_r: int, N_t: int) -> int:
    """Default L: min(N_t, N_r) (1 for single-antenna nodes): every transmit antenna carries a stream."""
    return min(N_t, N_r)


def validate_problem(H, P, noise_var, n_streams) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Check and normalize inputs; returns ``(H, P, noise_var, L)`` or raises ValueError.

    ``H`` (N, N_r, N_t) finite; ``P`` (N,) or a scalar for all nodes, > 0 finite; ``noise_var`` > 0
    finite; ``n_streams`` None or an int with 1 <= L <= min(N_r, N_t).
    """
    H = np.asarray(H)
    if H.ndim != 3:
        raise ValueError(f"H must have shape (N, N_r, N_t), got {H.shape}; for single-antenna nodes "
                         "add the last axis: H[:, :, None]")
    if min(H.shape) < 1:
        raise ValueError(f"H must have N, N_r, N_t >= 1, got shape {H.shape}")
    H = H.astype(complex)
    if not np.all(np.isfinite(H)):
        raise ValueError("H contains NaN or infinite entries")
    N, N_r, N_t = H.shape
    P = np.asarray(P, dtype=float)
    if P.ndim == 0:
        P = np.full(N, float(P))
    if P.shape != (N,):
        raise ValueError(f"P must have shape (N,) = ({N},) (one power budget per node) or be a scalar, got {P.shape}")
    if not np.all(np.isfinite(P)) or np.any(P <= 0):
        raise ValueError(f"every power budget P_n must be finite and > 0 (linear, per channel use), got {P}")
    if not np.isscalar(noise_var) and np.ndim(noise_var) != 0:
        raise ValueError(f"noise_var must be a scalar (linear variance per receive antenna), got shape {np.shape(noise_var)}")
    noise_var = float(noise_var)
    if not np.isfinite(noise_var) or noise_var <= 0:
        raise ValueError(f"noise_var must be finite and > 0 (linear, not dB), got {noise_var}")
    if np.any(np.sum(np.abs(H) ** 2, axis=(1, 2)) == 0):
        bad = np.flatnonzero(np.sum(np.abs(H) ** 2, axis=(1, 2)) == 0).tolist()
        raise ValueError(f"nodes {bad} have an all-zero channel; drop them from H and P")
    if n_streams is None:
        L = default_n_streams(N_r, N_t)
    else:
        if isinstance(n_streams, bool) or not isinstance(n_streams, (int, np.integer)):
            raise ValueError(f"n_streams must be an int, got {n_streams!r}")
        L = int(n_streams)
        if L < 1:
            raise ValueError(f"n_streams must be >= 1, got {L}")
        if L > N_r:
            raise ValueError(f"n_streams L = {L} exceeds the receive antennas N_r = {N_r}; use L <= {N_r}")
        if L > N_t:
            raise ValueError(f"n_streams L = {L} exceeds the transmit antennas N_t = {N_t}; use L <= {N_t}")
    return H, P, noise_var, L


def design_transceiver(H, P, noise_var: float, method: str = "zf-sdr", n_streams: int | None = None,
                       rng=None, **options) -> TransceiverDesign:
    """Design receiver A and precoders B_n for the over-the-air sum.

    ``H`` complex (N, N_r, N_t) channels; ``P`` (N,) linear power budgets per channel use
    (tr(B_n B_n^H) <= P_n), or a scalar shared by all; ``noise_var`` linear complex noise variance
    per receive antenna; ``method`` one of METHODS; ``n_streams`` L (default min(N_t, N_r), i.e.
    1 for single-antenna nodes); ``rng`` None (seed 0, deterministic), an int seed or a
    numpy Generator, used by randomized steps; ``options`` method-specific (zf-sdr: n_random,
    compute_bound, solvers; mmse: init, tol, max_iter, n_random). Raises ValueError on bad input.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    H, P, noise_var, L = validate_problem(H, P, noise_var, n_streams)
    if isinstance(rng, np.random.Generator):
        gen = rng
    elif rng is None or isinstance(rng, (int, np.integer)):
        gen = np.random.default_rng(0 if rng is None else int(rng))
    else:
        raise ValueError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")
    t0 = time.perf_counter()
    try:
        A, B, bound, info = _SOLVERS[method](H, P, noise_var, L, gen, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ValueError(f"method {method!r} got an unknown option: {exc}") from None
        raise
    runtime = time.perf_counter() - t0
    B = enforce_power(B, P)
    info = dict(info, runtime_s=runtime, power=node_powers(B))
    return TransceiverDesign(A=A, B=B, mse=aircomp_mse(H, A, B, noise_var), lower_bound=bound,
                             method=method, info=info)
