"""Frame layout, Zadoff-Chu preamble and pilots, and preamble detection (pure numpy).

A frame on the air, in samples from the frame start::

    [ preamble | guard | pilots: n_nodes * n_tx slots of pilot_len | silence (noise_len) | payload ]

* Preamble: a Zadoff-Chu sequence (constant amplitude, ideal periodic autocorrelation), sent
  by every node on its antenna 0 at the same time; the receiver finds the frame start as the
  peak of the correlation energy summed over its antennas.
* Pilots: time-orthogonal. Slot ``n * n_tx + t`` carries a ZC pilot from antenna t of node n;
  everything else is silent in that slot, so the LS estimate of column t of H_n is one
  correlation (`testbed.phy.estimation`). Pilots are optional (``n_pilot_slots = 0``).
* Silence: ``noise_len`` samples where nobody transmits; the receiver estimates the noise
  variance from them (`testbed.phy.round.estimate_noise_var`). Usually only in sounding frames.
* Payload: ``payload_len`` samples (channel uses), layout decided by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import gcd

import numpy as np

from testbed.errors import TestbedError


class DetectionError(TestbedError):
    """No preamble was found in a received window (too weak, or outside the window)."""


def zadoff_chu(length: int, root: int = 1) -> np.ndarray:
    """Zadoff-Chu sequence, complex ``(length,)``, |x_k| = 1:
    x_k = exp(-j pi u k (k + (length mod 2)) / length); root u must be coprime with length."""
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    if gcd(root, length) != 1:
        raise ValueError(f"root {root} must be coprime with length {length}")
    return _zadoff_chu(int(length), int(root)).copy()


@lru_cache(maxsize=32)
def _zadoff_chu(length: int, root: int) -> np.ndarray:
    # cached: every frame of a round and every detection use the same few sequences
    k = np.arange(length)
    return np.exp(-1j * np.pi * root * k * (k + length % 2) / length)


@dataclass(frozen=True)
class FrameLayout:
    """Lengths and offsets of one frame, all in samples."""

    n_nodes: int
    n_tx: int
    payload_len: int
    preamble_len: int = 63
    guard_len: int = 16
    pilot_len: int = 32
    with_pilots: bool = False
    noise_len: int = 0

    # offsets are cached_property: computed once per (immutable) layout, asked for every round
    @cached_property
    def n_pilot_slots(self) -> int:
        return self.n_nodes * self.n_tx if self.with_pilots else 0

    @cached_property
    def pilot_start(self) -> int:
        return self.preamble_len + self.guard_len

    def pilot_slot(self, node: int, antenna: int) -> slice:
        """Sample range of node ``node``'s antenna ``antenna`` pilot slot."""
        if not self.with_pilots:
            raise ValueError("this layout has no pilots")
        i = self.pilot_start + (node * self.n_tx + antenna) * self.pilot_len
        return slice(i, i + self.pilot_len)

    @cached_property
    def noise_slot(self) -> slice:
        """Sample range of the silent segment (empty when ``noise_len`` is 0)."""
        i = self.pilot_start + self.n_pilot_slots * self.pilot_len
        return slice(i, i + self.noise_len)

    @cached_property
    def payload_start(self) -> int:
        return self.noise_slot.stop

    @cached_property
    def total_len(self) -> int:
        return self.payload_start + self.payload_len

    def preamble(self) -> np.ndarray:
        """The preamble, ZC root 1, complex ``(preamble_len,)``."""
        return zadoff_chu(self.preamble_len, 1)

    def pilot(self) -> np.ndarray:
        """The pilot sequence, complex ``(pilot_len,)``, unit amplitude (energy pilot_len)."""
        root = next(u for u in range(2, 2 * self.pilot_len + 3) if gcd(u, self.pilot_len) == 1)
        return zadoff_chu(self.pilot_len, root)


@lru_cache(maxsize=32)
def _lag_matrix(preamble: bytes, search_len: int, dtype) -> tuple[np.ndarray, float, np.ndarray]:
    """T ``(search_len + lp - 1, search_len)`` with T[d + k, d] = conj(p_k), so that
    (y @ T)[r, d] = sum_k y_r[d + k] conj(p_k); ||p||^2; and ``lp`` ones (the lag window's
    energy kernel). ``preamble``: complex128 bytes. Arrays read-only."""
    pc = np.conj(np.frombuffer(preamble, dtype=np.complex128))
    lp = pc.size
    T = np.zeros((search_len + lp - 1, search_len), dtype=dtype)
    for d in range(search_len):
        T[d:d + lp, d] = pc
    T.flags.writeable = False
    ones = np.ones(lp)
    ones.flags.writeable = False
    return T, float(np.vdot(pc, pc).real), ones


def _abs2(z: np.ndarray) -> np.ndarray:
    """re^2 + im^2 of ``z`` (2-D) in its real precision; for complex ``z`` with a contiguous
    last axis the squares of the interleaved components, then the pairs added (two
    operations, the same values)."""
    if z.dtype.kind != "c" or z.strides[-1] != z.itemsize:
        return z.real ** 2 + z.imag ** 2
    sq = z.view(z.real.dtype)
    sq = sq * sq
    return sq[:, 0::2] + sq[:, 1::2]


def detect_frame_start(y: np.ndarray, preamble: np.ndarray, search_len: int,
                       threshold: float = 0.2) -> tuple[int, float]:
    """Find the preamble in ``y`` complex ``(N_r, M)``: the integer lag d in [0, search_len) that
    maximizes sum_r |sum_k y_r[d + k] conj(p_k)|^2, normalized by ||p||^2 times the window energy
    (a value in [0, 1], 1 for a clean preamble). Returns (d, metric); DetectionError when the
    metric at the peak is below ``threshold``."""
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[None]
    p = np.asarray(preamble)
    lp = p.size
    if y.shape[1] < search_len + lp - 1:
        raise ValueError(f"window of {y.shape[1]} samples is too short to search {search_len} lags "
                         f"with a {lp}-sample preamble")
    seg = y[:, :search_len + lp - 1]
    # corr[r, d] = sum_k y_r[d + k] conj(p_k): all antennas and lags in one product with the
    # (cached) banded matrix of the preamble's lags
    lags, p_energy, ones = _lag_matrix(p.astype(np.complex128, copy=False).tobytes(), search_len,
                                       np.complex64 if seg.dtype == np.complex64 else np.complex128)
    corr = seg @ lags                                                   # (N_r, search_len)
    score = _abs2(corr).sum(axis=0)
    win_e = _abs2(seg).sum(axis=0, dtype=np.float64)
    local = np.convolve(win_e, ones, "valid")                          # energy of each lag window
    metric = score / (p_energy * np.maximum(local, 1e-300))
    d = int(metric.argmax())
    if metric[d] < threshold:
        raise DetectionError(f"no preamble found: best normalized correlation {metric[d]:.3f} < "
                             f"{threshold}; raise the transmit power or widen the window")
    return d, float(metric[d])
