"""The real-time air: radios stream on their own sample clocks while the wall clock runs.

Unlike the lock-step `sim_backend.air.SimAir` (time moves only when every party has spoken),
this air advances with the wall clock: emulated time ``tau`` (seconds) is the monotonic clock
divided by ``time_scale`` k (k > 1 runs the emulation k times slower, for small machines; every
behaviour is the same when measured in samples). Nobody waits for anybody: a transmitter that
pushed nothing sends zeros, a receiver gets what the air carried.

Radios attach with `RealtimeAir.attach_radio` and get an `AirRadio` port (the interface an
emulated radio front end -- the Pluto on iiod here, a USRP later -- builds on):

* its own sample clock: sample ``n`` of a radio is at ``tau = epoch + n / (fs (1 + ppm 1e-6))``
  (``fs`` the radio's sample rate in Hz, ``ppm`` its TCXO offset; the epoch restarts when the
  sample rate changes). `AirRadio.now` is the current sample index, `AirRadio.wait_until`
  sleeps until a sample has passed on the wall clock;
* `AirRadio.tx_push(samples, start)`: DAC samples ``(n_tx, K)`` (full scale 1.0) from the
  radio's sample ``start`` on, with the transmit gain (dB) in force; `tx_repeat` a block
  repeated forever (cyclic buffer, DDS), `tx_cut` drops what was queued after a sample
  (buffer destroyed);
* `AirRadio.rx_pull(start, n)`: the complex baseband ``(n_rx, n)`` at the radio's antennas
  (air units, before the receive gain) for its samples ``[start, start + n)``, noise included.
  Call it for windows that have passed (``start + n <= now()``).

What a receiver gets on ``rx_ch`` is, for every link ``(tx radio t, tx_ch) -> (r, rx_ch)`` with
complex gain ``h`` (`connect`):

    y(tau_k) = sum h x_t(tau_k) exp(j (2 pi df tau_k + phi_tx_t - phi_rx_r)) + noise

``tau_k`` the receiver's sampling instants; ``x_t(tau)`` the band-limited signal of t's DAC
samples (`testbed.phy.resample.bandlimited_resample`, so sampling-rate offsets and fractional
clock offsets are carried exactly); ``df = f_tx_t (1 + ppm_t) - f_rx_r (1 + ppm_r)`` the
carrier offset of the two LOs (their TCXOs scale both the sample clock and the LO); ``phi`` the
LO phases, new at every tune when ``random_phase_per_tune``, plus each LO's phase noise (the
PLL and Wiener processes of `sim_backend.impairments`). Links whose carrier offset is beyond
the receiver's Nyquist band carry nothing. Noise: complex AWGN per receive antenna of variance
``10**((noise_dbm_hz - full_scale_dbm) / 10) * fs`` (air units: amplitude 1.0 is a full-scale
DAC sample at 0 dB transmit gain, ``full_scale_dbm`` at the antenna).

Cost: only non-zero transmit segments are resampled, each onto a receiver's grid once per
``GRID_CHUNK`` receiver samples (cached on the segment, shared by the receiver's antennas and
windows: what a receiver gets does not depend on how it cuts its windows), so a bench of silent
radios costs one noise draw per received block.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sim_backend.impairment_presets import INTERP_HALF_TAPS
from sim_backend.impairments import PLLPhase, WienerPhase
from testbed.errors import ConfigError
from testbed.phy.resample import bandlimited_resample

#: Thermal noise density at the antenna referred input: -174 dBm/Hz + a 5 dB noise figure.
DEFAULT_NOISE_DBM_HZ = -169.0
#: Power (dBm) of a full-scale DAC sample at 0 dB transmit gain (a Pluto puts out ~7 dBm).
DEFAULT_FULL_SCALE_DBM = 7.0
#: Receiver samples per cached piece of a transmitted segment resampled onto its grid.
GRID_CHUNK = 8192


@dataclass(frozen=True)
class LOParams:
    """One radio's oscillator: the TCXO offset and the LO phase behaviour.

    ppm: TCXO offset from nominal, ppm (scales the sample clock and the LO frequencies).
    random_phase_per_tune: draw a uniform LO phase at every tune (AD9361: yes).
    phase_noise_rms_deg / phase_noise_corner_hz: PLL phase noise (deg rms, loop corner Hz).
    phase_noise_linewidth_hz: Wiener (reference random walk) linewidth, Hz.
    gain_error_db: transmit chain amplitude error, dB.
    """

    ppm: float = 0.0
    random_phase_per_tune: bool = True
    phase_noise_rms_deg: float = 0.0
    phase_noise_corner_hz: float = 0.0
    phase_noise_linewidth_hz: float = 0.0
    gain_error_db: float = 0.0


class _PhaseProcess:
    """LO phase noise on a radio's sample axis (PLL + Wiener), zero when both are off."""

    def __init__(self, p: LOParams, rng: np.random.Generator):
        self._pll = PLLPhase(math.radians(p.phase_noise_rms_deg), p.phase_noise_corner_hz, rng)
        self._wiener = WienerPhase(p.phase_noise_linewidth_hz, rng)
        self.active = bool(p.phase_noise_rms_deg or p.phase_noise_linewidth_hz)

    def phases(self, start: int, n: int, fs: float) -> np.ndarray | None:
        if not self.active:
            return None
        return self._pll.phases(start, n, fs) + self._wiener.phases(start, n, fs)


