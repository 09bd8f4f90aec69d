"""Perplexity and all-reduce error over the multi-process simulated bench (`testbed run --up`:
broker, receiver and 4 node processes, no partial sum on the network, estimated CSI) vs the same
setting in one process (the same round code through a `LocalExecutor`), side by side.

Same model, split, held-out windows, bench channel model (sim_4node: 20 dB, path losses
0/3/6/10 dB, seed 1234), statistics pass and design; the fading and noise draws differ (the
broker's generators are its own), so the figures agree within the noise of the draws. The bench's
error comes from the measurement tap (``--measure-error``), the in-process one from the partials
it holds. Run: ``python benchmarks/bench_bench_vs_inprocess.py [--windows 8] [--window 128]``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from sim_backend.channel import ChannelModel
from sim_backend.sim_allreduce import build_sim_allreduce
from testbed.experiments.demo import calibrate, perplexity_with_argmax, site_stats
from testbed.llm.default_model import ensure_default_model
from testbed.llm.sharding import shard_checkpoint
from testbed.llm.textdata import heldout_tokens, train_tokens
from testbed.methods import get_method
from testbed.net.roles.bench_runner import JobSpec, up_and_run
from testbed.net.roles.common import bench_ratios, resolve_bench


def inprocess(bench, model_dir, method: str, window: int, n_windows: int) -> dict:
    """The bench's setting in one process: perplexity and mean tensor MSE of the job rounds."""
    ch = bench.channel
    ids = [n.id for n in bench.nodes]
    model = ChannelModel(len(ids), bench.receiver.n_antennas, 1, fading=ch.fading,
                         k_factor_db=ch.k_factor_db,
                         path_loss_db=np.array([ch.path_loss_db.get(i, 0.0) for i in ids]))
    m = get_method(method)
    ar, _ = build_sim_allreduce(m.transport, n_nodes=len(ids), n_rx=bench.receiver.n_antennas,
                                snr_db=ch.snr_db, seed=ch.seed, channel_model=model,
                                csi="estimated", scale_policy="calibrated",
                                design_method=m.design or "zf-sdr",
                                design_options=m.design_options)
    ratios = bench_ratios(bench)
    sharded = shard_checkpoint(model_dir, [ratios[i] for i in ids], ar)
    calibrate(sharded, ar, train_tokens(), window=window, n_windows=4)
    ar.reset_stats()
    t0 = time.perf_counter()
    ppl, _, _ = perplexity_with_argmax(sharded, heldout_tokens(), window=window,
                                       n_windows=n_windows, progress=False)
    stats = site_stats(ar)
    return {"ppl": ppl, "mse_tensor": float(np.mean([s["mse_tensor"] for s in stats])),
            "wall_s": time.perf_counter() - t0}


def over_bench(bench, model_dir, method: str, window: int, n_windows: int) -> dict:
    """`testbed run --up --csi estimated --measure-error` on the bench's own processes."""
    with tempfile.TemporaryDirectory() as tmp:
        job = JobSpec("perplexity", eval_ids=heldout_tokens().tolist(), window=window,
                      n_windows=n_windows)
        code = up_and_run(bench.name, bench, str(model_dir), method, job, tmp, csi="estimated",
                          measure_error=True)
        res = json.loads((Path(tmp) / "results.json").read_text())
    if code != 0:
        raise SystemExit(f"bench run failed: {res.get('error')}")
    got = sum(r["bytes"] for r in res["controller_traffic_job"] if r["direction"] == "in")
    partial_bytes = res["allreduce"]["rounds"] * len(bench.nodes) * window * 128 * 4
    return {"ppl": res["ppl"], "mse_tensor": res["measurement_tap"]["mse_tensor_mean"],
            "wall_s": res["run_s"], "controller_in_fraction": got / partial_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--methods", default="aircomp-zf-sdr,aircomp-mmse")
    args = ap.parse_args()
    bench = resolve_bench("sim_4node")
    model_dir = ensure_default_model(progress=False)
    print(f"## bench vs in-process, sim_4node, {args.windows} windows of {args.window} tokens, "
          "estimated CSI")
    print("| method | ppl in-process | ppl bench | bench/in-process | MSE in-process | MSE bench "
          "(tap) | bench/in-process | controller bytes in / partial bytes (job) |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        a = inprocess(bench, model_dir, method, args.window, args.windows)
        b = over_bench(bench, model_dir, method, args.window, args.windows)
        print(f"| {method} | {a['ppl']:.4f} | {b['ppl']:.4f} | {b['ppl'] / a['ppl']:.4f} | "
              f"{a['mse_tensor']:.3e} | {b['mse_tensor']:.3e} | "
              f"{b['mse_tensor'] / a['mse_tensor']:.3f} | {b['controller_in_fraction']:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
