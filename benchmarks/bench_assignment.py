"""Benchmark: SSCA model assignment vs equal / compute-proportional splits, and the latency table.

Run: ``.venv/bin/python benchmarks/bench_assignment.py [--iters 300] [--draws 1000] [--seed 0]``
Prints (1) the held-out average MSE of each assignment on the heterogeneous 4-node preset
(Llama-2-7B fp16 on 2x Pi 5 + Orin Nano + Orin NX, N_r = 2 receive antennas, single-antenna
nodes, MMSE transceiver), the paired difference to SSCA, constraint status, iterations and time;
(2) per-token latency of AirComp vs digital (star, ring) vs uncoded FDMA for Llama-2-7B layers at
N = 2..8 and B = 1, 5, 10, 20 MHz, the 5x point and any crossover.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from testbed.optim.assign_problem import (check_constraints, compute_proportional_split, equal_split,
                                          heterogeneous_4node_problem)
from testbed.optim.assignment import evaluate_average_mse, ssca_assign
from testbed.optim.latency import LinkConfig, first_crossing, per_token_latency, speedup_sweep
from testbed.optim.latency_shapes import LLAMA2_7B
from testbed.optim.nodes import jetson_orin_nano


def assignment_section(iters: int, draws: int, seed: int) -> None:
    problem = heterogeneous_4node_problem(n_rx=2, n_tx=1, noise_var=0.1)
    print(f"== assignment: {[n.name for n in problem.nodes]}, N_r={problem.n_rx}, "
          f"noise_var={problem.noise_var}, method={problem.method}")
    print("upper bounds (memory, energy):", np.round(problem.upper_bounds(), 3))
    result = ssca_assign(problem, n_iter=iters, seed=seed)
    print(f"SSCA: {iters} iterations in {result.wall_time_s:.2f} s, tau={result.tau:.3g}")
    cands = {"ssca": result.ratios, "equal": equal_split(4),
             "proportional": compute_proportional_split(problem.nodes)}
    evals = {}
    for name, m in cands.items():
        t0 = time.perf_counter()
        evals[name] = evaluate_average_mse(problem, m, draws, seed=seed + 1)
        rep = check_constraints(m, problem)
        print(f"{name:>12}: m={np.round(m, 3)} P={np.round(rep.power, 2)} "
              f"avgMSE={evals[name].mean:.4f}+-{evals[name].stderr:.4f} "
              f"constraints={'ok' if rep.ok else rep.violations} ({time.perf_counter() - t0:.1f} s)")
    for name in ("equal", "proportional"):
        d = evals[name].values - evals["ssca"].values
        print(f"  {name} - ssca = {d.mean():.4f} +- {d.std(ddof=1) / np.sqrt(d.size):.4f} "
              f"({100 * d.mean() / evals[name].mean:.1f}% lower MSE with SSCA, {draws} held-out draws)")
    checkpoints = [0, iters // 10, iters // 3, iters - 1]
    path = [evaluate_average_mse(problem, result.ratio_trace()[t], 200, seed=seed + 2).mean for t in checkpoints]
    print("objective along the SSCA path (200 held-out draws):",
          ", ".join(f"t={t + 1}: {v:.4f}" for t, v in zip(checkpoints, path)))


def latency_section() -> None:
    print("\n== per-token latency, Llama-2-7B layers, equal split over N Orin Nanos, SNR 20 dB, "
          "8-bit digital, digital downlink at 20 dB, no overhead (ms)")
    print(f"{'B MHz':>6} {'N':>2} {'aircomp':>9} {'dig-star':>9} {'dig-ring':>9} {'fdma':>9} "
          f"{'star/air':>8} {'ring/air':>8} {'fdma/air':>8}")
    for bw in (1e6, 5e6, 10e6, 20e6):
        for n in range(2, 9):
            nodes = [jetson_orin_nano(f"o{i}") for i in range(n)]
            m = np.full(n, 1.0 / n)
            lat = {s: per_token_latency(m, nodes, LLAMA2_7B, s, LinkConfig(bandwidth_hz=bw)).total_s
                   for s in ("aircomp", "digital", "fdma")}
            lat["ring"] = per_token_latency(m, nodes, LLAMA2_7B, "digital",
                                            LinkConfig(bandwidth_hz=bw, pattern="ring")).total_s
            print(f"{bw / 1e6:6.0f} {n:2d} {1e3 * lat['aircomp']:9.1f} {1e3 * lat['digital']:9.1f} "
                  f"{1e3 * lat['ring']:9.1f} {1e3 * lat['fdma']:9.1f} {lat['digital'] / lat['aircomp']:8.2f} "
                  f"{lat['ring'] / lat['aircomp']:8.2f} {lat['fdma'] / lat['aircomp']:8.2f}")
    nodes_for = lambda k: [jetson_orin_nano(f"o{i}") for i in range(k)]
    ns = np.arange(2, 17)
    for dl in ("digital", "analog"):
        for bw in (1e6, 20e6):
            r = speedup_sweep("n_nodes", ns, nodes_for, LLAMA2_7B, LinkConfig(bandwidth_hz=bw, downlink=dl))
            print(f"5x vs digital star (downlink {dl}, B={bw / 1e6:.0f} MHz): N = {first_crossing(ns, r, 5.0)}")
    bws = np.geomspace(1e4, 1e9, 61)
    r = speedup_sweep("bandwidth_hz", bws, nodes_for, LLAMA2_7B, LinkConfig(), n_nodes=4)
    print(f"N=4, speed-up over bandwidth 10 kHz..1 GHz: {r[0]:.2f} -> {r[-1]:.2f} "
          f"(compute-bound at large B); crossover (ratio 1): {first_crossing(bws, r, 1.0)}")
    snrs = np.arange(0.0, 121.0, 2.0)
    r = speedup_sweep("snr_db", snrs, nodes_for, LLAMA2_7B, LinkConfig(downlink="none"), n_nodes=2)
    print(f"N=2, no downlink, SNR 0..120 dB: speed-up {r[0]:.2f} -> {r[-1]:.2f}; digital wins from "
          f"SNR = {first_crossing(snrs, r, 1.0)} dB")
    r = speedup_sweep("bits", np.arange(1, 17), nodes_for, LLAMA2_7B, LinkConfig(), n_nodes=4)
    print(f"N=4, bits 1..16: speed-up {r[0]:.2f} -> {r[-1]:.2f}; crossover at bits = "
          f"{first_crossing(np.arange(1, 17), r, 1.0)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    assignment_section(args.iters, args.draws, args.seed)
    latency_section()


if __name__ == "__main__":
    main()
