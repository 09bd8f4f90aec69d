"""Per-node corrections and their application in the transmit path (`CorrectedRadio`).

Clock model (one node vs the receiver, whose sample clock is the reference "air" grid):
node sample ``s`` (float) lands at receiver sample ``a(s) = s / (1 + sro) + tau``
(``sro = sro_ppm * 1e-6``, ``tau`` in samples), and the node's carrier is ``cfo_hz`` above the
receiver's, so a sample landing at receiver sample ``m`` is turned by
``exp(j (2 pi cfo_hz m / fs + phase_rad))`` and scaled by ``10**(gain_db / 20)``.

`CorrectedRadio` wraps a node's `Radio` and takes burst times **on the receiver clock**: a burst
``x[k]`` for receiver sample ``T`` is pre-rotated on the receiver grid
(``u[k] = x[k] exp(-j (2 pi cfo (T + k) / fs + phase)) / gain``, continuous in absolute time),
then resampled onto the node's grid (node sample ``n`` carries the band-limited ``u`` at
``a(n) - T``: fractional timing advance and SRO in one step) and handed to the wrapped radio at
the first node sample. AirComp runs unchanged on top.

Carrier offset: rotating a full-band (one sample per symbol) burst by a CFO of tens of kHz in
baseband moves ``|cfo| / fs`` of its spectrum across the Nyquist edge, where the node's DAC
sends it on the wrong side of the band: a receiver's filters drop it, and a receiver whose grid
is fractionally offset from the one the burst was corrected for (the second radio of a receiver
array) gets it with the wrong phase. Measured on the emulated two-Pluto array (27-34 kHz
CFOs, 2.7-3.4 % of the band): its second radio's payload error 6-14x the noise, the array's
AirComp MSE 10-16x the design's prediction. So when the wrapped radio can move its transmit LO
on its own (`Radio.set_tx_lo_offset`: a Pluto's TX synthesizer), `CorrectedRadio` puts the CFO
there (``-cfo / (1 + sro)`` Hz, rounded to the synthesizer's step) and rotates only the residual
in baseband (a few Hz); it re-tunes only when the residual would exceed `CARRIER_RETUNE_HZ`, so
a refined CFO of a fraction of a Hz does not give the LO a new phase.

The node-grid positions form an affine grid in ``u``'s samples: node sample ``n0 + j`` carries
``u`` at ``a(n0) - T + j / (1 + sro)``, so the resampling is the exact band-limited one of
`testbed.phy.resample.bandlimited_resample` (FFT + chirp-z, exact to rounding even for a
full-band payload; a complex64 burst, what radios carry, in single precision; a node does this
on its CPU). The node burst starts ``margin`` samples
before the node sample where ``u[0]`` falls and ends ``margin`` after ``u[K-1]``'s: the kept
sinc tails (precursor and tail) of the band-limited burst, whose energy beyond ``margin`` is
about ``|u_edge|^2 / (pi^2 margin)`` of the edge samples'. Non-zero runs apart by long
silences (an FDMA node's preamble and its own slot) are resampled one by one, with the same
margin around each (`testbed.phy.resample.resample_runs`). A pure integer offset with no SRO is
a plain copy.

The resampling map goes to the wrapped radio with the burst (`Radio.transmit_resampled`): a
hardware or emulated radio's driver resamples on the host, as a node does on its CPU; the
lock-step simulator's radio composes the map with the node's simulated clock and resamples
once on the way to the air (`sim_backend.impairments.TxImpairments.apply_tx_resampled`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from testbed.phy.resample import GridMap, as_burst
from testbed.radio.base import Radio, RadioIdentity, RadioSettings, StreamCounters, as_channel_matrix


@dataclass(frozen=True)
class NodeCorrection:
    """What calibration measured for one node, i.e. what the transmit path must undo.

    tau_samples: clock-map offset ``tau`` (receiver sample where node sample 0 lands).
    sro_ppm: node sample clock above the receiver's, ppm.
    cfo_hz: node carrier above the receiver's, Hz (on the receiver's time axis).
    phase_rad: carrier phase at receiver sample 0 relative to the reference channel, rad.
    gain_db: amplitude of the node's chain relative to the reference channel, dB.
    """

    tau_samples: float = 0.0
    sro_ppm: float = 0.0
    cfo_hz: float = 0.0
    phase_rad: float = 0.0
    gain_db: float = 0.0

    @property
    def sro(self) -> float:
        """Relative sample-clock offset (dimensionless)."""
        return self.sro_ppm * 1e-6

    def air_position(self, node_sample: np.ndarray | float) -> np.ndarray | float:
        """Receiver sample (float) where node sample(s) land: s / (1 + sro) + tau."""
        return np.asarray(node_sample, float) / (1.0 + self.sro) + self.tau_samples

    def node_position(self, air_sample: np.ndarray | float) -> np.ndarray | float:
        """Node sample (float) that lands at receiver sample(s): (a - tau)(1 + sro)."""
        return (np.asarray(air_sample, float) - self.tau_samples) * (1.0 + self.sro)

    def timing_advance(self, air_sample: float) -> float:
        """Timing advance in samples at receiver time ``air_sample``: a - node_position(a)."""
        return float(air_sample - self.node_position(air_sample))

    def to_dict(self) -> dict:
        """Plain-JSON dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NodeCorrection":
        """Inverse of `to_dict`."""
        return cls(**{k: float(v) for k, v in data.items()})


