"""`testbed tp-run`: the digital baseline — a model split over N local processes (gloo over TCP).

Prints the shard plan, the generated text, per-token latency and what each rank holds."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from testbed.errors import ConfigError


def register(subparsers) -> None:
    """Add the `tp-run` subcommand."""
    parser = subparsers.add_parser(
        "tp-run",
        help="run a tensor-parallel split over N local processes with a gloo all-reduce",
        description=(
            "Split a Llama/Qwen2/Mistral checkpoint over --nodes processes with uneven --ratios "
            "(whole KV groups and MLP columns, largest-remainder rounding). Each process reads "
            "only its own weight slices and all-reduces partial sums with torch.distributed "
            "gloo over TCP on 127.0.0.1. Greedy decoding with a KV cache."),
    )
    from testbed.commands._options import add_model_arg, int_list
    parser.add_argument("--nodes", type=int, default=None, metavar="N", deprecated=("--world",),
                        help="number of processes (nodes) N (default: the number of --ratios, "
                             "else 2)")
    parser.add_argument("--ratios", default=None, metavar="R,R,...",
                        help="per-process fractions summing to 1, e.g. 0.5,0.3,0.2 "
                             "(default: equal shares)")
    add_model_arg(parser)
    parser.add_argument("--prompt", default="def ", metavar="TEXT",
                        help="prompt text (needs a tokenizer)")
    parser.add_argument("--prompt-ids", type=int_list, default=None, metavar="ID,ID,...",
                        help="prompt as token ids instead of text (no tokenizer needed)")
    parser.add_argument("--max-new-tokens", type=int, default=16, metavar="K",
                        help="tokens to generate (greedy)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="give up after this many seconds")
    parser.set_defaults(func=run)


def parse_ratios(text: str | None, world: int | None) -> tuple[float, ...]:
    """``"0.5,0.3,0.2"`` -> floats; None -> equal shares over ``world`` (default 2) nodes.

    Raises ConfigError if the text is not numbers or disagrees with ``world``."""
    if text is None:
        n = 2 if world is None else world
        if n < 1:
            raise ConfigError(f"--nodes must be >= 1, got {n}")
        return (1.0 / n,) * n
    try:
        ratios = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--ratios {text!r}: expected comma-separated numbers like 0.5,0.3,0.2") from None
    if world is not None and world != len(ratios):
        raise ConfigError(f"--nodes {world} but --ratios has {len(ratios)} entries; give one ratio "
                          "per process")
    return ratios


def resolve_model_dir(spec: str) -> Path:
    """'default' -> the embedded default model's cached checkpoint (trained if missing); else
    the given directory."""
    if spec == "default":
        from testbed.llm.default_model import ensure_default_model

        return Path(ensure_default_model(progress=True))
    return Path(spec)


def _tokenizer(model_dir: Path):
    """The checkpoint's tokenizer via `testbed.llm.loading`, or None if it cannot be had."""
    try:
        from testbed.llm.loading import load_tokenizer
    except ImportError:
        return None
    try:
        tokenizer = load_tokenizer(model_dir)
    except (ConfigError, OSError, ValueError):
        return None
    # transformers 5 may build an empty tokenizer from a directory without tokenizer files
    return tokenizer if getattr(tokenizer, "vocab_size", 0) > 1 else None


def run(args: argparse.Namespace) -> int:
    """Spawn the ranks, print plan, text, latency and per-rank memory; returns the exit code."""
    import torch

    from testbed.llm.checkpoint_slices import load_config
    from testbed.llm.plan import ArchSpec, make_plan
    from testbed.llm.tp_gloo import run_tp_gloo

    ratios = parse_ratios(args.ratios, args.nodes)
    model_dir = resolve_model_dir(args.model)
    try:
        plan = make_plan(ArchSpec.from_config(load_config(model_dir)), ratios)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    tokenizer = _tokenizer(model_dir)
    if args.prompt_ids is not None:
        ids = list(args.prompt_ids)
    elif tokenizer is not None:
        ids = list(tokenizer.encode(args.prompt))
    else:
        raise ConfigError(f"no tokenizer found for {model_dir}; pass --prompt-ids instead of --prompt")
    if not ids:
        raise ConfigError("the prompt is empty; give at least one token")
    bad = [i for i in ids if not 0 <= i < plan.arch.vocab_size]
    if bad:
        raise ConfigError(f"prompt ids {bad[:5]} outside the vocabulary 0..{plan.arch.vocab_size - 1}")

    print(plan.format_plan())
    results = run_tp_gloo(model_dir, ratios, torch.tensor([ids]), args.max_new_tokens,
                          timeout_s=args.timeout)
    new = results[0].tokens[0][len(ids):]
    print()
    if tokenizer is not None:
        print(f"prompt:    {tokenizer.decode(ids)!r}")
        print(f"generated: {tokenizer.decode(new)!r}")
    print(f"generated ids: {new}")
    steps = results[0].step_ms
    if steps:
        print(f"\nprefill ({len(ids)} tokens): {steps[0]:.2f} ms")
    if len(steps) > 1:
        print(f"per-token latency: mean {statistics.mean(steps[1:]):.2f} ms, "
              f"median {statistics.median(steps[1:]):.2f} ms over {len(steps) - 1} tokens")
    full = plan.total_count * 4
    print(f"\nfull model: {plan.total_count:,} params, {full / 2**20:.3f} MiB fp32")
    print(f"{'rank':>4} {'shard params':>13} {'shard MiB':>10} {'repl MiB':>9} {'RSS MiB':>9} "
          f"{'all-reduces':>12} {'ms/all-reduce':>14}")
    for r in results:
        per_call = r.allreduce_ms / r.allreduce_calls if r.allreduce_calls else float("nan")
        print(f"{r.rank:>4} {r.shard_param_count:>13,} {r.shard_param_bytes / 2**20:>10.3f} "
              f"{r.replicated_param_bytes / 2**20:>9.3f} {r.rss_end_bytes / 2**20:>9.1f} "
              f"{r.allreduce_calls:>12} {per_call:>14.3f}")
    return 0
