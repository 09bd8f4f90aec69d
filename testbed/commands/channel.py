"""`testbed channel --bench B`: the simulated channel broker (serves the air to remote radios)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the `channel` subcommand."""
    from testbed.commands._options import add_address_args
    p = subparsers.add_parser("channel", help="run the simulated channel broker of a bench",
                              description=__doc__)
    add_address_args(p, model_optional=True)
    p.set_defaults(func=run)


def run(args) -> int:
    """Serve until SHUTDOWN; 1 on registration/controller loss."""
    from testbed.net.roles.bench_runner import serve_channel
    from testbed.net.roles.common import addresses_from_args, optional_model_dir, resolve_bench
    bench = resolve_bench(args.bench)
    reason = serve_channel(bench, addresses_from_args(bench, args), optional_model_dir(args.model))
    print(f"channel: exiting ({reason})", flush=True)
    return 0
