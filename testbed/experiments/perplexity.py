"""Perplexity of the trained default model (tiny byte-level Llama) with its all-reduces replaced by
simulated over-the-air ones, vs SNR and vs the number of nodes.

Setting (defaults): the default model (`testbed train-default`; trained on first use), held-out
bytes of its corpus (`testbed.llm.textdata.heldout_tokens`), non-overlapping windows of
``--window`` tokens, the first ``--windows`` of them (bounded so the sweep takes minutes). The
model is split with the equal split over N nodes (largest-remainder rounding to KV groups and MLP
columns). All-reduces compared at each point:

* exact (float sum; the reference perplexity) and digital (8-bit uniform quantization, error-free
  OFDMA links; `testbed.phy.allreduce_digital`), which do not depend on the SNR;
* aircomp: `build_sim_allreduce("aircomp")`: N single-antenna nodes, ``--n-rx`` receive antennas,
  Rayleigh block fading with a new block per all-reduce, perfect CSI, design ``--method``;
* fdma: uncoded analog FDMA on the same simulated air (equal energy per node).

Sweeps: SNR in ``--snrs`` at N = ``--nodes`` and N in ``--node-counts`` at ``--snr-db``.
Perplexity is per byte (uniform guessing = 256).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from testbed.errors import ConfigError

NAME = "perplexity"
HELP = "perplexity of the trained default model with AirComp / FDMA / digital all-reduce vs SNR and N"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: --snr-sweep, --nodes, --node-counts, --snr-db, --rx-antennas, --method, --window,
    --eval-windows, --bits."""
    from testbed.commands._options import ListAction, float_list, int_list
    parser.add_argument("--snr-sweep", type=float_list, action=ListAction, dest="snrs",
                        default="0,5,10,15,20,30", metavar="DB,DB,...", deprecated=("--snrs",),
                        help="SNRs of the SNR sweep, comma-separated, dB")
    parser.add_argument("--nodes", type=int, default=4, metavar="N", help="N of the SNR sweep (default 4)")
    parser.add_argument("--node-counts", type=int_list, action=ListAction, default="2,4,8",
                        metavar="N,N,...", help="N values of the node sweep, comma-separated")
    parser.add_argument("--snr-db", type=float, default=10.0, help="SNR of the node sweep, dB (default 10)")
    parser.add_argument("--rx-antennas", type=int, default=4, dest="n_rx", metavar="N_R",
                        deprecated=("--n-rx",), help="receive antennas N_r (default 4)")
    parser.add_argument("--method", default="aircomp-zf-sdr", metavar="METHOD",
                        help="AirComp transceiver design: aircomp-zf-sdr, aircomp-mmse, "
                             "aircomp-channel-inversion, ... (default aircomp-zf-sdr)")
    parser.add_argument("--window", type=int, default=128, metavar="TOKENS", help="tokens per window (default 128)")
    parser.add_argument("--eval-windows", type=int, default=6, dest="windows", metavar="N",
                        deprecated=("--windows",), help="windows scored (default 6)")
    parser.add_argument("--bits", type=int, default=8, help="digital all-reduce bits (default 8)")


def make_allreduce(kind: str, n_nodes: int, snr_db: float, n_rx: int, method: str, bits: int, seed: int):
    """An all-reduce for the sharded model: "exact", "digital", "aircomp" or "fdma" (simulated air)."""
    if kind == "exact":
        from testbed.llm.allreduce import ExactAllReduce
        return ExactAllReduce()
    if kind == "digital":
        from testbed.phy.allreduce_digital import DigitalAllReduce
        return DigitalAllReduce(bits=bits)
    from sim_backend.sim_allreduce import build_sim_allreduce
    kwargs = {"design_method": method} if kind == "aircomp" else {}
    ar, _ = build_sim_allreduce(kind, n_nodes=n_nodes, n_rx=n_rx, n_tx=1, snr_db=snr_db, seed=seed, **kwargs)
    return ar


def measure(model, tokens, kind: str, n_nodes: int, snr_db: float, args, seed: int) -> dict:
    """Perplexity (per byte) and, for air schemes, the mean measured/predicted MSE of one setting."""
    from testbed.llm.perplexity import evaluate_perplexity
    from testbed.llm.sharding import shard_model

    design = args.method.removeprefix("aircomp-")
    ar = make_allreduce(kind, n_nodes, snr_db, args.n_rx, design, args.bits, seed)
    sharded = shard_model(model, np.full(n_nodes, 1.0 / n_nodes), ar)
    res = evaluate_perplexity(sharded, tokens, window=args.window, max_windows=args.windows, progress=False)
    out = {"ppl": res.ppl, "nll_per_token": res.nll_per_token, "n_tokens": res.n_tokens}
    stats = ar.stats() if hasattr(ar, "stats") else {}
    rows = [s for s in stats.values() if isinstance(s, dict) and "mse_predicted" in s]
    if rows:  # per channel use, normalized symbol domain, averaged over the layer/site sites
        out["mse_symbols"] = float(np.mean([r["mse_symbols"] for r in rows]))
        out["mse_predicted"] = float(np.mean([r["mse_predicted"] for r in rows]))
    return out


