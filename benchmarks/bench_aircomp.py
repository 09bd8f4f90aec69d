"""AirComp over the simulated air: wall time vs the exact sum, and measured vs predicted MSE.

1. One simulated AirComp all-reduce (D = 4096 reals, N = 8 nodes, N_r = 8, N_t = 1, perfect
   CSI, new fading block per call): wall time per call, split into transceiver design and the
   rest (normalize, pack, frame, air, detect, aggregate; median over calls of the call minus
   its design), vs the exact torch sum and vs the
   round's airtime (its payload frame at the air's sample rate, 1 MS/s); target wall <= airtime.
   Every method in ``--methods`` (default zf-sdr and mmse), side by side.
2. Greedy decoding of the default model split over the 4-node simulated bench (`sim_4node`),
   in one process: tokens/s with the exact all-reduce and with AirComp (each design method),
   median decode step over ``--tokens`` tokens, each AirComp run paired with an exact run just
   before it, ``--decode-rounds`` times (the ratio's median and range over the pairs); target
   AirComp / exact >= 0.5 (skip with ``--tokens 0``).
3. Over ``--draws`` seeded channel draws at SNR 10/20/30 dB (N = 4, N_r = 4, N_t = 1 and 2): the
   MSE measured through the air (unit-power complex Gaussian symbols, ``--symbols`` per draw)
   vs `testbed.optim.transceiver.aircomp_mse` of the design used.

   With ``--coherence-ms T`` (default 20) tables 1 and 2 also run with block fading in air
   time (a block lasts T ms of the receiver's clock) and estimated CSI sounded and designed once
   per block (`AnalogRoundDriver`'s ``csi_interval_samples``), table 2 with perfect CSI as well.

Usage: .venv/bin/python benchmarks/bench_aircomp.py [--draws 200] [--method zf-sdr]
         [--methods zf-sdr,mmse] [--tokens 32] [--decode-rounds 3] [--repeats 20] [--clock wall|cpu]
         [--coherence-ms 20]
Thread settings as the `testbed` command sets them (`testbed.threads.configure_threads`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sim_backend.sim_allreduce import build_sim_allreduce, build_sim_bench
from testbed.llm.allreduce import ExactAllReduce
from testbed.optim.transceiver import aircomp_mse, design_transceiver
from testbed.phy.analog_allreduce import LocalExecutor
from testbed.phy.round import RoundDesign, RoundPlan
from testbed.threads import configure_threads


#: the simulated air's sample rate (Hz; `build_sim_bench` without settings)
SIM_RATE_HZ = 1.0e6


def _interval_samples(coherence_ms: float) -> int:
    """A CSI interval of one coherence block, ``coherence_ms`` of air time, in samples."""
    return int(round(coherence_ms * 1e-3 * SIM_RATE_HZ))


def _timed_design(design, clock, times: list[float]):
    """The driver's design method, timed with ``clock`` into ``times`` (instrumentation only)."""
    def timed(H, noise_var):
        t0 = clock()
        out = design(H, noise_var)
        times.append(clock() - t0)
        return out
    return timed


