"""Every emulated radio of a bench file on one real-time air, each served on its own port.

A bench's emulated twin differs from the hardware file only in addresses: its Pluto URIs are
``ip:127.0.0.1:<port>``, its USRP device args ``type=emulated,addr=127.0.0.1:<port>``.
`EmulatedBench.from_bench` serves one `EmulatedPluto` / `EmulatedUsrp` per such address (nodes
and every receiver radio; the USRPs share one PPS) and wires the air:

* node TX -> every receiver antenna and back (reciprocal): from the bench's ``channel``
  section, one fading draw (``fading``, ``k_factor_db``; ``rician`` with ``k_factor_db: .inf``
  is a fixed line-of-sight/cabled path) times the path loss (``path_loss_db`` per node), times
  a cable loss that puts a node sending at the AirComp reference power
  (`LinkBudget.ref_power`, `testbed.phy.budget`) with its configured TX gain (and, on a Pluto,
  the driver's DAC scaling, `_tx_air_db`) at the receiver's configured
  RX gain ``rx_full_scale(N)`` below the ADC's full scale (the presets' level plan, 12 dB of
  headroom for all N nodes); the air's noise is set so that the first node with 0 dB path
  loss sees ``snr_db`` per receive antenna (the simulator's SNR definition,
  docs/simulator.md);
* impairments: the preset ``channel.impairments`` drawn for the bench's nodes at the receiver's
  carrier from ``channel.seed`` (`sim_backend.impairment_presets.preset_by_name`): node i's TCXO
  is its preset offset relative to the receiver (CFO = ppm x carrier, SRO = ppm), with the
  preset's phase noise and gain error; the receiver radios (one shared reference) are the
  reference clock. Without a preset the TCXOs are ideal and LO phases still random per tune;
* a receiver of several radios (an array): the first radio's TX 0 reaches every other
  receiver radio's antennas (side by side), so its beacon can align them.
"""
from __future__ import annotations

import math
import re

import numpy as np

from sim_backend.channel import fixed_bench_channels, static_channel_rng
from sim_backend.impairment_presets import RX_HEADROOM_DB, preset_by_name, rx_full_scale
from sim_backend.pluto_emu import EmulatedPluto, Faults, IIODServer
from sim_backend.realtime_air import LOParams, RealtimeAir
from sim_backend.usrp_emu import EmulatedUsrp, PpsSource, UsrpServer
from testbed.errors import ConfigError
from testbed.phy.budget import DEFAULT_BUDGET

URI_RE = re.compile(r"^ip:(?P<host>[^:]+):(?P<port>\d+)$")


def emulated_port(uri: str, who: str) -> tuple[str, int]:
    """(host, port) of an emulated radio's ``ip:HOST:PORT`` URI; ConfigError otherwise."""
    m = URI_RE.match(uri)
    if not m:
        raise ConfigError(f"{who}: URI {uri!r} is not an emulated radio's ip:HOST:PORT "
                          "(e.g. ip:127.0.0.1:30431)")
    return m.group("host"), int(m.group("port"))


def emulated_address(radio, who: str) -> tuple[str, int]:
    """(host, port) of an emulated radio: a Pluto's ``ip:HOST:PORT`` URI or a USRP's
    ``type=emulated,addr=HOST:PORT`` args; ConfigError otherwise."""
    kind = getattr(radio, "kind", radio)
    if kind == "pluto":
        return emulated_port(radio.uri, who)
    if kind == "usrp":
        kv = dict(p.split("=", 1) for p in radio.args.replace(" ", "").split(",") if "=" in p)
        host, _, port = kv.get("addr", "").rpartition(":")
        if kv.get("type") == "emulated" and host and port.isdigit():
            return host, int(port)
        raise ConfigError(f"{who}: USRP args {radio.args!r} are not an emulated USRP's "
                          "type=emulated,addr=HOST:PORT (e.g. type=emulated,addr=127.0.0.1:30451)")
    raise ConfigError(f"{who}: only Pluto and USRP radios can be emulated (kind {kind!r})")


def bench_radios(bench) -> list[tuple[str, object]]:
    """(name, radio config) of every radio of ``bench``: the nodes', then the receiver's (named
    after the receiver, ``<id>-<i>`` when it has several)."""
    rx = bench.receiver.radio if isinstance(bench.receiver.radio, list) \
        else [bench.receiver.radio]
    radios = [(n.id, n.radio) for n in bench.nodes]
    return radios + [(bench.receiver.id if len(rx) == 1 else f"{bench.receiver.id}-{i}", r)
                     for i, r in enumerate(rx)]


