"""How long a calibration stays good: AirComp MSE vs time since calibration, and a guard.

Closed form. After calibration node n is left with a residual CFO df_n (Hz), a residual sample
clock offset de_n (dimensionless), Wiener phase noise of 3 dB linewidth lw (Hz; free-running
oscillator or TCXO wander) and PLL phase noise (Ornstein-Uhlenbeck, rms sigma rad, corner B Hz).
At t seconds after calibration its phase error is theta_n = 2 pi df_n t + W_n(t) + P_n(t) -
P_n(0), var W = 2 pi lw t, var(P(t) - P(0)) = 2 sigma^2 (1 - exp(-2 pi B t)) (bounded), and its
timing error delta_n = de_n fs t samples. Gaussian phase: E e^{j theta} = e^{j 2 pi df t}
exp(-pi lw t - sigma^2 (1 - exp(-2 pi B t))). With zero-forcing (A^H H_n B_n = 1 per stream) and
unit-power white symbols at one sample per symbol, node n adds (exactly, for a flat spectrum)

* CSI from calibration time (``csi="calibration"``): E|e^{j theta} x(t - delta) - x(t)|^2
  = 2 (1 - exp(-pi lw t - sigma^2 (1 - exp(-2 pi B t))) cos(2 pi df t) sinc(delta));
* CSI re-estimated in every frame (``csi="per_round"``): the phase is re-measured, only the
  part of the delayed signal not captured by the flat estimate remains, 1 - sinc(delta)^2.

MSE(t) = MSE_0 + sum_n (term_n). `doubling_time_s` solves MSE(t) = 2 MSE_0 (first crossing).
With df_n unknown but of standard deviation s_f the expected phase term is
2 (1 - exp(-pi lw t - (2 pi s_f t)^2 / 2)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

CSI_MODES = ("calibration", "per_round")


def excess_mse(t_s: np.ndarray | float, residual_cfo_hz: Sequence[float],
               residual_sro_ppm: Sequence[float], sample_rate_hz: float,
               linewidth_hz: float = 0.0, csi: str = "calibration",
               pll_rms_deg: float = 0.0, pll_corner_hz: float = 0.0) -> np.ndarray:
    """Excess AirComp MSE (per channel use, signal-model units) at t_s seconds (scalar or (T,))
    after calibration; residuals per node (N,); phase noise per node: Wiener ``linewidth_hz``
    (Hz) and PLL ``pll_rms_deg`` (deg rms) with corner ``pll_corner_hz`` (Hz). With per-round
    CSI the (stationary) phase noise is already in MSE_0 and only the timing term grows.
    Returns shape of t_s."""
    if csi not in CSI_MODES:
        raise ValueError(f"csi must be one of {CSI_MODES}, got {csi!r}")
    t = np.asarray(t_s, float)[..., None]
    df = np.asarray(residual_cfo_hz, float)
    de = np.asarray(residual_sro_ppm, float) * 1e-6
    delta = de * sample_rate_hz * t
    if csi == "calibration":
        pll_var = 2 * np.radians(pll_rms_deg) ** 2 * (1 - np.exp(-2 * np.pi * pll_corner_hz * t))
        term = 2 * (1 - np.exp(-np.pi * linewidth_hz * t - pll_var / 2)
                    * np.cos(2 * np.pi * df * t) * np.sinc(delta))
    else:
        term = 1 - np.sinc(delta) ** 2
    return term.sum(axis=-1)


def doubling_time_s(mse0: float, residual_cfo_hz: Sequence[float],
                    residual_sro_ppm: Sequence[float], sample_rate_hz: float,
                    linewidth_hz: float = 0.0, csi: str = "calibration",
                    t_max_s: float = 1e7, pll_rms_deg: float = 0.0,
                    pll_corner_hz: float = 0.0) -> float:
    """First t (s) with excess_mse(t) >= mse0 (MSE doubled); inf if not before t_max_s.
    Arguments as `excess_mse`."""
    if not mse0 > 0:
        raise ValueError(f"mse0 must be > 0 (linear), got {mse0}")
    f = lambda t: float(excess_mse(t, residual_cfo_hz, residual_sro_ppm, sample_rate_hz,
                                   linewidth_hz, csi, pll_rms_deg, pll_corner_hz)) - mse0
    lo, hi = 0.0, 1e-9
    while f(hi) < 0:
        lo, hi = hi, hi * 1.5
        if hi > t_max_s:
            return float("inf")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def simulate_mse_vs_time(run_round: Callable[[], float], wait_samples: Callable[[int], None],
                         delays_samples: Sequence[int], rounds: int = 4) -> np.ndarray:
    """Measured MSE at each delay since calibration (samples, increasing), shape (T,).

    run_round(): one AirComp round, returns its per-channel-use MSE; wait_samples(n): let n
    samples pass (SimAir.advance on the simulator, a sleep on hardware). The MSE at each delay
    is the mean over ``rounds`` rounds started at that delay.
    """
    out, elapsed = [], 0
    for d in delays_samples:
        if d < elapsed:
            raise ValueError("delays_samples must be increasing and beyond the rounds already run")
        wait_samples(int(d - elapsed))
        elapsed = int(d)
        out.append(float(np.mean([run_round() for _ in range(rounds)])))
    return np.array(out)


def first_doubling(delays_samples: Sequence[int], mse: Sequence[float], mse0: float,
                   sample_rate_hz: float) -> float:
    """First time (s) the measured MSE curve reaches 2 mse0, linearly interpolated; inf if never."""
    d = np.asarray(delays_samples, float) / sample_rate_hz
    m = np.asarray(mse, float)
    above = np.nonzero(m >= 2 * mse0)[0]
    if above.size == 0:
        return float("inf")
    i = int(above[0])
    if i == 0:
        return float(d[0])
    return float(d[i - 1] + (2 * mse0 - m[i - 1]) * (d[i] - d[i - 1]) / (m[i] - m[i - 1]))


@dataclass
class CalibrationGuard:
    """Says whether a calibration is still good. created_s: when it was made (any clock, s);
    valid_for_s: its validity (e.g. `doubling_time_s` x a safety factor)."""

    created_s: float
    valid_for_s: float

    def age(self, now_s: float) -> float:
        """Seconds since calibration."""
        return float(now_s - self.created_s)

    def check(self, now_s: float) -> str:
        """"ok" while age <= valid_for_s, then "expired" (recalibrate)."""
        return "ok" if self.age(now_s) <= self.valid_for_s else "expired"

    def expires_at(self) -> float:
        """Clock value (s) at which the calibration expires."""
        return float(self.created_s + self.valid_for_s)
