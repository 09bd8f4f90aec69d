"""Each node's channel phase between a sounding and the payload it serves (pure numpy).

On a bench the payload frame follows its sounding by the design and the control round trip
plus the radios' scheduling lead: ~0.1-0.2 s of receiver clock on emulated Plutos (65,536
samples of TX buffering per radio). A residual carrier offset turns each node's channel by
2 pi df t over that gap (0.07 Hz over 0.2 s is 5 deg, 0.8 % of the node's signal power as
error, comparable to the noise at 20 dB), and the per-round pilots only see the phase at the
sounding. `PhaseTracker` estimates each node's phase rate from successive soundings of the
same (static) channel,

    w_n = angle(sum_{r,t} conj(H_prev[n, r, t]) H[n, r, t]) / (t - t_prev)     (rad/sample),

smoothed over soundings, and predicts the rotation exp(j w_n (t_payload - t_sounding)) that the
payload will see. Since every transceiver design is invariant to a per-node phase (A^H (H_n
e^{j phi}) (B_n e^{-j phi}) = A^H H_n B_n, same powers), the round applies it to the precoders:
B_n e^{-j phi_n} -- the design of the channel at the payload's time, for reused designs too.

It assumes one fading block: when a node's channel changed more than a phase (normalized
correlation below ``min_correlation`` or magnitude outside ``magnitude_band``) or the soundings
are further apart than ``max_gap_samples``, the rate is dropped and estimated afresh. Use it on
static or slowly fading benches (radios, `channel.realization: fixed`), not on a simulated bench
that draws a new block per round (with one receive antenna a redrawn channel can pass the
correlation check).
"""
from __future__ import annotations

import numpy as np


class PhaseTracker:
    """Per-node phase rate from successive soundings (module docstring).

    smoothing: weight of the newest rate measurement (0..1]; min_correlation: normalized
    correlation |<H_prev, H>| / (|H_prev| |H|) per node below which the channel counts as new;
    magnitude_band: allowed |H| / |H_prev| per node; max_gap_samples: soundings further apart
    (receiver samples) reset the rate (None: no limit).
    """

    def __init__(self, smoothing: float = 0.5, min_correlation: float = 0.9,
                 magnitude_band: tuple[float, float] = (0.8, 1.25),
                 max_gap_samples: int | None = None) -> None:
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.smoothing = float(smoothing)
        self.min_correlation = float(min_correlation)
        self.magnitude_band = (float(magnitude_band[0]), float(magnitude_band[1]))
        self.max_gap_samples = max_gap_samples
        self._last: tuple[int, np.ndarray] | None = None
        self._epoch = 0
        #: per-node phase rate, rad per receiver sample (None until two soundings agree)
        self.rate: np.ndarray | None = None

    def update(self, t: int, H: np.ndarray, epoch: int = 0) -> None:
        """A sounding's estimate ``H`` ``(N, N_r, N_t)`` whose pilots started at receiver
        sample ``t``; ``epoch``: the time base's generation (a re-sync turns every node's
        phase: the soundings before it do not count)."""
        H = np.asarray(H, dtype=complex)
        if epoch != self._epoch:
            self.reset()
            self._epoch = epoch
        last, self._last = self._last, (int(t), H.copy())
        if last is None:
            return
        t0, H0 = last
        gap = int(t) - t0
        if (H0.shape != H.shape or gap <= 0
                or (self.max_gap_samples is not None and gap > self.max_gap_samples)):
            self.rate = None
            return
        inner = np.sum(np.conj(H0) * H, axis=tuple(range(1, H.ndim)))
        n0 = np.sqrt(np.sum(np.abs(H0) ** 2, axis=tuple(range(1, H.ndim))))
        n1 = np.sqrt(np.sum(np.abs(H) ** 2, axis=tuple(range(1, H.ndim))))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.abs(inner) / (n0 * n1)
            mag = n1 / n0
        lo, hi = self.magnitude_band
        if not np.all((corr >= self.min_correlation) & (mag >= lo) & (mag <= hi)):
            self.rate = None                 # a new fading block: start over
            return
        measured = np.angle(inner) / gap
        if self.rate is None:
            self.rate = measured
        else:
            self.rate = (1.0 - self.smoothing) * self.rate + self.smoothing * measured

    def rotation(self, t: int) -> np.ndarray | None:
        """Predicted per-node channel rotation ``(N,)`` complex at receiver sample ``t``,
        relative to the last sounding; None while no rate is known."""
        if self.rate is None or self._last is None:
            return None
        return np.exp(1j * self.rate * (int(t) - self._last[0]))

    def reset(self) -> None:
        """Forget the soundings and the rate (e.g. after a re-sync of the time base)."""
        self._last, self.rate = None, None
