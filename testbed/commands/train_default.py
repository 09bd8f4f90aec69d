"""`testbed train-default`: train (or reuse from the cache) the embedded default tiny Llama and
print its held-out perplexity, where it is cached and how long it took."""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add the `train-default` subcommand."""
    parser = subparsers.add_parser(
        "train-default",
        help="train the embedded default model (byte-level tiny Llama) once and cache it",
        description=(
            "Train the default model: a tiny byte-level Llama (GQA, 4 layers) on the standard "
            "library's documentation topics (pydoc_data), seeded and reproducible, a few minutes "
            "on 2 CPU cores. The checkpoint is cached under $TESTBED_CACHE_DIR, else "
            "$XDG_CACHE_HOME/aircomp-testbed, else ~/.cache/aircomp-testbed, and reused unless "
            "--force. Prints the held-out perplexity (uniform guessing over 256 bytes gives 256)."),
    )
    parser.add_argument("--force", action="store_true",
                        help="retrain even if a cached checkpoint exists (replaces it)")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="cache root to use instead of the default location "
                             "($TESTBED_CACHE_DIR, else $XDG_CACHE_HOME/aircomp-testbed, else "
                             "~/.cache/aircomp-testbed)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train or reuse the default model and print a summary; returns the exit code."""
    from testbed.llm.default_model import (DEFAULT_RECIPE, default_model_dir, ensure_default_model,
                                           is_complete, read_training_report)

    cached = is_complete(default_model_dir(DEFAULT_RECIPE, args.cache_dir)) and not args.force
    t0 = time.perf_counter()
    path = ensure_default_model(progress=not args.no_progress, cache_root=args.cache_dir,
                                force=args.force)
    elapsed = time.perf_counter() - t0
    report = read_training_report(path)
    status = "reused cached model" if cached else "trained"
    print(f"default model: {status} in {elapsed:.1f} s")
    print(f"  checkpoint:           {path}")
    print(f"  held-out perplexity:  {report['heldout_perplexity']:.3f} per byte "
          f"(uniform = 256; {report['heldout_tokens_scored']} bytes scored)")
    print(f"  final train loss:     {report['train_loss_final']:.3f} nats/byte")
    print(f"  training:             {report['steps']} steps, {report['n_parameters']} parameters, "
          f"{report['train_seconds']:.1f} s on {report['threads']} thread(s), seed {report['seed']}")
    return 0
