"""Factories that wire a `SimAir`, its `SimRadio`s and an over-the-air all-reduce together.

The SNR is the signal-model SNR of a node with 0 dB path loss (`sim_backend.channel`):
the air's noise variance is ``TX_REF_POWER / 10**(snr_db/10)`` and the all-reduce's sigma^2 is
``1 / 10**(snr_db/10)``.
"""
from __future__ import annotations

from dataclasses import dataclass

from sim_backend.air import SimAir
from sim_backend.channel import ChannelModel, noise_var_from_snr_db
from sim_backend.sim_radio import SimRadio
from testbed.phy.allreduce_aircomp import AirCompAllReduce
from testbed.phy.allreduce_fdma import UncodedFDMAAllReduce
from testbed.phy.link import TX_REF_POWER


@dataclass
class SimBench:
    """A simulated bench: the air, node transmitters (node order) and the receiver."""

    air: SimAir
    tx_radios: list[SimRadio]
    rx_radio: SimRadio

    @property
    def model_noise_var(self) -> float:
        """Signal-model sigma^2 = air noise variance / TX_REF_POWER (linear)."""
        return self.air.noise_var / TX_REF_POWER


def build_sim_bench(n_nodes: int, n_rx: int, n_tx: int = 1, snr_db: float = 20.0, seed: int = 0,
                    channel_model: ChannelModel | None = None, tx_impairments=None,
                    rx_impairment=None) -> SimBench:
    """A SimAir with ``n_nodes`` transmitters of ``n_tx`` antennas (ids 0..N-1) and one
    ``n_rx``-antenna receiver; Rayleigh fading unless ``channel_model`` is given; one channel
    realization already drawn."""
    model = channel_model or ChannelModel(n_nodes, n_rx, n_tx)
    air = SimAir(n_rx, noise_var_from_snr_db(snr_db, TX_REF_POWER), channel_model=model, seed=seed,
                 rx_impairment=rx_impairment)
    imps = tx_impairments or [None] * n_nodes
    txs = [SimRadio(air, n, n_tx=n_tx, tx_impairment=imps[n]) for n in range(n_nodes)]
    rx = SimRadio(air, receiver=True)
    air.new_realization()
    return SimBench(air, txs, rx)


def build_sim_allreduce(kind: str = "aircomp", *, n_nodes: int = 4, n_rx: int = 4, n_tx: int = 1,
                        snr_db: float = 20.0, seed: int = 0, new_block_per_call: bool = True,
                        channel_model: ChannelModel | None = None, **kwargs):
    """(all-reduce, bench): ``kind`` "aircomp" (`AirCompAllReduce`) or "fdma"
    (`UncodedFDMAAllReduce`) on a fresh simulated bench, perfect CSI from the air unless
    ``csi="estimated"`` is passed; a new fading block per call when ``new_block_per_call``.
    Extra keyword arguments go to the all-reduce."""
    bench = build_sim_bench(n_nodes, n_rx, n_tx, snr_db, seed, channel_model)
    cls = {"aircomp": AirCompAllReduce, "fdma": UncodedFDMAAllReduce}.get(kind)
    if cls is None:
        raise ValueError(f"kind must be 'aircomp' or 'fdma', got {kind!r}")
    kwargs.setdefault("noise_var", bench.model_noise_var)
    ar = cls(bench.tx_radios, bench.rx_radio, bench.air.true_channels,
             on_round=bench.air.new_realization if new_block_per_call else None, **kwargs)
    return ar, bench