def is_emulated(bench) -> bool:
    """True if every radio of ``bench`` is an emulated one (`emulated_address` accepts it)."""
    try:
        for who, r in bench_radios(bench):
            emulated_address(r, who)
    except ConfigError:
        return False
    return True


def _lo_from(params, random_phase: bool = True) -> LOParams:
    return LOParams(ppm=getattr(params, "sro_ppm", 0.0), random_phase_per_tune=random_phase,
                    phase_noise_rms_deg=params.phase_noise_rms_deg,
                    phase_noise_corner_hz=params.phase_noise_corner_hz,
                    phase_noise_linewidth_hz=params.phase_noise_linewidth_hz,
                    gain_error_db=params.gain_error_db)


class EmulatedBench:
    """The air and the served radios of a bench (see the module docstring). `close` stops
    every server. ``faults[name]`` injects faults on one radio; ``servers[name].uri``."""

    def __init__(self, air: RealtimeAir) -> None:
        self.air = air
        self.servers: dict[str, IIODServer | UsrpServer] = {}
        self.faults: dict[str, Faults] = {}
        self.pps = PpsSource()      # the bench's OctoClock: every USRP sees these edges

    def serve(self, name: str, host: str, port: int, **pluto_kw) -> IIODServer:
        """Serve a new `EmulatedPluto` ``name`` on ``host:port``."""
        dev = EmulatedPluto(self.air, name, host=host, **pluto_kw)
        faults = Faults()
        srv = IIODServer(dev, host, port, faults)
        self.servers[name] = srv
        self.faults[name] = faults
        return srv

    def serve_usrp(self, name: str, host: str, port: int, **usrp_kw) -> UsrpServer:
        """Serve a new `EmulatedUsrp` ``name`` (on the bench's PPS) on ``host:port``."""
        dev = EmulatedUsrp(self.air, name, pps=self.pps, **usrp_kw)
        faults = Faults()
        srv = UsrpServer(dev, host, port, faults)
        self.servers[name] = srv
        self.faults[name] = faults
        return srv

    def _serve_radio(self, name: str, radio, lo: LOParams) -> IIODServer | UsrpServer:
        host, port = emulated_address(radio, name)
        if radio.kind == "usrp":
            return self.serve_usrp(name, host, port, lo=lo, model=_usrp_model(radio),
                                   n_channels=max(radio.n_tx_channels, radio.n_rx_channels))
        return self.serve(name, host, port, mode=radio.mode, compatible=radio.compatible, lo=lo)

    def close(self) -> None:
        for srv in self.servers.values():
            srv.close()

    @classmethod
    def from_bench(cls, bench, *, time_scale: float | None = None, seed: int | None = None
                   ) -> "EmulatedBench":
        """Serve every radio of ``bench`` (a `BenchConfig`): Plutos whose URI is
        ip:HOST:PORT, USRPs whose args are type=emulated,addr=HOST:PORT. time_scale: None
        takes the bench's ``channel.time_scale`` (1 without a channel section)."""
        radios = bench_radios(bench)
        for who, r in radios:
            if isinstance(r, str):
                raise ConfigError(f"{who}: radio {r!r} was not resolved to a config")
            emulated_address(r, who)
        ch = bench.channel
        seed = seed if seed is not None else (ch.seed if ch else 0)
        if time_scale is None:
            time_scale = ch.time_scale if ch else 1.0
        primary = bench.receiver.primary_radio
        air = RealtimeAir(primary.sample_rate_hz, time_scale=time_scale, seed=seed)
        out = cls(air)
        n_nodes = len(bench.nodes)
        imp = bench_impairments(bench, seed)
        node_srv = [out._serve_radio(node.id, node.radio, _lo_from(imp.tx[i]) if imp
                                     else LOParams())
                    for i, node in enumerate(bench.nodes)]
        rx_lo = _lo_from(imp.rx) if imp else LOParams()
        rx_lo = LOParams(ppm=0.0, **{k: getattr(rx_lo, k) for k in (
            "random_phase_per_tune", "phase_noise_rms_deg", "phase_noise_corner_hz",
            "phase_noise_linewidth_hz")})
        rx_srv = [out._serve_radio(name, r, rx_lo) for name, r in radios[n_nodes:]]
        out._wire(bench, node_srv, rx_srv)
        return out

    def _wire(self, bench, node_srv, rx_srv) -> None:
        ch = bench.channel
        ants = [(s, c) for s in rx_srv for c in range(s.device.n)]
        rng = static_channel_rng(bench)
        H = fixed_bench_channels(bench, len(ants), rng=rng)        # (N, n_ant, 1)
        headroom = ch.rx_headroom_db if ch else RX_HEADROOM_DB
        snr_db = ch.snr_db if ch else 20.0
        rx_gain_db = bench.receiver.primary_radio.rx_gain_db
        fs = bench.receiver.primary_radio.sample_rate_hz
        for n, (node, srv) in enumerate(zip(bench.nodes, node_srv)):
            # level plan: a node at the reference power lands rx_full_scale(N) below the ADC's
            # full scale at the receiver's gain (the presets' 12 dB of headroom for N nodes)
            tx_air_db = _tx_air_db(node.radio, srv.device)
            loss_db = -(tx_air_db + rx_gain_db) - 20 * math.log10(
                rx_full_scale(len(bench.nodes), headroom))
            g = 10 ** (loss_db / 20)
            for a, (rsrv, rch) in enumerate(ants):
                h = complex(H[n, a, 0]) * g
                self.air.connect(srv.device.port, 0, rsrv.device.port, rch, h=h)
                self.air.connect(rsrv.device.port, rch, srv.device.port, 0, h=h)  # reciprocal
            if n == 0:     # noise so that this node at the reference power sees snr_db
                p_rx = DEFAULT_BUDGET.ref_power * 10 ** ((tx_air_db + loss_db) / 10)
                self.air.noise_dbm_hz = (10 * math.log10(p_rx / fs) - snr_db
                                         + self.air.full_scale_dbm)
        # a receiver array's radios stand side by side: the first one's TX 0 reaches the
        # others' antennas (the beacon that aligns them), at the first node's level
        if len(rx_srv) > 1:
            tx_air_db = _tx_air_db(bench.receiver.primary_radio, rx_srv[0].device)
            g = 10 ** ((-(tx_air_db + rx_gain_db) - 20 * math.log10(
                rx_full_scale(len(bench.nodes), headroom))) / 20)
            for rsrv in rx_srv[1:]:
                for rch in range(rsrv.device.n):
                    self.air.connect(rx_srv[0].device.port, 0, rsrv.device.port, rch,
                                     h=g * np.exp(1j * rng.uniform(0, 2 * np.pi)))


