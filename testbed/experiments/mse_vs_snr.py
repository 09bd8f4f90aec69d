"""MSE per channel use vs SNR for every transceiver design, averaged over Rayleigh draws.

Setting (defaults): N = 4 single-antenna nodes (N_t = 1), an N_r = 4-antenna receiver, unit power
budgets P_n = 1 per channel use, i.i.d. CN(0, 1) channels, SNR = P / sigma^2 from 0 to 30 dB.
MSE = sum_n ||A^H H_n B_n - I||^2 + sigma^2 ||A||^2 (linear, per channel use, summed over the L
streams), averaged over ``--draws`` channel draws; the same draws serve every SNR and method.

* zf-sdr, channel-inversion and random are zero-forcing designs: they do not depend on sigma^2 and
  their MSE is sigma^2 ||A||^2, so each draw's design is made once and scaled per SNR.
* mmse is re-designed at every SNR.
* "SDR lower bound" is zf-sdr's certified bound on the MSE of any L = 1 zero-forcing design.
* A second panel repeats the sweep for a SISO setting (N_r = N_t = 1) where the closed-form optimum
  (siso-optimal, threshold power control) is available.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NAME = "mse-vs-snr"
HELP = "all-reduce MSE vs SNR for zf-sdr, mmse, channel-inversion, random (+ SDR bound, SISO optimum)"
ZF_METHODS = ("zf-sdr", "channel-inversion", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: --draws, --nodes, --rx-antennas, --tx-antennas, --snr-min/--snr-max/--snr-step (dB)."""
    parser.add_argument("--draws", type=int, default=200, help="channel draws (default 200)")
    parser.add_argument("--nodes", type=int, default=4, metavar="N", help="N transmitting nodes (default 4)")
    parser.add_argument("--rx-antennas", type=int, default=4, dest="n_rx", metavar="N_R",
                        deprecated=("--n-rx",), help="receive antennas N_r (default 4)")
    parser.add_argument("--tx-antennas", type=int, default=1, dest="n_tx", metavar="N_T",
                        deprecated=("--n-tx",), help="antennas per node N_t (default 1)")
    parser.add_argument("--snr-min", type=float, default=0.0, metavar="DB", help="lowest SNR, dB (default 0)")
    parser.add_argument("--snr-max", type=float, default=30.0, metavar="DB", help="highest SNR, dB (default 30)")
    parser.add_argument("--snr-step", type=float, default=5.0, metavar="DB", help="SNR step, dB (default 5)")


def sweep(n_nodes: int, n_rx: int, n_tx: int, snrs_db: np.ndarray, draws: int, seed: int,
          methods: tuple[str, ...]) -> dict:
    """Per-draw MSE arrays for each method over the SNR grid.

    Returns {method: (draws, len(snrs_db)) linear MSE, "sdr-bound": same shape or absent}. ZF
    methods are designed once per draw at sigma^2 = 1 and scaled; others are designed per SNR.
    """
    from sim_backend.channel import rayleigh
    from testbed.optim.transceiver import design_transceiver

    rng = np.random.default_rng(seed)
    noise = 10.0 ** (-np.asarray(snrs_db, dtype=float) / 10.0)
    out = {m: np.empty((draws, noise.size)) for m in methods}
    bound = np.full((draws, noise.size), np.nan)
    for i in range(draws):
        H = rayleigh(rng, n_nodes, n_rx, n_tx)
        for m in methods:
            if m in ZF_METHODS:
                d = design_transceiver(H, 1.0, 1.0, m, rng=seed * 100_003 + i,
                                       **({"compute_bound": n_tx == 1} if m == "zf-sdr" else {}))
                out[m][i] = d.mse * noise
                if m == "zf-sdr" and d.lower_bound is not None:
                    bound[i] = d.lower_bound * noise
            else:
                out[m][i] = [design_transceiver(H, 1.0, nv, m, rng=seed * 100_003 + i).mse for nv in noise]
    if not np.isnan(bound).all():
        out["sdr-bound"] = bound
    return out


def _plot(path: Path, snrs_db, means: dict, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, y in means.items():
        style = dict(linestyle=":", color="k") if name == "sdr-bound" else dict(marker="o")
        ax.semilogy(snrs_db, y, label="SDR lower bound (ZF, L=1)" if name == "sdr-bound" else name, **style)
    ax.set_xlabel("SNR = P / sigma^2 (dB)")
    ax.set_ylabel("mean MSE per channel use (linear)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace, run_dir: Path) -> dict:
    """Run both sweeps (MIMO setting from the options, SISO N_r = N_t = 1), plot, return results."""
    draws = 8 if args.quick else args.draws
    snrs = np.arange(args.snr_min, args.snr_max + 1e-9, args.snr_step)
    if args.quick:
        snrs = np.array([0.0, 15.0, 30.0])
    if draws < 1 or snrs.size == 0:
        from testbed.errors import ConfigError
        raise ConfigError("need --draws >= 1 and a non-empty SNR grid (--snr-min <= --snr-max)")
    methods = ("zf-sdr", "mmse", "channel-inversion", "random")
    results, summary = {"snr_db": snrs, "draws": draws}, []
    settings = {"mimo": (args.nodes, args.n_rx, args.n_tx, methods),
                "siso": (args.nodes, 1, 1, ("siso-optimal",) + methods)}
    for key, (n, nr, nt, meths) in settings.items():
        per_draw = sweep(n, nr, nt, snrs, draws, args.seed + (0 if key == "mimo" else 1), meths)
        means = {m: v.mean(axis=0) for m, v in per_draw.items()}
        entry = {"n_nodes": n, "n_rx": nr, "n_tx": nt,
                 "mean_mse": means,
                 "median_mse": {m: np.median(v, axis=0) for m, v in per_draw.items()}}
        if "sdr-bound" in per_draw:
            ratio = per_draw["zf-sdr"] / per_draw["sdr-bound"]
            entry["zf_over_bound"] = {"median": float(np.median(ratio)), "max": float(np.max(ratio))}
        entry["mmse_gain_over_zf_db"] = 10 * np.log10(means["zf-sdr"] / means["mmse"])
        results[key] = entry
        title = f"AirComp MSE vs SNR: N={n}, N_r={nr}, N_t={nt}, {draws} Rayleigh draws"
        _plot(run_dir / f"mse_vs_snr_{key}.png", snrs, means, title)
        j = int(np.argmin(np.abs(snrs - 20.0)))
        summary.append(f"{key} (N={n}, N_r={nr}, N_t={nt}) at {snrs[j]:.0f} dB: " + ", ".join(
            f"{m}={means[m][j]:.4g}" for m in means))
    results["summary"] = summary
    return results
