"""The `Radio` interface every backend implements (simulated air, PlutoSDR, USRP).

Time is a **sample count** on the radio's own sample clock (samples at ``sample_rate_hz``
since the radio's stream started), never seconds. That fits both kinds of hardware:

* USRP: the driver turns ``at_sample`` into a UHD ``time_spec`` (``at_sample / sample_rate_hz``
  seconds on the device time base, aligned to PPS) and sends a timed burst.
* PlutoSDR: no hardware timestamps; the driver keeps a continuous TX and RX stream and the
  sample count *is* the clock. A burst at ``at_sample`` is written into the outgoing stream at
  that position; a receive window is cut out of the incoming stream.
* Simulated air: the channel emulator maps each radio's sample clock to air time (with the
  timing/sampling-rate impairments) and superposes bursts at sample level.

Samples are complex baseband, **normalized to full scale**: magnitude 1.0 per I/Q component
is the DAC/ADC full scale. Drivers convert to their native units (Pluto: +-2**14 for tx(),
raw int16 counts from rx()). Arrays are shaped ``(n_channels, n_samples)``.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from testbed.phy.resample import GridMap

GAIN_MODES = ("manual", "slow_attack", "fast_attack", "hybrid")


@dataclass(frozen=True)
class RadioSettings:
    """What `Radio.configure` sets.

    sample_rate_hz: baseband sample rate in Hz (shared by RX and TX on the Pluto).
    center_freq_hz: carrier (LO) frequency in Hz, same for RX and TX.
    tx_gain_db: transmit gain in dB (Pluto: hardware gain -89.75..0 dB, i.e. attenuation).
    rx_gain_db: receive gain in dB; only applied when ``rx_gain_mode == "manual"``.
    rx_gain_mode: one of GAIN_MODES.
    n_tx_channels / n_rx_channels: number of transmit / receive antennas used.
    rf_bandwidth_hz: analog filter bandwidth in Hz; None lets the driver pick ~sample rate.
    """

    sample_rate_hz: float = 1.0e6
    center_freq_hz: float = 915.0e6
    tx_gain_db: float = -10.0
    rx_gain_db: float = 30.0
    rx_gain_mode: str = "manual"
    n_tx_channels: int = 1
    n_rx_channels: int = 1
    rf_bandwidth_hz: float | None = None

    def __post_init__(self) -> None:
        if not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0 Hz, got {self.sample_rate_hz}")
        if not self.center_freq_hz > 0:
            raise ValueError(f"center_freq_hz must be > 0 Hz, got {self.center_freq_hz}")
        if self.rx_gain_mode not in GAIN_MODES:
            raise ValueError(f"rx_gain_mode must be one of {GAIN_MODES}, got {self.rx_gain_mode!r}")
        if self.n_tx_channels < 0 or self.n_rx_channels < 0:
            raise ValueError("n_tx_channels and n_rx_channels must be >= 0")


@dataclass
class StreamCounters:
    """Streaming error counters. Never silently reset: a run reports them at the end.

    underflows: TX ran out of samples (Pluto: detected as a gap; USRP: async underflow msg).
    overflows: RX samples were dropped because nobody read them in time.
    late: a burst or receive window was scheduled for a sample time already past.
    samples_sent / samples_received: samples (per channel) handed to / returned by the
    radio; traffic, not errors.
    """

    underflows: int = 0
    overflows: int = 0
    late: int = 0
    samples_sent: int = 0
    samples_received: int = 0

    def total(self) -> int:
        """Sum of every error counted so far (not the sample counts)."""
        return self.underflows + self.overflows + self.late

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class RadioIdentity:
    """Who a radio is: driver kind, serial number, firmware version, address (URI/args)."""

    kind: str
    serial: str = "unknown"
    firmware: str = "unknown"
    address: str = ""
    extra: dict = field(default_factory=dict)


class Radio(abc.ABC):
    """A transmitter and/or receiver with its own sample clock. See the module docstring."""

    #: True when the hardware timestamps bursts itself (USRP); False when the driver keeps a
    #: continuous stream and counts samples (Pluto, which has no hardware timestamps).
    has_hardware_timestamps: bool = False
    #: True when the clock runs with the wall clock (hardware, emulated radios); False for the
    #: lock-step simulator, whose clock advances only when every party has spoken.
    realtime: bool = False

    def schedule_latency_samples(self) -> int:
        """How far past `now` (samples) a burst or window must be scheduled so that this radio
        can still meet it: its own pipeline (TX buffers queued ahead, RX buffer fill). The
        control plane adds the host and network latency it measures. 0 for the simulator."""
        return 0

    @abc.abstractmethod
    def configure(self, settings: RadioSettings) -> None:
        """Apply sample rate, carrier, gains and channel counts. Re-tuning the carrier gives a
        new random LO phase on AD9361-based radios; callers must re-calibrate phase after."""

    @property
    @abc.abstractmethod
    def settings(self) -> RadioSettings:
        """The settings in force (after the driver rounded them to what the hardware does)."""

    @abc.abstractmethod
    def now(self) -> int:
        """Current value of this radio's sample clock, in samples."""

    @abc.abstractmethod
    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Schedule a burst.

        samples: complex array ``(n_tx_channels, K)`` (or ``(K,)`` for one channel),
            normalized to full scale 1.0.
        at_sample: start time on this radio's sample clock, in samples. A time already past
            counts as ``late`` and raises `testbed.errors.StreamError`.
        """

    def transmit_resampled(self, samples: np.ndarray, grid: "GridMap", at_sample: int) -> None:
        """Schedule the band-limited resampling of ``samples`` (C, K) onto this radio's grid:
        sample ``at_sample + j`` of this radio's clock carries ``samples`` at input position
        ``grid.first_position + grid.step * j``, j < ``grid.n_out`` (a transmit correction's
        fractional timing and sample-rate offset, `calibration.corrections.CorrectedRadio`).

        Here: resampled on the host (what a node's CPU does), then `transmit`. The lock-step
        simulator's radio (`sim_backend.sim_radio.SimRadio`) instead composes the map with its
        simulated clock, so that the burst is resampled once on its way to the air, not twice.
        """
        self.transmit(grid.apply(samples).astype(np.complex64), at_sample)

    @abc.abstractmethod
    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Return the window ``[at_sample, at_sample + n_samples)`` of this radio's sample clock
        as a complex64 array ``(n_rx_channels, n_samples)`` normalized to full scale 1.0."""

    @abc.abstractmethod
    def counters(self) -> StreamCounters:
        """Underflow/overflow/late counts since the radio was opened."""

    def stream_breaks(self) -> int:
        """How many times this radio's sample clock may have slipped against the others since
        it was opened: underflows + overflows (and stream restarts on drivers that restart).
        A time base measured at one value holds only while the value stays the same."""
        c = self.counters()
        return c.underflows + c.overflows

    @property
    def tx_lo_offset_hz(self) -> float:
        """How far (Hz) the transmit carrier sits from the configured centre frequency (set by
        `set_tx_lo_offset`; 0 after every `configure`)."""
        return 0.0

    def set_tx_lo_offset(self, offset_hz: float) -> float:
        """Move the transmit carrier ``offset_hz`` (Hz) from the configured centre, the receive
        carrier unchanged; returns the offset the synthesizer gives (Hz, its resolution). A
        radio whose transmit LO cannot be moved on its own returns 0.0 (the default): callers
        then correct the whole carrier offset in baseband. A re-tune gives a new LO phase on
        AD9361-based radios."""
        return 0.0

    def done_until(self, sample: int) -> None:
        """Declare that this transmitter sends nothing more before ``sample`` (samples on the
        bench's reference clock: the receiver's). A lock-step simulated air needs it to release
        the receiver's window; real radios stream continuously and ignore it (no-op here)."""

    def identity(self) -> RadioIdentity:
        """Driver kind, serial and firmware; overridden by drivers that can read them."""
        return RadioIdentity(kind=type(self).__name__)

    def close(self) -> None:
        """Release the device (stop streams, destroy buffers). Idempotent."""

    def __enter__(self) -> "Radio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def peak_component(comps: np.ndarray) -> float:
    """Largest |I| or |Q| of the real components ``comps`` (any shape; full-scale units, 1.0 =
    the converter's full scale); 0.0 when empty. One temporary and one reduction."""
    # a 1-D reduction of the (fresh, contiguous) magnitudes: cheaper than axis=None over N-D
    return float(np.maximum.reduce(np.abs(comps).reshape(-1))) if comps.size else 0.0


def as_channel_matrix(samples: np.ndarray, n_channels: int) -> np.ndarray:
    """Coerce ``(K,)`` or ``(n_channels, K)`` complex samples to ``(n_channels, K)`` complex64;
    raise ValueError naming the expected shape otherwise."""
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != n_channels:
        raise ValueError(
            f"samples must have shape ({n_channels}, K) for {n_channels} channel(s), got {arr.shape}")
    return arr.astype(np.complex64, copy=False)
