"""The link budget: the one place that owns transmit amplitude, reference power, the frame's
fixed lengths, the receive search margin and the scheduling lead.

Transmit scaling: a precoder of power tr(B B^H) = 1 with unit-power symbols is sent at a total
sample power of ``ref_power`` = 10**(-backoff_db / 10) of full scale (|x|^2 = 1 is 0 dBFS):
every transmitted sample is ``amplitude * (B_n S_n)``, amplitude = 10**(-backoff_db / 20). At
the default 12 dB backoff the per-component rms is ~0.18 of full scale, so clipping needs a
> 5 sigma peak. The receiver divides what it receives by the same amplitude, so the signal model
is Y = sum_n H_n B_n S_n + W with sigma^2 = (noise variance on the air, full-scale units) /
ref_power: `signal_noise_var` is that conversion, and every caller uses it (change the backoff
and the design sees the right noise).
"""
from __future__ import annotations

from dataclasses import dataclass

#: Default transmit backoff, dB below full scale, of a unit-power precoder.
DEFAULT_BACKOFF_DB = 12.0


@dataclass(frozen=True)
class LinkBudget:
    """Amplitude, frame lengths (samples) and timing margins (samples) of every round.

    backoff_db: transmit backoff of a unit-power precoder, dB below full scale.
    preamble_len / guard_len / pilot_len: Zadoff-Chu preamble, silent guard, one pilot slot.
    noise_len: silent samples in a sounding frame from which the receiver estimates the noise.
    search_margin: samples searched each side of the scheduled frame start.
    lead_samples: how far after the executor's clock a round is scheduled (receiver clock).
    detect_threshold: normalized preamble correlation (0..1) below which no frame is found.
    """

    backoff_db: float = DEFAULT_BACKOFF_DB
    preamble_len: int = 63
    guard_len: int = 16
    pilot_len: int = 32
    noise_len: int = 64
    search_margin: int = 16
    lead_samples: int = 64
    detect_threshold: float = 0.2

    def __post_init__(self) -> None:
        for name in ("preamble_len", "pilot_len"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2 samples, got {getattr(self, name)}")
        for name in ("guard_len", "noise_len", "search_margin", "lead_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 samples, got {getattr(self, name)}")
        if not 0 < self.detect_threshold < 1:
            raise ValueError(f"detect_threshold must lie in (0, 1), got {self.detect_threshold}")

    @property
    def amplitude(self) -> float:
        """Sample amplitude of precoder power 1 (full-scale units): 10**(-backoff_db / 20)."""
        return 10.0 ** (-self.backoff_db / 20.0)

    @property
    def ref_power(self) -> float:
        """Total sample power of precoder power 1 (full-scale units, linear)."""
        return self.amplitude ** 2

    def signal_noise_var(self, air_noise_var: float) -> float:
        """Signal-model sigma^2 (linear, units of the precoder power) from the noise variance
        per receive antenna per sample on the air (full-scale units, linear)."""
        return float(air_noise_var) / self.ref_power

    def air_noise_var(self, signal_noise_var: float) -> float:
        """Inverse of `signal_noise_var`."""
        return float(signal_noise_var) * self.ref_power


#: The budget every round uses unless told otherwise.
DEFAULT_BUDGET = LinkBudget()
