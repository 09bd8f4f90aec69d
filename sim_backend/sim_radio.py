"""`SimRadio`: the `testbed.radio.base.Radio` interface on a `SimAir` (in-process).

A SimRadio is a transmitter (``node_id`` given: registered on the air with ``n_tx`` antennas),
the receiver (``receiver=True``), or both.

Clocks: the air's lock-step clock (`SimAir.now`) is the receiver's sample clock. A node's own
sample clock is tied to it by its TX impairment hook (`sim_backend.impairments`): node sample
``s`` lands at air sample ``a(s) = s / (1 + sro) + tau`` (``sro = sro_ppm 1e-6``,
``tau = timing_offset_samples``). Like a real Pluto, whose ``now()`` is its own sample counter:

* a transmit-only SimRadio's ``now()`` is its **node clock**: the earliest node sample whose burst,
  as the hook places it on the air (the resampler's ``interp_half_taps``-sample precursor
  included), does not start before the air clock (`node_sample_at`);
* the receiver, and a radio that is both transmitter and receiver, report the **air clock**
  (one radio has one ``now()``; the receiver's clock is the reference grid).

Without clock impairments (no hook, or sro = 0 and tau = 0) both clocks are equal.

Late handling: a burst whose node sample is before the node clock, or a receive window
starting before the air clock, counts ``late`` and raises `StreamError` (a continuous-stream
radio would have lost those samples). Clipping: samples beyond full scale (|I| or |Q| > 1) are
passed on unchanged (DAC clipping is the impairment layer's job); `clipped_samples` counts the
I/Q components above full scale.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sim_backend.air import SimAir
from testbed.errors import ConfigError, StreamError
from testbed.radio.base import (Radio, RadioIdentity, RadioSettings, StreamCounters, as_channel_matrix,
                                peak_component)

if TYPE_CHECKING:
    from testbed.phy.resample import GridMap


def clock_map(hook) -> tuple[float, float, int]:
    """``(sro, tau_samples, half_taps)`` of a TX impairment hook's node-clock -> air map.

    Read from the hook's public ``params`` (``sro_ppm`` in ppm -> sro dimensionless,
    ``timing_offset_samples``, ``interp_half_taps``, as in `sim_backend.impairments`); a hook
    without them (identity, or a custom hook) maps node sample s to air sample s: (0, 0, 0).
    """
    p = getattr(hook, "params", None)
    return (float(getattr(p, "sro_ppm", 0.0)) * 1e-6,
            float(getattr(p, "timing_offset_samples", 0.0)),
            int(getattr(p, "interp_half_taps", 0)))


def burst_air_start(node_sample: int, hook) -> int:
    """Air sample where the hook puts column 0 of a burst sent at node sample ``node_sample``:
    the hook's own `TxImpairments.air_start` (precursor included); a hook without one shifts by
    nothing."""
    air_start = getattr(hook, "air_start", None)
    return int(node_sample) if air_start is None else int(air_start(int(node_sample)))


def node_sample_at(air_sample: int, hook) -> int:
    """Earliest node sample (int) whose burst starts on the air at or after ``air_sample``:
    the inverse of the clock map, ``ceil((air_sample + half_taps - tau) (1 + sro))``, checked
    against `burst_air_start` so that rounding never puts a burst in the air's past."""
    t = int(air_sample)
    if getattr(hook, "params", None) is None:          # identity hook: one clock
        return t
    sro, tau, h = clock_map(hook)
    if sro == 0.0 and float(tau).is_integer():          # plain shift: exact inverse
        return t - int(tau)
    s = math.ceil((t + h - tau) * (1.0 + sro))
    while burst_air_start(s, hook) < t:
        s += 1
    while burst_air_start(s - 1, hook) >= t:
        s -= 1
    return s


def node_now(air: SimAir, node_id: int) -> int:
    """Node clock of transmitter ``node_id`` on ``air`` (samples): `node_sample_at` of the air
    clock through the node's TX hook."""
    return node_sample_at(air.now, air.tx_impairment(node_id))