def bench_wall_time(methods: list[str], repeats: int, clock=time.perf_counter) -> None:
    n_nodes, n_rx, d = 8, 8, 4096
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(1, 4, d // 4, generator=g) for _ in range(n_nodes)]
    exact = ExactAllReduce()
    runs = {}
    for method in methods:
        ar, bench = build_sim_allreduce("aircomp", n_nodes=n_nodes, n_rx=n_rx, n_tx=1,
                                        snr_db=20.0, seed=0, design_method=method)
        ar(parts, layer=0, site="attn")  # warm-up
        ar.reset_stats()
        design_times: list[float] = []
        ar.driver.design = _timed_design(ar.driver.design, clock, design_times)
        runs[method] = (ar, bench, [], design_times)
    for _ in range(repeats):                  # interleaved: the same load for every method
        for method, (ar, _, times, _) in runs.items():
            t0 = clock()
            ar(parts, layer=0, site="attn")
            times.append(clock() - t0)
    t0 = clock()
    for _ in range(200):
        exact(parts, layer=0, site="attn")
    t_exact = (clock() - t0) / 200
    print(f"## wall time per all-reduce, D={d} reals, N={n_nodes}, N_r={n_rx}, N_t=1, 20 dB, "
          f"perfect CSI, {repeats} calls (medians), "
          f"clock {'cpu' if clock is time.process_time else 'wall'}")
    print(f"exact sum: {t_exact * 1e3:.3f} ms\n")
    print("| design | airtime ms | wall ms | wall / airtime | design ms | PHY + air ms | "
          "wall / exact | measured / predicted MSE |")
    print("|---|---|---|---|---|---|---|---|")
    for method, (ar, bench, times, design_times) in runs.items():
        plan = RoundPlan("aircomp", n_nodes, 1, 1, d, 0)
        airtime = plan.layout(bench.budget).total_len / bench.air.sample_rate_hz
        st = ar.stats()[(0, "attn")]
        t_air, t_design = float(np.median(times)), float(np.median(design_times))
        # PHY + air: the median over calls of (the call - its design), one design per call
        t_phy = float(np.median(np.array(times) - np.array(design_times)))
        print(f"| {method} | {airtime * 1e3:.3f} | {t_air * 1e3:.3f} | {t_air / airtime:.2f} | "
              f"{t_design * 1e3:.3f} | {t_phy * 1e3:.3f} | {t_air / t_exact:.0f} | "
              f"{st['mse_symbols'] / st['mse_predicted']:.3f} |")


def bench_coherence_wall_time(methods: list[str], repeats: int, coherence_ms: float,
                              clock=time.perf_counter) -> None:
    """Table 1 with block fading in air time (`coherence_blocks`, ``coherence_ms``) and
    estimated CSI, sounded and designed once per block: the mean wall time per all-reduce
    (means, not medians: one call per block carries the sounding and the design)."""
    n_nodes, n_rx, d = 8, 8, 4096
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(1, 4, d // 4, generator=g) for _ in range(n_nodes)]
    print(f"\n## wall time per all-reduce with {coherence_ms:g} ms coherence blocks (air time), "
          f"estimated CSI sounded and designed once per block, D={d}, N={n_nodes}, "
          f"N_r={n_rx}, {repeats} calls (means)")
    print("| design | airtime ms | wall ms (mean) | wall / airtime | rounds per block | "
          "measured / predicted MSE |")
    print("|---|---|---|---|---|---|")
    for method in methods:
        ar, bench = build_sim_allreduce(
            "aircomp", n_nodes=n_nodes, n_rx=n_rx, n_tx=1, snr_db=20.0, seed=0,
            design_method=method, csi="estimated", coherence_s=coherence_ms * 1e-3,
            csi_interval_samples=_interval_samples(coherence_ms))
        ar(parts, layer=0, site="attn")  # warm-up
        ar.reset_stats()
        t0 = clock()
        for _ in range(repeats):
            ar(parts, layer=0, site="attn")
        wall = (clock() - t0) / repeats
        plan = RoundPlan("aircomp", n_nodes, 1, 1, d, 0)
        airtime = plan.layout(bench.budget).total_len / bench.air.sample_rate_hz
        st = ar.stats()[(0, "attn")]
        sounded = 1.0 - st["csi_reused"]
        # with no sounding among the timed calls the mean leaves out the block's design
        per_block = f"{1.0 / sounded:.1f}" if sounded > 0 else f"> {repeats} (no design timed)"
        print(f"| {method} | {airtime * 1e3:.3f} | {wall * 1e3:.3f} | {wall / airtime:.2f} | "
              f"{per_block} | {st['mse_symbols'] / st['mse_predicted']:.3f} |")


def bench_decode(methods: list[str], tokens: int, coherence_ms: float = 0.0, rounds: int = 3) -> None:
    """In-process greedy decoding on the sim_4node split: tokens/s exact vs AirComp (a new
    fading block per all-reduce with perfect CSI; with ``coherence_ms`` also block fading in
    air time, perfect CSI and estimated CSI sounded once per block).

    The machine's speed drifts between seconds, so the exact decoder runs right before every
    AirComp run, ``rounds`` times over: each ratio is that of a pair run back to back, and the
    table gives the median over the rounds (with the range)."""
    from sim_backend.channel import ChannelModel
    from testbed.llm.default_model import ensure_default_model
    from testbed.llm.sharding import shard_checkpoint
    from testbed.net.roles.common import bench_ratios, resolve_bench
    bench = resolve_bench("sim_4node")
    model_dir = ensure_default_model(progress=False)
    r = bench_ratios(bench)
    ratios = [r[n.id] for n in bench.nodes]
    ch = bench.channel
    prompt = torch.tensor([[72, 101, 108, 108, 111]])
    variants = []
    for method in methods:
        variants.append((f"aircomp-{method}, new block per all-reduce, perfect CSI", method, {}))
        if coherence_ms:
            c = {"coherence_s": coherence_ms * 1e-3}
            variants.append((f"aircomp-{method}, {coherence_ms:g} ms blocks, perfect CSI",
                             method, c))
            variants.append((f"aircomp-{method}, {coherence_ms:g} ms blocks, estimated CSI "
                             "once per block", method,
                             dict(c, csi="estimated",
                                  csi_interval_samples=_interval_samples(coherence_ms))))

    def rates(sharded) -> tuple[float, float]:
        # tokens/s of the median and of the mean step (with blocks, one step in several
        # carries the sounding and the design)
        sharded.generate(prompt, tokens)
        steps = np.asarray(sharded.step_seconds[1:])
        return 1.0 / float(np.median(steps)), 1.0 / float(np.mean(steps))

    exact = shard_checkpoint(model_dir, ratios, "exact")
    models = []
    for label, method, kw in variants:
        model = ChannelModel(4, 4, 1, path_loss_db=np.array(
            [ch.path_loss_db[f"node{i}"] for i in range(4)]))
        allreduce, _ = build_sim_allreduce("aircomp", n_nodes=4, n_rx=4, snr_db=ch.snr_db,
                                           seed=ch.seed, channel_model=model,
                                           design_method=method, **kw)
        models.append(shard_checkpoint(model_dir, ratios, allreduce))
    runs = {label: [] for label, _, _ in variants}         # [(exact rates, aircomp rates)]
    for _ in range(rounds):
        for (label, _, _), sharded in zip(variants, models):
            runs[label].append((rates(exact), rates(sharded)))
    print(f"\n## greedy decoding in one process, sim_4node split, default model, {tokens} tokens, "
          f"{rounds} rounds (each AirComp run right after an exact one; median over rounds, "
          "[min, max] of the ratio)")
    print("| all-reduce | tokens/s (median step) | / exact | tokens/s (mean step) | / exact |")
    print("|---|---|---|---|---|")
    ex = [e for pairs in runs.values() for e, _ in pairs]
    print(f"| exact | {np.median([e[0] for e in ex]):.1f} | 1.000 | {np.median([e[1] for e in ex]):.1f} "
          "| 1.000 |")
    for label, pairs in runs.items():
        cells = []
        for k in (0, 1):
            q = np.array([a[k] / e[k] for e, a in pairs])
            cells.append(f"{np.median([a[k] for _, a in pairs]):.1f} | {np.median(q):.3f} "
                         f"[{q.min():.3f}, {q.max():.3f}]")
        print(f"| {label} | {cells[0]} | {cells[1]} |")


def bench_mse_table(method: str, draws: int, k: int) -> None:
    print(f"\n## measured vs predicted MSE, {draws} draws, N=4, N_r=4, {k} symbols/draw, "
          f"design={method}, perfect CSI")
    print("| SNR dB | N_t | L | mean measured | mean predicted | ratio | max per-draw |dev| |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n_tx in (1, 2):
        for snr_db in (10.0, 20.0, 30.0):
            bench = build_sim_bench(4, 4, n_tx, snr_db, seed=int(snr_db) * 10 + n_tx)
            ex = LocalExecutor(bench.tx_radios, bench.rx_radio, bench.budget)
            sigma2 = bench.model_noise_var
            meas, pred = [], []
            for _ in range(draws):
                H = bench.air.new_realization()
                dsg = design_transceiver(H, np.ones(4), sigma2, method=method)
                L = dsg.A.shape[1]
                S = [(rng.standard_normal((L, k)) + 1j * rng.standard_normal((L, k))) / np.sqrt(2)
                     for _ in range(4)]
                reals = []
                for s_n in S:
                    z = np.empty(2 * s_n.size)
                    z[0::2], z[1::2] = s_n.real.ravel(), s_n.imag.ravel()
                    reals.append(z)
                ex.stage(reals)
                plan = RoundPlan("aircomp", 4, n_tx, L, 2 * L * k, ex.next_start(bench.budget))
                S_hat = ex.payload(plan, RoundDesign(dsg.A[None], dsg.B, dsg.mse), 1.0,
                                   (2 * L * k,)).S_hat
                meas.append(np.sum(np.abs(S_hat - sum(S)) ** 2) / k)
                pred.append(aircomp_mse(H, dsg.A, dsg.B, sigma2))
            meas, pred = np.array(meas), np.array(pred)
            dev = np.max(np.abs(meas / pred - 1))
            print(f"| {snr_db:.0f} | {n_tx} | {L} | {meas.mean():.4g} | {pred.mean():.4g} | "
                  f"{meas.mean() / pred.mean():.4f} | {dev:.3f} |")


def bench_fdma_vs_aircomp(method: str, draws: int) -> None:
    """Predicted per-channel-use MSE of the sum (signal model, Rayleigh, N_r = 4, N_t = 1,
    20 dB, equal energy per node) vs N: AirComp (design ``method``) and uncoded FDMA."""
    from sim_backend.channel import rayleigh
    from testbed.phy.fdma import single_node_zf
    print(f"\n## predicted MSE vs N, N_r=4, N_t=1, 20 dB, {draws} draws (FDMA uses N x airtime)")
    print("| N | AirComp | uncoded FDMA | FDMA / AirComp |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(1)
    sigma2 = 10 ** -2.0
    for n in (2, 4, 8, 16):
        air, fdma = [], []
        for _ in range(draws):
            H = rayleigh(rng, n, 4, 1)
            air.append(design_transceiver(H, np.ones(n), sigma2, method=method).mse)
            fdma.append(sum(single_node_zf(H[i], 1.0, sigma2)[2] for i in range(n)))
        print(f"| {n} | {np.mean(air):.4g} | {np.mean(fdma):.4g} | {np.mean(fdma) / np.mean(air):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--symbols", type=int, default=2000, help="channel uses per draw")
    ap.add_argument("--method", default="zf-sdr")
    ap.add_argument("--methods", default="zf-sdr,mmse",
                    help="design methods of the wall-time and decoding tables, comma-separated")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=32, help="decoded tokens per method (0: skip)")
    ap.add_argument("--decode-rounds", type=int, default=3,
                    help="decoding table: (exact, AirComp) pairs per variant, run back to back")
    ap.add_argument("--coherence-ms", type=float, default=20.0,
                    help="also measure block fading with this coherence time (ms of air time; "
                         "one sounding and design per block); 0: skip")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall-time table: wall clock or this process's CPU time (process_time)")
    args = ap.parse_args()
    th = configure_threads()
    print(f"Threads: torch {th['torch']}, BLAS {th['blas']}.\n")
    methods = [m for m in args.methods.split(",") if m]
    bench_wall_time(methods, args.repeats,
                    time.process_time if args.clock == "cpu" else time.perf_counter)
    if args.coherence_ms:
        bench_coherence_wall_time(methods, args.repeats, args.coherence_ms,
                                  time.process_time if args.clock == "cpu" else time.perf_counter)
    if args.tokens:
        bench_decode(methods, args.tokens, args.coherence_ms, args.decode_rounds)
    if args.draws:
        bench_mse_table(args.method, args.draws, args.symbols)
        bench_fdma_vs_aircomp(args.method, min(args.draws, 50))


if __name__ == "__main__":
    main()
