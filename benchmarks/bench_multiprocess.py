"""Tokens/s of greedy decoding over the multi-process simulated bench (`testbed up`: broker,
receiver, 4 node processes, controller) vs the same split simulated in one process, and the
control-plane overhead per all-reduce round.

Overhead per round = (median decode-token latency over processes - in-process) / rounds per
token (2 per layer). Beside it, in the same run, the messaging floor of such a round
(`bench_control_plane.gather_round_trip`: the controller and 4 echo processes exchanging the
decode step's message sizes, no model) and the overhead / floor ratio. Run:
``python benchmarks/bench_multiprocess.py [--tokens 32] [--floor-rounds 500]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_control_plane import gather_round_trip
from sim_backend.channel import ChannelModel
from sim_backend.sim_allreduce import build_sim_allreduce
from testbed.llm.default_model import ensure_default_model
from testbed.llm.sharding import shard_checkpoint
from testbed.net.roles.bench_runner import JobSpec, up_and_run
from testbed.net.roles.common import bench_ratios, resolve_bench

PROMPT = [72, 101, 108, 108, 111]


def inprocess_step_s(model_dir, ratios, allreduce, tokens: int) -> list[float]:
    """Per-token wall times (s) of `ShardedModel.generate` in one process (prefill first)."""
    torch.set_num_threads(1)
    sharded = shard_checkpoint(model_dir, ratios, allreduce)
    sharded.generate(torch.tensor([PROMPT]), tokens)
    return sharded.step_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--floor-rounds", type=int, default=500,
                   help="gather rounds of the messaging floor (0: skip)")
    args = p.parse_args()
    if args.tokens < 2 or args.floor_rounds < 0:
        raise SystemExit("--tokens must be >= 2 (a prefill and a decode step) and --floor-rounds >= 0")
    bench = resolve_bench("sim_4node")
    model_dir = ensure_default_model(progress=False)
    r = bench_ratios(bench)
    ratios = [r[n.id] for n in bench.nodes]
    n_layers = json.loads((Path(model_dir) / "config.json").read_text())["num_hidden_layers"]
    ch = bench.channel
    rows = []
    for method in ("exact", "aircomp-zf-sdr", "digital"):
        if method == "exact":
            ref = inprocess_step_s(model_dir, ratios, "exact", args.tokens)
        elif method.startswith("aircomp"):
            model = ChannelModel(4, 4, 1, path_loss_db=np.array(
                [ch.path_loss_db[f"node{i}"] for i in range(4)]))
            ar, _ = build_sim_allreduce("aircomp", n_nodes=4, n_rx=4, snr_db=ch.snr_db,
                                        seed=ch.seed, channel_model=model, design_method="zf-sdr")
            ref = inprocess_step_s(model_dir, ratios, ar, args.tokens)
        else:
            ref = None
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            code = up_and_run("sim_4node", bench, str(model_dir), method,
                              JobSpec("generate", prompt_ids=PROMPT, max_new_tokens=args.tokens),
                              tmp)
            wall = time.perf_counter() - t0
            res = json.loads((Path(tmp) / "results.json").read_text())
        assert code == 0, res.get("error")
        lat = res["per_token_latency_s"][1:]
        mp_med = statistics.median(lat)
        ref_med = statistics.median(ref[1:]) if ref else float("nan")
        overhead_ms = (mp_med - ref_med) / (2 * n_layers) * 1e3 if ref else float("nan")
        rows.append((method, 1 / ref_med if ref else float("nan"), 1 / mp_med,
                     overhead_ms, res["registration_s"], wall,
                     max(res["process_rss_bytes"].values()) / 2**20))
    print(f"4-node sim bench, default model ({n_layers} layers), {args.tokens} tokens, "
          "median decode step")
    print("| method | in-process tok/s | multi-process tok/s | overhead per round (ms) | "
          "registration (s) | total wall (s) | max RSS per process (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for m, a, b, o, reg, wall, rss in rows:
        print(f"| {m} | {a:.1f} | {b:.1f} | {o:.2f} | {reg:.1f} | {wall:.1f} | {rss:.0f} |")
    if args.floor_rounds:
        hidden = json.loads((Path(model_dir) / "config.json").read_text())["hidden_size"]
        with tempfile.TemporaryDirectory() as tmp:
            us = gather_round_trip(Path(tmp), len(bench.nodes), hidden, args.floor_rounds)
        floor_ms = float(np.median(us)) / 1e3
        exact = next(r for r in rows if r[0] == "exact")
        print(f"\nmessaging floor of a round: the controller and {len(bench.nodes)} echo processes, "
              f"{hidden} float32 each way, no model: median {floor_ms:.2f} ms over "
              f"{args.floor_rounds} rounds; exact overhead per round / floor = "
              f"{exact[3] / floor_ms:.2f}; bench tokens/s at the floor (in-process compute + "
              f"{2 * n_layers} floor rounds per token): "
              f"{1 / (1 / exact[1] + 2 * n_layers * floor_ms / 1e3):.1f}, "
              f"{(1 / (1 / exact[1] + 2 * n_layers * floor_ms / 1e3)) / exact[1]:.3f} of in-process")


if __name__ == "__main__":
    main()