def bench_impairments(bench, seed: int | None = None):
    """The impairments the emulated air draws for ``bench`` (a `BenchConfig`): its
    ``channel.impairments`` preset for its nodes at the receiver's carrier, from ``seed``
    (None: ``channel.seed``); None without a preset."""
    ch = bench.channel
    seed = seed if seed is not None else (ch.seed if ch else 0)
    return preset_by_name(ch.impairments if ch else None, len(bench.nodes),
                          bench.receiver.primary_radio.center_freq_hz, seed)


def _tx_air_db(radio, device) -> float:
    """Air level (dB, air units) of a full-scale sample from the testbed's driver for
    ``radio`` (its config) on the emulated ``device``: the TX gain (a USRP's relative to its
    maximum) plus, on a Pluto, the driver's DAC scaling -- full scale 1.0 is 2**14 counts of the
    int16 word whose 12 MSBs the DAC takes (`testbed.radio.scaling`), 6.02 dB below the DAC's
    full scale. Without it a Pluto bench ran 6 dB below its ``snr_db`` (measured: the receiver's
    predicted AirComp error 6x the ideal bench's on the same channels)."""
    from testbed.radio.scaling import TX_FULL_SCALE_COUNTS
    db = float(radio.tx_gain_db) - float(getattr(device, "tx_gain_max", 0.0))
    if isinstance(device, EmulatedPluto):
        db += 20 * math.log10(TX_FULL_SCALE_COUNTS / 2 ** 15)
    return db


def _usrp_model(radio) -> str:
    from sim_backend.usrp_emu.device import MODELS
    return radio.model if radio.model in MODELS else "x310"
