"""Print docs/cli.md's option table: one row per option name (and value format), the
subcommands that have it and its meaning there, generated from the parsers themselves.

Run ``python tools/cli_table.py`` and paste the output under "## Every option" in docs/cli.md;
tests/cli/test_cli_dialect.py checks that the two agree."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testbed.cli import option_rows  # noqa: E402


def grouped() -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(option, value format) -> [(subcommand, help), ...] for every option but ``-v``."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for cmd, opt, value, text in option_rows():
        if opt != "--verbose":
            out.setdefault((opt, value), []).append((cmd, " ".join(text.split())))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The markdown table: | option | value | subcommands | meaning (default) |, by option."""
    lines = ["| option | value | subcommands | meaning (default), in the first subcommand |",
             "|---|---|---|---|"]
    for (opt, value), uses in sorted(grouped().items()):
        cmds = ", ".join(f"`{c}`" for c, _ in uses)
        val = f"`{_cell(value)}`" if value else "(flag)"
        lines.append(f"| `{opt}` | {val} | {cmds} | {_cell(uses[0][1])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
