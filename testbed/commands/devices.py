"""``testbed devices``: list attached PlutoSDRs (libiio scan) and USRPs (uhd.find)."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``devices`` subcommand."""
    p = subparsers.add_parser("devices", help="list attached PlutoSDR and USRP radios",
                              description="Scan libiio contexts and UHD for attached radios "
                                          "and print their addresses, serials and firmware.")
    p.add_argument("--json", action="store_true", help="print the scan as JSON (machine-readable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the scan; exit code 0 if any radio was found, 3 if none."""
    from testbed.radio.discovery import discover
    results = discover()
    n = sum(len(r.radios) for r in results)
    if getattr(args, "json", False):
        print(json.dumps({"found": n, "scans": [r.as_dict() for r in results]}, indent=2))
        return 0 if n else 3
    for r in results:
        print(f"[{r.library}] {r.status}")
        for radio in r.radios:
            print(f"  {radio.kind:6s} {radio.address:28s} serial={radio.serial} "
                  f"firmware={radio.firmware} {radio.model}")
        if r.message:
            print(f"  note: {r.message}")
    if not n:
        print("no radio found (see the notes above; docs/bench.md 'First light')")
    return 0 if n else 3
