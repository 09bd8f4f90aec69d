"""A time base across radios without timestamps (Pluto): the receiver's beacon.

Every Pluto counts samples from its own stream start, so two radios' counts differ by an
arbitrary offset (10^5..10^6 samples between processes started by hand), their TCXOs by tens
of ppm (CFO and SRO), and on one radio the TX count and the RX count differ by the DMA start
latency. The receiver's RX count is the bench's reference clock (the rounds are planned on
it). A node maps it onto its own TX count from three measurements (all in samples):

* ``d_rx``: the receiver radio's TX->RX offset: TX sample t is on the air at the same instant
  as its RX sample ``t + d_rx`` (digital loopback, `measure_loopback_offset`);
* the beacon: the receiver transmits `beacon_waveform` at its TX sample ``T``, i.e. at receiver
  RX sample ``M = T + d_rx``; the node finds it at its RX sample ``p`` (float) with CFO ``f``
  (Hz, the beacon's frequency on the node: receiver carrier minus node carrier) in a long
  capture (`find_beacon`: a CFO-blind coarse search over the whole capture, then fine timing,
  CFO and phase);
* ``d_node``: the node's own TX->RX offset (loopback).

With the node's clock ``1 + sro`` times the receiver's (one TCXO drives a Pluto's LO and its
sample clock, so ``sro = cfo / carrier`` with ``cfo = -f / (1 + f / carrier)``: f is measured
in the node's own, 1 + sro times faster, samples), node TX sample n is on the air with node RX sample
``n + d_node``, i.e. with receiver RX sample ``M + (n + d_node - p) / (1 + sro)``: exactly
`calibration.corrections.NodeCorrection`'s clock map ``a(n) = n / (1 + sro) + tau`` with
``tau = M + (d_node - p) / (1 + sro)`` and that ``cfo_hz`` (`timebase_correction`). The node
transmits through `CorrectedRadio` with it; a calibration measured on top composes with it
(`compose`).

The map holds while no radio's clock slips: `TimeBase` remembers the radios'
`Radio.stream_breaks` at the measurement and `check` raises `TimeBaseLost` once any moved
(underflow, overflow, stream restart); the controller then re-syncs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from calibration.corrections import NodeCorrection
from calibration.estimators.timing import detection_metric
from calibration.procedures import (CalibrationError, SoundingConfig, measure_burst,
                                    sounding_waveform)
from testbed.errors import StreamError
from testbed.radio.base import Radio

#: The beacon: two periods of an RRC-shaped (2 samples/symbol) length-255 Zadoff-Chu sequence
#: (1020 samples, band-limited, so sub-sample timing is defined); two periods for the fine CFO.
BEACON = SoundingConfig(zc_length=255, sps=2, n_periods=2, amplitude_dbfs=-6.0,
                        max_cfo_hz=2.0e3, min_metric=0.3)
#: The beacon's echo: a second burst this many samples after the first; the phase advance
#: between the two refines the CFO to ~0.05 Hz (one burst: ~1 Hz, i.e. radians between a
#: round's sounding and its payload ~10^5 samples later).
ECHO_SPACING = 1 << 15
#: Samples of capture kept on each side of the coarse peak for the fine estimate.
FINE_MARGIN = 64
#: Lags per FFT of the coarse search (chunks keep the streaming threads of the same process
#: served: one FFT over 2^18 samples holds the interpreter for ~0.5 s on a loaded machine).
COARSE_CHUNK = 1 << 14
#: Samples per blocking read of a long capture (between reads the caller's `keepalive` runs).
READ_CHUNK = 1 << 15
#: Length of a node's beacon capture (samples): covers the receiver's pipeline latency and the
#: control round trips (2^18 + 1 so the lag-1 products' FFT is a power of two).
CAPTURE_SAMPLES = (1 << 18) + 1


class TimeBaseLost(StreamError):
    """A radio's clock slipped (underflow, overflow, stream restart) since the time base was
    measured: re-sync before the next round. ``error_code`` is what the role reports."""

    error_code = "timebase_lost"


def beacon_waveform(cfg: SoundingConfig = BEACON) -> np.ndarray:
    """The beacon at unit power, complex (cfg.burst_len,)."""
    return sounding_waveform(cfg)


@dataclass(frozen=True)
class BeaconFix:
    """Where a beacon was found: ``arrival`` (float sample on the capturing radio's RX clock),
    ``cfo_hz`` (the beacon's frequency on that radio, Hz), ``phase_rad`` (carrier phase at the
    arrival, antenna 0), ``metric`` (normalized correlation of the coarse search, [0, 1])."""

    arrival: float
    cfo_hz: float
    phase_rad: float
    metric: float

    def as_dict(self) -> dict:
        return {"arrival": self.arrival, "cfo_hz": self.cfo_hz, "phase_rad": self.phase_rad,
                "metric": self.metric}


def _noop() -> None:
    return None


def find_beacon(capture: np.ndarray, start: int, sample_rate_hz: float,
                cfg: SoundingConfig = BEACON,
                keepalive: Callable[[], None] = _noop) -> BeaconFix:
    """Find the beacon in ``capture`` (N_r, n) (or (n,)) whose sample 0 is RX sample ``start``.

    Coarse, over the whole capture and blind to the CFO (up to +-fs/2): the FFT correlation of
    the capture's lag-1 products ``y[k+1] conj(y[k])`` with the beacon's (a CFO only turns them
    by a constant), `calibration.estimators.timing.detection_metric`, averaged over antennas;
    the coarse CFO is the phase of that correlation. Fine: `calibration.procedures.measure_burst`
    (sub-sample ML delay, Moose + known-pilot CFO, phase) on the de-rotated samples around the
    peak. Raises `CalibrationError` when the peak is below ``cfg.min_metric``. ``keepalive``
    is called between the search's chunks.
    """
    y = np.atleast_2d(np.asarray(capture, complex))
    ref = beacon_waveform(cfg)
    L = ref.size
    if y.shape[1] < L + 2 * FINE_MARGIN:
        raise ValueError(f"capture of {y.shape[1]} samples is shorter than the beacon "
                         f"({L}) plus margins; capture longer")
    d = y[:, 1:] * np.conj(y[:, :-1])
    z = ref[1:] * np.conj(ref[:-1])
    best, lag = -1.0, 0
    # overlapping chunks (overlap-save): the same lags as one FFT over the capture, in short
    # FFTs between which the radio's streaming thread gets the interpreter
    for s0 in range(0, d.shape[1] - z.size + 1, COARSE_CHUNK):
        m = detection_metric(d[:, s0:s0 + COARSE_CHUNK + z.size - 1], z).mean(axis=0)
        k = int(np.argmax(m))
        if m[k] > best:
            best, lag = float(m[k]), s0 + k
        keepalive()
    if best < cfg.min_metric:
        raise CalibrationError(f"no beacon in {y.shape[1]} captured samples (best normalized "
                               f"correlation {best:.2f} < {cfg.min_metric}); check that "
                               "the receiver transmits (its TX gain, the link) and the capture "
                               "covers the beacon's time")
    c = np.sum(d[:, lag:lag + z.size] * np.conj(z)[None, :])
    coarse_hz = float(np.angle(c)) * sample_rate_hz / (2 * np.pi)
    fix = _fine(y, start, lag, coarse_hz, ref, cfg, sample_rate_hz, best)
    # the echo: ECHO_SPACING after (or, if the search found the echo, before) this burst
    for sign in (1, -1):
        other = _fine(y, start, lag + sign * ECHO_SPACING, fix.cfo_hz, ref, cfg,
                      sample_rate_hz, best, required=False)
        if other is not None:
            first, second = (fix, other) if sign == 1 else (other, fix)
            gap = (second.arrival - first.arrival) / sample_rate_hz        # s
            turns = (second.phase_rad - first.phase_rad) / (2 * np.pi)
            k = np.round(fix.cfo_hz * gap - turns)                           # whole turns
            return BeaconFix(first.arrival, float((turns + k) / gap), first.phase_rad, best)
    return fix


def _fine(y: np.ndarray, start: int, lag: int, cfo_hz: float, ref: np.ndarray,
          cfg: SoundingConfig, fs: float, metric: float,
          required: bool = True) -> BeaconFix | None:
    """`measure_burst` around capture index ``lag`` after de-rotating by ``cfo_hz``; the
    phase is returned on the capture's own axis (at the arrival). None when not ``required``
    and the burst is not there (or not wholly inside the capture)."""
    L = ref.size
    lo, hi = lag - FINE_MARGIN, lag + L + FINE_MARGIN
    if lo < 0 or hi > y.shape[1]:
        if not required:
            return None
        lo, hi = max(lo, 0), min(hi, y.shape[1])
    win = y[:, lo:hi] * np.exp(-2j * np.pi * cfo_hz * np.arange(hi - lo) / fs)
    try:
        arrival, fine_hz, h, m, _ = measure_burst(win, start + lo, ref, cfg, fs)
    except CalibrationError:
        if required:
            raise
        return None
    if not required and m < max(cfg.min_metric, 0.5 * metric):
        return None
    # measure_burst's phase is referred to the de-rotated window: undo the rotation
    ph = float(np.angle(h[0])) + 2 * np.pi * cfo_hz * (arrival - start - lo) / fs
    return BeaconFix(arrival=float(arrival), cfo_hz=cfo_hz + float(fine_hz),
                     phase_rad=float(np.angle(np.exp(1j * ph))), metric=metric)


def send_beacon(radio: Radio, at_sample: int, cfg: SoundingConfig = BEACON,
                echo: bool = True) -> int:
    """Transmit the beacon on ``radio``'s TX channel 0 at its TX sample ``at_sample`` and (with
    ``echo``) again `ECHO_SPACING` samples later; returns ``at_sample``."""
    ref = beacon_waveform(cfg) * 10.0 ** (cfg.amplitude_dbfs / 20.0)
    x = np.zeros((radio.settings.n_tx_channels, ref.size), complex)
    x[0] = ref
    for k in range(2 if echo else 1):
        radio.transmit(x.astype(np.complex64), int(at_sample) + k * ECHO_SPACING)
    return int(at_sample)


def capture(radio: Radio, n_samples: int, back: int | None = None, first: int | None = None,
            keepalive: Callable[[], None] = _noop) -> tuple[np.ndarray, int]:
    """A window of ``n_samples`` of ``radio``'s RX from RX sample ``first``, or ``back``
    samples before its now() (already received samples count: the beacon may have started
    before the command came). Read in `READ_CHUNK` pieces, ``keepalive()`` between them.
    Returns (samples (N_r, n) complex128, first RX sample)."""
    if first is None:
        first = max(int(radio.now()) - int(back or 0), 0)
    n = int(n_samples)
    parts = []
    for k in range(first, first + n, READ_CHUNK):
        parts.append(radio.receive(min(READ_CHUNK, first + n - k), k).astype(np.complex128))
        keepalive()
    return np.concatenate(parts, axis=1), int(first)


def measure_loopback_offset(radio: Radio, cfg: SoundingConfig = BEACON,
                            search_samples: int = 1 << 16,
                            keepalive: Callable[[], None] = _noop) -> float:
    """The radio's TX->RX offset ``d`` (samples, float): its TX sample t comes back at RX sample
    ``t + d`` through the digital loopback (``radio.set_loopback``: AD9361 BIST, the DAC's words
    into the RX path sample for sample). Searches ``d`` in [-search/4, 3 search/4)."""
    if not hasattr(radio, "set_loopback"):
        raise CalibrationError(f"{type(radio).__name__} has no digital loopback to measure its "
                               "TX->RX offset; use a radio with timestamps or a cable")
    t = int(radio.now()) + int(radio.schedule_latency_samples()) + 1024
    radio.set_loopback(1)
    try:
        send_beacon(radio, t, cfg, echo=False)
        y, first = capture(radio, search_samples, first=t - search_samples // 4,
                           keepalive=keepalive)
    finally:
        radio.set_loopback(0)
    fix = find_beacon(y, first, radio.settings.sample_rate_hz, cfg, keepalive)
    return fix.arrival - t


def align_array(radios, loopback_offset: float, cfg: SoundingConfig = BEACON,
                keepalive: Callable[[], None] = _noop) -> list[float]:
    """Offsets (samples, float) of a receiver array's radios against the first
    (`testbed.radio.array.ArrayRadio`): the first transmits the beacon at its TX sample T (on
    the air with its RX sample ``T + loopback_offset``); radio k finds it at its RX sample
    p_k, so its offset is ``p_k - T - loopback_offset`` (0 for the first)."""
    first, others = radios[0], list(radios[1:])
    starts = [max(int(r.now()) - int(r.schedule_latency_samples()), 0) for r in others]
    t_b = send_beacon(first, first.now() + first.schedule_latency_samples(), cfg)
    offsets = [0.0]
    for r, start in zip(others, starts):
        y, _ = capture(r, CAPTURE_SAMPLES, first=start, keepalive=keepalive)
        fix = find_beacon(y, start, r.settings.sample_rate_hz, cfg, keepalive)
        offsets.append(fix.arrival - t_b - float(loopback_offset))
    return offsets


def timebase_correction(beacon_air_sample: float, fix: BeaconFix, node_loopback: float,
                        carrier_hz: float, sro_from_cfo: bool = True) -> NodeCorrection:
    """The node's clock map from the beacon (see the module docstring): ``beacon_air_sample``
    M (receiver RX sample of the beacon's start), ``fix`` (the node's `BeaconFix`),
    ``node_loopback`` d_node (samples), ``carrier_hz``. sro_from_cfo: the node's sample clock
    and LO share its TCXO (Pluto), so sro = cfo / carrier; else 0 (re-sync often)."""
    # the node measured the beacon's frequency in its own samples' units, which run 1 + sro
    # times fast: with sro = cfo / carrier, cfo = -f (1 + cfo / carrier) (0.8 Hz at 27 kHz and
    # 30 ppm: radians between a round's sounding and its payload)
    f = float(fix.cfo_hz)
    cfo = -f / (1.0 + f / float(carrier_hz)) if sro_from_cfo else -f
    sro = cfo / float(carrier_hz) if sro_from_cfo else 0.0
    tau = float(beacon_air_sample) + (float(node_loopback) - fix.arrival) / (1.0 + sro)
    return NodeCorrection(tau_samples=tau, sro_ppm=sro * 1e6, cfo_hz=cfo)


def compose(base: NodeCorrection, fine: NodeCorrection | None) -> NodeCorrection:
    """The clock map of ``fine`` (a calibration measured through ``base``: its times and
    frequencies are on ``base``'s receiver grid) applied after ``base``: a(n) =
    fine.air_position(base.air_position(n)); CFOs, phases and gains add."""
    if fine is None:
        return base
    sro = (1.0 + base.sro) * (1.0 + fine.sro) - 1.0
    return NodeCorrection(tau_samples=base.tau_samples / (1.0 + fine.sro) + fine.tau_samples,
                          sro_ppm=sro * 1e6, cfo_hz=base.cfo_hz + fine.cfo_hz,
                          phase_rad=base.phase_rad + fine.phase_rad,
                          gain_db=base.gain_db + fine.gain_db)


def carried_over(fine: NodeCorrection, at_air_sample: float) -> NodeCorrection:
    """What a calibration measured through one time base carries over to the next (a run
    re-establishes the time base; the file keeps ``fine`` only through this): its timing offset
    at receiver sample ``at_air_sample`` (the calibration's end) as a constant delay
    (``sro_ppm`` 0); CFO, phase and gain unchanged.

    A residual SRO measured through a time base is the time base's own clock-rate error (none
    on a shared reference; the beacon's estimate error on Plutos), not the radio's. It does not
    carry over to another time base, and applied there about receiver sample 0 it would move the
    timing by ``sro x (the run's sample numbers - the calibration's)``: 0.017 ppm from a coarse
    CFO estimate put the emulated USRP bench's payloads ~0.2 sample off, whose inter-symbol
    interference made the AirComp error 4x the design's prediction."""
    delay = float(fine.air_position(float(at_air_sample))) - float(at_air_sample)
    return replace(fine, tau_samples=delay, sro_ppm=0.0)


@dataclass
class TimeBase:
    """A measured clock map and the stream breaks of the radios it relies on.

    correction: the node's `NodeCorrection` (identity for the receiver's own radios);
    breaks: {name: `Radio.stream_breaks` at the measurement}; details: what was measured (JSON);
    measured_unix: when (s)."""

    correction: NodeCorrection
    breaks: dict[str, int]
    details: dict = field(default_factory=dict)
    measured_unix: float = field(default_factory=time.time)

    @staticmethod
    def snapshot(radios: dict[str, Radio]) -> dict[str, int]:
        """{name: stream_breaks} of ``radios`` now."""
        return {name: int(r.stream_breaks()) for name, r in radios.items()}

    def broken(self, radios: dict[str, Radio]) -> list[str]:
        """Names of ``radios`` whose clock slipped since the measurement."""
        now = self.snapshot(radios)
        return [n for n, b in now.items() if b != self.breaks.get(n, b)]

    def check(self, radios: dict[str, Radio], who: str) -> None:
        """Raise `TimeBaseLost` naming ``who`` and the radios that slipped."""
        bad = self.broken(radios)
        if bad:
            raise TimeBaseLost(f"{who}: the time base is lost: radio(s) {bad} had an underflow, "
                               "overflow or stream restart since the last sync; the controller "
                               "re-syncs before the next round")


def guarded(radios: dict[str, Radio], who: str, step: Callable[[], object]) -> object:
    """Run a measuring ``step`` and return its result, or raise `TimeBaseLost` (naming ``who``)
    when any of ``radios`` slipped meanwhile: its result would straddle the slip (a
    `StreamError` of a window across an overflow becomes `TimeBaseLost` then too)."""
    before = TimeBase.snapshot(radios)
    try:
        out = step()
    except StreamError as exc:
        if TimeBase.snapshot(radios) == before:
            raise
        raise TimeBaseLost(f"{who}: a radio slipped during the time base measurement "
                           f"({exc}); the controller measures again") from exc
    if TimeBase.snapshot(radios) != before:
        raise TimeBaseLost(f"{who}: a radio slipped during the time base measurement; the "
                           "controller measures again")
    return out

