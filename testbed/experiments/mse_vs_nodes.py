"""Predicted all-reduce MSE vs the number of nodes N: AirComp designs vs uncoded analog FDMA.

Setting (defaults): single-antenna nodes (N_t = 1), N_r = 4 receive antennas, unit power budgets,
i.i.d. CN(0, 1) channels, SNR = P / sigma^2 = 20 dB, N in 2, 3, 4, 6, 8, 12, 16; the MSE of the
sum per channel use (linear) averaged over ``--draws`` channel draws, the same draws for every
scheme.

AirComp: `design_transceiver` MSE of zf-sdr, mmse and channel-inversion (K channel uses).
Uncoded FDMA (`testbed.phy.round` with one slot per node, each node alone on its own resource with the
single-node ZF transceiver, errors of the N nodes add):

* fairness "energy" (the phy's default): every node spends the same energy as in AirComp; FDMA
  takes N times the airtime; MSE = sum_n sigma^2 (1/s_n)^2 / P_n, s_n = ||h_n||.
* fairness "power": equal transmit power and equal latency, so each node's sub-band of B/N has
  N times less noise: MSE = sum_n sigma^2 (1/s_n)^2 / (N P_n) (reported as a second curve).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from testbed.errors import ConfigError

NAME = "mse-vs-nodes"
HELP = "all-reduce MSE vs number of nodes: AirComp (zf-sdr, mmse, channel-inversion) vs uncoded FDMA"
AIRCOMP_METHODS = ("zf-sdr", "mmse", "channel-inversion")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: --node-counts (list), --draws, --rx-antennas, --snr-db."""
    from testbed.commands._options import ListAction, int_list
    parser.add_argument("--node-counts", type=int_list, action=ListAction, dest="nodes",
                        default="2,3,4,6,8,12,16", metavar="N,N,...", deprecated=("--nodes",),
                        help="numbers of nodes N, comma-separated")
    parser.add_argument("--draws", type=int, default=100, help="channel draws per N (default 100)")
    parser.add_argument("--rx-antennas", type=int, default=4, dest="n_rx", metavar="N_R",
                        deprecated=("--n-rx",), help="receive antennas N_r (default 4)")
    parser.add_argument("--snr-db", type=float, default=20.0, help="SNR P/sigma^2, dB (default 20)")


def fdma_mse(H: np.ndarray, power: np.ndarray, noise_var: float, fairness: str = "energy") -> float:
    """Predicted MSE per channel use of the uncoded-FDMA sum (linear).

    ``H`` (N, N_r, N_t) channels, ``power`` (N,) linear budgets, ``noise_var`` sigma^2; single
    stream per node with its closed-form single-node ZF transceiver; "power" fairness gives every
    node N times the power (1/N of the noise in its B/N sub-band)."""
    from testbed.phy.fdma import single_node_zf

    n = H.shape[0]
    boost = {"energy": 1.0, "power": float(n)}.get(fairness)
    if boost is None:
        raise ConfigError(f"fairness must be 'energy' or 'power', got {fairness!r}")
    return float(sum(single_node_zf(H[i], boost * power[i], noise_var)[2] for i in range(n)))


def run(args: argparse.Namespace, run_dir: Path) -> dict:
    """Sweep N, plot mean MSE (log scale) per scheme, return per-N means and medians."""
    from sim_backend.channel import rayleigh
    from testbed.optim.transceiver import design_transceiver

    nodes = [2, 4, 8] if args.quick else sorted(set(args.nodes))
    draws = 6 if args.quick else args.draws
    if draws < 1 or min(nodes) < 1:
        raise ConfigError("need --draws >= 1 and every --nodes value >= 1")
    nv = 10.0 ** (-args.snr_db / 10.0)
    schemes = AIRCOMP_METHODS + ("fdma-energy", "fdma-power")
    per = {s: np.empty((len(nodes), draws)) for s in schemes}
    for k, n in enumerate(nodes):
        rng = np.random.default_rng([args.seed, n])
        P = np.ones(n)
        for i in range(draws):
            H = rayleigh(rng, n, args.n_rx, 1)
            for m in AIRCOMP_METHODS:
                per[m][k, i] = design_transceiver(H, P, nv, m, rng=i, **(
                    {"compute_bound": False} if m == "zf-sdr" else {})).mse
            per["fdma-energy"][k, i] = fdma_mse(H, P, nv, "energy")
            per["fdma-power"][k, i] = fdma_mse(H, P, nv, "power")
    means = {s: v.mean(axis=1) for s, v in per.items()}
    _plot(run_dir / "mse_vs_nodes.png", nodes, means,
          f"All-reduce MSE vs N: N_r={args.n_rx}, N_t=1, SNR {args.snr_db:g} dB, {draws} draws")
    best_air = np.minimum(means["zf-sdr"], means["mmse"])
    summary = [f"N={n}: best AirComp {best_air[k]:.4g}, FDMA(energy) {means['fdma-energy'][k]:.4g} "
               f"({means['fdma-energy'][k] / best_air[k]:.2f}x), FDMA(power) {means['fdma-power'][k]:.4g}"
               for k, n in enumerate(nodes)]
    return {"nodes": nodes, "draws": draws, "n_rx": args.n_rx, "snr_db": args.snr_db,
            "mean_mse": means, "median_mse": {s: np.median(v, axis=1) for s, v in per.items()},
            "fdma_energy_over_best_aircomp": means["fdma-energy"] / best_air, "summary": summary}


def _plot(path: Path, nodes, means: dict, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from testbed.experiments.plots import integer_axis

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    labels = {"fdma-energy": "uncoded FDMA (equal energy, N x airtime)",
              "fdma-power": "uncoded FDMA (equal power and latency)"}
    for name, y in means.items():
        ax.semilogy(nodes, y, marker="s" if name.startswith("fdma") else "o",
                    linestyle="--" if name.startswith("fdma") else "-", label=labels.get(name, f"AirComp {name}"))
    ax.set_xlabel("number of nodes N")
    integer_axis(ax, nodes)
    ax.set_ylabel("mean MSE of the sum per channel use (linear)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