@dataclass
class _Segment:
    """Transmitted samples on one radio's sample axis: [start, end) with data, or a repeated
    block (``period`` > 0: cyclic buffer / DDS) until ``end`` (inf until cut)."""

    start: int
    end: float
    data: np.ndarray               # (n_tx, K) complex128, DAC full-scale units
    gain: np.ndarray               # (n_tx, 1) linear amplitude (transmit gain + gain error)
    pn: np.ndarray | None = None   # TX LO phase noise (rad) per sample, non-cyclic only
    period: int = 0
    _air: np.ndarray | None = field(default=None, repr=False)
    #: (grid a, step, end) -> (first receiver index, (n_tx, m) resampled air samples)
    _on_grid: dict = field(default_factory=dict, repr=False)

    def air(self) -> np.ndarray:
        """The samples as they leave the antenna (gain, phase noise), cached."""
        if self._air is None:
            a = self.data * self.gain
            if self.pn is not None:
                a = a * np.exp(1j * self.pn)[None, :]
            self._air = a
        return self._air

    def span(self, lo: int, hi: int, raw: bool = False) -> np.ndarray:
        """Samples [lo, hi) (inside the segment) -> (n_tx, hi - lo)."""
        src = self.data if raw else self.air()
        if self.period:
            return src[:, (np.arange(lo, hi) - self.start) % self.period]
        return src[:, lo - self.start:hi - self.start]


