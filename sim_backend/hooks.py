"""Impairment hooks of the simulated air.

The channel emulator (`sim_backend.air`) calls these at two points, so that every impairment
the calibration has to fix lives in one place (`sim_backend.impairments`) and the emulator
itself stays a clean superposition + fading + AWGN:

* transmit side, per node radio, on each burst *before* the channel:
  ``apply_tx(samples, start_sample, sample_rate_hz) -> (samples_out, start_sample_out)``
  ``samples`` is ``(n_tx, K)`` complex on the node's own sample clock starting at
  ``start_sample`` (integer, node clock). The hook returns the burst as it appears on the
  **air's** sample grid and the integer air sample where ``samples_out[:, 0]`` lands (it may
  be longer than K to carry a fractional delay or resampling tail). Timing offset, sampling
  rate offset, CFO, phase per tune, phase noise, gain error and DAC quantization/clipping go here.
  Optionally ``apply_tx_resampled(samples, grid, start_sample, sample_rate_hz)``, the same
  for a burst given as ``samples`` mapped by ``grid`` (`testbed.phy.resample.GridMap`) onto
  the node clock from ``start_sample`` on: a hook that maps node time onto air time anyway
  composes the two maps and resamples once (a node's transmit correction, then its clock).
* receive side, on each received window *after* AWGN:
  ``apply_rx(samples, start_sample, sample_rate_hz) -> samples_out`` (same shape,
  ``(n_rx, n)``, ``start_sample`` on the air grid). Receiver CFO/phase, ADC quantization and
  clipping go here.
* ``on_tune(rng)``: called when the radio is (re)configured to a carrier; AD9361 radios come up
  with a new random LO phase after every tune.

The identity hooks below are what the emulator uses when impairments are switched off.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TxImpairment(Protocol):
    def apply_tx(self, samples: np.ndarray, start_sample: int,
                 sample_rate_hz: float) -> tuple[np.ndarray, int]: ...

    def on_tune(self, rng: np.random.Generator) -> None: ...


@runtime_checkable
class RxImpairment(Protocol):
    def apply_rx(self, samples: np.ndarray, start_sample: int,
                 sample_rate_hz: float) -> np.ndarray: ...

    def on_tune(self, rng: np.random.Generator) -> None: ...


class NoTxImpairment:
    """Ideal transmitter: the burst lands on the air grid unchanged, at its own start time."""

    def apply_tx(self, samples, start_sample, sample_rate_hz):
        return samples, int(start_sample)

    def on_tune(self, rng):
        return None


class NoRxImpairment:
    """Ideal receiver: the window is returned unchanged."""

    def apply_rx(self, samples, start_sample, sample_rate_hz):
        return samples

    def on_tune(self, rng):
        return None
