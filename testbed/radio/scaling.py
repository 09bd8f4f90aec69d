"""Conversions between full-scale-1.0 complex samples and the Pluto's native integer units.

What pyadi-iio does with the numbers (adi/rx_tx.py, libiio 0.x path):
* ``tx(data)``: splits complex data into I and Q and casts each with ``astype`` to the TX
  channel's data format, which on the Pluto's ``cf-ad9361-dds-core-lpc`` is ``le:S16/16>>0``
  (int16; the AD9363's 12-bit DAC takes the 12 most significant bits). ``astype`` truncates
  toward zero and *wraps* out-of-range values, so scaling and clipping must happen here.
  pyadi-iio's examples and ADI's docs scale to about +-2**14, leaving 6 dB of headroom in the
  16-bit container; we map full scale 1.0 to 2**14 counts (`TX_FULL_SCALE_COUNTS`).
* ``rx()``: returns ``I + 1j*Q`` of the raw int16 buffers of ``cf-ad9361-lpc``, whose format
  is ``le:S12/16>>0`` — 12-bit ADC codes sign-extended into int16, range -2048..2047. Full
  scale 1.0 is 2**11 counts (`RX_FULL_SCALE_COUNTS`).
"""
from __future__ import annotations

import numpy as np

TX_FULL_SCALE_COUNTS = 2 ** 14
RX_FULL_SCALE_COUNTS = 2 ** 11
INT16_MAX = 2 ** 15 - 1


def to_dac_counts(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Full-scale-1.0 complex samples -> complex values in Pluto ``tx()`` counts (+-2**14),
    rounded to integers, shape kept; I and Q components beyond full scale (magnitude > 1.0)
    saturate at +-2**14 as a DAC does (never wrap around the int16 container). Returns the
    counts and how many components saturated."""
    x = np.asarray(samples)
    re, im = x.real, x.imag
    over = int(np.count_nonzero(np.abs(re) > 1.0) + np.count_nonzero(np.abs(im) > 1.0))
    if over:
        re, im = np.clip(re, -1.0, 1.0), np.clip(im, -1.0, 1.0)
    counts = np.round(re * TX_FULL_SCALE_COUNTS) + 1j * np.round(im * TX_FULL_SCALE_COUNTS)
    return counts.astype(np.complex128), over


def from_adc_counts(counts: np.ndarray) -> np.ndarray:
    """Pluto ``rx()`` raw counts (complex, I/Q in -2048..2047) -> complex64 normalized to
    full scale 1.0. Shape is kept."""
    return (np.asarray(counts) / RX_FULL_SCALE_COUNTS).astype(np.complex64)


def adc_clipped(counts: np.ndarray) -> int:
    """Number of samples whose I or Q sits at the ADC rails (|code| >= 2047): a sign that the
    RX gain is too high."""
    c = np.asarray(counts)
    rail = RX_FULL_SCALE_COUNTS - 1
    return int(np.count_nonzero((np.abs(c.real) >= rail) | (np.abs(c.imag) >= rail)))
