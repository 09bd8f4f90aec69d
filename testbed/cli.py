"""The one `testbed` command. Subcommands live in `testbed/commands/<name>.py`; each module
defines ``register(subparsers)`` which adds its parser and sets ``func`` to a callable taking
the parsed arguments and returning an exit code."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from testbed import __version__
from testbed.errors import TestbedError
from testbed.threads import configure_threads


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand found in `testbed.commands`."""
    import testbed.commands as commands_pkg

    parser = argparse.ArgumentParser(
        prog="testbed",
        description="AirComp tensor-parallel LLM testbed (simulated air, PlutoSDR, USRP).",
    )
    parser.add_argument("--version", action="version", version=f"testbed {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch intra-op threads (default: $TESTBED_THREADS, else usable cores - 1, "
                             "at least 1); BLAS runs 1 thread ($TESTBED_BLAS_THREADS to change)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"testbed.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `testbed` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        configure_threads(torch_threads=args.threads)
        return int(args.func(args) or 0)
    except TestbedError as exc:
        print(f"testbed {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"testbed {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
