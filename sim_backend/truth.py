"""The one handle through which code may read what only the simulator knows.

On a radio bench there are no true channels, no true noise variance and no common clock: CSI
comes from pilots, noise from silent samples, time from the receiver radio. `SimTruth` is how
simulator features (``--csi perfect``, reporting the CSI error, the channel agent's reference
channels) get them; whoever holds one is visibly a simulator-only path, and the run records
which truths it used (`AnalogRoundDriver.truth_used`).
"""
from __future__ import annotations

import numpy as np

from sim_backend.air import SimAir


class SimTruth:
    """Truth of a `SimAir`: the current channels and the air's noise variance."""

    def __init__(self, air: SimAir) -> None:
        self._air = air
        #: (the air's channel_generation, its true channels, read-only) of the last call
        self._channels: tuple[int, np.ndarray] | None = None

    def channels(self) -> np.ndarray:
        """True channels of the current fading block, complex ``(N, N_r, N_t)`` (the signal
        model's H: no LO phases or gains of impaired radios). Read-only, and the same array
        while the air's channels stay (`SimAir.channel_generation`)."""
        gen = self._air.channel_generation
        if self._channels is None or self._channels[0] != gen:
            H = np.array(self._air.true_channels())
            H.flags.writeable = False
            self._channels = (gen, H)
        return self._channels[1]

    def air_noise_var(self) -> float:
        """Complex AWGN variance per receive antenna per sample, full-scale units (linear)."""
        return float(self._air.noise_var)
