"""Impairment presets of whole benches, serializable for run configs.

* `uncalibrated_pluto_bench`: every Pluto has its own TCXO (AD9361 reference, +-25 ppm class).
  Each node's oscillator and the receiver's are drawn uniformly in +-ppm_max; the node's offset
  *relative to the receiver* (which defines the air grid) drives both its CFO
  (= rel_ppm 1e-6 carrier) and its SRO (= rel_ppm): up to +-50 ppm, i.e. +-46 kHz at 915 MHz,
  +-120 kHz at 2.4 GHz. Start-time offsets of 20..400 samples plus a uniform fraction (no
  hardware timestamps), random LO phase per tune, phase noise of -100 dBc/Hz at 100 kHz as a
  Wiener linewidth, gain errors uniform in +-2 dB, 12-bit DAC/ADC with clipping at full scale.
* `usrp_shared_reference`: B2xx on a shared 10 MHz + PPS: residual CFO uniform in +-0.5 Hz,
  SRO 0, start-time skew a fraction of a sample (0..0.5), random LO phase per tune (AD9361-based
  B2xx), small phase noise, gain errors uniform in +-0.5 dB, 12-bit converters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim_backend.impairments import (RxImpairmentParams, RxImpairments, TxImpairmentParams,
                                     TxImpairments, linewidth_from_dbc_hz)
from testbed.errors import ConfigError

AD9361_BITS = 12


@dataclass
class BenchImpairments:
    """Impairments of a bench: one `TxImpairmentParams` per node and one receiver."""

    tx: list[TxImpairmentParams]
    rx: RxImpairmentParams = field(default_factory=RxImpairmentParams)

    def to_dict(self) -> dict:
        """Plain-JSON dict: {"tx": [node dicts], "rx": receiver dict}."""
        return {"tx": [p.to_dict() for p in self.tx], "rx": self.rx.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "BenchImpairments":
        """Inverse of `to_dict`."""
        if "tx" not in data:
            raise ConfigError("bench impairments need a 'tx' list (one entry per node)")
        return cls([TxImpairmentParams.from_dict(d) for d in data["tx"]],
                   RxImpairmentParams.from_dict(data.get("rx", {})))

    def build_tx(self) -> list[TxImpairments]:
        """One transmit hook per node, in node order."""
        return [TxImpairments(p) for p in self.tx]

    def build_rx(self) -> RxImpairments:
        """The receiver hook."""
        return RxImpairments(self.rx)


def _check_nodes(n_nodes: int) -> None:
    if n_nodes < 1:
        raise ConfigError(f"n_nodes must be >= 1, got {n_nodes}")


def uncalibrated_pluto_bench(n_nodes: int, carrier_hz: float, rng: np.random.Generator,
                             ppm_max: float = 25.0, timing_range_samples: tuple[int, int] = (20, 400),
                             gain_error_max_db: float = 2.0) -> BenchImpairments:
    """Independent Plutos at ``carrier_hz`` (Hz); see the module doc for the distributions."""
    _check_nodes(n_nodes)
    rx_ppm = rng.uniform(-ppm_max, ppm_max)
    linewidth = linewidth_from_dbc_hz(-100.0, 100e3)
    nodes = []
    for _ in range(n_nodes):
        node_ppm = rng.uniform(-ppm_max, ppm_max)
        rel_ppm = ((1 + node_ppm * 1e-6) / (1 + rx_ppm * 1e-6) - 1.0) * 1e6
        offset = int(rng.integers(timing_range_samples[0], timing_range_samples[1] + 1))
        nodes.append(TxImpairmentParams.from_ppm(
            rel_ppm, carrier_hz,
            timing_offset_samples=offset + float(rng.uniform(0.0, 1.0)),
            phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
            random_phase_per_tune=True,
            phase_noise_linewidth_hz=linewidth,
            gain_error_db=float(rng.uniform(-gain_error_max_db, gain_error_max_db)),
            dac_bits=AD9361_BITS, dac_clip=True,
            seed=int(rng.integers(2 ** 31))))
    rx = RxImpairmentParams(phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
                            random_phase_per_tune=True, adc_bits=AD9361_BITS, adc_clip=True,
                            seed=int(rng.integers(2 ** 31)))
    return BenchImpairments(nodes, rx)


def usrp_shared_reference(n_nodes: int, rng: np.random.Generator,
                          residual_cfo_max_hz: float = 0.5, max_skew_samples: float = 0.5,
                          gain_error_max_db: float = 0.5) -> BenchImpairments:
    """B2xx radios on a shared 10 MHz/PPS reference; see the module doc."""
    _check_nodes(n_nodes)
    linewidth = linewidth_from_dbc_hz(-110.0, 100e3)
    nodes = [TxImpairmentParams(
        timing_offset_samples=float(rng.uniform(0.0, max_skew_samples)),
        cfo_hz=float(rng.uniform(-residual_cfo_max_hz, residual_cfo_max_hz)),
        sro_ppm=0.0,
        phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
        random_phase_per_tune=True,
        phase_noise_linewidth_hz=linewidth,
        gain_error_db=float(rng.uniform(-gain_error_max_db, gain_error_max_db)),
        dac_bits=AD9361_BITS, dac_clip=True,
        seed=int(rng.integers(2 ** 31))) for _ in range(n_nodes)]
    rx = RxImpairmentParams(phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
                            random_phase_per_tune=True, adc_bits=AD9361_BITS, adc_clip=True,
                            seed=int(rng.integers(2 ** 31)))
    return BenchImpairments(nodes, rx)
