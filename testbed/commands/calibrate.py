"""``testbed calibrate``: sound every node, compute and check corrections, write a calibration.

Simulated benches (every radio ``kind: sim``): the air is built in this process from the
bench's ``channel`` section with an impairment preset (``--impairments``). Benches of radios
(Pluto, USRP, their emulated twins): this command is the bench's controller; start the receiver
and every node on its own host first (docs/bench.md), each opening only its own radio. Over the
control plane it sets up the time base, sounds each node through it, and writes a file keyed
to the serials the roles registered with (`testbed.net.roles.bench_calibrate`); the roles stop
when it is done. Output: a table per node (before / after), ``calibration_<bench>.json`` and
two plots in ``--out``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sim_backend.impairment_presets import PRESET_NAMES

PRESETS = ("none", *PRESET_NAMES)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` subcommand."""
    from testbed.commands._options import (ListAction, add_bench_arg,
                                           add_controller_address_args, add_model_arg,
                                           add_out_arg, add_register_timeout_arg, float_list)
    p = subparsers.add_parser("calibrate", help="measure and compensate per-node timing, CFO, "
                              "phase and gain; write a calibration file",
                              description=__doc__)
    add_bench_arg(p)
    p.add_argument("--impairments", choices=PRESETS, default=None, deprecated=("--preset",),
                   help="impairment preset of a simulated bench (default: the bench's "
                        "channel.impairments, 'none' without one); recorded in the file")
    add_out_arg(p, "calibration_out", root=False)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the simulated air and preset draw (default: the bench's "
                        "channel.seed)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--mse0", type=float, default=0.01,
                   help="AirComp MSE per channel use right after calibration (linear), the "
                        "baseline of the MSE-doubling time (default 0.01: 4 nodes, N_r = 4, "
                        "20 dB)")
    p.add_argument("--track-ms", type=float_list, action=ListAction, default="0,5,10,20,35,50",
                   metavar="MS,MS,...",
                   help="times (ms after calibration) of the corrected soundings of the "
                        "residual-phase-over-time plot")
    g = p.add_argument_group("benches of radios (the roles run as separate processes)")
    add_controller_address_args(g)
    add_register_timeout_arg(g)
    add_model_arg(g)
    p.set_defaults(func=run)


def bench_preset(cfg, requested: str | None) -> str:
    """The impairment preset to calibrate a simulated bench ``cfg`` with: ``requested``
    (``--impairments``) if given, else the bench's ``channel.impairments`` -- "none" without one,
    never a preset the bench did not ask for. The file records it, and a bench whose preset
    differs refuses the file at load; a ``requested`` preset other than the bench's is said."""
    have = (cfg.channel.impairments if cfg.channel is not None else None) or "none"
    if requested is not None and requested != have:
        print(f"note: calibrating with --impairments {requested} although bench {cfg.name!r} asks for "
              f"impairments {have!r}: the file is for `testbed demo --impairments {requested}` "
              f"or a bench with channel.impairments: {requested}; runs on {cfg.name!r} itself "
              "will refuse it")
    return requested or have


def _sim_bench(cfg, preset: str, seed: int):
    from sim_backend.channel import ChannelModel
    from sim_backend.impairment_presets import preset_by_name
    from sim_backend.sim_allreduce import build_sim_bench
    from testbed.radio.base import RadioSettings

    n = len(cfg.nodes)
    ch = cfg.channel
    n_rx = cfg.receiver.n_antennas
    rx_cfg = cfg.receiver.primary_radio
    carrier = float(rx_cfg.center_freq_hz)
    imp = preset_by_name(preset, n, carrier, seed)
    model = ChannelModel(n, n_rx, 1, fading=ch.fading if ch else "rayleigh",
                         k_factor_db=ch.k_factor_db if ch else 0.0,
                         path_loss_db=tuple((ch.path_loss_db if ch else {}).get(x.id, 0.0)
                                            for x in cfg.nodes))
    kw = {} if imp is None else dict(tx_impairments=imp.build_tx(), rx_impairment=imp.build_rx())
    bench = build_sim_bench(n, n_rx, 1, ch.snr_db if ch else 20.0, seed, model, **kw)
    for r in [*bench.tx_radios, bench.rx_radio]:
        r.configure(RadioSettings(sample_rate_hz=float(rx_cfg.sample_rate_hz),
                                  center_freq_hz=carrier,
                                  n_tx_channels=r.settings.n_tx_channels,
                                  n_rx_channels=r.settings.n_rx_channels))
    return bench.tx_radios, bench.rx_radio, bench.air.true_channels, imp