class SimRadio(Radio):
    """A radio on a `SimAir`. See the module docstring."""

    has_hardware_timestamps = True

    def __init__(self, air: SimAir, node_id: int | None = None, *, n_tx: int = 1,
                 receiver: bool = False, tx_impairment=None) -> None:
        if node_id is None and not receiver:
            raise ConfigError("a SimRadio needs a node_id (transmitter) and/or receiver=True")
        self.air = air
        self.node_id = node_id
        self.is_receiver = bool(receiver)
        #: the air's TX hook of this node (fixed at registration): its node clock's map
        self._hook = None
        if node_id is not None:
            air.register_tx(node_id, n_tx, tx_impairment)
            self._hook = air.tx_impairment(node_id)
        self._settings = RadioSettings(n_tx_channels=n_tx if node_id is not None else 0,
                                       n_rx_channels=air.n_rx if receiver else 0,
                                       sample_rate_hz=air.sample_rate_hz)
        self._counters = StreamCounters()
        self._tuned_freq: float | None = None
        self.clipped_samples = 0
        self._closed = False

    # ---------------------------------------------------------------- Radio interface
    def configure(self, settings: RadioSettings) -> None:
        """Check channel counts against the air and call the on_tune hooks when the carrier
        changes (or on the first configure): a new random LO phase on AD9361-like radios."""
        if self.node_id is not None and settings.n_tx_channels != self._settings.n_tx_channels:
            raise ConfigError(f"node {self.node_id} is registered with {self._settings.n_tx_channels} "
                              f"TX antennas; settings ask for {settings.n_tx_channels}")
        if self.is_receiver and settings.n_rx_channels != self.air.n_rx:
            raise ConfigError(f"the air has {self.air.n_rx} receive antennas; settings ask for "
                              f"{settings.n_rx_channels}")
        if settings.sample_rate_hz != self.air.sample_rate_hz:
            raise ConfigError(f"sample_rate_hz must equal the air's {self.air.sample_rate_hz} Hz, "
                              f"got {settings.sample_rate_hz}")
        if self._tuned_freq != settings.center_freq_hz:
            if self.node_id is not None:
                self.air.tune_tx(self.node_id)
            if self.is_receiver:
                self.air.tune_rx()
            self._tuned_freq = settings.center_freq_hz
        self._settings = settings

    @property
    def settings(self) -> RadioSettings:
        return self._settings

    def now(self) -> int:
        """This radio's sample clock (samples): the node clock (`node_now`) for a transmit-only
        radio, the air clock for the receiver and for a transmitter that also receives."""
        if self.node_id is not None and not self.is_receiver:
            return self.node_now()
        return self.air.now

    def node_now(self) -> int:
        """The node clock of this transmitter (samples): the earliest node sample a burst can
        start at without landing in the air's past (see the module docstring)."""
        if self.node_id is None:
            raise ConfigError("this SimRadio is receive-only; it has no node clock")
        return node_sample_at(self.air.now, self._hook)

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Schedule a burst ``(n_tx, K)`` (full scale 1.0) at node sample ``at_sample`` (node
        clock, also for a radio that receives: late when before `node_now`)."""
        x = self._burst(samples, at_sample)
        self._counters.samples_sent += x.shape[1]
        self.air.schedule(self.node_id, x, int(at_sample))

    def transmit_resampled(self, samples: np.ndarray, grid: GridMap, at_sample: int) -> None:
        """The burst ``samples`` (n_tx, K) mapped by ``grid`` onto the node clock from node
        sample ``at_sample`` on (`Radio.transmit_resampled`), handed to the air unresampled:
        the node's TX hook composes ``grid`` with the node's clock map and resamples once
        (`sim_backend.impairments.TxImpairments.apply_tx_resampled`). The same band-limited
        signal on the air as resampling here and again in the air, up to rounding and the
        sinc tails the node grid's margin would cut. Clipping is counted on ``samples`` (the
        same signal at the receiver clock's instants)."""
        x = self._burst(samples, at_sample)
        self._counters.samples_sent += int(grid.n_out)
        self.air.schedule(self.node_id, x, int(at_sample), grid=grid)

    def _burst(self, samples: np.ndarray, at_sample: int) -> np.ndarray:
        """Checks of a burst at node sample ``at_sample`` (transmitter, open, not late) ->
        samples as complex64 (n_tx, K); counts components beyond full scale."""
        if self.node_id is None:
            raise ConfigError("this SimRadio is receive-only; give it a node_id to transmit")
        self._check_open()
        x = as_channel_matrix(samples, self._settings.n_tx_channels)
        earliest = self.node_now()
        if at_sample < earliest:
            self._counters.late += 1
            raise StreamError(f"burst at node sample {at_sample} is late (node clock now="
                              f"{earliest}, air clock {self.air.now}); schedule further ahead")
        comps = np.ascontiguousarray(x).view(np.float32)      # I and Q components
        if peak_component(comps) > 1.0:
            self.clipped_samples += int(np.count_nonzero(np.abs(comps) > 1.0))
        return x

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Window ``[at_sample, at_sample + n_samples)`` (air clock) as complex64
        ``(N_r, n_samples)``."""
        if not self.is_receiver:
            raise ConfigError("this SimRadio is transmit-only; create it with receiver=True")
        self._check_open()
        if at_sample < self.now():
            self._counters.late += 1
            raise StreamError(f"receive window at sample {at_sample} is already past "
                              f"(now={self.now()}); ask for a later window")
        self._counters.samples_received += int(n_samples)
        return self.air.receive(n_samples, int(at_sample), np.complex64).astype(np.complex64, copy=False)

    def counters(self) -> StreamCounters:
        return StreamCounters(**self._counters.as_dict())

    def identity(self) -> RadioIdentity:
        serial = f"sim-node-{self.node_id}" if self.node_id is not None else "sim-rx"
        return RadioIdentity(kind="sim", serial=serial, firmware="sim_backend",
                             address="inproc://air",
                             extra={"receiver": self.is_receiver, "node_id": self.node_id})

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StreamError("this SimRadio was closed; create a new one")
