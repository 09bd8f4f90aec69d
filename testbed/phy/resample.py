"""Exact band-limited resampling of a finite burst on an affine grid of positions.

A burst of samples x[0..K-1] (zero outside) defines one band-limited signal (Whittaker-Shannon):
x(t) = sum_k x[k] sinc(t - k), t in input samples. `bandlimited_resample` evaluates it at
t_m = first_position + step * m. That is a fractional delay (step 1) and a sampling-rate change
(step 1 + eps) in one call, with no truncated filter: the untruncated sinc sum to rounding even
for a full-band (1 sample per symbol) burst (~1e-20 of the power in double precision, ~1e-13 for
complex64 bursts, which are resampled in single precision), where a finite-tap (e.g. 2 x
128-tap Kaiser-sinc) interpolator loses ~1e-3 at the band edge. `resample_runs` does the same
for a burst with long silences run by run, so that its cost follows the non-zero samples.

Used by the simulated air (node clock -> receiver clock) and by the calibration's transmit
correction (receiver clock -> node clock).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_PAD = 2          # FFT length / span of the input and output positions
# 1/u - cot(u) = sum_j _COT_SERIES[j-1] u^(2j-1), |u| < pi: 2^(2j) |B_2j| / (2j)!, B Bernoulli
_COT_SERIES = (1 / 3, 1 / 45, 2 / 945, 1 / 4725, 2 / 93555, 1382 / 638512875, 4 / 18243225,
               3617 / 162820783125, 87734 / 38979295480125, 349222 / 1531329465290625)


def as_burst(x: np.ndarray) -> np.ndarray:
    """``x`` as complex samples in the precision bursts are resampled, corrected and impaired
    in: complex64 (what radios carry) stays complex64, anything else becomes complex128 (no
    copy when it already is)."""
    x = np.asarray(x)
    return x.astype(np.complex64 if x.dtype == np.complex64 else np.complex128, copy=False)


@lru_cache(maxsize=1)
def _correction_weights() -> np.ndarray:
    """W (Q+1, Q+1), Q = 2 len(_COT_SERIES) - 1: sum_j a_j pi^q_j (tau - kappa)^q_j, q_j = 2j - 1,
    = sum_{i, r} tau^i W[i, r] M_r with the moments M_r of (-kappa)^r (binomial expansion)."""
    Q = 2 * len(_COT_SERIES) - 1
    W = np.zeros((Q + 1, Q + 1))
    for j, a in enumerate(_COT_SERIES, start=1):
        q = 2 * j - 1
        for i in range(q + 1):
            W[i, q - i] += a * np.pi ** q * math.comb(q, i)
    return W


def _powers(v: np.ndarray, n: int) -> np.ndarray:
    """(n, len(v)): row i = v**i, by successive products along contiguous rows (the same values
    as np.vander(v, n, increasing=True).T, several times faster for long v)."""
    out = np.empty((n, v.size), v.dtype)
    out[0] = 1.0
    for i in range(1, n):
        np.multiply(out[i - 1], v, out=out[i])
    return out


def _real_times_complex(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Real ``r`` (P, Q) times complex ``c`` (C, Q) per row of c -> complex (C, P): one real
    BLAS product on c's (re, im) pairs (numpy's mixed complex @ float product does not use
    BLAS, and products on the strided .real / .imag views copy them first)."""
    pairs = np.ascontiguousarray(c).view(r.dtype).reshape(c.shape[0], c.shape[1], 2)
    return np.ascontiguousarray(r @ pairs).view(c.dtype)[..., 0]             # (C, P, 2) -> (C, P)


