"""`testbed node --bench B --id node0`: one model-shard node of a bench (an agent)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the `node` subcommand."""
    from testbed.commands._options import add_address_args
    p = subparsers.add_parser("node", help="run one shard node of a bench (agent process)",
                              description=__doc__)
    add_address_args(p, model_optional=True)
    p.add_argument("--id", required=True, metavar="NODE_ID",
                   help="this node's id in the bench file (nodes[].id, e.g. node0)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Serve until the controller says SHUTDOWN; 1 on registration/controller loss."""
    from testbed.net.roles.bench_runner import serve_node
    from testbed.net.roles.common import addresses_from_args, optional_model_dir, resolve_bench
    bench = resolve_bench(args.bench)
    reason = serve_node(bench, args.id, addresses_from_args(bench, args),
                        optional_model_dir(args.model))
    print(f"node {args.id}: exiting ({reason})", flush=True)
    return 0
