"""Per-token latency (modelled) vs number of nodes and vs bandwidth: AirComp vs digital all-reduce
(star through the receiver, ring) vs uncoded analog FDMA (`testbed.optim.latency`).

Setting (defaults): N identical Jetson Orin Nano nodes with the equal split, decode of one token,
LM head included, uplink SNR 20 dB per node, 8-bit digital quantization, digital downlink
broadcast at 20 dB, L = 1 stream, and the frame the link really sends on every transmission phase:
preamble + guard (79 symbols), a 32-symbol pilot per transmitting antenna, a 64-sample pipeline
lead (`testbed.optim.latency.LinkConfig`; set them to 0 for airtime alone). Shapes: Llama-2-7B, TinyLlama-1.1B and
Llama-3.2-1B (`testbed.optim.latency_shapes`).

Sweeps: (1) N = 2..16 at B = 1 MHz; (2) B = 10 kHz..1 GHz at N = 4; (3) uplink SNR 0..120 dB at
N = 2 with no downlink (where digital's rate log2(1 + SNR) eventually wins). The speed-up is
digital-star latency / AirComp latency; the 5x point and the crossover (speed-up 1) are found by
`first_crossing` (linear interpolation on the grid) and marked on the plots.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from testbed.errors import ConfigError

NAME = "latency"
HELP = "per-token latency vs nodes and bandwidth: AirComp vs digital (star, ring) vs uncoded FDMA"
SCHEMES = ("aircomp", "digital-star", "digital-ring", "fdma")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: --max-nodes, --bandwidth-mhz, --snr-db, --bits, --downlink, --overhead-symbols,
    --pilot-symbols, --pipeline-samples."""
    from testbed.optim.latency import FRAME_OVERHEAD_SYMBOLS, PILOT_SYMBOLS, PIPELINE_SAMPLES
    parser.add_argument("--max-nodes", type=int, default=16, metavar="N", help="largest N of the node sweep (default 16)")
    parser.add_argument("--bandwidth-mhz", type=float, default=1.0,
                        help="bandwidth of the node sweep, MHz (default 1)")
    parser.add_argument("--sweep-nodes", type=int, default=4, metavar="N", help="N of the bandwidth/SNR sweeps (default 4)")
    parser.add_argument("--snr-db", type=float, default=20.0, metavar="SNR_DB", help="uplink SNR per node, dB (default 20)")
    parser.add_argument("--bits", type=int, default=8, help="digital quantization bits (default 8)")
    parser.add_argument("--downlink", choices=("digital", "analog", "none"), default="digital",
                        help="downlink broadcast of the aggregate (default digital)")
    parser.add_argument("--overhead-symbols", type=float, default=FRAME_OVERHEAD_SYMBOLS,
                        help=f"preamble + guard symbols per transmission phase (default {FRAME_OVERHEAD_SYMBOLS:g})")
    parser.add_argument("--pilot-symbols", type=float, default=PILOT_SYMBOLS,
                        help=f"pilot symbols per transmitting antenna per phase (default {PILOT_SYMBOLS:g}; 0: none)")
    parser.add_argument("--pipeline-samples", type=float, default=PIPELINE_SAMPLES,
                        help=f"radio pipeline latency per phase, samples at rate B (default {PIPELINE_SAMPLES:g})")


def scheme_latencies(n: int, shapes, link) -> dict[str, float]:
    """Per-token latency (s) of every scheme for N equal-split Orin Nano nodes and LinkConfig ``link``."""
    from testbed.optim.latency import per_token_latency
    from testbed.optim.nodes import jetson_orin_nano

    nodes = [jetson_orin_nano(f"orin-nano-{i}") for i in range(n)]
    m = np.full(n, 1.0 / n)
    return {"aircomp": per_token_latency(m, nodes, shapes, "aircomp", link).total_s,
            "digital-star": per_token_latency(m, nodes, shapes, "digital", replace(link, pattern="star")).total_s,
            "digital-ring": per_token_latency(m, nodes, shapes, "digital", replace(link, pattern="ring")).total_s,
            "fdma": per_token_latency(m, nodes, shapes, "fdma", link).total_s}


def _table(values, make) -> dict[str, np.ndarray]:
    rows = [make(v) for v in values]
    return {s: np.array([r[s] for r in rows]) for s in SCHEMES}


def _marks(x, lat: dict) -> dict:
    from testbed.optim.latency import first_crossing

    out = {}
    for base in ("digital-star", "digital-ring", "fdma"):
        r = lat[base] / lat["aircomp"]
        out[base] = {"speedup": r, "max_speedup": float(r.max()),
                     "x_at_max": float(np.asarray(x)[int(np.argmax(r))]),
                     "five_x_at": first_crossing(x, r, 5.0), "crossover_at": first_crossing(x, r, 1.0)}
    return out