def precorrect_map(samples: np.ndarray, air_start: int, corr: NodeCorrection,
                   sample_rate_hz: float, half_taps: int = 128
                   ) -> tuple[np.ndarray, GridMap | None, int]:
    """Burst (C, K) meant to arrive at receiver sample ``air_start`` -> (``u``, ``grid``, node
    sample ``n0`` of the node burst's column 0): ``u`` is the burst rotated and scaled on the
    receiver grid (C, K) and ``grid`` the map of ``u`` onto the node grid (`GridMap`: node
    sample n0 + j carries u at a(n0 + j) - air_start); ``grid`` is None for a plain integer
    shift, where ``u`` is already the node burst (margins included). `precorrect` applies it.
    See the module docstring for the maths.

    half_taps: margin in samples kept on each side of the burst on the node grid (the
    band-limited burst's precursor and tail); the resampling itself is exact whatever it is.
    """
    x = as_burst(samples)                  # complex64 (a radio's burst) stays single precision
    cdt = x.dtype
    if x.ndim != 2:
        raise ValueError(f"samples must be (channels, samples), got shape {x.shape}")
    margin = int(half_taps)
    if margin < 0:
        raise ValueError(f"half_taps (the burst's margin, samples) must be >= 0, got {half_taps}")
    k_len = x.shape[1]
    base = (corr.cfo_hz / sample_rate_hz * float(air_start)) % 1.0
    ph = 2 * math.pi * (base + corr.cfo_hz / sample_rate_hz * np.arange(k_len)) + corr.phase_rad
    u = x * (np.exp(-1j * ph) * 10.0 ** (-corr.gain_db / 20.0)).astype(cdt)[None, :]
    sro, tau = corr.sro, corr.tau_samples
    if sro == 0.0 and float(tau).is_integer():
        n0 = int(air_start) - int(tau) - margin
        y = np.zeros((x.shape[0], k_len + 2 * margin), cdt)
        y[:, margin:margin + k_len] = u
        return y, None, n0
    n0 = math.floor(float(corr.node_position(air_start))) - margin
    n1 = math.ceil(float(corr.node_position(air_start + k_len - 1))) + margin
    # a(n0) - air_start, with n0 / (1 + sro) written as n0 - n0 sro / (1 + sro) so that large
    # absolute sample numbers keep their fraction
    first = (n0 - int(air_start)) - n0 * sro / (1.0 + sro) + tau
    return u, GridMap(first, 1.0 / (1.0 + sro), n1 - n0 + 1, margin), n0


def precorrect(samples: np.ndarray, air_start: int, corr: NodeCorrection, sample_rate_hz: float,
               half_taps: int = 128) -> tuple[np.ndarray, int]:
    """Burst (C, K) meant to arrive at receiver sample ``air_start`` -> (node-grid burst
    (C, M), node sample of its column 0): `precorrect_map` with its map applied. See the
    module docstring for the maths; half_taps as there (samples)."""
    u, grid, n0 = precorrect_map(samples, air_start, corr, sample_rate_hz, half_taps)
    return (u if grid is None else grid.apply(u)), n0


