"""Uncoded analog FDMA all-reduce baseline, run through the radios with time-orthogonal slots.

Each node sends its normalized, packed symbols uncoded, alone in its own resource; the receiver
estimates each node's symbols separately with that node's single-node ZF transceiver
(`testbed.phy.fdma.single_node_zf`) and sums them. Orthogonal sub-bands are emulated by
time-orthogonal slots in one frame (node n's K channel uses follow node n-1's): for the error
this is equivalent, because each symbol is sent once through its own channel with the same
per-symbol noise.

Fair comparison with AirComp (total bandwidth B, N nodes, K channel uses per node):
* fairness="energy" (default): every node spends the same energy per all-reduce as in AirComp
  (P per channel use for K channel uses) and each symbol sees the same noise sigma^2. FDMA then
  needs N K channel uses (N times AirComp's airtime: B/N per node for N K / B seconds), and the
  errors of the N nodes add: MSE = sum_n sigma^2 (sum_i 1/s_{n,i})^2 / P_n, which grows with N
  where AirComp's ZF error does not add up per node.
* fairness="power": equal transmit power (W) and equal latency budget per node: in a 1/N
  sub-band the noise per symbol is sigma^2 / N, which for the error is the same as P_n -> N P_n
  at noise sigma^2; implemented that way (N times more sample power: mind clipping).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from testbed.llm.allreduce import AllReduce
from testbed.phy.allreduce_aircomp import (RunningStats, check_link_arguments, partials_to_numpy,
                                           power_vector)
from testbed.phy.fdma import single_node_zf
from testbed.phy.link import AirCompLink, LinkConfig
from testbed.phy.packing import from_streams, pack_reals, to_streams, unpack_reals
from testbed.phy.precoding import aggregate, precode
from testbed.phy.scale_policy import ScaleKeeper
from testbed.radio.base import Radio

FAIRNESS = ("energy", "power")


class UncodedFDMAAllReduce(AllReduce):
    """Uncoded FDMA all-reduce; see the module docstring. Parameters as `AirCompAllReduce`
    (noise_var is the signal-model sigma^2); n_streams per node default min(N_t, N_r)."""

    name = "fdma"

    def __init__(self, tx_radios: Sequence[Radio], rx_radio: Radio,
                 channel_source: Callable[[], np.ndarray] | None = None, *,
                 power: float | Sequence[float] = 1.0, noise_var: float, csi: str = "perfect",
                 scale_policy: str | float = "oracle", headroom_db: float = 0.0,
                 n_streams: int | None = None, fairness: str = "energy",
                 link_config: LinkConfig | None = None,
                 tx_advance_samples: Sequence[int] | None = None,
                 on_round: Callable[[], object] | None = None) -> None:
        check_link_arguments(csi, channel_source, noise_var)
        if fairness not in FAIRNESS:
            raise ValueError(f"fairness must be one of {FAIRNESS}, got {fairness!r}")
        self.link = AirCompLink(tx_radios, rx_radio, link_config, tx_advance_samples)
        self.channel_source = channel_source
        n = self.link.n_nodes
        self.power = power_vector(power, n) * (n if fairness == "power" else 1)
        self.noise_var = float(noise_var)
        self.csi = csi
        self.fairness = fairness
        self.scales = ScaleKeeper(scale_policy, headroom_db)
        self.n_streams = n_streams or min(self.link.n_tx, self.link.n_rx)
        self.on_round = on_round
        self._stats = RunningStats()

    def reduce(self, partials, *, layer, site):
        zs = partials_to_numpy(partials)
        n_nodes = self.link.n_nodes
        if len(zs) != n_nodes:
            raise ValueError(f"got {len(zs)} partials for {n_nodes} transmitting radios")
        exact = np.sum(zs, axis=0)
        if self.scales.calibrating:
            self.scales.observe(zs, layer, site)
            out = torch.as_tensor(exact, dtype=partials[0].dtype, device=partials[0].device)
            return [out] * len(partials)
        if self.on_round is not None:
            self.on_round()
        c = self.scales.scale(zs, layer, site)
        H = np.asarray(self.channel_source()) if self.csi == "perfect" else self.link.estimate_channels()[0]
        designs = [single_node_zf(H[n], self.power[n], self.noise_var, self.n_streams)
                   for n in range(n_nodes)]
        L = self.n_streams
        packed = [pack_reals(z / c) for z in zs]
        m = packed[0].size
        S = [to_streams(s, L) for s in packed]
        k = S[0].shape[1]
        layout = self.link.layout(n_nodes * k)
        payloads = [precode(designs[n][1], S[n]) for n in range(n_nodes)]
        frame, info = self.link.exchange(layout, payloads, [n * k for n in range(n_nodes)])
        y = frame[:, layout.payload_start:]
        S_hat = sum(aggregate(designs[n][0], y[:, n * k:(n + 1) * k]) for n in range(n_nodes))
        z_hat = unpack_reals(from_streams(S_hat, m), zs[0].shape) * c
        pred = sum(d[2] for d in designs)
        self._stats.add((layer, site), {
            "mse_symbols": float(np.sum(np.abs(S_hat - np.sum(S, axis=0)) ** 2) / k),
            "mse_predicted": pred,
            "mse_tensor": float(np.mean((z_hat - exact) ** 2)),
            "mse_tensor_predicted": pred * c * c / (2 * L),
            "channel_uses": float(n_nodes * k),
            "clipped_fraction": info.clipped_fraction,
        })
        out = torch.as_tensor(z_hat, dtype=partials[0].dtype, device=partials[0].device)
        return [out] * len(partials)

    def stats(self) -> dict:
        """{(layer, site): means of mse_symbols, mse_predicted (sum of single-node ZF MSEs),
        mse_tensor, mse_tensor_predicted, channel_uses (N K), clipped_fraction, 'rounds'}."""
        return self._stats.as_dict()

    def reset_stats(self) -> None:
        self._stats = RunningStats()