def _track_residual_phase(run, rx, ref, times_ms, fs: float) -> dict:
    """Corrected soundings at ``times_ms`` after the end of calibration -> {"t_ms": [...],
    "phase_deg": [[per node] per time]} (residual phase vs the reference channel, or vs receive
    antenna 0 without one)."""
    from calibration.procedures import SoundingConfig, fine_config, residuals, sound_nodes
    cfg = fine_config(SoundingConfig())
    t0 = max([rx.now()] + [r.now() for r in run.corrected]) + cfg.lead_samples
    out_t, out_ph = [], []
    for t_ms in sorted(times_ms):
        start = max(t0 + int(round(t_ms * 1e-3 * fs)),
                    max([rx.now()] + [r.now() for r in run.corrected]) + cfg.lead_samples)
        meas = sound_nodes(run.corrected, rx, cfg, start)
        ref_h = None if ref is None else np.asarray(ref())
        if ref_h is not None and ref_h.ndim == 3:
            ref_h = ref_h[..., 0]
        out_t.append((start - t0) / fs * 1e3)
        out_ph.append([float(v) for v in residuals(meas, ref_h).phase_deg])
    return {"t_ms": out_t, "phase_deg": out_ph}


def _validity(run, imp, mse0: float, carrier_hz: float, fs: float) -> dict:
    """MSE-doubling times (s) from `calibration.drift.doubling_time_s` with the measured residual
    CFO (and SRO = CFO / carrier, one oscillator per radio) and the preset's phase noise (node
    and receiver LOs add); capped at T_MAX_S. valid_for_s = VALIDITY_FACTOR x the per-frame-pilot
    doubling time (a run re-estimates CSI every frame)."""
    from calibration.drift import doubling_time_s
    from calibration.session import MAX_VALIDITY_S as T_MAX_S
    from calibration.session import VALIDITY_FACTOR, per_frame_validity_s
    cfo = np.asarray(run.residual.cfo_hz, float)
    sro = cfo / carrier_hz * 1e6
    pn = {}
    if imp is not None:
        rx = imp.rx
        lw = [p.phase_noise_linewidth_hz + rx.phase_noise_linewidth_hz for p in imp.tx]
        rms = [float(np.hypot(p.phase_noise_rms_deg, rx.phase_noise_rms_deg)) for p in imp.tx]
        corner = [max(p.phase_noise_corner_hz, rx.phase_noise_corner_hz) for p in imp.tx]
        pn = dict(linewidth_hz=float(np.mean(lw)), pll_rms_deg=float(np.mean(rms)),
                  pll_corner_hz=float(np.mean(corner)))
    out = {}
    for csi in ("calibration", "per_round"):
        t = doubling_time_s(mse0, cfo, sro, fs, csi=csi, t_max_s=T_MAX_S, **pn)
        out[f"doubling_{csi}_csi_s"] = float(min(t, T_MAX_S))
    # the same rule a run's CalibrationSession applies (per-frame pilots, x VALIDITY_FACTOR)
    out["valid_for_s"] = per_frame_validity_s(cfo, carrier_hz, fs, mse0)
    out["validity_factor"] = VALIDITY_FACTOR
    out["mse0"] = mse0
    out["phase_noise"] = pn or None
    return out