#: Largest CFO (Hz) left to the baseband rotation before the transmit LO is re-tuned: 5e-4 of
#: a 1 MS/s band crosses its edge (error <= -33 dB of the signal). A calibration's refinements
#: (`procedures.refine_cfo`: the raw sounding's CFO error, < 250 Hz for its first 2000-sample
#: gap) stay in baseband, so the phase they measure through the LO stays valid.
CARRIER_RETUNE_HZ = 500.0


class CorrectedRadio(Radio):
    """A node `Radio` whose times are on the receiver clock and whose bursts are pre-corrected.

    radio: the node's radio; correction: its `NodeCorrection`; half_taps: margin (samples) of
    band-limited precursor/tail kept on each side of a corrected burst (`precorrect`; the
    resampling is exact, this only sets how much of the sinc tails is sent).
    ``now()`` is the receiver-clock time of the wrapped radio's now (rounded up, plus the
    margin, so a burst at ``now()`` is not late). Re-tuning the carrier
    (`configure` with another centre frequency) sets ``needs_recalibration``: the LO phase is new.
    """

    def __init__(self, radio: Radio, correction: NodeCorrection, half_taps: int = 128) -> None:
        self.radio = radio
        self.half_taps = int(half_taps)
        self.has_hardware_timestamps = radio.has_hardware_timestamps
        self.needs_recalibration = False
        self.correction = correction

    @property
    def correction(self) -> NodeCorrection:
        """The node's correction (what calibration measured; its whole CFO)."""
        return self._correction

    @correction.setter
    def correction(self, corr: NodeCorrection) -> None:
        self._correction = corr
        self._split_carrier()

    def baseband_cfo_hz(self) -> float:
        """The part of the correction's CFO (Hz) the transmit LO does not take: what the burst
        is rotated by in baseband."""
        c = self._correction
        return c.cfo_hz + self.radio.tx_lo_offset_hz * (1.0 + c.sro)

    def _split_carrier(self) -> None:
        """Move the transmit LO by -cfo / (1 + sro) when the baseband residual would exceed
        `CARRIER_RETUNE_HZ` (module docstring): the node's carrier, (f + offset)(1 + sro) on
        the receiver's time axis, then sits ``cfo + offset (1 + sro)`` from the receiver's."""
        c = self._correction
        if abs(self.baseband_cfo_hz()) > CARRIER_RETUNE_HZ:
            self.radio.set_tx_lo_offset(-c.cfo_hz / (1.0 + c.sro))

    def configure(self, settings: RadioSettings) -> None:
        """Delegate; a new carrier frequency invalidates the phase correction."""
        if settings.center_freq_hz != self.radio.settings.center_freq_hz:
            self.needs_recalibration = True
        self.radio.configure(settings)
        self._split_carrier()          # a configure puts the transmit LO back on the centre

    @property
    def settings(self) -> RadioSettings:
        return self.radio.settings

    def now(self) -> int:
        """Earliest receiver-clock sample a burst can be scheduled for (samples)."""
        return int(math.ceil(float(self.correction.air_position(self.radio.now())))) + self.half_taps + 1

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Burst (n_tx, K) (full scale 1.0) to arrive at receiver sample ``at_sample``."""
        x = as_channel_matrix(samples, self.settings.n_tx_channels)
        corr = replace(self._correction, cfo_hz=self.baseband_cfo_hz())
        u, grid, n0 = precorrect_map(x, int(at_sample), corr, self.settings.sample_rate_hz,
                                     self.half_taps)
        send_resampled = getattr(self.radio, "transmit_resampled", None)
        if grid is not None and send_resampled is not None:
            send_resampled(u, grid, n0)    # resampled by the radio (once, on a simulated one)
        else:                              # a plain shift, or a stand-in without the method
            self.radio.transmit((u if grid is None else grid.apply(u)).astype(np.complex64), n0)

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Delegated unchanged (the wrapped radio's own clock)."""
        return self.radio.receive(n_samples, at_sample)

    @property
    def realtime(self) -> bool:
        return self.radio.realtime

    def schedule_latency_samples(self) -> int:
        """The wrapped radio's, plus the correction's precursor margin (samples)."""
        return self.radio.schedule_latency_samples() + self.half_taps + 1

    def done_until(self, sample: int) -> None:
        """Delegated (``sample`` is on the receiver clock, as the corrected bursts' times)."""
        self.radio.done_until(sample)

    def counters(self) -> StreamCounters:
        return self.radio.counters()

    def identity(self) -> RadioIdentity:
        return self.radio.identity()

    def close(self) -> None:
        self.radio.close()
