"""A receiver array: several radios that form one N_r-antenna receiver (`ArrayRadio`).

Two 2R2T Plutos give 4 antennas; each counts samples from its own stream start, so the array
keeps, per radio k, its offset ``offsets[k]`` (samples, float): radio k's RX sample that is
simultaneous with the first radio's RX sample 0 (radio k's count = first radio's count +
offsets[k]; measured by the time base, `calibration.timebase.align_array`). Radios on one
shared reference (the rev C's 40 MHz CLK IN) have no CFO or SRO between them; the remaining
constant phase per antenna is part of every channel estimate.

`receive(n, at)` reads the same instant from every radio, ``[at + offsets[k], ...)`` on radio
k (a fractional offset by exact band-limited resampling, `testbed.phy.resample`), and stacks
the channels in radio order. The array's clock (`now`, bursts, the beacon) is the first
radio's.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from testbed.errors import ConfigError
from testbed.phy.resample import bandlimited_resample
from testbed.radio.base import Radio, RadioIdentity, RadioSettings, StreamCounters

#: Samples read on each side of a fractionally offset window for the resampling.
RESAMPLE_MARGIN = 64


class ArrayRadio(Radio):
    """Radios ``radios`` (at least one) as one receiver; offsets as in the module docstring
    (default 0: not aligned yet). Transmits through the first radio."""

    def __init__(self, radios: Sequence[Radio], offsets: Sequence[float] | None = None) -> None:
        if not radios:
            raise ConfigError("an array needs at least one radio")
        self.radios = list(radios)
        self.offsets = [0.0] * len(self.radios)
        if offsets is not None:
            self.set_offsets(offsets)
        first = self.radios[0]
        self.has_hardware_timestamps = first.has_hardware_timestamps

    def set_offsets(self, offsets: Sequence[float]) -> None:
        """Each radio's offset against the first (samples; the first's is 0)."""
        offsets = [float(o) for o in offsets]
        if len(offsets) != len(self.radios):
            raise ValueError(f"{len(offsets)} offsets for {len(self.radios)} radios")
        if offsets[0] != 0.0:
            raise ValueError(f"the first radio is the array's clock: offset 0, got {offsets[0]}")
        self.offsets = offsets

    @property
    def realtime(self) -> bool:
        return self.radios[0].realtime

    def configure(self, settings: RadioSettings) -> None:
        """Each radio with its own channel count; the carrier, rate and gains of ``settings``."""
        import dataclasses
        for r in self.radios:
            r.configure(dataclasses.replace(settings, n_rx_channels=r.settings.n_rx_channels,
                                            n_tx_channels=r.settings.n_tx_channels))

    @property
    def settings(self) -> RadioSettings:
        """The first radio's settings with every radio's receive channels."""
        import dataclasses
        return dataclasses.replace(self.radios[0].settings, n_rx_channels=sum(
            r.settings.n_rx_channels for r in self.radios))

    def now(self) -> int:
        return self.radios[0].now()

    def schedule_latency_samples(self) -> int:
        return max(r.schedule_latency_samples() for r in self.radios)

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Through the first radio (its TX channels, its clock)."""
        self.radios[0].transmit(samples, at_sample)

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """The window ``[at, at + n)`` of the array's clock from every radio, stacked
        ``(sum of n_rx_channels, n)`` complex64."""
        n, at = int(n_samples), int(at_sample)
        parts = []
        for radio, off in zip(self.radios, self.offsets):
            pos = at + off
            k0 = math.floor(pos)
            frac = pos - k0
            if frac == 0.0:
                parts.append(radio.receive(n, k0))
                continue
            m = RESAMPLE_MARGIN
            y = radio.receive(n + 2 * m, k0 - m).astype(np.complex128)
            parts.append(bandlimited_resample(y, m + frac, 1.0, n).astype(np.complex64))
        return np.concatenate(parts, axis=0)

    def done_until(self, sample: int) -> None:
        for r in self.radios:
            r.done_until(sample)

    def counters(self) -> StreamCounters:
        total = StreamCounters()
        for r in self.radios:
            for k, v in r.counters().as_dict().items():
                setattr(total, k, getattr(total, k) + v)
        return total

    def stream_breaks(self) -> int:
        return sum(r.stream_breaks() for r in self.radios)

    def identity(self) -> RadioIdentity:
        ids = [r.identity() for r in self.radios]
        return RadioIdentity(kind=ids[0].kind, serial="+".join(i.serial for i in ids),
                             firmware=ids[0].firmware,
                             address=" ".join(i.address for i in ids),
                             extra={"array": [i.serial for i in ids], "offsets": self.offsets})

    def close(self) -> None:
        for r in self.radios:
            r.close()
