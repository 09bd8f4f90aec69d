"""`testbed receiver --bench B`: the bench's multi-antenna receiver (an agent)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the `receiver` subcommand."""
    from testbed.commands._options import add_address_args
    p = subparsers.add_parser("receiver", help="run the bench's receiver (agent process)",
                              description=__doc__)
    add_address_args(p, model_optional=True)
    p.set_defaults(func=run)


def run(args) -> int:
    """Serve until SHUTDOWN; 1 on registration/controller loss."""
    from testbed.net.roles.bench_runner import serve_receiver
    from testbed.net.roles.common import addresses_from_args, optional_model_dir, resolve_bench
    bench = resolve_bench(args.bench)
    reason = serve_receiver(bench, addresses_from_args(bench, args), optional_model_dir(args.model))
    print(f"receiver: exiting ({reason})", flush=True)
    return 0
