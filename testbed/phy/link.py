"""One over-the-air AirComp round through `Radio` objects only (no simulator import).

Transmit scaling: a precoder of power tr(B B^H) = 1 with unit-power symbols is sent at a total
sample power of ``TX_REF_POWER`` = -12 dBFS (|x|^2 = 1 is 0 dBFS), i.e. every transmitted
sample is ``amplitude * (B_n S_n)`` with amplitude = 10**(-backoff_db / 20). With Gaussian-like
symbols the per-component rms is then ~0.18 of full scale and clipping (|I|, |Q| > 1) needs a
> 5 sigma peak, so it does not happen in normal operation at P <= 1. The receiver divides what it
receives by the same amplitude, so the signal model is Y = sum_n H_n B_n S_n + W with
sigma^2 = noise_var_air / TX_REF_POWER (see `sim_backend.channel` for the SNR definition).

Timing: every node transmits its frame at the same sample time ``start`` (minus an optional
per-node advance from calibration); the receiver receives ``[start - margin, start + frame +
margin)``, finds the preamble peak (integer samples) and cuts the frame there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from testbed.phy.estimation import ls_channel_estimate
from testbed.phy.framing import FrameLayout, detect_frame_start
from testbed.phy.precoding import aggregate, precode
from testbed.radio.base import Radio

TX_BACKOFF_DB = 12.0
TX_REF_POWER = 10.0 ** (-TX_BACKOFF_DB / 10.0)


@dataclass(frozen=True)
class LinkConfig:
    """Frame and timing parameters (samples) and the transmit backoff (dB below full scale)."""

    backoff_db: float = TX_BACKOFF_DB
    preamble_len: int = 63
    guard_len: int = 16
    pilot_len: int = 32
    search_margin: int = 16
    lead_samples: int = 64
    detect_threshold: float = 0.2

    @property
    def amplitude(self) -> float:
        """Sample amplitude of precoder power 1: 10**(-backoff_db / 20)."""
        return 10.0 ** (-self.backoff_db / 20.0)

    @property
    def ref_power(self) -> float:
        """Total sample power (full-scale units) of precoder power 1."""
        return self.amplitude ** 2


@dataclass
class RoundInfo:
    """What one exchange measured: frame start found vs expected (samples), detection metric,
    air start sample, peak |I|/|Q| sent (full scale = 1) and the fraction of sent I/Q
    components beyond full scale."""

    start_sample: int
    detected_offset: int
    detection_metric: float
    peak_component: float
    clipped_fraction: float = 0.0
    extra: dict = field(default_factory=dict)


class AirCompLink:
    """Frames, transmits and receives AirComp rounds over ``tx_radios`` -> ``rx_radio``.

    tx_advance_samples: per-node integer advance (samples) subtracted from the burst time, e.g.
    the timing offsets measured by calibration (default 0).
    """

    def __init__(self, tx_radios: Sequence[Radio], rx_radio: Radio, config: LinkConfig | None = None,
                 tx_advance_samples: Sequence[int] | None = None) -> None:
        if not tx_radios:
            raise ValueError("need at least one transmitting radio")
        self.tx_radios = list(tx_radios)
        self.rx_radio = rx_radio
        self.config = config or LinkConfig()
        self.tx_advance = list(tx_advance_samples or [0] * len(self.tx_radios))
        n_tx = {r.settings.n_tx_channels for r in self.tx_radios}
        if len(n_tx) != 1:
            raise ValueError(f"all transmitters must have the same number of antennas, got {n_tx}")
        self.n_tx = n_tx.pop()
        self.n_rx = rx_radio.settings.n_rx_channels

    @property
    def n_nodes(self) -> int:
        return len(self.tx_radios)

    def layout(self, payload_len: int, with_pilots: bool = False) -> FrameLayout:
        c = self.config
        return FrameLayout(self.n_nodes, self.n_tx, payload_len, c.preamble_len, c.guard_len,
                           c.pilot_len, with_pilots)

    def exchange(self, layout: FrameLayout, payloads: Sequence[np.ndarray | None],
                 payload_offsets: Sequence[int] | None = None,
                 start_sample: int | None = None) -> tuple[np.ndarray, RoundInfo]:
        """Send one frame from every node and receive it.

        payloads[n]: complex ``(N_t, K_n)`` in signal-model units (precoded symbols) or None,
        placed at ``payload_offsets[n]`` (default 0) inside the payload region.
        Returns the received frame ``(N_r, layout.total_len)`` aligned on the detected start and
        divided by the transmit amplitude (signal-model units), and a `RoundInfo`.
        """
        c = self.config
        offsets = payload_offsets or [0] * self.n_nodes
        if start_sample is None:   # every radio's own clock must be past: max over them
            start = max([self.rx_radio.now()] + [r.now() for r in self.tx_radios]) + c.lead_samples
        else:
            start = int(start_sample)
        pre = layout.preamble()
        pil = layout.pilot() if layout.with_pilots else None
        peak, clipped, sent = 0.0, 0, 0
        for n, radio in enumerate(self.tx_radios):
            x = np.zeros((self.n_tx, layout.total_len), dtype=np.complex128)
            x[0, :layout.preamble_len] = pre
            if pil is not None:
                for t in range(self.n_tx):
                    x[t, layout.pilot_slot(n, t)] = pil
            if payloads[n] is not None:
                p = np.asarray(payloads[n])
                i = layout.payload_start + offsets[n]
                if i + p.shape[1] > layout.total_len:
                    raise ValueError(f"payload of node {n} overruns the frame")
                x[:, i:i + p.shape[1]] = p
            x *= c.amplitude
            comps = np.abs(x.view(np.float64))
            peak = max(peak, float(comps.max()) if comps.size else 0.0)
            clipped += int(np.count_nonzero(comps > 1.0))
            sent += comps.size
            radio.transmit(x.astype(np.complex64), start - self.tx_advance[n])
        m = c.search_margin
        window = self.rx_radio.receive(layout.total_len + 2 * m, start - m)
        d, metric = detect_frame_start(window, pre, 2 * m + 1, c.detect_threshold)
        frame = window[:, d:d + layout.total_len].astype(np.complex128) / c.amplitude
        return frame, RoundInfo(start, d - m, metric, peak, clipped / max(sent, 1))

    def estimate_channels(self, start_sample: int | None = None) -> tuple[np.ndarray, RoundInfo]:
        """Pilot-only frame; LS estimate of every H_n, complex ``(N, N_r, N_t)`` (signal-model
        units: the error per entry is sigma^2 / pilot_len)."""
        layout = self.layout(0, with_pilots=True)
        frame, info = self.exchange(layout, [None] * self.n_nodes, start_sample=start_sample)
        return ls_channel_estimate(frame, layout), info

    def run_round(self, A: np.ndarray, B: np.ndarray, symbols: Sequence[np.ndarray],
                  start_sample: int | None = None) -> tuple[np.ndarray, RoundInfo]:
        """Send precoded symbols ``symbols[n]`` ``(L, K)`` with precoders ``B`` ``(N, N_t, L)``,
        aggregate with ``A`` ``(N_r, L)``; returns S_hat ``(L, K)`` and the `RoundInfo`."""
        if len(symbols) != self.n_nodes or len(B) != self.n_nodes:
            raise ValueError(f"need symbols and precoders for {self.n_nodes} nodes")
        k = np.asarray(symbols[0]).shape[1]
        layout = self.layout(k)
        payloads = [precode(B[n], symbols[n]) for n in range(self.n_nodes)]
        frame, info = self.exchange(layout, payloads, start_sample=start_sample)
        return aggregate(A, frame[:, layout.payload_start:]), info


def aircomp_round(tx_radios: Sequence[Radio], rx_radio: Radio, design, symbols_per_node: Sequence[np.ndarray],
                  start_sample: int | None = None, config: LinkConfig | None = None) -> np.ndarray:
    """One AirComp round: every node sends ``design.B[n] @ symbols_per_node[n]`` (``(L, K)``
    unit-power symbols) at ``start_sample`` (default: receiver now + lead); returns the estimate
    of sum_n S_n, complex ``(L, K)``. ``design`` has ``.A`` (N_r, L) and ``.B`` (N, N_t, L)."""
    link = AirCompLink(tx_radios, rx_radio, config)
    s_hat, _ = link.run_round(design.A, design.B, symbols_per_node, start_sample)
    return s_hat
