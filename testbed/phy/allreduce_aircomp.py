"""Over-the-air (AirComp) all-reduce through `Radio` objects.

Per call: (1) channel knowledge: perfect CSI from ``channel_source()`` (e.g. the simulated
air's true channels) or an LS estimate from a pilot frame sent just before the payload (the
block-fading channel is assumed constant over both frames); (2) transceiver design
``design_fn(H, P, noise_var, method=...)`` (default `testbed.optim.transceiver.design_transceiver`);
(3) every node normalizes its partial by the common scale c, packs pairs of reals into complex
symbols, lays them out as (L, K) and transmits B_n S_n in one burst (K channel uses);
(4) the receiver aggregates S_hat = A^H Y, unpacks and multiplies by c. The result is
broadcast to every node over a downlink assumed error-free (its airtime is accounted by the
latency model), so every node receives the same tensor object.

noise_var is sigma^2 of the signal model (complex, per receive antenna per channel use, in
units of the precoder power): for the simulated air, ``air.noise_var / link.TX_REF_POWER``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from testbed.llm.allreduce import AllReduce
from testbed.phy.link import AirCompLink, LinkConfig
from testbed.phy.packing import from_streams, pack_reals, to_streams, unpack_reals
from testbed.phy.scale_policy import ScaleKeeper
from testbed.radio.base import Radio

CSI_MODES = ("perfect", "estimated")


def check_link_arguments(csi: str, channel_source, noise_var: float) -> None:
    """Validate what every analog all-reduce over an `AirCompLink` takes: the CSI mode, a
    channel source when CSI is perfect, and sigma^2 > 0 (signal model, linear)."""
    if csi not in CSI_MODES:
        raise ValueError(f"csi must be one of {CSI_MODES}, got {csi!r}")
    if csi == "perfect" and channel_source is None:
        raise ValueError("csi='perfect' needs a channel_source (e.g. SimAir.true_channels)")
    if not noise_var > 0:
        raise ValueError(f"noise_var must be > 0 (signal-model sigma^2, linear), got {noise_var}")


def default_design_fn():
    """`testbed.optim.transceiver.design_transceiver` (imported lazily)."""
    from testbed.optim.transceiver import design_transceiver
    return design_transceiver


def power_vector(power: float | Sequence[float], n_nodes: int) -> np.ndarray:
    """Per-node power budget per channel use (linear), shape (N,); ValueError if not > 0."""
    p = np.broadcast_to(np.asarray(power, dtype=float), (n_nodes,)).copy()
    if np.any(p <= 0):
        raise ValueError(f"power budgets must be > 0 (linear), got {p}")
    return p


def partials_to_numpy(partials: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Detach partial tensors to float64 numpy arrays; ValueError if shapes differ."""
    shapes = {tuple(p.shape) for p in partials}
    if len(shapes) != 1:
        raise ValueError(f"all partials must have the same shape, got {shapes}")
    return [p.detach().to(torch.float64).cpu().numpy() for p in partials]


