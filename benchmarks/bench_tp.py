"""Tensor-parallel timing: split model vs unsplit HF, and gloo all-reduce latency per call.

Run:  .venv/bin/python benchmarks/bench_tp.py [--new-tokens 32] [--iters 200] [--skip-gloo]

1. Greedy decoding with KV cache, one CPU thread, of a small random Llama (hidden 256, 4 layers,
   8 query / 4 KV heads, intermediate 688, vocab 256; 16-token prompt): median per-token decode
   time of the unsplit HF model (its ``generate``) and of the in-process split over 3 nodes
   (0.5, 0.3, 0.2; exact all-reduce), and their ratio. The split runs its nodes one after the
   other, so its overhead is the price of simulating the nodes, not a distributed speed-up.
2. ``torch.distributed.all_reduce`` (gloo, TCP on 127.0.0.1) per-call latency in ms (median
   over --iters calls after 20 warm-up calls) for fp32 tensors (1, tokens, hidden), hidden in
   512 / 2048 / 4096, tokens 1 and 32, at 2 and 3 ranks (one process each).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.llm.sharding import shard_model  # noqa: E402

HIDDENS = (512, 2048, 4096)
TOKENS = (1, 32)


def _hf_step_ms(model, ids, n_new):
    """Per-step wall times (ms) of HF generate, via a logits processor called once per step."""
    from transformers import LogitsProcessor, LogitsProcessorList

    stamps = []

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    start = time.perf_counter()
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                   pad_token_id=0, eos_token_id=None, logits_processor=LogitsProcessorList([Stamp()]))
    times = [start] + stamps
    return [1e3 * (b - a) for a, b in zip(times, times[1:])]


def bench_split_vs_unsplit(n_new: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=4, intermediate_size=688, vocab_size=256,
                      max_position_embeddings=256, bos_token_id=None, eos_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 256, (1, 16))
    split = shard_model(model, (0.5, 0.3, 0.2))
    _hf_step_ms(model, ids, 4)
    split.generate(ids, 4)  # warm up both
    hf = statistics.median(_hf_step_ms(model, ids, n_new)[1:])
    split.generate(ids, n_new)
    sp = statistics.median(1e3 * s for s in split.step_seconds[1:])
    print("## Greedy decode with KV cache, per token (median, 1 thread)")
    print(f"model: Llama hidden 256, 4 layers, 8/4 heads, MLP 688, vocab 256; {n_new} new tokens")
    print("| model | ms/token |")
    print("|---|---|")
    print(f"| unsplit HF generate | {hf:.2f} |")
    print(f"| split in-process, 3 nodes (0.5/0.3/0.2), exact | {sp:.2f} |")
    print(f"ratio split/unsplit: {sp / hf:.2f}\n")


def _allreduce_rank(rank, world, port, iters, results):
    import torch.distributed as dist

    from testbed.llm.tp_gloo import init_gloo

    torch.set_num_threads(1)
    init_gloo(rank, world, port)
    out = {}
    for hidden in HIDDENS:
        for tokens in TOKENS:
            x = torch.randn(1, tokens, hidden)
            for _ in range(20):
                dist.all_reduce(x)
            dist.barrier()
            times = []
            for _ in range(iters):
                start = time.perf_counter()
                dist.all_reduce(x)
                times.append(time.perf_counter() - start)
            out[(hidden, tokens)] = 1e3 * statistics.median(times)
    dist.destroy_process_group()
    results.put((rank, out))


def bench_gloo(iters: int) -> None:
    import torch.multiprocessing as mp

    from testbed.llm.tp_gloo import free_port

    print("## gloo all_reduce latency per call, ms (median; fp32 (1, tokens, hidden); loopback)")
    print("| ranks | tokens | " + " | ".join(f"hidden {h}" for h in HIDDENS) + " |")
    print("|---|---|" + "---|" * len(HIDDENS))
    for world in (2, 3):
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        port = free_port()
        procs = [ctx.Process(target=_allreduce_rank, args=(r, world, port, iters, results))
                 for r in range(world)]
        for p in procs:
            p.start()
        per_rank = dict(results.get(timeout=600) for _ in range(world))
        for p in procs:
            p.join()
        for tokens in TOKENS:  # slowest rank = the collective's latency
            cells = [max(per_rank[r][(h, tokens)] for r in range(world)) for h in HIDDENS]
            print(f"| {world} | {tokens} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--skip-gloo", action="store_true")
    args = parser.parse_args()
    bench_split_vs_unsplit(args.new_tokens)
    if not args.skip_gloo:
        bench_gloo(args.iters)


if __name__ == "__main__":
    main()