def _table(run, fs: float) -> str:
    before = [m for m in run.before]
    lines = [f"{'node':>4} | {'timing [samp]':>13} {'[ns]':>9} {'CFO [Hz]':>10} {'phase [deg]':>11} "
             f"{'gain [dB]':>9} || {'after: timing':>13} {'[ns]':>7} {'CFO [Hz]':>8} "
             f"{'phase':>7} {'gain':>6}"]
    r = run.residual
    for i, (m, c) in enumerate(zip(before, run.corrections)):
        lines.append(
            f"{i:>4} | {m.delay_samples:13.3f} {m.delay_samples / fs * 1e9:9.0f} {m.cfo_hz:10.1f} "
            f"{np.degrees(c.phase_rad):11.1f} {c.gain_db:9.2f} || {r.timing_samples[i]:13.4f} "
            f"{r.timing_samples[i] / fs * 1e9:7.2f} {r.cfo_hz[i]:8.3f} {r.phase_deg[i]:7.2f} "
            f"{r.gain_db[i]:6.3f}")
    return "\n".join(lines)


def _plots(run, out: Path, fs: float, track: dict) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, m in enumerate(run.before):
        c = m.correlation / max(m.correlation.max(), 1e-300)
        ax.plot(np.arange(c.size), c, label=f"node {i}")
    ax.set_xlabel("lag in the node's slot [samples]")
    ax.set_ylabel("normalized |correlation|")
    ax.set_title("sounding correlation peaks (before correction)")
    ax.legend()
    paths.append(out / "correlation_peaks.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    ph = np.asarray(track["phase_deg"])
    for i in range(ph.shape[1]):
        ax.plot(track["t_ms"], ph[:, i], marker="o", label=f"node {i}")
    ax.set_xlabel("time after calibration [ms]")
    ax.set_ylabel("residual phase [deg]")
    ax.set_title("residual phase over time (corrected soundings)")
    ax.legend()
    paths.append(out / "residual_phase.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def run(args: argparse.Namespace) -> int:
    """Calibrate the bench; 0 on success."""
    from testbed.net.roles.common import resolve_bench
    cfg = resolve_bench(args.bench)
    if cfg.radio_kinds() == {"sim"}:
        return _run_simulated(args, cfg)
    return _run_on_roles(args, cfg)


def _report(args, cfg, res, rx, truth, imp, key, t0: float, extra: dict,
            guard=lambda step: step()) -> Path:
    """Print the table and the validity, write the file and the plots; the file's path.
    ``guard(step)`` runs the residual-phase soundings (a bench of roles: again after a
    re-sync when a radio slipped, `bench_calibrate.retry_lost`)."""
    from calibration.persistence import CalibrationRecord, save_calibration
    fs = rx.settings.sample_rate_hz
    print(_table(res, fs))
    track = guard(lambda: _track_residual_phase(res, rx, truth, args.track_ms, fs))
    valid = _validity(res, imp, args.mse0, rx.settings.center_freq_hz, fs)
    print(f"MSE doubles after {valid['doubling_calibration_csi_s'] * 1e3:.3g} ms with channel "
          f"state from calibration time, {valid['doubling_per_round_csi_s']:.3g} s with per-frame "
          f"pilots; valid for {valid['valid_for_s']:.3g} s (x{valid['validity_factor']} of the latter)")
    before = {"timing_samples": [m.delay_samples for m in res.before],
              "cfo_hz": [m.cfo_hz for m in res.before],
              "phase_deg": [float(np.degrees(c.phase_rad)) for c in res.corrections],
              "gain_db": [c.gain_db for c in res.corrections]}
    rec = CalibrationRecord(key, time.time(), time.time() - t0, res.corrections,
                            res.residual.to_dict(), before,
                            {"node_ids": [n.id for n in cfg.nodes],
                             "phase_reference": "simulator channel" if truth is not None
                             else "receive antenna 0",
                             "residual_phase_track": track, **valid, **extra})
    out = Path(args.out)
    path = save_calibration(rec, out / f"calibration_{cfg.name}.json")
    print(f"wrote {path}")
    if not args.no_plots:
        for p in _plots(res, out, fs, track):
            print(f"wrote {p}")
    return path


def _run_simulated(args, cfg) -> int:
    """A simulated bench, every radio in this process (`_sim_bench`)."""
    from tqdm import tqdm

    from calibration.persistence import BenchKey
    from calibration.procedures import calibrate
    seed = args.seed if args.seed is not None else (cfg.channel.seed if cfg.channel else 0)
    preset = bench_preset(cfg, args.impairments)
    txs, rx, truth, imp = _sim_bench(cfg, preset, seed)
    t0 = time.time()
    with tqdm(total=len(txs) * 7, desc="sounding", unit="node") as bar:
        res = calibrate(txs, rx, reference_channels=truth, progress=bar.update)
    key = BenchKey.from_radios(cfg.name, txs, rx, preset=preset,
                               seed=seed if preset not in (None, "none") else None)
    _report(args, cfg, res, rx, truth, imp, key, t0, {"preset": preset, "seed": seed})
    return 0


def _run_on_roles(args, cfg) -> int:
    """A bench of radios: be its controller (the roles run on their own hosts) and calibrate
    over the control plane (`testbed.net.roles.bench_calibrate`); 1 when a role was lost or a
    request timed out (named), 0 on success."""
    import sys

    from tqdm import tqdm

    from calibration.persistence import BenchKey
    from testbed.errors import ConfigError
    from testbed.net.controller import Controller
    from testbed.net.errors import PeerLostError, RequestTimeout
    from testbed.net.roles.bench_calibrate import calibrate_bench, retry_lost
    from testbed.net.roles.bench_calibration import registered_radios
    from testbed.net.roles.bench_runner import controller_config
    from testbed.net.roles.common import (addresses_from_args, model_fingerprint,
                                          resolve_model_dir)
    if args.impairments not in (None, "none") or args.seed is not None:
        raise ConfigError(f"bench {cfg.name!r} has radios: --impairments and --seed describe "
                          "the simulated air only; drop them")
    addresses = addresses_from_args(cfg, args)
    fingerprint = model_fingerprint(resolve_model_dir(args.model))
    print(f"calibrate: controller of bench {cfg.name} at ROUTER {addresses.router}, PUB "
          f"{addresses.pub}; start the receiver and every node (docs/bench.md), waiting up to "
          f"{args.register_timeout:g} s", flush=True)
    with Controller(controller_config(cfg, addresses, fingerprint)) as ctl:
        try:
            ctl.wait_for_peers(timeout_s=args.register_timeout)
            t0 = time.time()
            with tqdm(total=len(cfg.nodes) * 7, desc="sounding", unit="node") as bar:
                res, radios, sync_s = calibrate_bench(ctl, cfg, progress=bar.update)
            rx_cfg = cfg.receiver.primary_radio
            key = BenchKey(cfg.name, registered_radios(ctl, cfg), float(rx_cfg.center_freq_hz),
                           float(rx_cfg.sample_rate_hz))
            extra = {"time_base": radios.executor.syncs, "time_base_s": sync_s,
                     "node_latency_samples": radios.latency_samples,
                     "controller_traffic": ctl.transport.traffic.table()}
            _report(args, cfg, res, radios.receiver, None, None, key, t0, extra,
                    guard=lambda step: retry_lost(radios.executor, step))
            ctl.shutdown("calibration finished")
        except (PeerLostError, RequestTimeout) as exc:
            print(f"calibration stopped: {exc}", file=sys.stderr, flush=True)
            ctl.shutdown(f"calibration aborted: {exc}")
            return 1
        except BaseException as exc:
            ctl.shutdown(f"calibration aborted: {type(exc).__name__}: {exc}")
            raise
    return 0