def run(args: argparse.Namespace, run_dir: Path) -> dict:
    """Run the three sweeps for every shape; plot latency and speed-up; return all numbers."""
    from testbed.optim.latency import LinkConfig
    from testbed.optim.latency_shapes import LLAMA2_7B, LLAMA32_1B, TINYLLAMA_1_1B

    if args.max_nodes < 2 or args.sweep_nodes < 1 or args.bandwidth_mhz <= 0:
        raise ConfigError("need --max-nodes >= 2, --sweep-nodes >= 1 and --bandwidth-mhz > 0")
    link = LinkConfig(bandwidth_hz=args.bandwidth_mhz * 1e6, snr_db=args.snr_db, downlink_snr_db=args.snr_db,
                      bits=args.bits, downlink=args.downlink, overhead_symbols=args.overhead_symbols,
                      pilot_symbols=args.pilot_symbols, pipeline_samples=args.pipeline_samples)
    ns = np.arange(2, (8 if args.quick else args.max_nodes) + 1)
    bws = np.geomspace(1e4, 1e9, 11 if args.quick else 51)
    snrs = np.arange(0.0, 121.0, 20.0 if args.quick else 2.0)
    results, summary = {"link": link, "nodes": ns, "bandwidth_hz": bws, "snr_db_sweep": snrs}, []
    for shapes in (LLAMA2_7B, TINYLLAMA_1_1B, LLAMA32_1B):
        by_n = _table(ns, lambda n: scheme_latencies(int(n), shapes, link))
        by_b = _table(bws, lambda b: scheme_latencies(args.sweep_nodes, shapes, replace(link, bandwidth_hz=float(b))))
        by_s = _table(snrs, lambda s: scheme_latencies(2, shapes, replace(link, snr_db=float(s), downlink="none")))
        entry = {"vs_nodes": {"latency_s": by_n, **_marks(ns, by_n)},
                 "vs_bandwidth": {"latency_s": by_b, **_marks(bws, by_b)},
                 "vs_snr_n2_no_downlink": {"latency_s": by_s, **_marks(snrs, by_s)}}
        results[shapes.name] = entry
        _plot(run_dir / f"latency_{shapes.name}.png", shapes.name, link, args.sweep_nodes,
              (ns, by_n, entry["vs_nodes"]), (bws, by_b, entry["vs_bandwidth"]))
        vn = entry["vs_nodes"]["digital-star"]
        summary.append(f"{shapes.name}: speed-up over digital star at B={link.bandwidth_hz / 1e6:g} MHz "
                       f"N=2..{ns[-1]}: {vn['speedup'][0]:.2f} -> {vn['speedup'][-1]:.2f}, 5x at N="
                       f"{_fmt(vn['five_x_at'])}; N={args.sweep_nodes} over B: max {entry['vs_bandwidth']['digital-star']['max_speedup']:.2f}; "
                       f"N=2 no downlink: digital wins above SNR {_fmt(entry['vs_snr_n2_no_downlink']['digital-star']['crossover_at'])} dB")
    results["summary"] = summary
    return results


def _fmt(x: float | None) -> str:
    return "never (on the grid)" if x is None else f"{x:.3g}"


def _plot(path: Path, name: str, link, sweep_nodes: int, by_n, by_b) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from testbed.experiments.plots import integer_axis

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (x, lat, marks), xlabel, logx in (
            (0, by_n, "number of nodes N", False), (1, by_b, "bandwidth B (Hz)", True)):
        ax = axes[0, col]
        for s in SCHEMES:
            ax.plot(x, 1e3 * lat[s], marker="o", markersize=3, label=s)
        ax.set_yscale("log")
        ax.set_ylabel("per-token latency (ms)")
        ax = axes[1, col]
        for base in ("digital-star", "digital-ring", "fdma"):
            ax.plot(x, marks[base]["speedup"], marker="o", markersize=3, label=f"{base} / aircomp")
        ax.axhline(5.0, color="r", linestyle=":", label="5x")
        ax.axhline(1.0, color="k", linestyle=":", label="1x (crossover)")
        for base, color in (("digital-star", "C0"), ("digital-ring", "C1")):
            for key, lvl in (("five_x_at", 5.0), ("crossover_at", 1.0)):
                xv = marks[base][key]
                if xv is not None:
                    ax.plot([xv], [lvl], marker="*", markersize=14, color=color)
                    ax.annotate(f"{xv:.3g}", (xv, lvl), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_ylabel("speed-up (baseline / AirComp latency)")
        for a in axes[:, col]:
            a.set_xlabel(xlabel)
            if logx:
                a.set_xscale("log")
            else:
                integer_axis(a)
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=7)
    axes[0, 0].set_title(f"vs N at B = {link.bandwidth_hz / 1e6:g} MHz")
    axes[0, 1].set_title(f"vs bandwidth at N = {sweep_nodes}")
    fig.suptitle(f"{name}: per-token latency, equal split over Orin Nanos, SNR {link.snr_db} dB, "
                 f"{link.bits}-bit digital, downlink {link.downlink}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
