"""`testbed keys --out DIR`: create CURVE certificates for the controller and its agents."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keys`` subcommand."""
    from testbed.commands._options import ListAction, name_list
    p = subparsers.add_parser(
        "keys", help="generate CURVE keypairs (server + clients) for an authenticated bench",
        description="Writes DIR/server.key(_secret), DIR/clients/<name>.key(_secret) and "
                    "DIR/allowed/<name>.key. Give the controller server.key_secret and the "
                    "allowed/ directory; give each agent its clients/<name>.key_secret and "
                    "server.key. Remove a file from allowed/ to revoke that client.")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder the files are written to (created if missing)")
    p.add_argument("--clients", type=name_list, action=ListAction, default="client",
                   metavar="NAME,NAME,...",
                   help="one keypair per name, e.g. the bench's node ids, the receiver id and "
                        "'channel'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the keys and print where they went."""
    from testbed.net.transport import generate_keys
    paths = generate_keys(args.out, args.clients)
    print(f"server certificate: {paths['server_public']} (secret: {paths['server_secret']})")
    for name in args.clients:
        print(f"client {name}: {paths[f'client_secret:{name}']}")
    print(f"allowed clients directory: {paths['allowed_dir']}")
    return 0
