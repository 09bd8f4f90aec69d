"""Transceiver design: run time, and MSE against channel inversion and the SDR bound (seeded).

Run:  .venv/bin/python benchmarks/bench_design.py [--draws 200] [--timing-draws 10]
Prints two Markdown tables.

1. Design time (wall seconds, median / p90 over ``--timing-draws`` Rayleigh draws) of zf-sdr
   (default options: 100 randomization candidates, bound SDP included) and mmse (default
   init "best": zf-sdr start + channel-inversion start) at several (N, N_r, N_t), L = min(N_t, N_r).
2. MSE statistics over ``--draws`` draws, N = 4 nodes, N_r = 4, N_t in {1, 2}, unit power budgets
   and unit-variance Rayleigh channels, SNR = P / noise_var in {10, 20, 30} dB:
   win rate of zf-sdr over channel inversion, median and max ratio of the L = 1 zf-sdr MSE to
   its SDR lower bound, median MSE per method and the median gain of mmse over zf-sdr.
   ZF designs do not depend on noise_var (their MSE is noise_var * alpha), so each draw's ZF
   designs are computed once and evaluated at every SNR; mmse is re-solved per SNR from the
   same two starts that its default init="best" uses.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.optim.transceiver import design_transceiver  # noqa: E402


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


def timing_table(draws: int) -> None:
    print("| N | N_r | N_t | L | zf-sdr median s | zf-sdr p90 s | mmse median s | mmse p90 s | mmse iters (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for N, N_r, N_t in [(4, 4, 1), (4, 4, 2), (8, 8, 2), (8, 20, 1), (8, 20, 4)]:
        rng = np.random.default_rng(7)
        tz, tm, it = [], [], []
        for i in range(draws):
            H = rayleigh(rng, N, N_r, N_t)
            t0 = time.perf_counter()
            design_transceiver(H, 1.0, 0.01, "zf-sdr", rng=i)
            tz.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m = design_transceiver(H, 1.0, 0.01, "mmse", rng=i)
            tm.append(time.perf_counter() - t0)
            it.append(m.info["iterations"])
        L = min(N_t, N_r)
        print(f"| {N} | {N_r} | {N_t} | {L} | {np.median(tz):.3f} | {np.percentile(tz, 90):.3f} | "
              f"{np.median(tm):.3f} | {np.percentile(tm, 90):.3f} | {int(np.median(it))} |")


def mse_table(draws: int) -> None:
    snrs_db = (10.0, 20.0, 30.0)
    print("| N_t | L | SNR dB | zf-sdr wins vs CI | median zf/bound (L=1) | max zf/bound (L=1) | "
          "median MSE CI | median MSE zf-sdr | median MSE mmse | median zf/mmse |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for N_t in (1, 2):
        rng = np.random.default_rng(1000 + N_t)
        rows = {s: {"win": [], "ci": [], "zf": [], "mm": []} for s in snrs_db}
        ratios = []
        for i in range(draws):
            H = rayleigh(rng, 4, 4, N_t)
            zf = design_transceiver(H, 1.0, 1.0, "zf-sdr", rng=i, compute_bound=False)
            ci = design_transceiver(H, 1.0, 1.0, "channel-inversion")
            one = design_transceiver(H, 1.0, 1.0, "zf-sdr", n_streams=1, rng=i)
            ratios.append(one.mse / one.lower_bound)
            for s in snrs_db:
                nv = 10 ** (-s / 10)
                mm = min((design_transceiver(H, 1.0, nv, "mmse", init=A0) for A0 in (zf.A, ci.A)),
                         key=lambda d: d.mse)
                r = rows[s]
                r["win"].append(zf.mse < ci.mse)
                r["ci"].append(nv * ci.mse)
                r["zf"].append(nv * zf.mse)
                r["mm"].append(mm.mse)
        for s in snrs_db:
            r = {k: np.array(v) for k, v in rows[s].items()}
            print(f"| {N_t} | {N_t} | {s:.0f} | {100 * r['win'].mean():.1f} % | {np.median(ratios):.4f} | "
                  f"{np.max(ratios):.3f} | {np.median(r['ci']):.4g} | {np.median(r['zf']):.4g} | "
                  f"{np.median(r['mm']):.4g} | {np.median(r['zf'] / r['mm']):.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200, help="channel draws for the MSE table")
    ap.add_argument("--timing-draws", type=int, default=10, help="channel draws per timing row")
    args = ap.parse_args(argv)
    print(f"## Design time (wall s, {args.timing_draws} draws per row)\n")
    timing_table(args.timing_draws)
    print(f"\n## MSE over {args.draws} Rayleigh draws (N = 4, N_r = 4, P = 1)\n")
    mse_table(args.draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