@lru_cache(maxsize=64)
def _czt_plan(n: int, m: int, step: float, n_fft: int, dtype: type = np.complex128
              ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """Chirps of the chirp-z transform X[j] = sum_k c[k] w^(j k), j < m, w = exp(j 2 pi step /
    n_fft), for inputs of length n (Bluestein: w^(jk) = w^(j^2/2) w^(k^2/2) w^(-(j-k)^2/2)).

    Returns ``(chirp, kernel_fft, n_conv, out_ramp, out_chirp, offsets)``: chirp[i] = w^(i^2/2) for
    i < max(n, m), the FFT (length n_conv) of the convolution kernel w^(-(j-k)^2/2),
    j - k = -(n-1)..m-1, out_ramp[j] = exp(-j pi step j) (the step's part of the Nyquist bin's
    phase, `bandlimited_resample`) and out_chirp = chirp[:m] out_ramp, j < m; computed in
    double precision and stored as ``dtype`` (complex64 or complex128); offsets[j] = step j
    (float64, input samples: the output positions relative to the first). Cached: a node's
    bursts share their length, output length and clock ratio, so a plan is reused every round
    (building one costs about as much as transforming with it)."""
    from scipy.fft import fft, next_fast_len  # imported when used: a light start for roles
    i = np.arange(max(n, m), dtype=float)
    # phase pi step i^2 / n_fft, with the integer part of i^2 reduced modulo 2 n_fft first
    chirp = np.exp(1j * np.pi * (np.mod(i * i, 2.0 * n_fft) / n_fft
                                  + (step - 1.0) * (i * i) / n_fft))
    n_conv = next_fast_len(n + m - 1)
    kernel = np.conj(np.concatenate([chirp[n - 1:0:-1], chirp[:m]]))
    offsets = step * np.arange(m, dtype=float)
    out_ramp = np.exp(-1j * np.pi * np.mod(offsets, 2.0))
    plan = (chirp.astype(dtype), fft(kernel, n_conv).astype(dtype), n_conv,
            out_ramp.astype(dtype), (chirp[:m] * out_ramp).astype(dtype), offsets)
    for a in plan:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False          # shared by every call with this plan
    return plan


@lru_cache(maxsize=16)
def _input_plan(k_len: int, lo: float, span: int, n_fft: int, left: int, rdt: type
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `bandlimited_resample` computes from a burst's geometry alone (burst length
    ``k_len``, span ``lo``/``span`` and FFT length ``n_fft`` in samples, the burst's first
    padded position ``left``), in the real dtype ``rdt``: the alternating signs (-1)^p of its
    padded positions p (k_len,), the powers (Q+1, k_len) of -kappa, kappa = (p - c) / n_fft
    (the deficit series' moments), and the series' weights W. Cached (the last 16
    geometries, 21 reals per burst sample each): a node's bursts repeat their geometry round
    after round (99 % hits in the impaired demo)."""
    p_in = left + np.arange(k_len)
    signs = np.where(p_in % 2 == 0, 1.0, -1.0).astype(rdt)
    c = left + lo + span / 2.0
    kappa = (p_in - c) / n_fft
    W = _correction_weights().astype(rdt)
    out = (signs, _powers((-kappa).astype(rdt), W.shape[0]), W)
    for a in out:
        a.flags.writeable = False              # shared by every call with this geometry
    return out


def _phase_ramp(n: int, theta: float, dtype: type = np.complex128) -> np.ndarray:
    """exp(j theta k) for k = 0..n-1 as the outer product of two ramps of ~sqrt(n) exponentials
    (k = b q + r): ~2 sqrt(n) complex exponentials instead of n, exact to rounding (of
    ``dtype``, complex64 or complex128)."""
    b = max(1, math.isqrt(n - 1) + 1) if n > 1 else 1
    rows = -(-n // b)
    outer = np.exp(1j * theta * b * np.arange(rows)).astype(dtype)
    inner = np.exp(1j * theta * np.arange(b)).astype(dtype)
    return (outer[:, None] * inner[None, :]).ravel()[:n]


def bandlimited_resample(x: np.ndarray, first_position: float, step: float,
                         n_out: int) -> np.ndarray:
    """The band-limited signal defined by the samples x (C, K) (Whittaker-Shannon, zero outside
    0..K-1), evaluated at input positions first_position + step * m, m = 0..n_out-1 -> (C, n_out).

    first_position, step: in input samples (step = input rate / output rate, > 0).

    Method: the burst is zero-padded to N = 2 x (input + output span), transformed (FFT,
    frequencies centred on 0, the Nyquist bin split evenly between +-fs/2, i.e. a real kernel)
    and evaluated on the affine grid with a chirp-z transform: O(N log N) whatever the delay and
    the sampling-rate ratio (the chirps of the transform are cached per burst length, output
    length and step, `_czt_plan`). The periodic (Dirichlet) kernel this evaluates is
    D_N(s) = sin(pi s) / (N tan(pi s / N)); its deficit sinc(s) - D_N(s) = sin(pi s) (1/u -
    cot u) / N, u = pi s / N, is added back exactly up to the 19th power of u (the Laurent
    series of cot, |u| <= pi / 2 over the span, from 20 moments of the burst: O(20 (K + M))),
    so the result is the untruncated sinc sum to ~1e-20 of the burst's power (the former 8x
    padding without the series: ~1e-8). A position on the integer input grid returns that
    sample (to ~1e-12).
    """
    from scipy.fft import fft, ifft, next_fast_len   # imported when used: a light start for roles
    # the precision of the input (`as_burst`): complex64 bursts are resampled in single
    # precision (~1e-7 of the amplitude, far below a 12-bit converter's step), others in double
    x = as_burst(x)
    cdt, rdt = x.dtype.type, x.real.dtype.type
    if x.ndim != 2:
        raise ValueError(f"x must be (channels, samples), got shape {x.shape}")
    if not step > 0:
        raise ValueError(f"step must be > 0 input samples per output sample, got {step}")
    n_out = int(n_out)
    if n_out < 0:
        raise ValueError(f"n_out must be >= 0, got {n_out}")
    n_ch, k_len = x.shape
    if n_out == 0 or k_len == 0:
        return np.zeros((n_ch, n_out), cdt)
    last_position = first_position + step * (n_out - 1)
    lo = min(0.0, math.floor(first_position))
    hi = max(float(k_len), math.ceil(last_position))
    span = int(hi - lo) + 1
    n_fft = next_fast_len(_PAD * span)
    while n_fft % 2:                       # bins -N/2 .. N/2-1 below need an even N
        n_fft = next_fast_len(n_fft + 1)
    left = int(-lo) + (n_fft - span) // 2
    signs, kappa_powers, W = _input_plan(k_len, float(lo), span, n_fft, left, rdt)
    # z = x (-1)^p: its FFT is the spectrum with bins -N/2 .. N/2-1 in order (no fftshift), and
    # the series below needs the same alternating signs
    z = x * signs[None, :]
    buf = np.zeros((n_ch, n_fft), cdt)
    buf[:, left:left + k_len] = z
    spec = fft(buf, axis=1)                                  # n_fft x the spectrum (bins -N/2 ..)
    t0 = first_position + left                                         # padded coordinates
    # sum_k spec[k] exp(j 2 pi (k - N/2) t / N) at t = t0 + step m: a chirp-z transform
    # (w = exp(j 2 pi step / N)) of coef = spec exp(j 2 pi k t0 / N)
    chirp, kernel_fft, n_conv, out_ramp, out_chirp, offsets = _czt_plan(
        n_fft, n_out, float(step), n_fft, cdt)
    ramp = _phase_ramp(n_fft, 2.0 * np.pi * (t0 % n_fft) / n_fft, cdt)
    coef = spec * (ramp * chirp[:n_fft] * rdt(1.0 / n_fft))[None, :]
    vals = ifft(fft(coef, n_conv, axis=1) * kernel_fft[None, :], axis=1)[:, n_fft - 1:n_fft - 1 + n_out]
    t = t0 + offsets
    # bin -N/2 entered as exp(-j pi t); the symmetric (real-kernel) choice is cos(pi t).
    # exp(-j pi t) = exp(-j pi t0) exp(-j pi step m): the second factor is cached with the
    # output chirp (`_czt_plan`), and sin(pi t) = -Im exp(-j pi t)
    p0 = cdt(np.exp(-1j * np.pi * (t0 % 2.0)))
    sin_t = -(p0 * out_ramp).imag
    y = vals * (p0 * out_chirp)[None, :] + (spec[:, :1] * rdt(1.0 / n_fft)) * (1j * sin_t)[None, :]
    # sinc(s) - D_N(s) = sin(pi s) (1/N) (1/u - cot u), u = pi s / N, and sin(pi (t - p)) =
    # sin(pi t) (-1)^p: the Dirichlet kernel's deficit as a short series in centred, scaled
    # positions tau = (t - c) / N, kappa = (p - c) / N (|tau|, |kappa| <= 1/4: no cancellation)
    c = left + lo + span / 2.0
    moments = _real_times_complex(kappa_powers, z)      # (C, Q+1), kappa = (p - c) / N
    tau = (t - c) / n_fft
    corr = _real_times_complex(_powers(tau.astype(rdt), W.shape[0]).T,
                               (moments @ W.T).astype(z.dtype))                  # (C, n_out)
    return y + corr * (sin_t * rdt(1.0 / n_fft))[None, :]


#: All-zero samples that `resample_runs` must save, beyond the tails it keeps, before it
#: resamples the runs of a burst apart: below this, one transform across a silence costs less
#: than another call (samples).
SPLIT_SAVING = 1024


def nonzero_runs(x: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Column ranges ``[lo, hi)`` of the burst x (C, K) that hold its non-zero columns, split
    where ``min_gap`` or more all-zero columns separate them; the burst's zero edges are cut
    only when they are that long too (else they stay in the first or last run). [] for an
    all-zero burst; [(0, K)] for a burst without such silences."""
    k_len = x.shape[1]
    nz = np.flatnonzero(np.any(x != 0, axis=0))
    if nz.size == 0:
        return []
    cut = np.flatnonzero(np.diff(nz) > min_gap)          # nz[i + 1] - nz[i] - 1 zeros >= min_gap
    starts = [int(nz[0])] + (nz[cut + 1]).tolist()
    ends = (nz[cut] + 1).tolist() + [int(nz[-1]) + 1]
    if starts[0] < min_gap:
        starts[0] = 0
    if k_len - ends[-1] < min_gap:
        ends[-1] = k_len
    return list(zip(starts, ends))


def resample_runs(x: np.ndarray, first_position: float, step: float, n_out: int,
                  tail: int) -> np.ndarray:
    """`bandlimited_resample` of a burst x (C, K) whose non-zero samples come in runs apart by
    long silences (an FDMA node's preamble and its own slot), one run at a time: each run is
    evaluated at the output positions within ``tail`` input samples of it, the pieces are
    added, and the band-limited tails farther than ``tail`` from every run are left out (as a
    burst's own tails beyond its margin are). Runs are split where that saves at least
    `SPLIT_SAVING` samples (`nonzero_runs` with min_gap = 2 tail + SPLIT_SAVING); a burst
    without such silences is exactly `bandlimited_resample`. Positions and ``tail`` in input
    samples; the cost follows the runs' lengths instead of the burst's span."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be (channels, samples), got shape {x.shape}")
    if tail < 0:
        raise ValueError(f"tail must be >= 0 input samples, got {tail}")
    min_gap = 2 * int(tail) + SPLIT_SAVING
    # a burst shorter than a silence worth splitting at has one run (most bursts: no scan)
    runs = [(0, x.shape[1])] if x.shape[1] <= min_gap else nonzero_runs(x, min_gap)
    if runs == [(0, x.shape[1])] or not runs:
        return bandlimited_resample(x, first_position, step, n_out)
    out = bandlimited_resample(x[:, :0], first_position, step, int(n_out))  # zeros, its dtype
    for lo, hi in runs:
        j0 = max(0, math.ceil((lo - tail - first_position) / step))
        j1 = min(int(n_out) - 1, math.floor((hi - 1 + tail - first_position) / step))
        if j1 >= j0:
            out[:, j0:j1 + 1] += bandlimited_resample(x[:, lo:hi], first_position + step * j0 - lo,
                                                      step, j1 - j0 + 1)
    return out


@dataclass(frozen=True)
class GridMap:
    """An affine map from a burst's samples onto another sample grid: output sample j carries
    the band-limited signal of the input at input position ``first_position + step * j``,
    j = 0..n_out-1 (`resample_runs`, keeping ``tail`` input samples of sinc tail around each
    run of non-zero input). Positions and ``tail`` in input samples; ``step`` = input rate /
    output rate (> 0).

    What a transmit correction hands a radio (`testbed.radio.base.Radio.transmit_resampled`),
    so that a simulated radio can compose it with its own clock's map and resample once."""

    first_position: float
    step: float
    n_out: int
    tail: int

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The burst x (C, K) on the output grid: (C, n_out), x's precision (`as_burst`)."""
        return resample_runs(x, self.first_position, self.step, self.n_out, self.tail)

    def then(self, second: "GridMap") -> "GridMap":
        """This map followed by ``second``, a map from this map's output grid onto a third
        grid: one map from this map's input onto the third grid (``second``'s length), its
        tail the sum of both (in input samples, for steps near 1)."""
        return GridMap(self.first_position + self.step * second.first_position,
                       self.step * second.step, int(second.n_out),
                       int(self.tail) + int(second.tail))
