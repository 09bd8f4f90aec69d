"""In-process channel emulator: superposition of bursts through per-link MIMO channels + AWGN.

The air grid is the receiver's sample clock. Transmitters register with a node id and their
number of antennas; each burst passes the node's `TxImpairment.apply_tx` (which maps it onto
the air grid), then the node's channel of the *current block* (the channel in force when the
burst is scheduled: ``new_realization()`` affects later bursts only), and is stored as its
``(N_r, K')`` contribution at the receiver. A receive window ``[t, t + n)`` returns the sum of the
stored contributions overlapping it, plus fresh CN(0, noise_var) noise per antenna and sample
(`sim_backend.noise`), then the receiver's `RxImpairment.apply_rx`. Bursts keep their dtype
(complex64 from a radio); a window is computed in the dtype asked for (complex128 by default,
complex64 for `SimRadio`, whose samples are complex64 anyway).

Memory: a stored burst is dropped as soon as a receive window reaches past its last sample
(it has been consumed), or when `expire_before(t)` is called with t beyond its end. Bursts
that are never received stay until then; `pending_bursts()` tells how many are held.

Time: the air keeps a lock-step clock ``now`` (samples): it advances to the end of each
receive window (and with `advance`); it never runs on its own. Noise samples are drawn per
receive call from the air's seeded generator, so a run is reproducible when the same calls
are made in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from sim_backend.channel import ChannelModel
from sim_backend.hooks import NoRxImpairment, NoTxImpairment, RxImpairment, TxImpairment
from sim_backend.noise import add_complex_awgn
from testbed.errors import ConfigError

if TYPE_CHECKING:
    from testbed.phy.resample import GridMap


@dataclass
class _Tx:
    node_id: int
    n_tx: int
    impairment: TxImpairment
    channel: np.ndarray | None = None  # (N_r, n_tx)


@dataclass(slots=True)
class _Burst:
    node_id: int
    start: int           # air sample of samples[:, 0]
    channel: np.ndarray  # (N_r, n_tx): the node's channel when the burst was scheduled
    samples: np.ndarray  # (n_tx, K') complex (a copy) on the air grid, before the channel
    end: int = field(init=False)   # air sample after the last one

    def __post_init__(self) -> None:
        self.end = self.start + self.samples.shape[1]


@dataclass
class AirStats:
    """Counts kept by the air: bursts scheduled/received and receive windows served."""

    bursts: int = 0
    windows: int = 0
    dropped_unreceived: int = 0
    extra: dict = field(default_factory=dict)


class SimAir:
    """The simulated air between registered transmitters and one receiver.

    n_rx: receive antennas. noise_var: complex AWGN variance per receive antenna per sample
    (full-scale units; see `sim_backend.channel.noise_var_from_snr_db`; 0 switches noise off).
    channel_model: draws the per-node channels on `new_realization` (optional; channels can also
    be set with `set_channel`). sample_rate_hz: passed to the impairment hooks. seed: seeds the
    one generator used for channels, noise and tune phases.
    """

    def __init__(self, n_rx: int, noise_var: float = 0.0, *, channel_model: ChannelModel | None = None,
                 seed: int | None = 0, sample_rate_hz: float = 1.0e6,
                 rx_impairment: RxImpairment | None = None) -> None:
        if n_rx < 1:
            raise ConfigError(f"n_rx must be >= 1, got {n_rx}")
        if noise_var < 0:
            raise ConfigError(f"noise_var must be >= 0 (linear, full-scale units), got {noise_var}")
        if channel_model is not None and channel_model.n_rx != n_rx:
            raise ConfigError(f"channel_model.n_rx={channel_model.n_rx} differs from n_rx={n_rx}")
        self.n_rx = int(n_rx)
        self.noise_var = float(noise_var)
        self.channel_model = channel_model
        self.sample_rate_hz = float(sample_rate_hz)
        self.rng = np.random.default_rng(seed)
        self.rx_impairment: RxImpairment = rx_impairment or NoRxImpairment()
        self._tx: dict[int, _Tx] = {}
        self._bursts: list[_Burst] = []
        #: (channel ids, complex64?) -> (channels, joint channel): see `_joint_channel`
        self._joint_cache: dict[tuple, tuple[tuple[np.ndarray, ...], np.ndarray]] = {}
        self.now = 0
        #: +1 whenever a node or a channel is set (a key for caches of the true channels)
        self.channel_generation = 0
        self.stats = AirStats()

    # ---------------------------------------------------------------- nodes and channels
    def register_tx(self, node_id: int, n_tx: int = 1, impairment: TxImpairment | None = None) -> None:
        """Add transmitter ``node_id`` with ``n_tx`` antennas (identity impairments by default)."""
        if node_id in self._tx:
            raise ConfigError(f"node {node_id} is already registered on this air")
        if n_tx < 1:
            raise ConfigError(f"n_tx must be >= 1, got {n_tx}")
        self._tx[node_id] = _Tx(node_id, int(n_tx), impairment or NoTxImpairment())
        self.channel_generation += 1

    @property
    def node_ids(self) -> list[int]:
        """Registered transmitter ids in registration order (the order of `true_channels`)."""
        return list(self._tx)

    def tx_impairment(self, node_id: int) -> TxImpairment:
        """The impairment hook of a registered transmitter."""
        return self._node(node_id).impairment

    def set_channel(self, node_id: int, h: np.ndarray) -> None:
        """Set node ``node_id``'s channel, complex ``(N_r, n_tx)``, for the current block."""
        tx = self._node(node_id)
        h = np.asarray(h, dtype=complex)
        if h.shape != (self.n_rx, tx.n_tx):
            raise ConfigError(f"channel of node {node_id} must have shape ({self.n_rx}, {tx.n_tx}), "
                              f"got {h.shape}")
        tx.channel = h.copy()
        tx.channel.flags.writeable = False          # a block's channel never changes in place
        self.channel_generation += 1

    def set_channels(self, H: np.ndarray) -> None:
        """Set all channels from ``H`` complex ``(N, N_r, N_t)`` in `node_ids` order."""
        if len(H) != len(self._tx):
            raise ConfigError(f"H has {len(H)} nodes, {len(self._tx)} are registered")
        if isinstance(H, np.ndarray) and H.ndim == 3 and H.shape[1] == self.n_rx and all(
                tx.n_tx == H.shape[2] for tx in self._tx.values()):
            H = H.astype(complex)                   # one private copy, one check
            H.flags.writeable = False               # a block's channels never change in place
            for tx, h in zip(self._tx.values(), H):
                tx.channel = h
            self.channel_generation += 1
            return
        for nid, h in zip(self._tx, H):
            self.set_channel(nid, h)

    def new_realization(self) -> np.ndarray:
        """Draw a new fading block for every registered node from ``channel_model``; returns it
        as ``(N, N_r, N_t)`` (in `node_ids` order)."""
        if self.channel_model is None:
            raise ConfigError("this SimAir has no channel_model; pass one or use set_channels()")
        if self.channel_model.n_nodes != len(self._tx):
            raise ConfigError(f"channel_model has n_nodes={self.channel_model.n_nodes}, "
                              f"{len(self._tx)} transmitters are registered")
        H = self.channel_model.draw(self.rng)
        self.set_channels(H)
        return H

    def true_channels(self) -> np.ndarray:
        """Current channels ``(N, N_r, N_t)`` in `node_ids` order (perfect CSI); all nodes must
        have the same n_tx."""
        missing = [nid for nid, tx in self._tx.items() if tx.channel is None]
        if missing:
            raise ConfigError(f"nodes {missing} have no channel yet; call new_realization()")
        return np.stack([tx.channel for tx in self._tx.values()])

    def tune_tx(self, node_id: int) -> None:
        """Call node ``node_id``'s on_tune hook with the air's generator (new LO phase etc.)."""
        self._node(node_id).impairment.on_tune(self.rng)

    def tune_rx(self) -> None:
        """Call the receiver's on_tune hook."""
        self.rx_impairment.on_tune(self.rng)

    # ---------------------------------------------------------------- bursts and windows
    def schedule(self, node_id: int, samples: np.ndarray, start_sample: int,
                 grid: GridMap | None = None) -> None:
        """Put a burst ``(n_tx, K)`` (node clock, starting at node sample ``start_sample``) on the
        air through the node's TX hook and its current channel. With ``grid`` (`GridMap`), the
        burst is ``samples`` mapped by ``grid`` onto the node clock: a hook with
        ``apply_tx_resampled`` composes the map with its clock and resamples once; any other
        hook gets the burst resampled here first."""
        tx = self._node(node_id)
        if tx.channel is None:
            raise ConfigError(f"node {node_id} has no channel yet; call new_realization()")
        x = np.asarray(samples)
        if x.ndim != 2 or x.shape[0] != tx.n_tx:
            raise ConfigError(f"burst of node {node_id} must be ({tx.n_tx}, K), got {x.shape}")
        if grid is None:
            x_air, air_start = tx.impairment.apply_tx(x, int(start_sample), self.sample_rate_hz)
        elif hasattr(tx.impairment, "apply_tx_resampled"):
            x_air, air_start = tx.impairment.apply_tx_resampled(x, grid, int(start_sample),
                                                                self.sample_rate_hz)
        else:
            x_air, air_start = tx.impairment.apply_tx(grid.apply(x), int(start_sample),
                                                      self.sample_rate_hz)
        # the channel product is taken at receive time (one product for all bursts that share
        # their span, e.g. the nodes of an AirComp round), with the channel of this block
        x_air = np.asarray(x_air)
        dtype = x_air.dtype if x_air.dtype.char in "FD" else np.complex128     # complex64/128 kept
        self._bursts.append(_Burst(node_id, int(air_start), tx.channel,
                                   np.array(x_air, dtype=dtype, order="C", copy=True)))
        self.stats.bursts += 1

    def receive(self, n_samples: int, start_sample: int, dtype=np.complex128) -> np.ndarray:
        """Receiver window ``[start_sample, start_sample + n_samples)``: complex ``(N_r, n)`` in
        ``dtype`` (complex128 or complex64; an impairment hook may return complex128)."""
        n = int(n_samples)
        t0 = int(start_sample)
        if n < 0:
            raise ConfigError(f"n_samples must be >= 0, got {n}")
        dtype = np.dtype(dtype)
        if dtype.char not in ("F", "D"):
            raise ConfigError(f"dtype must be complex64 or complex128, got {dtype}")
        y = np.zeros((self.n_rx, n), dtype=dtype)
        t1 = t0 + n
        spans: dict[tuple[int, int], list[_Burst]] = {}
        for b in self._bursts:
            if max(t0, b.start) < min(t1, b.end):
                spans.setdefault((b.start, b.end), []).append(b)
        first = True
        # a fixed order (spans by time, nodes by id), not the bursts' arrival order: over the
        # broker the nodes' bursts arrive in any order, and in complex64 the sum's rounding
        # depends on it; runs with the same seeds stay bit-identical
        for (start, end), group in sorted(spans.items()):
            lo, hi = max(t0, start), min(t1, end)
            if len(group) == 1:
                X = group[0].samples[:, lo - start:hi - start]
            else:                                   # sum_n H_n x_n as one product
                group.sort(key=attrgetter("node_id"))
                X = np.concatenate([b.samples[:, lo - start:hi - start] for b in group], axis=0)
            H = self._joint_channel(group, X.dtype.char == "F" and dtype.char == "F")
            if first and X.dtype == dtype:          # y is still zero: write the product there
                np.matmul(H.astype(dtype, copy=False), X, out=y[:, lo - t0:hi - t0])
            else:
                y[:, lo - t0:hi - t0] += H @ X
            first = False
        if self.noise_var > 0:
            add_complex_awgn(y, self.rng, self.noise_var)
        self._bursts = [b for b in self._bursts if b.end > t1]
        self.now = max(self.now, t1)
        self.stats.windows += 1
        return self.rx_impairment.apply_rx(y, t0, self.sample_rate_hz)

    def _joint_channel(self, group: list[_Burst], single: bool) -> np.ndarray:
        """[H_1 ... H_n] ``(N_r, sum n_tx)`` of the bursts' channels side by side (the group's
        order), complex64 when ``single``, else the channels' own dtype. Kept for the last few
        groups of channels (by identity: a block's channels are the same read-only arrays until
        the next block, `set_channel` / `set_channels`), since every round of a block asks for
        the same one."""
        chans = tuple(b.channel for b in group)
        key = (tuple(map(id, chans)), single)
        hit = self._joint_cache.get(key)
        if hit is not None:
            return hit[1]
        H = chans[0] if len(chans) == 1 else np.concatenate(chans, axis=1)
        if single:
            H = H.astype(np.complex64)              # the product in the window's precision
        if len(self._joint_cache) >= 8:
            self._joint_cache.clear()
        # the channels are held with the product, so their ids stay theirs while cached
        self._joint_cache[key] = (chans, H)
        return H

    def advance(self, n_samples: int) -> None:
        """Move the air clock forward by ``n_samples`` without receiving."""
        self.now += int(n_samples)

    def expire_before(self, sample: int) -> int:
        """Drop bursts ending at or before air sample ``sample``; returns how many."""
        keep = [b for b in self._bursts if b.end > sample]
        dropped = len(self._bursts) - len(keep)
        self._bursts = keep
        self.stats.dropped_unreceived += dropped
        return dropped

    def pending_bursts(self) -> int:
        """Number of bursts held (scheduled, not yet fully received or expired)."""
        return len(self._bursts)

    def _node(self, node_id: int) -> _Tx:
        try:
            return self._tx[node_id]
        except KeyError:
            raise ConfigError(f"node {node_id} is not registered; call register_tx first") from None
