"""Factories that wire a `SimAir`, its `SimRadio`s and an over-the-air all-reduce together.

The SNR is the signal-model SNR of a node with 0 dB path loss (`sim_backend.channel`):
the air's noise variance is ``budget.ref_power / 10**(snr_db/10)`` and the all-reduce's sigma^2
is ``1 / 10**(snr_db/10)`` (`LinkBudget.signal_noise_var`).

Impaired benches: ``impairments`` (a `BenchImpairments`, e.g. from `impairment_preset`) puts the
transmit and receive impairments on the air, and ``settings`` tunes every radio (a first tune
draws the random LO phases). ``prepare`` lets a caller on the top floor put something between
the raw radios and the all-reduce (e.g. a calibration session's corrected radios and its
per-round check) without this module importing it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from sim_backend.air import SimAir
from sim_backend.channel import ChannelModel, noise_var_from_snr_db
from sim_backend.impairment_presets import PRESET_NAMES, BenchImpairments, preset_by_name
from sim_backend.sim_radio import SimRadio
from testbed.errors import ConfigError
from sim_backend.truth import SimTruth
from testbed.phy.analog_allreduce import AnalogAllReduce
from testbed.phy.budget import DEFAULT_BUDGET, LinkBudget
from testbed.radio.base import Radio, RadioSettings

#: Names of the impairment presets of a simulated bench ("none": an ideal bench).
IMPAIRMENT_PRESETS = ("none", *PRESET_NAMES)


@dataclass
class SimBench:
    """A simulated bench: the air, node transmitters (node order) and the receiver."""

    air: SimAir
    tx_radios: list[SimRadio]
    rx_radio: SimRadio
    budget: LinkBudget = DEFAULT_BUDGET

    @property
    def truth(self) -> SimTruth:
        """The simulator's truth handle (true channels, noise) of this bench."""
        return SimTruth(self.air)

    @property
    def model_noise_var(self) -> float:
        """Signal-model sigma^2 of the true air noise (linear): a simulator truth."""
        return self.budget.signal_noise_var(self.air.noise_var)


def impairment_preset(name: str, n_nodes: int, carrier_hz: float, seed: int) -> BenchImpairments | None:
    """The impairments of preset ``name`` (one of IMPAIRMENT_PRESETS) for ``n_nodes`` nodes at
    ``carrier_hz`` (Hz), drawn from ``np.random.default_rng(seed)`` (the same draw as
    ``testbed calibrate --impairments NAME --seed SEED``); None for "none". See `preset_by_name`."""
    return preset_by_name(name, n_nodes, carrier_hz, seed)


def build_sim_bench(n_nodes: int, n_rx: int, n_tx: int = 1, snr_db: float = 20.0, seed: int = 0,
                    channel_model: ChannelModel | None = None, tx_impairments=None,
                    rx_impairment=None, *, impairments: BenchImpairments | None = None,
                    settings: RadioSettings | None = None,
                    budget: LinkBudget = DEFAULT_BUDGET) -> SimBench:
    """A SimAir with ``n_nodes`` transmitters of ``n_tx`` antennas (ids 0..N-1) and one
    ``n_rx``-antenna receiver; Rayleigh fading unless ``channel_model`` is given; one channel
    realization already drawn. Impairments: per-hook (``tx_impairments`` list,
    ``rx_impairment``) or a whole ``impairments`` preset (not both). ``settings``: every radio
    is configured with them (antenna counts set per radio), which tunes it to the carrier.
    ``budget``: the link budget whose reference power defines the SNR."""
    if impairments is not None:
        if tx_impairments is not None or rx_impairment is not None:
            raise ConfigError("give either impairments= or tx_impairments=/rx_impairment=, not both")
        if len(impairments.tx) != n_nodes:
            raise ConfigError(f"impairments are for {len(impairments.tx)} nodes, the bench has "
                              f"{n_nodes}; draw the preset for {n_nodes} nodes")
        tx_impairments, rx_impairment = impairments.build_tx(), impairments.build_rx()
    model = channel_model or ChannelModel(n_nodes, n_rx, n_tx)
    fs = settings.sample_rate_hz if settings is not None else 1.0e6
    air = SimAir(n_rx, noise_var_from_snr_db(snr_db, budget.ref_power), channel_model=model, seed=seed,
                 rx_impairment=rx_impairment, sample_rate_hz=fs)
    imps = tx_impairments or [None] * n_nodes
    txs = [SimRadio(air, n, n_tx=n_tx, tx_impairment=imps[n]) for n in range(n_nodes)]
    rx = SimRadio(air, receiver=True)
    air.new_realization()
    bench = SimBench(air, txs, rx, budget)
    if settings is not None:
        tune_bench(bench, settings)
    return bench