def run(args: argparse.Namespace, run_dir: Path) -> dict:
    """Load the default model, run the SNR and node sweeps, plot, return the perplexities."""
    import torch

    from testbed.llm.loading import load_model_and_tokenizer
    from testbed.llm.textdata import heldout_tokens

    from testbed.commands._options import canonical_method
    from testbed.optim.transceiver import METHODS as DESIGNS

    args.method = canonical_method(args.method, tuple(f"aircomp-{m}" for m in DESIGNS))
    if args.quick:
        args.snrs, args.node_counts, args.window, args.windows = [0.0, 30.0], [2, 4], 48, 1
    if args.window < 2 or args.windows < 1 or min(args.node_counts) < 1 or args.nodes < 1:
        raise ConfigError("need --window >= 2, --windows >= 1 and node counts >= 1")
    torch.manual_seed(args.seed)
    model, _ = load_model_and_tokenizer("default", progress=False)
    tokens = heldout_tokens()
    snrs = sorted(args.snrs)
    ref = {k: measure(model, tokens, k, args.nodes, 0.0, args, args.seed) for k in ("exact", "digital")}
    vs_snr = {k: [measure(model, tokens, k, args.nodes, s, args, args.seed + i) for i, s in enumerate(snrs)]
              for k in ("aircomp", "fdma")}
    counts = sorted(args.node_counts)
    vs_n = {k: [measure(model, tokens, k, n, args.snr_db, args, args.seed + 100 + n) for n in counts]
            for k in ("exact", "digital", "aircomp", "fdma")}
    _plot(run_dir, snrs, counts, ref, vs_snr, vs_n, args)
    summary = [f"exact {ref['exact']['ppl']:.3f}, digital {ref['digital']['ppl']:.3f} (N={args.nodes})"]
    summary += [f"SNR {s:g} dB: aircomp {vs_snr['aircomp'][i]['ppl']:.3f}, fdma {vs_snr['fdma'][i]['ppl']:.3f}"
                for i, s in enumerate(snrs)]
    summary += [f"N={n} at {args.snr_db:g} dB: aircomp {vs_n['aircomp'][k]['ppl']:.3f}, "
                f"fdma {vs_n['fdma'][k]['ppl']:.3f}, exact {vs_n['exact'][k]['ppl']:.3f}" for k, n in enumerate(counts)]
    return {"n_tokens": ref["exact"]["n_tokens"], "window": args.window, "windows": args.windows,
            "method": args.method, "n_rx": args.n_rx, "nodes": args.nodes, "reference": ref,
            "snr_db": snrs, "vs_snr": vs_snr, "node_counts": counts, "node_sweep_snr_db": args.snr_db,
            "vs_nodes": vs_n, "summary": summary}


def _plot(run_dir: Path, snrs, counts, ref, vs_snr, vs_n, args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from testbed.experiments.plots import integer_axis, plain_log_axis

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for k in ("aircomp", "fdma"):
        ax1.plot(snrs, [r["ppl"] for r in vs_snr[k]], marker="o", label=f"{k} ({args.method})" if k == "aircomp" else k)
    ax1.axhline(ref["exact"]["ppl"], color="k", linestyle=":", label="exact all-reduce")
    ax1.axhline(ref["digital"]["ppl"], color="g", linestyle="--", label=f"digital {args.bits}-bit")
    ax1.set_xlabel("SNR P / sigma^2 (dB)")
    ax1.set_title(f"vs SNR, N = {args.nodes}, N_r = {args.n_rx}")
    for k in ("aircomp", "fdma", "digital", "exact"):
        ax2.plot(counts, [r["ppl"] for r in vs_n[k]], marker="o", label=k)
    ax2.set_xlabel("number of nodes N")
    ax2.set_title(f"vs N at {args.snr_db:g} dB, N_r = {args.n_rx}")
    integer_axis(ax2, counts)
    every = [r["ppl"] for rows in (*vs_snr.values(), *vs_n.values()) for r in rows]
    every += [ref["exact"]["ppl"], ref["digital"]["ppl"]]
    for ax in (ax1, ax2):
        plain_log_axis(ax, every)
        ax.set_ylabel("perplexity per byte")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Default tiny Llama, held-out text, {args.windows} x {args.window}-token windows")
    fig.tight_layout()
    fig.savefig(run_dir / "perplexity.png", dpi=120)
    plt.close(fig)
