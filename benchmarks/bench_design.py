"""Transceiver design: run time against a plain cvxpy SDR solve, and MSE against bounds and mmse.

Run:  .venv/bin/python benchmarks/bench_design.py [--timing-draws 60] [--quality-draws 20] [--draws 200]
         [--blas-threads 1] [--clock wall|cpu]
Prints Markdown tables; every ratio is measured side by side in the same run, on the same draws.
Thread settings as the `testbed` command sets them (`testbed.threads.configure_threads`: BLAS
1 thread unless ``--blas-threads``); the unit and the designs run under the same setting.

1. Design time (wall seconds, median over ``--timing-draws`` Rayleigh draws, 20 dB, unit power).
   The unit is a *plain cvxpy solve* of the single-stream multicast SDR at N = 8, N_r = 8
   (`testbed.optim.zf_sdr.multicast_sdr`: build the problem, Clarabel, dual bound) on the same
   draws, timed interleaved with the designs. Rows: zf-sdr and mmse (default options) at
   (N, N_r, N_t, L) = (8, 8, 1, 1), (4, 4, 1, 1) and the paper's antennas (8, 20, 4, 4).
   Targets (issue 15): <= 0.1 unit at (8, 8, 1, 1); mmse <= 0.5 unit at (8, 20, 4, 4).
2. Quality over ``--quality-draws`` draws (20 dB): zf-sdr MSE / its lower bound (the SDR bound for
   L = 1; for L = 4 the larger of the AM-HM SDR bound and the single-node bound), zf-sdr MSE /
   mmse MSE, and the same for the unrefined zf-sdr (candidates only, as before the refinement).
3. MSE statistics over ``--draws`` draws (set 0 to skip), N = 4 nodes, N_r = 4, N_t in {1, 2},
   SNR = P / noise_var in {10, 20, 30} dB: win rate of zf-sdr over channel inversion, L = 1
   zf-sdr / SDR bound, median MSE per method and zf-sdr / mmse.
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
from testbed.optim.zf_sdr import multicast_sdr  # noqa: E402
from testbed.threads import configure_threads  # noqa: E402

SNR_NOISE = 0.01                                              # 20 dB at unit power and channel gain
TIMING_ROWS = [(8, 8, 1), (4, 4, 1), (8, 20, 4)]


def rayleigh(rng, N, N_r, N_t):
    return (rng.standard_normal((N, N_r, N_t)) + 1j * rng.standard_normal((N, N_r, N_t))) / np.sqrt(2)


CLOCK = time.perf_counter                                    # --clock cpu: time.process_time


def timed(fn):
    t0 = CLOCK()
    out = fn()
    return CLOCK() - t0, out


def timing_table(draws: int) -> None:
    rng = np.random.default_rng(7)
    design_transceiver(rayleigh(rng, 4, 4, 1), 1.0, SNR_NOISE, "mmse")      # warm imports
    design_transceiver(rayleigh(rng, 4, 4, 1), 1.0, SNR_NOISE, "zf-sdr")
    multicast_sdr(rayleigh(rng, 4, 4, 1), np.ones(4))
    unit, times = [], {row: {"zf-sdr": [], "mmse": []} for row in TIMING_ROWS}
    for i in range(draws):                                    # interleaved: same load for all
        for row in TIMING_ROWS:
            H = rayleigh(rng, *row)
            if row == (8, 8, 1):
                unit.append(timed(lambda: multicast_sdr(H, np.ones(8)))[0])
            for m in ("zf-sdr", "mmse"):
                times[row][m].append(timed(lambda: design_transceiver(H, 1.0, SNR_NOISE, m, rng=i))[0])
    u = float(np.median(unit))
    print(f"Unit: plain cvxpy multicast SDR at N = 8, N_r = 8: median {1e3 * u:.1f} ms "
          f"(p90 {1e3 * np.percentile(unit, 90):.1f} ms) over {draws} draws.\n")
    print("| N | N_r | N_t | L | zf-sdr median ms | zf-sdr / unit | mmse median ms | mmse / unit |")
    print("|---|---|---|---|---|---|---|---|")
    for (N, N_r, N_t), t in times.items():
        z, m = float(np.median(t["zf-sdr"])), float(np.median(t["mmse"]))
        print(f"| {N} | {N_r} | {N_t} | {min(N_t, N_r)} | {1e3 * z:.2f} | {z / u:.3f} | "
              f"{1e3 * m:.2f} | {m / u:.3f} |")


def quality_table(draws: int) -> None:
    print("| N | N_r | N_t | L | bound | zf/bound median | zf/bound min | zf/bound max | "
          "zf/mmse median | zf/mmse max | unrefined zf/bound median | unrefined zf/mmse median |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for N, N_r, N_t in [(8, 8, 1), (8, 20, 4)]:
        rng = np.random.default_rng(4242 + N_r)
        zb, zm, ub, um = [], [], [], []
        for i in range(draws):
            H = rayleigh(rng, N, N_r, N_t)
            zf = design_transceiver(H, 1.0, SNR_NOISE, "zf-sdr", rng=i, compute_bound=True)
            raw = design_transceiver(H, 1.0, SNR_NOISE, "zf-sdr", rng=i, refine=False, compute_bound=True)
            mm = design_transceiver(H, 1.0, SNR_NOISE, "mmse", rng=i)
            zb.append(zf.mse / zf.lower_bound)
            zm.append(zf.mse / mm.mse)
            ub.append(raw.mse / raw.lower_bound)
            um.append(raw.mse / mm.mse)
        print(f"| {N} | {N_r} | {N_t} | {N_t} | {zf.info['bound_kind']} | {np.median(zb):.4f} | "
              f"{np.min(zb):.4f} | {np.max(zb):.4f} | {np.median(zm):.4f} | {np.max(zm):.4f} | "
              f"{np.median(ub):.4f} | {np.median(um):.4f} |")


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
            zf = design_transceiver(H, 1.0, 1.0, "zf-sdr", rng=i)
            ci = design_transceiver(H, 1.0, 1.0, "channel-inversion")
            one = zf if N_t == 1 else design_transceiver(H, 1.0, 1.0, "zf-sdr", n_streams=1, rng=i)
            ratios.append(one.mse / one.lower_bound)
            for s in snrs_db:
                nv = 10 ** (-s / 10)
                mm = design_transceiver(H, 1.0, nv, "mmse")
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
    # 60: the median over 20 draws moves by +-10 % between runs (which draws it falls on and the
    # machine's load); over 60 by a few %, for ~5 s of run time
    ap.add_argument("--timing-draws", type=int, default=60, help="channel draws for the timing table")
    ap.add_argument("--quality-draws", type=int, default=20, help="channel draws for the quality table")
    ap.add_argument("--draws", type=int, default=0, help="channel draws for the N = 4 MSE table (0: skip)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall (perf_counter) or this process's CPU time (process_time: what an idle "
                         "machine would show, for a machine shared with other work)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS threads (default: as the testbed command, 1)")
    args = ap.parse_args(argv)
    th = configure_threads(blas_threads=args.blas_threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"Clock: {args.clock}.")
    print(f"Threads: BLAS {th['blas']} ({th['blas_libraries']} OpenBLAS libraries), torch {th['torch']}.\n")
    print(f"## Design time vs a plain cvxpy SDR solve ({args.timing_draws} draws, 20 dB)\n")
    timing_table(args.timing_draws)
    if args.quality_draws:
        print(f"\n## Quality ({args.quality_draws} draws, 20 dB)\n")
        quality_table(args.quality_draws)
    if args.draws:
        print(f"\n## MSE over {args.draws} Rayleigh draws (N = 4, N_r = 4, P = 1)\n")
        mse_table(args.draws)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