def tune_bench(bench: SimBench, settings: RadioSettings) -> None:
    """Configure every radio of ``bench`` with ``settings`` (n_tx / n_rx channels kept per radio);
    a new carrier calls the tune hooks (new random LO phases)."""
    for r in [*bench.tx_radios, bench.rx_radio]:
        r.configure(replace(settings, n_tx_channels=r.settings.n_tx_channels,
                            n_rx_channels=r.settings.n_rx_channels))


def block_source(bench: SimBench, block_seed: int | Sequence[int]) -> Callable[[], np.ndarray]:
    """A callable that sets the next fading block of ``bench`` drawn from the channel model with
    its own generator ``default_rng(block_seed)`` (an int or a sequence of ints; not the air's,
    which also draws noise and tune phases): benches with the same block_seed see the same
    blocks whatever else they do."""
    rng = np.random.default_rng(block_seed)

    def next_block() -> np.ndarray:
        H = bench.air.channel_model.draw(rng)
        bench.air.set_channels(H)
        return H
    return next_block


def coherence_blocks(bench: SimBench, coherence_s: float, next_block: Callable[[], object],
                     clock: Callable[[], int] | None = None) -> Callable[[], None]:
    """An ``on_round`` callable for block fading in air time: ``next_block()`` (a new fading
    block) whenever ``clock()`` (default: the receiver's clock; an all-reduce passes its next
    frame start) has entered another block [k T, (k + 1) T) of the receiver clock, T =
    ``coherence_s`` at the air's sample rate. A round keeps the block its start is in. The
    lock-step air's clock moves by the rounds' frames and leads only, not by the compute between
    them, so a block spans more rounds than it would on a bench whose nodes compute between
    all-reduces."""
    if not coherence_s > 0:
        raise ValueError(f"coherence_s must be > 0 (seconds), got {coherence_s}")
    block_len = max(1, int(round(coherence_s * bench.air.sample_rate_hz)))
    clock = clock or bench.rx_radio.now
    current: list[int | None] = [None]

    def maybe_next_block() -> None:
        k = int(clock()) // block_len
        if k != current[0]:
            current[0] = k
            next_block()
    return maybe_next_block


def _chain(*fns: Callable[[], object] | None) -> Callable[[], None] | None:
    live = [f for f in fns if f is not None]
    if not live:
        return None

    def run() -> None:
        for f in live:
            f()
    return run


def build_sim_allreduce(kind: str = "aircomp", *, n_nodes: int = 4, n_rx: int = 4, n_tx: int = 1,
                        snr_db: float = 20.0, seed: int = 0, new_block_per_call: bool = True,
                        channel_model: ChannelModel | None = None,
                        impairments: BenchImpairments | None = None,
                        settings: RadioSettings | None = None,
                        block_seed: int | Sequence[int] | None = None,
                        coherence_s: float | None = None,
                        budget: LinkBudget = DEFAULT_BUDGET,
                        prepare: Callable[[SimBench], tuple[Sequence[Radio], Callable[[], object] | None]]
                        | None = None, **kwargs) -> tuple[AnalogAllReduce, SimBench]:
    """(all-reduce, bench): an in-process `AnalogAllReduce` of scheme ``kind`` ("aircomp" or
    "fdma") on a fresh simulated bench; perfect CSI from the bench's truth handle unless
    ``csi="estimated"`` is passed; a new fading block per call when ``new_block_per_call``
    (from the air's generator, or from ``default_rng(block_seed)`` when given, see
    `block_source`); with ``coherence_s`` (seconds of air time) instead a new block only when
    the receiver's clock enters the next block (`coherence_blocks`; pass
    ``csi_interval_samples`` to sound and design once per block).
    ``impairments`` / ``settings`` / ``budget``: see `build_sim_bench`. ``prepare(bench)`` returns the node radios the all-reduce uses and a callable run at the
    start of every round before the new block (or None). Extra keyword arguments go to
    `AnalogAllReduce` (design_method, power, scale_policy, n_streams, fairness, ...)."""
    if kind not in ("aircomp", "fdma"):
        raise ValueError(f"kind must be 'aircomp' or 'fdma', got {kind!r}")
    bench = build_sim_bench(n_nodes, n_rx, n_tx, snr_db, seed, channel_model,
                            impairments=impairments, settings=settings, budget=budget)
    new_block = None
    if new_block_per_call:
        new_block = bench.air.new_realization if block_seed is None else block_source(bench, block_seed)
        if coherence_s is not None:
            # the block of a round is the one its first frame starts in (the driver's clock)
            new_block = coherence_blocks(bench, coherence_s, new_block,
                                         clock=lambda: ar.executor.next_start(budget))
    tx_radios, before_round = bench.tx_radios, None
    if prepare is not None:
        tx_radios, before_round = prepare(bench)
    ar = AnalogAllReduce(list(tx_radios), bench.rx_radio, scheme=kind, truth=bench.truth,
                         budget=budget, on_round=_chain(before_round, new_block), **kwargs)
    return ar, bench
