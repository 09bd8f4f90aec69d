"""Calibration procedure over `Radio`s: sounding, per-node offsets, corrections, residuals.

**Direction: reciprocal uplink, not a downlink beacon.** `SimAir` has one receiver and
transmitters only (no downlink path), so each node sends a sounding burst in its own time slot
(orthogonal in time) and the receiver estimates that node's timing offset, CFO, phase and gain.
The quantities are the same ones a node would measure from a receiver beacon (timing and CFO
are reciprocal; the phase needs a training exchange anyway, docs/sync.md), and the corrections
are applied in the node's transmit path (`calibration.corrections.CorrectedRadio`). On a Pluto
bench the receiver-side estimates are sent to the nodes over the control plane.

Sounding burst: a periodic band-limited waveform (Zadoff-Chu symbols, cyclic RRC shaping at 2
samples/symbol, period P samples) repeated ``n_periods`` times. Estimation per node:

1. joint coarse search over integer lag and CFO grid (step fs / (4 L)), |corr|^2 summed over
   receive antennas (robust to CFO up to ``max_cfo_hz``);
2. fine CFO: repeated-preamble (Moose) correlation summed over antennas and periods;
3. fine delay: `calibration.estimators.timing.estimate_delay` per antenna after CFO removal,
   combined with weights |peak|^2;
4. channel vector h (N_r,): LS against the reference delayed by the fractional delay.
   With a reference channel (a known cable/sim truth) the complex ratio gives phase and gain;
   without one the phase is referred to receive antenna 0 and the gain is not corrected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from calibration.corrections import CorrectedRadio, NodeCorrection
from calibration.estimators.sequences import rrc_taps, zadoff_chu
from calibration.estimators.timing import estimate_delay
from testbed.errors import TestbedError
from testbed.phy.resample import bandlimited_resample
from testbed.radio.base import Radio


class CalibrationError(TestbedError):
    """A sounding burst was not found or the measurement is unusable."""


@dataclass(frozen=True)
class SoundingConfig:
    """Sounding parameters (samples unless stated).

    zc_length: Zadoff-Chu symbols per period (odd); sps: samples per symbol; rolloff: RRC;
    n_periods: repetitions (>= 2); amplitude_dbfs: burst level (dB re full scale, -12 as the
    AirComp link); max_offset_samples: largest |timing offset| searched; max_cfo_hz: largest
    |CFO| searched (Hz); lead_samples: scheduling lead; min_metric: normalized peak needed.
    """

    zc_length: int = 63
    sps: int = 2
    rolloff: float = 0.35
    n_periods: int = 3
    amplitude_dbfs: float = -12.0
    max_offset_samples: int = 512
    max_cfo_hz: float = 60e3
    lead_samples: int = 64
    min_metric: float = 0.3

    @property
    def period(self) -> int:
        return self.zc_length * self.sps

    @property
    def burst_len(self) -> int:
        return self.period * self.n_periods

    @property
    def slot_len(self) -> int:
        """Slot per node: burst + search range on both sides + a guard."""
        return self.burst_len + 2 * self.max_offset_samples + 64


def sounding_waveform(cfg: SoundingConfig) -> np.ndarray:
    """Unit-power periodic sounding burst, complex (burst_len,): cyclic RRC-shaped ZC."""
    p = cfg.period
    up = np.zeros(p, complex)
    up[::cfg.sps] = zadoff_chu(cfg.zc_length, 1)
    taps = rrc_taps(cfg.sps, cfg.rolloff, 8)
    h = np.zeros(p)
    for i, t in enumerate(taps):                        # cyclic convolution
        h[(i - len(taps) // 2) % p] += t
    period = np.fft.ifft(np.fft.fft(up) * np.fft.fft(h))
    period /= np.sqrt(np.mean(np.abs(period) ** 2))
    return np.tile(period, cfg.n_periods)


def fine_config(cfg: SoundingConfig) -> SoundingConfig:
    """Search ranges for soundings through corrected radios: +-32 samples, +-2 kHz."""
    return replace(cfg, max_offset_samples=32, max_cfo_hz=2e3)


@dataclass
class NodeMeasurement:
    """One node's sounding result. delay_samples: arrival (receiver clock, float) minus the
    node-clock send time; cfo_hz; channel (N_r,) complex (relative to the sent amplitude);
    metric: normalized correlation peak in [0, 1]; peak_lag / correlation: the coarse
    correlation magnitude around the peak (for plots)."""

    delay_samples: float
    cfo_hz: float
    channel: np.ndarray
    metric: float
    arrival_sample: float
    correlation: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


def measure_burst(win: np.ndarray, win_start: int, ref: np.ndarray, cfg: SoundingConfig,
                  fs: float) -> tuple[float, float, np.ndarray, float, np.ndarray]:
    """One burst of ``ref`` in ``win`` (N_r, n), sample 0 of which is ``win_start``: (arrival
    sample (float, ``win_start`` + delay), cfo Hz, channel (N_r,) at the arrival, normalized
    metric, coarse correlation). Searches lags 0..n-L and CFOs within +-cfg.max_cfo_hz."""
    n_r, n = win.shape
    L = ref.size
    m_abs = win_start + np.arange(n)
    step = fs / (4.0 * L)
    grid = np.arange(-cfg.max_cfo_hz, cfg.max_cfo_hz + step, step)
    nfft = 1 << int(math.ceil(math.log2(n + L)))
    # the coarse search only picks (CFO, lag) and weighs the antennas: single precision (the
    # receiver's own sample format) suffices, and the fine estimates below use the full window
    from scipy.fft import fft, ifft                  # imported when used: a light start for roles
    REF = np.conj(fft(ref.astype(np.complex64), nfft))
    rot = np.exp(-2j * np.pi * np.outer(grid, np.arange(n)) / fs).astype(np.complex64)  # (G, n)
    X = fft(win.astype(np.complex64)[None, :, :] * rot[:, None, :], nfft, axis=-1)   # (G, N_r, nfft)
    c = ifft(X * REF, axis=-1)[..., : n - L + 1]
    score = np.sum(np.abs(c) ** 2, axis=1)                                  # (G, lags)
    g, lag = np.unravel_index(int(np.argmax(score)), score.shape)
    energy = np.sum(np.abs(win[:, lag:lag + L]) ** 2)
    metric = float(score[g, lag] / (np.vdot(ref, ref).real * max(energy, 1e-300)))
    if metric < cfg.min_metric:
        raise CalibrationError(f"sounding burst not found (normalized peak {metric:.2f} < "
                               f"{cfg.min_metric}); raise the transmit gain or max_offset_samples")
    coarse = float(grid[g])
    # fine CFO: Moose on the periods, summed over antennas (trim 4 samples at each edge)
    seg = win[:, lag + 4: lag + L - 4] * np.exp(-2j * np.pi * coarse * m_abs[lag + 4: lag + L - 4] / fs)
    P = cfg.period
    z = np.sum(seg[:, P:] * np.conj(seg[:, :-P]))
    cfo = coarse + float(np.angle(z)) * fs / (2 * np.pi * P)
    # fine delay per antenna after CFO removal
    # phase referred to the burst's first sample: the channel is the phase at arrival
    derot = win * np.exp(-2j * np.pi * cfo * (np.arange(n) - lag) / fs)[None, :]
    lo = max(lag - 8, 0)
    sub = derot[:, lo: lo + L + 16] if lo + L + 16 <= n else derot[:, lo:]
    taus = np.atleast_1d(estimate_delay(sub, ref, max_lag=min(16, sub.shape[1] - L)))
    w = np.abs(c[g, :, lag]) ** 2
    tau = lo + float(np.sum(w * taus) / np.sum(w))
    # channel: LS against the fractionally delayed reference
    k0 = int(math.floor(tau))
    ref_d = bandlimited_resample(ref[None, :], -16.0 - (tau - k0), 1.0, L + 32)[0]
    y = derot[:, k0 - 16: k0 + L + 16] if k0 >= 16 and k0 + L + 16 <= n else None
    if y is None:
        raise CalibrationError("sounding burst too close to the window edge; "
                               "raise max_offset_samples")
    h = y @ np.conj(ref_d) / np.vdot(ref_d, ref_d).real
    corr_mag = np.sqrt(score[g])
    return win_start + tau, cfo, h, metric, corr_mag


def sound_nodes(tx_radios: Sequence[Radio], rx_radio: Radio, cfg: SoundingConfig | None = None,
                start_sample: int | None = None,
                progress: Callable[[int], None] | None = None) -> list[NodeMeasurement]:
    """Send one sounding burst per node in its own slot and measure every node.

    The burst of node n is sent at ``T_n = start + n * slot + max_offset`` on the node's clock
    (for a `CorrectedRadio`, the receiver clock). Returns one `NodeMeasurement` per node, with
    ``delay_samples`` = arrival - T_n (samples). Amplitudes are divided out (channel relative to
    the sent waveform).
    """
    return sound_nodes_repeated(tx_radios, rx_radio, cfg, start_sample, (0,), progress)[0]


def sound_nodes_repeated(tx_radios: Sequence[Radio], rx_radio: Radio,
                         cfg: SoundingConfig | None = None, start_sample: int | None = None,
                         shots: Sequence[int] = (0,),
                         progress: Callable[[int], None] | None = None
                         ) -> list[list[NodeMeasurement]]:
    """`sound_nodes` repeated at ``shots`` (sample offsets from the start, increasing, at
    least one slot frame apart) within one receive window: each node sends one burst holding
    all its soundings (zeros between them) and the receiver reads one window, so the shots'
    spacing is exact whatever the radios' scheduling lead (real-time benches: seconds of
    round trips between two separately scheduled soundings). Returns [shot][node]."""
    cfg = cfg or SoundingConfig()
    fs = rx_radio.settings.sample_rate_hz
    ref = sounding_waveform(cfg)
    amp = 10.0 ** (cfg.amplitude_dbfs / 20.0)
    n = len(tx_radios)
    frame = n * cfg.slot_len
    shots = [int(k) for k in shots]
    if any(b - a < frame for a, b in zip(shots, shots[1:])) or shots[0] != 0:
        raise ValueError(f"shots {shots} must start at 0 and be at least one sounding frame "
                         f"({frame} samples) apart")
    start = (max([rx_radio.now()] + [r.now() for r in tx_radios]) + cfg.lead_samples
             if start_sample is None else int(start_sample))
    sends = [[start + k + i * cfg.slot_len + cfg.max_offset_samples for i in range(n)]
             for k in shots]
    for i, radio in enumerate(tx_radios):
        first = sends[0][i]
        x = np.zeros((radio.settings.n_tx_channels, sends[-1][i] - first + ref.size), complex)
        for row in sends:
            x[0, row[i] - first: row[i] - first + ref.size] = amp * ref
        radio.transmit(x.astype(np.complex64), first)
    rx = rx_radio.receive(shots[-1] + frame, start).astype(np.complex128) / amp
    out = []
    for k, row in zip(shots, sends):
        shot = []
        for i, t in enumerate(row):
            w0 = k + i * cfg.slot_len
            win = rx[:, w0: w0 + cfg.slot_len]
            arrival, cfo, h, metric, corr = measure_burst(win, start + w0, ref, cfg, fs)
            shot.append(NodeMeasurement(arrival - t, cfo, h, metric, arrival, corr))
            if progress is not None:
                progress(1)
        out.append(shot)
    return out


def compute_corrections(measurements: Sequence[NodeMeasurement], send_samples: Sequence[float],
                        carrier_hz: float, sample_rate_hz: float,
                        reference_channels: np.ndarray | None = None,
                        sro_from_cfo: bool = True) -> list[NodeCorrection]:
    """Per-node corrections from raw (uncorrected) soundings.

    send_samples[n]: node-clock send time of node n's burst; carrier_hz / sample_rate_hz (Hz);
    reference_channels (N, N_r) complex: the known channel per node (cable or simulator truth)
    for absolute phase and gain; without it phase is referred to receive antenna 0 and gain_db = 0.
    sro_from_cfo: one oscillator per radio (Pluto), so sro_ppm = cfo / carrier (else 0).
    """
    out = []
    fs = float(sample_rate_hz)
    for n, (m, s) in enumerate(zip(measurements, send_samples)):
        sro_ppm = m.cfo_hz / carrier_hz * 1e6 if sro_from_cfo else 0.0
        tau = m.arrival_sample - s / (1.0 + sro_ppm * 1e-6)
        if reference_channels is not None:
            href = np.asarray(reference_channels[n]).reshape(-1)
            c = np.vdot(href, m.channel) / np.vdot(href, href).real
            phase, gain = float(np.angle(c)), float(20 * np.log10(abs(c)))
        else:
            phase, gain = float(np.angle(m.channel[0])), 0.0
        # measured at the arrival; the correction's phase is at receiver sample 0
        phase = float((phase - 2 * np.pi * ((m.cfo_hz / fs * m.arrival_sample) % 1.0)
                       + np.pi) % (2 * np.pi) - np.pi)
        out.append(NodeCorrection(float(tau), float(sro_ppm), float(m.cfo_hz), phase, gain))
    return out


@dataclass
class Residual:
    """Errors left after correction (measured with a corrected sounding): timing (samples),
    CFO (Hz), phase (deg) and gain (dB) per node, shape (N,) each."""

    timing_samples: np.ndarray
    cfo_hz: np.ndarray
    phase_deg: np.ndarray
    gain_db: np.ndarray

    def to_dict(self) -> dict:
        return {k: [float(v) for v in getattr(self, k)]
                for k in ("timing_samples", "cfo_hz", "phase_deg", "gain_db")}


def residuals(measurements: Sequence[NodeMeasurement],
              reference_channels: np.ndarray | None = None) -> Residual:
    """Residual errors from a sounding sent through `CorrectedRadio`s (targets on the receiver
    clock, so delay_samples is the timing error). Phase/gain vs the reference channel (or
    vs antenna 0 / 0 dB without one); CFO: the burst's own repeated-preamble estimate (coarse:
    `residuals_over_gap` measures it from the phase change between two soundings)."""
    ph, g = [], []
    for n, m in enumerate(measurements):
        if reference_channels is not None:
            href = np.asarray(reference_channels[n]).reshape(-1)
            c = np.vdot(href, m.channel) / np.vdot(href, href).real
        else:
            c = m.channel[0] / abs(m.channel[0])
        ph.append(np.degrees(np.angle(c)))
        g.append(20 * np.log10(abs(c)))
    return Residual(np.array([m.delay_samples for m in measurements]),
                    np.array([m.cfo_hz for m in measurements]), np.array(ph), np.array(g))


@dataclass
class CalibrationRun:
    """Result of `calibrate`: raw measurements, the final corrections (after the CFO/phase
    refinement: what the corrected radios apply and a calibration file must store), corrected
    radios, residuals, the time the procedure took (s, wall clock), the receiver sample it
    finished at, and the corrections from the raw sounding before refinement."""

    before: list[NodeMeasurement]
    corrections: list[NodeCorrection]
    corrected: list[CorrectedRadio]
    after: list[NodeMeasurement]
    residual: Residual
    elapsed_s: float
    end_sample: int
    initial_corrections: list[NodeCorrection] = field(default_factory=list)


def _complex_error(m: NodeMeasurement, href: np.ndarray | None) -> complex:
    if href is not None:
        return complex(np.vdot(href, m.channel) / np.vdot(href, href).real)
    return complex(m.channel[0])


def _wrap(phase: float) -> float:
    return float((phase + np.pi) % (2 * np.pi) - np.pi)


def refine_cfo(corrected: Sequence[CorrectedRadio], rx_radio: Radio, cfg: SoundingConfig,
               gaps_samples: Sequence[int], reference_channels: np.ndarray | None = None,
               progress: Callable[[int], None] | None = None,
               sro_from_cfo: bool = False) -> list[float]:
    """Refine CFO and phase of already corrected radios by phase tracking (in place).

    Corrected soundings now and after each gap (receiver samples), all in one receive window
    (`sound_nodes_repeated`): the residual phase change between consecutive soundings over
    their time difference is the residual CFO, each gap refining the estimate of the ones
    before (short bursts cannot resolve it under phase noise: the Wiener phase adds a slope
    error of var ~ q fs^2 / (4 pi^2 dt), q the per-sample increment variance, so longer gaps
    help). Each gap must keep the CFO error left by the ones before under 1/2 cycle over it
    (the first: the raw sounding's CFO error). The phase correction is set from the last
    sounding, whose arrival samples (per node) are returned. sro_from_cfo: one oscillator per
    radio (Pluto), so the SRO follows the refined CFO (sro = cfo / carrier), the clock map kept
    at the last sounding's arrival: the raw sounding's CFO is coarse (tens of Hz off at 20 dB),
    and an SRO from it (0.02 ppm per 18 Hz at 915 MHz) moves the timing ~0.2 sample per 10^7
    samples.
    """
    carrier = rx_radio.settings.center_freq_hz
    fs = rx_radio.settings.sample_rate_hz
    shots = [0]
    for gap in gaps_samples:
        shots.append(shots[-1] + len(corrected) * cfg.slot_len + int(gap))
    start = max([rx_radio.now()] + [r.now() for r in corrected]) + cfg.lead_samples
    meas = sound_nodes_repeated(corrected, rx_radio, cfg, start, shots, progress)
    anchors = []
    for n, radio in enumerate(corrected):
        href = None if reference_channels is None else np.asarray(reference_channels[n]).reshape(-1)
        ph = [float(np.angle(_complex_error(shot[n], href))) for shot in meas]
        ts = [shot[n].arrival_sample for shot in meas]
        df = 0.0          # residual CFO of the current correction, refined gap by gap
        for k in range(1, len(ts)):
            dt = ts[k] - ts[k - 1]
            miss = _wrap(ph[k] - ph[k - 1] - 2 * np.pi * df * dt / fs)
            df += miss * fs / (2 * np.pi * dt)
        c, t = radio.correction, ts[-1]
        # new line through the last observed phase, with the refined slope
        c = replace(c, cfo_hz=c.cfo_hz + df, phase_rad=c.phase_rad + ph[-1] - 2 * np.pi * df * t / fs)
        if sro_from_cfo:
            n_t = float(c.node_position(t))
            sro = c.cfo_hz / carrier
            c = replace(c, sro_ppm=sro * 1e6, tau_samples=t - n_t / (1.0 + sro))
        radio.correction = c
        anchors.append(t)
    return anchors


def residuals_over_gap(first: Sequence[NodeMeasurement], second: Sequence[NodeMeasurement],
                       reference_channels: np.ndarray | None = None,
                       sample_rate_hz: float = 1.0) -> Residual:
    """Residual errors from two corrected soundings of one receive window: timing and gain of
    the second; phase: how far the phase moved from the first to the second (what the CFO
    correction misses over that gap; the constant phase is re-anchored by every run's
    pilots); CFO: that change over the time between them (Hz)."""
    a = residuals(first, reference_channels)
    b = residuals(second, reference_channels)
    dph = np.array([np.degrees(_wrap(np.radians(q - p))) for p, q in zip(a.phase_deg,
                                                                          b.phase_deg)])
    dt = np.array([m2.arrival_sample - m1.arrival_sample for m1, m2 in zip(first, second)])
    cfo = np.radians(dph) * sample_rate_hz / (2 * np.pi * dt)
    return Residual(b.timing_samples, cfo, dph, b.gain_db)


def calibrate(tx_radios: Sequence[Radio], rx_radio: Radio, cfg: SoundingConfig | None = None,
              reference_channels: Callable[[], np.ndarray] | np.ndarray | None = None,
              sro_from_cfo: bool = True, half_taps: int = 256,
              refine_gaps_samples: Sequence[int] = (2_000, 20_000, 60_000),
              residual_gap_samples: int = 20_000,
              progress: Callable[[int], None] | None = None) -> CalibrationRun:
    """Sound every node (raw), compute corrections, wrap the radios in `CorrectedRadio`, refine
    CFO/phase by phase tracking (`refine_cfo`, soundings after ``refine_gaps_samples``), sound
    twice more ``residual_gap_samples`` apart to measure the residuals (`residuals_over_gap`),
    and return everything (`CalibrationRun`). ``progress(k)`` is called once per node per
    sounding (7 per node)."""
    import time
    t0 = time.perf_counter()
    cfg = cfg or SoundingConfig()
    carrier = rx_radio.settings.center_freq_hz
    ref_h = reference_channels() if callable(reference_channels) else reference_channels
    if ref_h is not None:
        ref_h = np.asarray(ref_h)[..., 0] if np.ndim(ref_h) == 3 else np.asarray(ref_h)
    start = max([rx_radio.now()] + [r.now() for r in tx_radios]) + cfg.lead_samples
    before = sound_nodes(tx_radios, rx_radio, cfg, start, progress)
    sends = [start + i * cfg.slot_len + cfg.max_offset_samples for i in range(len(tx_radios))]
    corr = compute_corrections(before, sends, carrier, rx_radio.settings.sample_rate_hz, ref_h,
                               sro_from_cfo)
    wrapped = [CorrectedRadio(r, c, half_taps) for r, c in zip(tx_radios, corr)]
    fine = fine_config(cfg)
    refine_cfo(wrapped, rx_radio, fine, refine_gaps_samples, ref_h, progress, sro_from_cfo)
    res_start = max([rx_radio.now()] + [r.now() for r in wrapped]) + fine.lead_samples
    gap = len(wrapped) * fine.slot_len + int(residual_gap_samples)
    first, after = sound_nodes_repeated(wrapped, rx_radio, fine, res_start, (0, gap), progress)
    res = residuals_over_gap(first, after, ref_h, rx_radio.settings.sample_rate_hz)
    final = [w.correction for w in wrapped]       # after the CFO/phase refinement
    return CalibrationRun(before, final, wrapped, after, res, time.perf_counter() - t0,
                          int(rx_radio.now()), corr)
