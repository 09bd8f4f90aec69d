"""Radio impairments of the simulated air, behind the hooks of `sim_backend.hooks`.

Every impairment is one named parameter with a unit and is off at its default value, so each can
be switched on alone. The air grid is the receiver's sample clock: all offsets of a transmitter
are relative to the receiver (a receiver's own CFO/SRO is folded into the transmitters' values by
the presets; the RX hook still offers a receiver CFO/phase for tests).

Transmit chain (`TxImpairments.apply_tx`), in the order the hardware applies it:

1. DAC (node clock): quantization to ``dac_bits`` bits per I/Q component with full scale 1.0
   (step 2**(1 - bits)), clipping at +-1.0 when ``dac_clip``.
2. Gain error: amplitude x 10**(gain_error_db / 20).
3. Sample clock -> air grid: the node clock runs at fs (1 + sro), so node sample k (absolute
   index s0 + k on the node clock) lands at air sample a_k = (s0 + k) / (1 + sro) +
   timing_offset_samples. Both the fixed offset (integer + fraction) and the drift of the start
   time with s0 follow from this map. The air carries the band-limited signal the samples
   define (Whittaker-Shannon), evaluated exactly on the air grid
   (`testbed.phy.resample.bandlimited_resample`: FFT + chirp-z, exact to rounding even for a
   full-band signal; complex64 bursts, what radios carry, in single precision: ~1e-7 of the
   amplitude, far below the DAC's step). A pure integer offset with sro = 0
   is a plain shift. The returned burst starts at air sample floor(a_0) - interp_half_taps and
   ends interp_half_taps after the last one: the sinc tails kept on each side (their energy
   beyond H samples is ~ |x_edge|^2 / (pi^2 H) of the edge samples'). A burst whose non-zero
   samples come in runs apart by long silences (an FDMA node's preamble and its own slot) is
   resampled run by run with the same tails around each run (`testbed.phy.resample.resample_runs`).
4. LO (absolute air time m): x exp(j (2 pi cfo_hz m / fs + phase + phase_noise[m])), continuous
   across bursts because m is absolute. ``phase`` is ``phase_offset_rad`` until a tune; with
   ``random_phase_per_tune`` every `on_tune` draws a new uniform phase.
   Phase noise is the sum of two independent processes, each off by default:

   * PLL (``phase_noise_rms_deg``, ``phase_noise_corner_hz``): an LO locked to a reference by
     a PLL (AD9361 fractional-N synthesizer) has bounded phase noise, flat inside the loop
     bandwidth and falling as 1/f^2 outside. Modelled as an Ornstein-Uhlenbeck process
     (`PLLPhase`): stationary, zero mean, variance sigma^2 (sigma = rms in rad), autocorrelation
     sigma^2 exp(-2 pi B |tau|) with B the corner. Two-sided phase PSD (= single-sideband
     L(f) for small phase noise) sigma^2 B / (pi (B^2 + f^2)): flat sigma^2 / (pi B) below B,
     sigma^2 B / (pi f^2) far out. `pll_corner_from_dbc_hz` gives B from (rms, L(f) at f).
   * Wiener (``phase_noise_linewidth_hz``): a free-running oscillator (or a reference's slow
     random walk), Lorentzian spectrum of 3 dB linewidth lw: increments N(0, 2 pi lw / fs) per
     sample, L(f) = lw / (2 pi f^2) for f >> lw (`linewidth_from_dbc_hz`).

   Both live on the absolute air-sample axis: continuous across bursts, a gap of g samples
   advances the state exactly (Wiener: variance 2 pi lw g / fs; PLL: correlation rho^g with
   rho = exp(-2 pi B / fs)).

Receive chain (`RxImpairments.apply_rx`): receiver LO (x exp(-j (2 pi cfo_hz m / fs + phase +
phase noise)), i.e. a receiver LO ``cfo_hz`` above nominal), gain error, ADC quantization and
clipping (12-bit on the AD9361) at ``adc_full_scale`` air units (the receive level plan: the
manual RX gain that maps that amplitude onto the converter's full scale, divided out again).

All transmit channels of a node share its clock and LO, hence the same impairments.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from testbed.errors import ConfigError
from testbed.phy.resample import bandlimited_resample  # noqa: F401  (also re-exported here)
from testbed.phy.resample import GridMap, as_burst


# ---------------------------------------------------------------- elementary impairments (pure)

def quantize(x: np.ndarray, bits: int | None, clip: bool = True) -> np.ndarray:
    """Quantize I and Q of ``x`` (any shape) to ``bits`` bits, full scale 1.0 (step 2**(1-bits)).

    bits=None skips quantization; clip=True limits each component to the code range
    [-1, 1 - step] (or to [-1, 1] without quantization).
    """
    # complex64 stays complex64 (`as_burst`); I and Q as one interleaved real array (one pass
    # per step)
    x = np.ascontiguousarray(as_burst(x))
    iq = x.view(x.real.dtype)
    if bits is not None:
        if bits < 2:
            raise ConfigError(f"converter bits must be >= 2, got {bits}")
        scale = 2.0 ** (bits - 1)
        codes = np.round(iq * scale)
        if clip:
            np.clip(codes, -scale, scale - 1, out=codes)
        codes *= 1.0 / scale                        # a power of two: exact
        return codes.view(x.dtype)
    if clip:
        return np.clip(iq, -1.0, 1.0).view(x.dtype)
    return x.copy()


def linewidth_from_dbc_hz(dbc_hz: float, offset_hz: float) -> float:
    """Wiener-phase-noise 3 dB linewidth in Hz matching L(offset) = ``dbc_hz`` dBc/Hz.

    The Wiener phase (increment variance 2 pi lw per second) has two-sided PSD
    2 pi lw / (2 pi f)^2 = lw / (2 pi f^2) rad^2/Hz, so lw = 2 pi f^2 10^(L/10).
    """
    return float(2.0 * math.pi * offset_hz ** 2 * 10.0 ** (dbc_hz / 10.0))


def pll_corner_from_dbc_hz(rms_deg: float, dbc_hz: float, offset_hz: float) -> float:
    """Corner B (Hz) of the PLL (Ornstein-Uhlenbeck) phase noise of rms ``rms_deg`` (deg)
    whose far-out level sigma^2 B / (pi f^2) equals ``dbc_hz`` dBc/Hz at ``offset_hz`` (Hz).

    B = pi f^2 10^(L/10) / sigma^2. Meaningful when the result is well below ``offset_hz``
    (the far-out form is then within (B/f)^2 of the exact sigma^2 B / (pi (B^2 + f^2))).
    """
    if not rms_deg > 0:
        raise ConfigError(f"rms_deg must be > 0 deg, got {rms_deg}")
    if not offset_hz > 0:
        raise ConfigError(f"offset_hz must be > 0 Hz, got {offset_hz}")
    sigma2 = math.radians(rms_deg) ** 2
    return float(math.pi * offset_hz ** 2 * 10.0 ** (dbc_hz / 10.0) / sigma2)


def pll_phase_psd(f_hz: np.ndarray, rms_deg: float, corner_hz: float) -> np.ndarray:
    """Two-sided PSD (rad^2/Hz) of the continuous-time PLL phase noise at frequencies f_hz
    (Hz, any shape): sigma^2 B / (pi (B^2 + f^2)), sigma = rms in rad, B = corner."""
    sigma2 = math.radians(rms_deg) ** 2
    f = np.asarray(f_hz, dtype=float)
    return sigma2 * corner_hz / (math.pi * (corner_hz ** 2 + f ** 2))


class WienerPhase:
    """Wiener phase-noise state on an absolute sample axis (continuous across bursts)."""

    def __init__(self, linewidth_hz: float, rng: np.random.Generator):
        if linewidth_hz < 0:
            raise ConfigError(f"phase_noise_linewidth_hz must be >= 0 Hz, got {linewidth_hz}")
        self.linewidth_hz = float(linewidth_hz)
        self._rng = rng
        self._last_index: int | None = None
        self._last_phase = 0.0

    def phases(self, start_sample: int, n: int, sample_rate_hz: float) -> np.ndarray:
        """Phase in rad at absolute samples start_sample..start_sample+n-1, shape (n,).

        A gap since the previous call advances the walk by its length; a call that starts at or
        before the last sample already drawn continues from the latest state.
        """
        var = 2.0 * math.pi * self.linewidth_hz / sample_rate_hz
        if n == 0 or var == 0.0:
            return np.zeros(n)
        phase0 = self._last_phase
        if self._last_index is not None and start_sample > self._last_index:
            phase0 += self._rng.normal(0.0, math.sqrt(var * (start_sample - self._last_index)))
        steps = self._rng.normal(0.0, math.sqrt(var), n - 1)
        ph = phase0 + np.concatenate([[0.0], np.cumsum(steps)])
        self._last_index = int(start_sample) + n - 1
        self._last_phase = float(ph[-1])
        return ph


class PLLPhase:
    """PLL phase noise: Ornstein-Uhlenbeck state on an absolute sample axis (continuous across
    bursts and gaps). rms_rad: stationary std (rad); corner_hz: B in the autocorrelation
    sigma^2 exp(-2 pi B |tau|) (Hz). Exact discretization: x[m+1] = rho x[m] +
    sigma sqrt(1 - rho^2) w[m], rho = exp(-2 pi B / fs), and rho^g over a gap of g samples; the
    first sample ever drawn is from the stationary N(0, sigma^2)."""

    def __init__(self, rms_rad: float, corner_hz: float, rng: np.random.Generator):
        if rms_rad < 0:
            raise ConfigError(f"phase_noise_rms_deg must be >= 0 deg, got {rms_rad}")
        if rms_rad > 0 and not corner_hz > 0:
            raise ConfigError(f"phase_noise_corner_hz must be > 0 Hz when phase_noise_rms_deg "
                              f"> 0, got {corner_hz}")
        self.rms_rad = float(rms_rad)
        self.corner_hz = float(corner_hz)
        self._rng = rng
        self._last_index: int | None = None
        self._last_phase = 0.0

    def phases(self, start_sample: int, n: int, sample_rate_hz: float) -> np.ndarray:
        """Phase in rad at absolute samples start_sample..start_sample+n-1, shape (n,).

        A gap since the previous call decorrelates the state by rho^gap; a call that starts at
        or before the last sample already drawn continues from the latest state.
        """
        if n == 0 or self.rms_rad == 0.0:
            return np.zeros(n)
        sigma = self.rms_rad
        rho = math.exp(-2.0 * math.pi * self.corner_hz / sample_rate_hz)
        if self._last_index is None:
            x0 = self._rng.normal(0.0, sigma)
        elif start_sample > self._last_index:
            r = rho ** (int(start_sample) - self._last_index)
            x0 = r * self._last_phase + self._rng.normal(0.0, sigma * math.sqrt(1.0 - r * r))
        else:
            x0 = self._last_phase
        w = self._rng.normal(0.0, sigma * math.sqrt(1.0 - rho * rho), n - 1)
        if n > 1:
            from scipy.signal import lfilter   # ~1 s to import: only when phase noise is drawn
            rest, _ = lfilter([1.0], [1.0, -rho], w, zi=[rho * x0])
            ph = np.concatenate([[x0], rest])
        else:
            ph = np.array([x0])
        self._last_index = int(start_sample) + n - 1
        self._last_phase = float(ph[-1])
        return ph


# ------------------------------------------------------------------------------ parameters

def _check_phase_noise(p) -> None:
    if not p.phase_noise_linewidth_hz >= 0:
        raise ConfigError(f"phase_noise_linewidth_hz must be >= 0 Hz, got "
                          f"{p.phase_noise_linewidth_hz}")
    if not p.phase_noise_rms_deg >= 0:
        raise ConfigError(f"phase_noise_rms_deg must be >= 0 deg, got {p.phase_noise_rms_deg}")
    if not p.phase_noise_corner_hz >= 0:
        raise ConfigError(f"phase_noise_corner_hz must be >= 0 Hz, got "
                          f"{p.phase_noise_corner_hz}")
    if p.phase_noise_rms_deg > 0 and p.phase_noise_corner_hz == 0:
        raise ConfigError("phase_noise_rms_deg > 0 needs phase_noise_corner_hz > 0 (the PLL "
                          "loop corner, Hz); see pll_corner_from_dbc_hz")


class _Serializable:
    def to_dict(self) -> dict:
        """Plain-JSON dict of the parameters (for run configs)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """Inverse of `to_dict`; unknown keys raise ConfigError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys {sorted(unknown)}; "
                              f"allowed: {sorted(names)}")
        return cls(**data)


@dataclass
class TxImpairmentParams(_Serializable):
    """Impairments of one transmitting node (defaults: all off).

    timing_offset_samples: air sample (float, receiver clock) where node sample 0 lands.
    cfo_hz: carrier offset of the node's LO relative to the receiver, Hz.
    sro_ppm: sample-clock offset relative to the receiver, ppm (node runs at fs (1 + sro)).
    phase_offset_rad: LO phase before the first tune (and always, if not random per tune), rad.
    random_phase_per_tune: draw a new uniform LO phase on every `on_tune`.
    phase_noise_linewidth_hz: Wiener phase-noise 3 dB linewidth, Hz (0 = off; free-running
    oscillator or a reference's random walk).
    phase_noise_rms_deg: PLL (Ornstein-Uhlenbeck) phase noise, stationary rms in deg (0 = off).
    phase_noise_corner_hz: its corner B, Hz (autocorrelation sigma^2 exp(-2 pi B |tau|)).
    gain_error_db: amplitude error of the transmit chain, dB.
    dac_bits: DAC resolution per I/Q component, bits (None = no quantization; AD9361: 12).
    dac_clip: clip I/Q at full scale 1.0.
    interp_half_taps: sinc tail kept on each side of a fractionally delayed/resampled burst,
    samples (the burst on the air starts this many samples before its first sample lands).
    seed: seed of the phase-noise generator.
    """

    timing_offset_samples: float = 0.0
    cfo_hz: float = 0.0
    sro_ppm: float = 0.0
    phase_offset_rad: float = 0.0
    random_phase_per_tune: bool = False
    phase_noise_linewidth_hz: float = 0.0
    phase_noise_rms_deg: float = 0.0
    phase_noise_corner_hz: float = 0.0
    gain_error_db: float = 0.0
    dac_bits: int | None = None
    dac_clip: bool = False
    interp_half_taps: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        _check_phase_noise(self)
        if self.interp_half_taps < 2:
            raise ConfigError(f"interp_half_taps must be >= 2, got {self.interp_half_taps}")
        if abs(self.sro_ppm) >= 1e5:
            raise ConfigError(f"sro_ppm={self.sro_ppm} is not a clock offset; use |sro_ppm| < 1e5")

    @property
    def sro(self) -> float:
        """The sample-clock offset as a ratio (dimensionless): the node runs at fs (1 + sro).
        The hook's clock map and its plain-shift test both use it, so they agree even where
        sro_ppm * 1e-6 underflows to 0."""
        return self.sro_ppm * 1e-6

    @classmethod
    def from_ppm(cls, ppm: float, carrier_hz: float, **kwargs) -> "TxImpairmentParams":
        """Node whose LO and sample clock share one oscillator that is ``ppm`` off (relative to
        the receiver): cfo_hz = ppm 1e-6 carrier_hz and sro_ppm = ppm; other fields by keyword."""
        return cls(cfo_hz=ppm * 1e-6 * carrier_hz, sro_ppm=ppm, **kwargs)


@dataclass
class RxImpairmentParams(_Serializable):
    """Impairments of the receiver (defaults: all off).

    cfo_hz: receiver LO above nominal, Hz (the received window rotates by -cfo_hz).
    phase_offset_rad / random_phase_per_tune / phase_noise_linewidth_hz / phase_noise_rms_deg /
    phase_noise_corner_hz: as for the transmitter.
    gain_error_db: receive chain amplitude error, dB.
    adc_bits: ADC resolution per I/Q component, bits (None = off; AD9361: 12).
    adc_clip: clip I/Q at full scale.
    adc_full_scale: the receive level plan: amplitude per I/Q component, in air units, that the
    receiver's (manual) gain maps onto the ADC's full scale; samples come back in air units
    (the gain is known and divided out), so quantization step 2**(1-bits) x adc_full_scale and
    clipping at +-adc_full_scale. 1.0: air units are full-scale units.
    seed: seed of the phase-noise generator.
    """

    cfo_hz: float = 0.0
    phase_offset_rad: float = 0.0
    random_phase_per_tune: bool = False
    phase_noise_linewidth_hz: float = 0.0
    phase_noise_rms_deg: float = 0.0
    phase_noise_corner_hz: float = 0.0
    gain_error_db: float = 0.0
    adc_bits: int | None = None
    adc_clip: bool = False
    adc_full_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_phase_noise(self)
        if not self.adc_full_scale > 0:
            raise ConfigError(f"adc_full_scale must be > 0 (air units), got {self.adc_full_scale}")


# ---------------------------------------------------------------------------------- hooks

class _LO:
    """Shared LO state: phase per tune, Wiener and PLL phase noise (from TX or RX params)."""

    def __init__(self, p: "TxImpairmentParams | RxImpairmentParams"):
        self.phase_rad = float(p.phase_offset_rad)
        self._random = bool(p.random_phase_per_tune)
        self._noise = WienerPhase(p.phase_noise_linewidth_hz, np.random.default_rng(p.seed))
        self._pll = PLLPhase(math.radians(p.phase_noise_rms_deg), p.phase_noise_corner_hz,
                             np.random.default_rng([p.seed, 1]))
        self._cfo = p.cfo_hz

    @property
    def active(self) -> bool:
        """True when the LO rotates the signal at all (CFO, phase or phase noise)."""
        return bool(self._cfo or self.phase_rad or self._noise.linewidth_hz
                    or self._pll.rms_rad)

    def on_tune(self, rng: np.random.Generator) -> None:
        if self._random:
            self.phase_rad = float(rng.uniform(-math.pi, math.pi))

    def phase(self, start_sample: int, n: int, cfo_hz: float, fs: float) -> np.ndarray:
        m = np.arange(n, dtype=float)
        # 2 pi f (s0 + m) / fs, with the large s0 term reduced mod 1 cycle first
        base = (cfo_hz / fs * float(start_sample)) % 1.0
        return (2 * math.pi * (base + cfo_hz / fs * m) + self.phase_rad
                + self._noise.phases(int(start_sample), n, fs)
                + self._pll.phases(int(start_sample), n, fs))


class _HookWithLO:
    """What the TX and RX hooks share: their parameters and one LO (phase, tune, noise)."""

    def __init__(self, params):
        self.params = params
        self._lo = _LO(params)

    @property
    def lo_phase_rad(self) -> float:
        """Current LO phase (rad) set by the last tune."""
        return self._lo.phase_rad

    def on_tune(self, rng: np.random.Generator) -> None:
        """Radio re-tuned: new uniform LO phase if ``random_phase_per_tune``."""
        self._lo.on_tune(rng)


def _tx_burst(samples: np.ndarray) -> np.ndarray:
    """A transmit burst as (n_tx, K) complex in its precision (`as_burst`: a radio's
    complex64 stays single precision); ValueError for another shape."""
    x = as_burst(samples)
    if x.ndim != 2:
        raise ValueError(f"samples must be (n_tx, K), got shape {x.shape}")
    return x


class TxImpairments(_HookWithLO):
    """Transmit-side hook (`sim_backend.hooks.TxImpairment`) of one node; see the module doc."""

    def __init__(self, params: TxImpairmentParams | None = None):
        super().__init__(params or TxImpairmentParams())

    def _is_plain_shift(self) -> bool:
        # an integer offset without SRO moves the burst without a filter
        p = self.params
        return p.sro == 0.0 and float(p.timing_offset_samples).is_integer()

    def _first_air_position(self, start_sample: int) -> float:
        # air position (float) of node sample s0: s0 / (1 + eps) + tau, written so that the
        # large s0 term keeps its precision
        p = self.params
        eps, s0 = p.sro, int(start_sample)
        return s0 - s0 * eps / (1.0 + eps) + p.timing_offset_samples

    def air_start(self, start_sample: int) -> int:
        """Air sample (int) of column 0 of the burst `to_air_grid` returns for a burst sent at
        node sample ``start_sample``: ``s0 + tau`` for a plain integer shift, else
        ``floor(s0 / (1 + sro) + tau) - interp_half_taps`` (the band-limited precursor)."""
        if self._is_plain_shift():
            return int(start_sample) + int(self.params.timing_offset_samples)
        return math.floor(self._first_air_position(start_sample)) - self.params.interp_half_taps

    def air_map(self, start_sample: int, n_in: int) -> GridMap:
        """The node clock -> air grid map of a burst of ``n_in`` samples sent at node sample
        ``start_sample`` (not for a plain shift, `air_start`): air sample `air_start` + j
        carries the burst at node position (relative to its first sample) first_position +
        step j, step = 1 + sro, over the burst's span plus ``interp_half_taps`` air samples of
        band-limited tail on each side (samples)."""
        p = self.params
        eps, tau, s0, h = p.sro, p.timing_offset_samples, int(start_sample), p.interp_half_taps
        m0 = self.air_start(s0)
        m1 = math.ceil(self._first_air_position(s0) + (n_in - 1) / (1.0 + eps)) + h
        # node index (relative to s0) of air sample m: (m - s0 - tau)(1 + eps) + s0 eps
        return GridMap((m0 - s0 - tau) * (1.0 + eps) + s0 * eps, 1.0 + eps, m1 - m0 + 1, h)

    def to_air_grid(self, x: np.ndarray, start_sample: int) -> tuple[np.ndarray, int]:
        """Timing offset and SRO only: x (C, K) on the node clock -> (C, M) on the air grid,
        and the air sample of column 0 (`air_start`)."""
        m0 = self.air_start(start_sample)
        if self._is_plain_shift():
            return x, m0
        return self.air_map(start_sample, x.shape[1]).apply(x), m0

    def apply_tx(self, samples: np.ndarray, start_sample: int,
                 sample_rate_hz: float) -> tuple[np.ndarray, int]:
        """Burst (n_tx, K) at node sample ``start_sample`` -> (burst on the air grid (n_tx, M),
        air sample of its column 0)."""
        x, start_out = self.to_air_grid(self._converter(_tx_burst(samples)), start_sample)
        return self._carrier(x, start_out, sample_rate_hz)

    def apply_tx_resampled(self, samples: np.ndarray, grid: GridMap, start_sample: int,
                           sample_rate_hz: float) -> tuple[np.ndarray, int]:
        """`apply_tx` of the burst ``grid.apply(samples)`` (n_tx, grid.n_out) at node sample
        ``start_sample``, with one resampling instead of two: ``grid`` followed by the node's
        `air_map` is one affine map from ``samples`` onto the air grid, evaluated in one
        `resample_runs`, on the same air samples `apply_tx` returns (same `air_start`, same
        length). The DAC's rounding and clipping are applied to these air samples, i.e. to the
        band-limited signal between the node's sample instants: the same step and full scale
        (and white rounding error of the same power), not the same draw. Unlike resampling
        twice, the sinc tails ``samples`` has beyond the node burst's margin (grid.tail) are
        kept up to the air burst's end instead of cut at the node grid. A plain integer shift
        without SRO resamples once anyway: `apply_tx` of the mapped burst.
        """
        if self._is_plain_shift():
            return self.apply_tx(grid.apply(samples), start_sample, sample_rate_hz)
        x = grid.then(self.air_map(start_sample, grid.n_out)).apply(_tx_burst(samples))
        return self._carrier(self._converter(x), self.air_start(start_sample), sample_rate_hz)

    def _converter(self, x: np.ndarray) -> np.ndarray:
        # the DAC's rounding and clipping, then the chain's gain error
        p = self.params
        if p.dac_bits is not None or p.dac_clip:
            x = quantize(x, p.dac_bits, p.dac_clip)
        if p.gain_error_db:
            x = x * 10.0 ** (p.gain_error_db / 20.0)
        return x

    def _carrier(self, x: np.ndarray, start_out: int,
                 sample_rate_hz: float) -> tuple[np.ndarray, int]:
        # the node's carrier (CFO, LO phase, phase noise) on the air grid
        p = self.params
        cdt = x.dtype
        if self._lo.active:
            ph = self._lo.phase(start_out, x.shape[1], p.cfo_hz, sample_rate_hz)
            x = x * np.exp(1j * ph).astype(cdt)[None, :]
        return x, int(start_out)


class RxImpairments(_HookWithLO):
    """Receive-side hook (`sim_backend.hooks.RxImpairment`); see the module doc."""

    def __init__(self, params: RxImpairmentParams | None = None):
        super().__init__(params or RxImpairmentParams())

    def apply_rx(self, samples: np.ndarray, start_sample: int,
                 sample_rate_hz: float) -> np.ndarray:
        """Window (n_rx, n) starting at air sample ``start_sample`` -> impaired window, same shape."""
        p = self.params
        x = as_burst(samples)              # complex64 (a radio's window) stays single precision
        cdt = x.dtype
        if self._lo.active:
            ph = self._lo.phase(int(start_sample), x.shape[-1], p.cfo_hz, sample_rate_hz)
            x = x * np.exp(-1j * ph).astype(cdt)
        if p.gain_error_db:
            x = x * 10.0 ** (p.gain_error_db / 20.0)
        if p.adc_bits is not None or p.adc_clip:
            fs_amp = p.adc_full_scale
            x = quantize(x / fs_amp, p.adc_bits, p.adc_clip) * fs_amp
        return x
