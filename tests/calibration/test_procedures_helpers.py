"""Shared builders for the calibration procedure tests (simulated Pluto bench)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sim_backend.impairment_presets import BenchImpairments, uncalibrated_pluto_bench
from sim_backend.sim_allreduce import build_sim_bench
from testbed.phy.analog_allreduce import AnalogAllReduce
from testbed.phy.budget import LinkBudget
from testbed.radio.base import RadioSettings

CARRIER = 915e6
NO_PHASE_NOISE = dict(phase_noise_linewidth_hz=0.0, phase_noise_rms_deg=0.0,
                      phase_noise_corner_hz=0.0)


def pluto_impairments(seed: int = 1, phase_noise: bool = True) -> BenchImpairments:
    """The full uncalibrated-Pluto preset (4 nodes, 915 MHz); ``phase_noise=False`` switches
    the PLL and TCXO phase noise off on every node and on the receiver."""
    imp = uncalibrated_pluto_bench(4, CARRIER, np.random.default_rng(seed))
    if phase_noise:
        return imp
    return BenchImpairments([dataclasses.replace(p, **NO_PHASE_NOISE) for p in imp.tx],
                            dataclasses.replace(imp.rx, **NO_PHASE_NOISE))


def phase_noise_only(imp: BenchImpairments) -> BenchImpairments:
    """Only the phase noise of ``imp`` (same seeds), every other impairment off."""
    keep = ("phase_noise_linewidth_hz", "phase_noise_rms_deg", "phase_noise_corner_hz", "seed")
    tx = [type(p)(**{k: getattr(p, k) for k in keep}) for p in imp.tx]
    return BenchImpairments(tx, type(imp.rx)(**{k: getattr(imp.rx, k) for k in keep}))


def tuned_bench(imp=None, seed: int = 2, snr_db: float = 20.0):
    """4 nodes, N_r = 4, Rayleigh, tuned to 915 MHz (new LO phases)."""
    kw = {} if imp is None else dict(tx_impairments=imp.build_tx(), rx_impairment=imp.build_rx())
    b = build_sim_bench(4, 4, 1, snr_db, seed=seed, **kw)
    for r in [*b.tx_radios, b.rx_radio]:
        r.configure(RadioSettings(center_freq_hz=CARRIER, n_tx_channels=r.settings.n_tx_channels,
                                  n_rx_channels=r.settings.n_rx_channels))
    return b


def channel_sequence(bench, rounds: int, seed: int = 11) -> list[np.ndarray]:
    """``rounds`` fading blocks (N, N_r, N_t) from the bench's channel model with their own
    generator, so that two benches (impairment-free, calibrated) see the same channels."""
    rng = np.random.default_rng(seed)
    return [bench.air.channel_model.draw(rng) for _ in range(rounds)]


def aircomp_mse(tx_radios, bench, rounds: int = 4, csi: str = "estimated", channels=None,
                lead: int = 512, seed: int = 0, channel_seq=None) -> float:
    """Mean per-channel-use AirComp MSE (signal-model units) over ``rounds`` all-reduces.

    Channels: fixed ``channels`` (N, N_r, N_t), else the blocks of ``channel_seq`` one per round
    (`channel_sequence`), else a new draw of the air per round."""
    src = (lambda: channels) if channels is not None else bench.air.true_channels
    on_round = None
    if channels is None and channel_seq is not None:
        blocks = iter(channel_seq)
        on_round = lambda: bench.air.set_channels(next(blocks))
    elif channels is None:
        on_round = bench.air.new_realization
    truth = type("Truth", (), {"channels": staticmethod(src),
                               "air_noise_var": staticmethod(lambda: bench.air.noise_var)})()
    ar = AnalogAllReduce(tx_radios, bench.rx_radio, truth=truth, csi=csi,
                         budget=LinkBudget(lead_samples=lead), on_round=on_round)
    g = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        ar([torch.randn(4, 32, generator=g, dtype=torch.float64) for _ in range(4)],
           layer=0, site="attn")
    st = ar.stats()[(0, "attn")]
    return st["mse_symbols"], st["mse_predicted"], ar
