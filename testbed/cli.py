"""The one `testbed` command. Subcommands live in `testbed/commands/<name>.py`; each module
defines ``register(subparsers)`` which adds its parser and sets ``func`` to a callable taking
the parsed arguments and returning an exit code.

Building the parser is cheap on purpose: command modules import nothing heavy at module level
or in ``register`` (torch, transformers, scipy.signal are imported by ``func`` when a command
runs), so ``testbed --help`` and ``testbed <cmd> --help`` answer in a fraction of a second and
a role process (channel, receiver) never loads the model libraries.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

from testbed import __version__
from testbed.commands._options import CommandParser
from testbed.errors import TestbedError
from testbed.threads import configure_threads


def command_names() -> list[str]:
    """Names of the subcommand modules in `testbed.commands` (sorted; ``_private`` skipped)."""
    import testbed.commands as commands_pkg
    return sorted(m.name for m in pkgutil.iter_modules(commands_pkg.__path__)
                  if not m.name.startswith("_"))


def build_parser() -> CommandParser:
    """Build the top-level parser with every subcommand found in `testbed.commands`."""
    parser = CommandParser(
        prog="testbed", verbose_option=False,
        description="AirComp tensor-parallel LLM testbed (simulated air, PlutoSDR, USRP).")
    parser.add_argument("--version", action="version", version=f"testbed {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v info, -vv debug (anywhere on the line)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch intra-op threads (default: $TESTBED_THREADS, else usable cores - 1, "
                             "at least 1); BLAS runs 1 thread ($TESTBED_BLAS_THREADS to change)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_names():
        importlib.import_module(f"testbed.commands.{name}").register(sub)
    return parser


def subcommand_parsers(parser=None, prefix: str = "") -> dict[str, CommandParser]:
    """``{"run": parser, "experiment perplexity": parser, ...}``: every (nested) subcommand's
    parser (default: of `build_parser`), for docs and the CLI dialect test."""
    import argparse
    parser = parser or build_parser()
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[f"{prefix}{name}"] = sub
                out.update(subcommand_parsers(sub, f"{prefix}{name} "))
    return out


def option_rows(parser=None) -> list[tuple[str, str, str, str]]:
    """(subcommand, option, value format, help with its default) for every option of every
    subcommand, in parser order; ``-h`` left out. The option is its first long spelling (old,
    deprecated spellings are not listed); the value format is what ``--help`` shows (empty for
    a flag)."""
    import argparse
    rows = []
    for cmd, sub in subcommand_parsers(parser).items():
        fmt = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            old = getattr(action, "deprecated_spellings", {})
            names = [o for o in action.option_strings if o not in old]
            name = next((o for o in names if o.startswith("--")), names[0])
            value = "" if action.nargs == 0 else fmt._format_args(action, action.dest.upper())
            rows.append((cmd, name, value, fmt._expand_help(action) if action.help else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `testbed` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    verbose = args.verbose + getattr(args, "verbose_cmd", 0)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
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
