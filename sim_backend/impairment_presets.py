"""Impairment presets of whole benches, serializable for run configs.

* `uncalibrated_pluto_bench`: every Pluto has its own TCXO (AD9361 reference, +-25 ppm class).
  Each node's oscillator and the receiver's are drawn uniformly in +-ppm_max; the node's offset
  *relative to the receiver* (which defines the air grid) drives both its CFO
  (= rel_ppm 1e-6 carrier) and its SRO (= rel_ppm): up to +-50 ppm, i.e. +-46 kHz at 915 MHz,
  +-120 kHz at 2.4 GHz. Start-time offsets of 20..400 samples plus a uniform fraction (no
  hardware timestamps), random LO phase per tune, gain errors uniform in +-2 dB, 12-bit DAC/ADC
  with clipping at full scale. Phase noise, on every node *and* on the receiver (each Pluto has
  its own synthesizer and TCXO):

  - PLL: the AD9361 LO is a fractional-N PLL locked to the TCXO, so its phase noise is bounded:
    flat inside the loop, 1/f^2 outside. We take 0.5 deg rms (still pessimistic: the AD9361
    datasheet's integrated phase noise is a few tenths of a degree below 2.4 GHz) with the
    far-out level -100 dBc/Hz at 100 kHz, which puts the corner at B = pi f^2 L / sigma^2 =
    41 kHz (in-loop level sigma^2 / (pi B) = -92 dBc/Hz, correlation time 1/(2 pi B) = 4 us).
    Measured (docs/calibration.md): this PLL alone raises the 4-node AirComp MSE at 20 dB by
    1.10x; at 1 deg rms it would be 1.50x on its own (the per-frame pilots see each LO's phase
    once, the payload at other instants: ~2 N (sigma^2 + pilot-averaged sigma^2)).
  - TCXO reference: its slow random walk, multiplied up to the carrier, is a Wiener term:
    -120 dBc/Hz at 100 Hz offset at 40 MHz (a typical TCXO of this class), taken as 1/f^2 and
    scaled by 20 log10(carrier / 40 MHz) (+27.2 dB at 915 MHz), i.e. lw = 2 pi f^2 L =
    3.3e-5 Hz at 915 MHz: a 0.8 deg rms walk in 1 s, invisible within a frame but what limits
    channel state kept from calibration time (calibration.drift).
* `usrp_shared_reference`: B2xx on a shared 10 MHz + PPS: residual CFO uniform in +-0.5 Hz,
  SRO 0, start-time skew a fraction of a sample (0..0.5), random LO phase per tune (AD9361-based
  B2xx), gain errors uniform in +-0.5 dB, 12-bit converters. Phase noise: PLL only, 0.5 deg rms
  with -110 dBc/Hz at 100 kHz (corner 4.1 kHz; the disciplined 40 MHz VCTCXO of a B2xx is
  cleaner than a Pluto's TCXO); no Wiener term, since the shared reference's wander is common
  to all radios and only the residual CFO remains.

Receiver level plan: the Pluto receiver's manual gain puts the ADC full scale
(`RxImpairmentParams.adc_full_scale`, air units) ``RX_HEADROOM_DB`` = 12 dB above the
per-component rms of all nodes at full power (`rx_full_scale`). At full scale 1.0 the 4-node
sum sits only ~9 dB below clipping and the clipped peaks alone made the calibrated AirComp MSE
1.76x the impairment-free one (measured, docs/calibration.md).

Both presets keep ``INTERP_HALF_TAPS`` = 128 samples of sinc tail on each side of a
fractionally delayed burst (the air's delay itself is exact, `bandlimited_resample`); the tail
energy beyond H samples is ~1/(pi^2 H) of an edge sample's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim_backend.impairments import (RxImpairmentParams, RxImpairments, TxImpairmentParams,
                                     TxImpairments, linewidth_from_dbc_hz,
                                     pll_corner_from_dbc_hz)
from testbed.errors import ConfigError
from testbed.phy.budget import DEFAULT_BUDGET

AD9361_BITS = 12
INTERP_HALF_TAPS = 128

PLUTO_PLL_RMS_DEG = 0.5
PLUTO_PLL_DBC_HZ = (-100.0, 100e3)           # (L dBc/Hz, offset Hz) outside the loop
TCXO_HZ = 40e6
TCXO_DBC_HZ = (-120.0, 100.0)                # 1/f^2 level of the 40 MHz TCXO
USRP_PLL_RMS_DEG = 0.5
USRP_PLL_DBC_HZ = (-110.0, 100e3)
RX_HEADROOM_DB = 12.0


def rx_full_scale(n_nodes: int, headroom_db: float = RX_HEADROOM_DB,
                  tx_power: float = DEFAULT_BUDGET.ref_power) -> float:
    """Receive level plan: ADC full scale (air units, per I/Q component) that sits
    ``headroom_db`` above the per-component rms of ``n_nodes`` nodes each sending ``tx_power``
    (full-scale units, the AirComp link's reference power) through unit-mean-gain channels:
    10^(headroom/20) sqrt(n_nodes tx_power / 2). 1.41 for 4 nodes at 12 dB."""
    return float(10.0 ** (headroom_db / 20.0) * np.sqrt(n_nodes * tx_power / 2.0))


def tcxo_linewidth_hz(carrier_hz: float, dbc_hz: float = TCXO_DBC_HZ[0],
                      offset_hz: float = TCXO_DBC_HZ[1], tcxo_hz: float = TCXO_HZ) -> float:
    """Wiener linewidth (Hz) at ``carrier_hz`` of a reference at ``tcxo_hz`` whose 1/f^2 phase
    noise is ``dbc_hz`` dBc/Hz at ``offset_hz``: the level is raised by 20 log10(carrier/ref)."""
    return linewidth_from_dbc_hz(dbc_hz + 20.0 * np.log10(carrier_hz / tcxo_hz), offset_hz)


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
    pn = dict(phase_noise_rms_deg=PLUTO_PLL_RMS_DEG,
              phase_noise_corner_hz=pll_corner_from_dbc_hz(PLUTO_PLL_RMS_DEG, *PLUTO_PLL_DBC_HZ),
              phase_noise_linewidth_hz=tcxo_linewidth_hz(carrier_hz))
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
            gain_error_db=float(rng.uniform(-gain_error_max_db, gain_error_max_db)),
            dac_bits=AD9361_BITS, dac_clip=True, interp_half_taps=INTERP_HALF_TAPS,
            seed=int(rng.integers(2 ** 31)), **pn))
    rx = RxImpairmentParams(phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
                            random_phase_per_tune=True, adc_bits=AD9361_BITS, adc_clip=True,
                            adc_full_scale=rx_full_scale(n_nodes),
                            seed=int(rng.integers(2 ** 31)), **pn)
    return BenchImpairments(nodes, rx)


def usrp_shared_reference(n_nodes: int, rng: np.random.Generator,
                          residual_cfo_max_hz: float = 0.5, max_skew_samples: float = 0.5,
                          gain_error_max_db: float = 0.5) -> BenchImpairments:
    """B2xx radios on a shared 10 MHz/PPS reference; see the module doc."""
    _check_nodes(n_nodes)
    pn = dict(phase_noise_rms_deg=USRP_PLL_RMS_DEG,
              phase_noise_corner_hz=pll_corner_from_dbc_hz(USRP_PLL_RMS_DEG, *USRP_PLL_DBC_HZ))
    nodes = [TxImpairmentParams(
        timing_offset_samples=float(rng.uniform(0.0, max_skew_samples)),
        cfo_hz=float(rng.uniform(-residual_cfo_max_hz, residual_cfo_max_hz)),
        sro_ppm=0.0,
        phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
        random_phase_per_tune=True,
        gain_error_db=float(rng.uniform(-gain_error_max_db, gain_error_max_db)),
        dac_bits=AD9361_BITS, dac_clip=True, interp_half_taps=INTERP_HALF_TAPS,
        seed=int(rng.integers(2 ** 31)), **pn) for _ in range(n_nodes)]
    rx = RxImpairmentParams(phase_offset_rad=float(rng.uniform(-np.pi, np.pi)),
                            random_phase_per_tune=True, adc_bits=AD9361_BITS, adc_clip=True,
                            adc_full_scale=rx_full_scale(n_nodes),
                            seed=int(rng.integers(2 ** 31)), **pn)
    return BenchImpairments(nodes, rx)


#: Preset names accepted by `preset_by_name` (and by bench YAML ``channel.impairments``).
PRESET_NAMES = ("uncalibrated-pluto", "usrp-shared-ref")


def preset_by_name(name: str | None, n_nodes: int, carrier_hz: float,
                   seed: int) -> BenchImpairments | None:
    """The impairments of preset ``name`` (one of `PRESET_NAMES`) for ``n_nodes`` nodes at
    ``carrier_hz`` (Hz), drawn from ``np.random.default_rng(seed)``; None for None, "" or
    "none". Every user (demo, broker, `testbed calibrate`) draws through here, so one seed gives
    the same simulated hardware everywhere. ConfigError for an unknown name, listing the valid
    ones."""
    if name in (None, "", "none"):
        return None
    rng = np.random.default_rng(seed)
    if name == "uncalibrated-pluto":
        return uncalibrated_pluto_bench(n_nodes, carrier_hz, rng)
    if name == "usrp-shared-ref":
        return usrp_shared_reference(n_nodes, rng)
    raise ConfigError(f"unknown impairment preset {name!r}; choose one of "
                      f"{', '.join(PRESET_NAMES)} or 'none'")