class RunningStats:
    """Per-(layer, site) means of per-round records (dicts of floats)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[int, str], dict[str, float]] = {}
        self._n: dict[tuple[int, str], int] = {}

    def add(self, key: tuple[int, str], record: dict[str, float]) -> None:
        s = self._sums.setdefault(key, {})
        for k, v in record.items():
            s[k] = s.get(k, 0.0) + float(v)
        self._n[key] = self._n.get(key, 0) + 1

    def as_dict(self) -> dict:
        return {key: {**{k: v / self._n[key] for k, v in s.items()}, "rounds": self._n[key]}
                for key, s in self._sums.items()}


class AirCompAllReduce(AllReduce):
    """AirComp all-reduce; see the module docstring.

    tx_radios / rx_radio: the node transmitters (in node order) and the receiver.
    channel_source: callable returning the true H ``(N, N_r, N_t)`` (needed for csi="perfect";
      with csi="estimated" it is only used to report the estimation error, if given).
    design_method: passed as ``method`` to the design function. power: P_n (scalar or (N,)).
    noise_var: signal-model sigma^2 (linear). scale_policy: see `testbed.phy.scale_policy`.
    n_streams: L (None: the design function's default). on_round: called at the start of each
    reduce (e.g. ``air.new_realization`` for a new fading block per all-reduce).
    """

    name = "aircomp"

    def __init__(self, tx_radios: Sequence[Radio], rx_radio: Radio,
                 channel_source: Callable[[], np.ndarray] | None = None, *,
                 design_method: str = "zf-sdr", power: float | Sequence[float] = 1.0,
                 noise_var: float, csi: str = "perfect", scale_policy: str | float = "oracle",
                 headroom_db: float = 0.0, n_streams: int | None = None,
                 design_fn: Callable | None = None, design_options: dict | None = None,
                 link_config: LinkConfig | None = None,
                 tx_advance_samples: Sequence[int] | None = None,
                 on_round: Callable[[], object] | None = None) -> None:
        check_link_arguments(csi, channel_source, noise_var)
        self.link = AirCompLink(tx_radios, rx_radio, link_config, tx_advance_samples)
        self.channel_source = channel_source
        self.design_method = design_method
        self.power = power_vector(power, self.link.n_nodes)
        self.noise_var = float(noise_var)
        self.csi = csi
        self.scales = ScaleKeeper(scale_policy, headroom_db)
        self.n_streams = n_streams
        self.design_fn = design_fn
        self.design_options = dict(design_options or {})
        self.on_round = on_round
        self._stats = RunningStats()
        self.last_design = None

    @property
    def calibrating(self) -> bool:
        """While True, reduce returns the exact sum and gathers scale statistics."""
        return self.scales.calibrating

    @calibrating.setter
    def calibrating(self, value: bool) -> None:
        self.scales.calibrating = bool(value)

    def channels(self) -> tuple[np.ndarray, dict]:
        """The channel matrices the design uses this round, ``(N, N_r, N_t)``, and stats."""
        if self.csi == "perfect":
            return np.asarray(self.channel_source()), {}
        H_hat, info = self.link.estimate_channels()
        rec = {"detected_offset_pilots": info.detected_offset}
        if self.channel_source is not None:
            H = np.asarray(self.channel_source())
            rec["csi_mse"] = float(np.mean(np.abs(H_hat - H) ** 2))
        return H_hat, rec

    def design(self, H: np.ndarray):
        """Run the transceiver design for channels H."""
        fn = self.design_fn or default_design_fn()
        kw = dict(self.design_options)
        if self.n_streams is not None:
            kw["n_streams"] = self.n_streams
        return fn(H, self.power, self.noise_var, method=self.design_method, **kw)

    def reduce(self, partials, *, layer, site):
        zs = partials_to_numpy(partials)
        if len(zs) != self.link.n_nodes:
            raise ValueError(f"got {len(zs)} partials for {self.link.n_nodes} transmitting radios")
        exact = np.sum(zs, axis=0)
        if self.calibrating:
            self.scales.observe(zs, layer, site)
            out = torch.as_tensor(exact, dtype=partials[0].dtype, device=partials[0].device)
            return [out] * len(partials)
        if self.on_round is not None:
            self.on_round()
        c = self.scales.scale(zs, layer, site)
        H, rec = self.channels()
        d = self.design(H)
        self.last_design = d
        L = d.A.shape[1]
        packed = [pack_reals(z / c) for z in zs]
        m = packed[0].size
        S = [to_streams(s, L) for s in packed]
        S_hat, info = self.link.run_round(d.A, d.B, S)
        z_hat = unpack_reals(from_streams(S_hat, m), zs[0].shape) * c
        k = S[0].shape[1]
        rec.update(
            mse_symbols=float(np.sum(np.abs(S_hat - np.sum(S, axis=0)) ** 2) / k),
            mse_predicted=float(d.mse),
            mse_tensor=float(np.mean((z_hat - exact) ** 2)),
            mse_tensor_predicted=float(d.mse) * c * c / (2 * L),
            signal_power=float(np.mean([np.mean(np.abs(s) ** 2) for s in packed])),
            scale=c, channel_uses=k, clipped_fraction=info.clipped_fraction,
            detected_offset=info.detected_offset)
        self._stats.add((layer, site), rec)
        out = torch.as_tensor(z_hat, dtype=partials[0].dtype, device=partials[0].device)
        return [out] * len(partials)

    def stats(self) -> dict:
        """{(layer, site): means over rounds of mse_symbols (per channel use, normalized domain),
        mse_predicted (design.mse), mse_tensor (per real value), mse_tensor_predicted
        (c^2 mse / 2L, exact for unit-power symbols), signal_power (mean symbol power per node),
        scale, channel_uses, clipped_fraction (I/Q components above full scale), csi_mse
        (estimated CSI with a channel_source), 'rounds'}."""
        return self._stats.as_dict()

    def reset_stats(self) -> None:
        self._stats = RunningStats()
