"""`SimRadio`: the `testbed.radio.base.Radio` interface on a `SimAir` (in-process).

A SimRadio is a transmitter (``node_id`` given: registered on the air with ``n_tx`` antennas),
the receiver (``receiver=True``), or both. Its sample clock is the air's lock-step clock
(`SimAir.now`): timing and sampling-rate offsets of a node live in its TX impairment hook,
which maps the node clock onto the air grid, so ``now()`` reports the air clock for every radio.

Late handling: a burst or receive window starting before ``now()`` counts ``late`` and raises
`StreamError` (a continuous-stream radio would have lost those samples).
Clipping: samples beyond full scale (|I| or |Q| > 1) are passed on unchanged (DAC clipping is
the impairment layer's job); `clipped_samples` counts the I/Q components above full scale.
"""
from __future__ import annotations

import numpy as np

from sim_backend.air import SimAir
from testbed.errors import ConfigError, StreamError
from testbed.radio.base import Radio, RadioIdentity, RadioSettings, StreamCounters, as_channel_matrix


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
        if node_id is not None:
            air.register_tx(node_id, n_tx, tx_impairment)
        self._settings = RadioSettings(n_tx_channels=n_tx if node_id is not None else 0,
                                       n_rx_channels=air.n_rx if receiver else 0,
                                       sample_rate_hz=air.sample_rate_hz)
        self._counters = StreamCounters()
        self._tuned_freq: float | None = None
        self.clipped_samples = 0
        self.sent_samples = 0
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
        """The air's lock-step sample clock (samples)."""
        return self.air.now

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Schedule a burst ``(n_tx, K)`` (full scale 1.0) at node sample ``at_sample``."""
        if self.node_id is None:
            raise ConfigError("this SimRadio is receive-only; give it a node_id to transmit")
        self._check_open()
        x = as_channel_matrix(samples, self._settings.n_tx_channels)
        if at_sample < self.now():
            self._counters.late += 1
            raise StreamError(f"burst at sample {at_sample} is late (now={self.now()}); "
                              "schedule further ahead")
        self.clipped_samples += int(np.count_nonzero(np.abs(x.real) > 1.0)
                                    + np.count_nonzero(np.abs(x.imag) > 1.0))
        self.sent_samples += x.size
        self.air.schedule(self.node_id, x, int(at_sample))

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Window ``[at_sample, at_sample + n_samples)`` as complex64 ``(N_r, n_samples)``."""
        if not self.is_receiver:
            raise ConfigError("this SimRadio is transmit-only; create it with receiver=True")
        self._check_open()
        if at_sample < self.now():
            self._counters.late += 1
            raise StreamError(f"receive window at sample {at_sample} is already past "
                              f"(now={self.now()}); ask for a later window")
        return self.air.receive(n_samples, int(at_sample)).astype(np.complex64)

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