class AirRadio:
    """One radio's port on the real-time air (see the module docstring). Created by
    `RealtimeAir.attach_radio`; thread-safe."""

    def __init__(self, air: "RealtimeAir", name: str, n_tx: int, n_rx: int, lo: LOParams,
                 index: int):
        self.air = air
        self.name = name
        self.n_tx = int(n_tx)
        self.n_rx = int(n_rx)
        self.lo = lo
        self._rng = np.random.default_rng([air.seed, index])
        self._tx_pn = _PhaseProcess(lo, np.random.default_rng([air.seed, index, 1]))
        self._rx_pn = _PhaseProcess(lo, np.random.default_rng([air.seed, index, 2]))
        self.sample_rate_hz = air.default_sample_rate_hz
        self.tx_lo_hz: float | None = None
        self.rx_lo_hz: float | None = None
        self.tx_phase_rad = float(self._rng.uniform(-math.pi, math.pi))
        self.rx_phase_rad = float(self._rng.uniform(-math.pi, math.pi))
        self.tx_gain_db = [0.0] * self.n_tx
        self.epoch_s = air.now_s()
        self._segments: list[_Segment] = []
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ clock
    @property
    def clock_hz(self) -> float:
        """The radio's true sample rate, Hz: fs (1 + ppm 1e-6)."""
        return self.sample_rate_hz * (1.0 + self.lo.ppm * 1e-6)

    def time_of(self, n: float) -> float:
        """Emulated time (s) of the radio's sample ``n``."""
        return self.epoch_s + n / self.clock_hz

    def now(self) -> int:
        """The radio's sample index now (samples since its clock epoch)."""
        return int(math.floor((self.air.now_s() - self.epoch_s) * self.clock_hz))

    def wait_until(self, n: float, cancel: threading.Event | None = None) -> bool:
        """Sleep until the radio's sample ``n`` has passed on the wall clock; False if
        ``cancel`` was set first."""
        return self.air.sleep_until_s(self.time_of(n), cancel)

    # ------------------------------------------------------------------ settings
    def set_sample_rate(self, fs_hz: float) -> None:
        """New sample rate (Hz): the clock restarts (epoch now, index 0), transmissions end."""
        if not fs_hz > 0:
            raise ConfigError(f"sample rate must be > 0 Hz, got {fs_hz}")
        with self.lock:
            if fs_hz != self.sample_rate_hz:
                self.sample_rate_hz = float(fs_hz)
                self.epoch_s = self.air.now_s()
                self._segments.clear()

    def restart_clock(self, epoch_s: float, ppm: float | None = None) -> None:
        """Sample 0 is at emulated time ``epoch_s`` (s) from now on, the clock runs at
        ``fs (1 + ppm 1e-6)`` (``ppm`` None: unchanged; a radio locking to a shared reference
        takes 0): what a device-time latch does. Queued transmissions end."""
        with self.lock:
            if ppm is not None and ppm != self.lo.ppm:
                self.lo = dataclasses.replace(self.lo, ppm=float(ppm))
            self.epoch_s = float(epoch_s)
            self._segments.clear()

    def tune_tx(self, lo_hz: float) -> None:
        """TX LO to ``lo_hz`` (Hz, nominal); new random phase when the radio draws one."""
        with self.lock:
            self.tx_lo_hz = float(lo_hz)
            if self.lo.random_phase_per_tune:
                self.tx_phase_rad = float(self._rng.uniform(-math.pi, math.pi))

    def tune_rx(self, lo_hz: float) -> None:
        """RX LO to ``lo_hz`` (Hz, nominal); new random phase when the radio draws one."""
        with self.lock:
            self.rx_lo_hz = float(lo_hz)
            if self.lo.random_phase_per_tune:
                self.rx_phase_rad = float(self._rng.uniform(-math.pi, math.pi))

    def set_tx_gain_db(self, ch: int, gain_db: float) -> None:
        """Transmit gain of channel ``ch`` (dB, <= 0: attenuation) for later pushes."""
        self.tx_gain_db[ch] = float(gain_db)

    # ------------------------------------------------------------------ transmit
    def _gain(self) -> np.ndarray:
        g = 10.0 ** ((np.asarray(self.tx_gain_db) + self.lo.gain_error_db) / 20.0)
        return g[:, None]

    def tx_push(self, samples: np.ndarray, start: int) -> None:
        """DAC samples ``(n_tx, K)`` (full scale 1.0) leave the antenna from the radio's
        sample ``start`` on. All-zero blocks are not stored (silence costs nothing)."""
        x = np.asarray(samples, dtype=np.complex128)
        if x.ndim != 2 or x.shape[0] != self.n_tx:
            raise ConfigError(f"{self.name}: tx_push needs ({self.n_tx}, K), got {x.shape}")
        start = int(start)
        if not x.any():
            return              # the phase-noise processes bridge the gap exactly later
        pn = self._tx_pn.phases(start, x.shape[1], self.sample_rate_hz)
        with self.lock:
            self._segments.append(_Segment(start, start + x.shape[1], x, self._gain(), pn))
            self._expire()

    def tx_repeat(self, block: np.ndarray, start: int) -> None:
        """``block`` ``(n_tx, L)`` repeated from sample ``start`` until `tx_cut`."""
        x = np.asarray(block, dtype=np.complex128)
        if x.ndim != 2 or x.shape[0] != self.n_tx or x.shape[1] == 0:
            raise ConfigError(f"{self.name}: tx_repeat needs ({self.n_tx}, L>0), got {x.shape}")
        if not x.any():
            return
        with self.lock:
            self._segments.append(_Segment(int(start), math.inf, x, self._gain(), None,
                                           period=x.shape[1]))

    def tx_cut(self, after: int) -> None:
        """Nothing is transmitted from the radio's sample ``after`` on (buffer destroyed)."""
        with self.lock:
            keep = []
            for s in self._segments:
                if s.start >= after:
                    continue
                if s.end > after:
                    if s.period:
                        s.end = after
                    else:
                        s.data = s.data[:, :after - s.start]
                        s.pn = None if s.pn is None else s.pn[:after - s.start]
                        s.end = after
                        s._air = None
                        s._on_grid.clear()
                keep.append(s)
            self._segments = keep

    def tx_raw(self, start: int, n: int) -> np.ndarray:
        """The radio's own DAC samples (full scale 1.0, before the transmit gain) for its
        samples ``[start, start + n)``, zeros where nothing was sent: what the FPGA's digital
        TX->RX loopback sees."""
        out = np.zeros((self.n_tx, n), np.complex128)
        with self.lock:
            for s in self._segments:
                lo, hi = max(start, s.start), min(start + n, s.end)
                if lo < hi:
                    out[:, lo - start:int(hi) - start] += s.span(lo, int(hi), raw=True)
        return out

    def _expire(self) -> None:
        horizon = self.now() - int(self.air.history_s * self.clock_hz)
        self._segments = [s for s in self._segments if s.end > horizon]

    def _eval(self, ch: int, a: float, step: float, start: int, n: int) -> np.ndarray | None:
        """Channel ``ch`` of the band-limited transmitted signal at this radio's sample
        positions ``a + step k`` for a receiver's samples k in ``[start, start + n)``; None if
        nothing was sent near them. A finite segment is resampled onto a receiver's grid
        ``(a, step)`` once, whole, and cached (every receive window and antenna slices it)."""
        h = INTERP_HALF_TAPS
        p0 = a + step * start
        p_last = p0 + step * (n - 1)
        with self.lock:
            segs = [s for s in self._segments if s.end > p0 - h and s.start < p_last + h]
        if not segs:
            return None
        out = np.zeros(n, np.complex128)
        r0 = round(p0)
        exact = step == 1.0 and abs(p0 - r0) < 1e-6
        for s in segs:
            if exact:
                lo, hi = max(r0, s.start), min(r0 + n, s.end)
                if lo < hi:
                    out[lo - r0:int(hi) - r0] += s.span(lo, int(hi))[ch]
                continue
            if not s.period:
                k_lo = math.ceil((s.start - h - a) / step)
                k_hi = math.floor((s.end - 1 + h - a) / step) + 1
                c0 = max(0, (start - k_lo) // GRID_CHUNK)
                c1 = (min(start + n, k_hi) - 1 - k_lo) // GRID_CHUNK
                for c in range(c0, c1 + 1):
                    k0, vals = self._on_grid(s, a, step, k_lo + c * GRID_CHUNK, k_hi)
                    lo, hi = max(start, k0), min(start + n, k0 + vals.shape[1])
                    if lo < hi:
                        out[lo - start:hi - start] += vals[ch, lo - k0:hi - k0]
                continue
            lo = max(s.start, math.floor(p0) - h)
            hi = int(min(s.end, math.ceil(p_last) + h + 1))
            if lo >= hi:
                continue
            # outputs whose position lies within h samples of [lo, hi)
            k0 = max(0, math.ceil((lo - h - p0) / step))
            k1 = min(n, math.floor((hi - 1 + h - p0) / step) + 1)
            if k0 >= k1:
                continue
            x = s.span(lo, hi)[ch:ch + 1]
            out[k0:k1] += bandlimited_resample(x, p0 + step * k0 - lo, step, k1 - k0)[0]
        return out

    def _on_grid(self, s: _Segment, a: float, step: float, k0: int, k_hi: int
                 ) -> tuple[int, np.ndarray]:
        """A finite segment's air samples (all channels) at positions ``a + step k`` for the
        receiver indices k in ``[k0, min(k0 + GRID_CHUNK, k_hi))`` (the segment's samples
        within INTERP_HALF_TAPS of them): (k0, (n_tx, m)), cached on the segment."""
        key = (a, step, s.end, k0)
        got = s._on_grid.get(key)
        if got is None:
            h = INTERP_HALF_TAPS
            k1 = min(k0 + GRID_CHUNK, k_hi)
            lo = max(s.start, math.floor(a + step * k0) - h)
            hi = int(min(s.end, math.ceil(a + step * (k1 - 1)) + h + 1))
            vals = bandlimited_resample(s.span(lo, hi), a + step * k0 - lo, step, k1 - k0)
            got = s._on_grid[key] = (k0, vals)
        return got

    # ------------------------------------------------------------------ receive
    def rx_pull(self, start: int, n: int) -> np.ndarray:
        """Complex baseband ``(n_rx, n)`` at the antennas (air units, noise included) for the
        radio's samples ``[start, start + n)``."""
        n = int(n)
        air = self.air
        fs_r = self.clock_hz
        tau0 = self.time_of(start)
        y = np.zeros((self.n_rx, n), np.complex128)
        k = None
        evals: dict = {}
        for link in air.links_to(self):
            t = link.tx
            if t.tx_lo_hz is None or self.rx_lo_hz is None:
                continue
            df = t.tx_lo_hz * (1 + t.lo.ppm * 1e-6) - self.rx_lo_hz * (1 + self.lo.ppm * 1e-6)
            if abs(df) >= self.sample_rate_hz / 2:
                continue
            step = t.clock_hz / fs_r
            a = (self.epoch_s - t.epoch_s) * t.clock_hz     # t's position of our sample 0
            key = (id(t), link.tx_ch)
            if key not in evals:             # shared by every antenna this TX reaches
                evals[key] = t._eval(link.tx_ch, a, step, int(start), n)
            x = evals[key]
            if x is None:
                continue
            if k is None:
                k = np.arange(n, dtype=float)
            # 2 pi df tau_k, with the large tau0 term reduced mod one cycle first
            ph = 2 * math.pi * (((df * tau0) % 1.0) + df / fs_r * k)
            y[link.rx_ch] += link.h * x * np.exp(1j * (ph + t.tx_phase_rad - self.rx_phase_rad))
        if k is not None:     # RX LO phase noise on the signal (rotated AWGN is the same AWGN)
            pn = self._rx_pn.phases(int(start), n, self.sample_rate_hz)
            if pn is not None:
                y *= np.exp(-1j * pn)[None, :]
        nv = air.noise_var(self.sample_rate_hz)
        if nv > 0:
            w = self._rng.standard_normal((2, self.n_rx, n), dtype=np.float32)
            sd = math.sqrt(nv / 2)
            y.real += sd * w[0]
            y.imag += sd * w[1]
        return y


@dataclass(frozen=True)
class Link:
    """A path from ``tx`` channel ``tx_ch`` to a receiver's channel ``rx_ch``, complex
    amplitude gain ``h`` (linear)."""

    tx: AirRadio
    tx_ch: int
    rx_ch: int
    h: complex


class RealtimeAir:
    """The air between emulated radios, running with the wall clock (module docstring).

    sample_rate_hz: default sample rate of attached radios, Hz.
    time_scale: k >= 1 (emulated time runs k times slower than the wall clock).
    noise_dbm_hz: receiver noise density referred to the antenna, dBm/Hz (None: no noise).
    full_scale_dbm: antenna power of a full-scale sample at 0 dB transmit gain, dBm.
    seed: seeds every radio's phases and noise.
    history_s: transmitted samples kept this long (emulated s) for late receive pulls.
    clock: monotonic seconds (injectable).
    """

    def __init__(self, sample_rate_hz: float = 1.0e6, *, time_scale: float = 1.0,
                 noise_dbm_hz: float | None = DEFAULT_NOISE_DBM_HZ,
                 full_scale_dbm: float = DEFAULT_FULL_SCALE_DBM, seed: int = 0,
                 history_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not time_scale > 0:
            raise ConfigError(f"time_scale must be > 0, got {time_scale}")
        # the phase-noise and resampling code import scipy when first used (light role
        # processes); a real-time air must not stall its radios seconds for that mid-stream
        import scipy.fft  # noqa: F401
        import scipy.signal  # noqa: F401
        self.default_sample_rate_hz = float(sample_rate_hz)
        self.time_scale = float(time_scale)
        self.noise_dbm_hz = noise_dbm_hz
        self.full_scale_dbm = float(full_scale_dbm)
        self.seed = int(seed)
        self.history_s = float(history_s)
        self._clock = clock
        self._t0 = clock()
        self._radios: dict[str, AirRadio] = {}
        self._links: dict[str, list[Link]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ time
    def now_s(self) -> float:
        """Emulated time, seconds since the air started."""
        return (self._clock() - self._t0) / self.time_scale

    def sleep_until_s(self, tau: float, cancel: threading.Event | None = None) -> bool:
        """Sleep until emulated time ``tau`` (s); False if ``cancel`` got set first."""
        while True:
            wall = (tau - self.now_s()) * self.time_scale
            if wall <= 0:
                return True
            if cancel is not None:
                if cancel.wait(min(wall, 0.2)):
                    return False
            else:
                time.sleep(min(wall, 0.2))

    def noise_var(self, sample_rate_hz: float) -> float:
        """Complex noise variance per sample (air units) at ``sample_rate_hz`` (Hz)."""
        if self.noise_dbm_hz is None:
            return 0.0
        return 10.0 ** ((self.noise_dbm_hz - self.full_scale_dbm) / 10.0) * sample_rate_hz

    # ------------------------------------------------------------------ radios and links
    def attach_radio(self, name: str, n_tx: int, n_rx: int,
                     lo: LOParams | None = None) -> AirRadio:
        """A new radio port named ``name`` with ``n_tx`` / ``n_rx`` antennas."""
        with self._lock:
            if name in self._radios:
                raise ConfigError(f"a radio named {name!r} is already on this air")
            radio = AirRadio(self, name, n_tx, n_rx, lo or LOParams(), len(self._radios))
            self._radios[name] = radio
            self._links[name] = []
            return radio

    def radio(self, name: str) -> AirRadio:
        """The attached radio ``name``."""
        try:
            return self._radios[name]
        except KeyError:
            raise ConfigError(f"no radio {name!r} on this air; attached: "
                              f"{sorted(self._radios)}") from None

    def connect(self, tx: AirRadio, tx_ch: int, rx: AirRadio, rx_ch: int, *,
                gain_db: float | None = None, h: complex | None = None) -> None:
        """Add a path ``tx``[tx_ch] -> ``rx``[rx_ch]: a cable/attenuator of ``gain_db`` dB
        (negative: loss) or a complex amplitude ``h``."""
        if (gain_db is None) == (h is None):
            raise ConfigError("connect() needs exactly one of gain_db (dB) or h (complex)")
        if not (0 <= tx_ch < tx.n_tx and 0 <= rx_ch < rx.n_rx):
            raise ConfigError(f"no channel {tx_ch} on {tx.name} TX or {rx_ch} on {rx.name} RX")
        gain = complex(h) if h is not None else 10.0 ** (gain_db / 20.0)
        with self._lock:
            self._links[rx.name] = self._links[rx.name] + [Link(tx, tx_ch, rx_ch, gain)]

    def links_to(self, rx: AirRadio) -> list[Link]:
        """The paths into ``rx``."""
        return self._links[rx.name]
