"""One CLI dialect: every subcommand's parser is walked (testbed.cli.option_rows) and checked
against docs/cli.md's table and the dialect's rules -- one name and one value format per
option, -v anywhere, help for every option with its default printed once, old spellings that
still work and warn, and error texts in the code that name only flags that exist."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from testbed.cli import build_parser, main, option_rows, subcommand_parsers
from testbed.errors import DeprecatedSpellingWarning

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from cli_table import grouped, table  # noqa: E402

#: option names that mean different things by design, with the reason
TWO_FORMATS_OK = {"--calibration": "the demo also accepts 'fresh' and 'none' (it can calibrate "
                                    "in-process); a bench run takes a file"}
#: spellings replaced by the dialect: never a primary option name again
OLD_SPELLINGS = ("--n-rx", "--n-tx", "--snrs", "--world", "--preset", "--windows",
                 "--eval-window", "--node-id", "--broker-port", "--n-nodes")


def _first_columns(lines: list[str]) -> list[list[str]]:
    """Option, value and subcommands of each table row (help texts may be reworded freely)."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:4]] for ln in lines]


def test_docs_table_is_the_parsers_table():
    doc = (ROOT / "docs" / "cli.md").read_text()
    start = doc.index("## Every option")
    got = [ln for ln in doc[start:].splitlines() if ln.startswith("|")]
    want = table().splitlines()
    assert _first_columns(got) == _first_columns(want), (
        "docs/cli.md is out of date: run `python tools/cli_table.py` and paste its output under "
        "'## Every option'")


def test_one_value_format_per_option_name():
    formats: dict[str, set[str]] = {}
    for opt, value in grouped():
        formats.setdefault(opt, set()).add(value)
    mixed = {o: v for o, v in formats.items() if len(v) > 1 and o not in TWO_FORMATS_OK}
    assert mixed == {}


def test_old_spellings_are_not_option_names():
    names = {opt for _, opt, _, text in option_rows() if "deprecated:" not in text}
    assert names.isdisjoint(OLD_SPELLINGS)


def test_every_option_has_help_with_its_default_once():
    for cmd, opt, _, text in option_rows():
        assert text.strip(), f"testbed {cmd} {opt} has no help text"
        assert text.count("(default") <= 1, f"testbed {cmd} {opt}: default printed twice: {text}"


def test_verbose_anywhere():
    parsers = subcommand_parsers()
    assert parsers and all(any("-v" in a.option_strings for a in p._actions)
                           for p in parsers.values())
    args = build_parser().parse_args(["-v", "run", "--bench", "sim_4node", "-v"])
    assert args.verbose + args.verbose_cmd == 2


@pytest.mark.parametrize("argv, dest, value", [
    (["experiment", "mse-vs-snr", "--n-rx", "3"], "n_rx", 3),
    (["experiment", "mse-vs-snr", "--n-tx", "2"], "n_tx", 2),
    (["experiment", "perplexity", "--snrs", "0", "10"], "snrs", (0.0, 10.0)),
    (["experiment", "perplexity", "--windows", "3"], "windows", 3),
    (["experiment", "mse-vs-nodes", "--nodes", "2", "4"], "nodes", (2, 4)),
    (["tp-run", "--world", "3"], "nodes", 3),
    (["calibrate", "--bench", "sim_4node", "--preset", "none"], "impairments", "none"),
    (["run", "--bench", "sim_4node", "--eval-window", "32"], "window", 32),
])
def test_old_spellings_still_work_and_warn(argv, dest, value):
    with pytest.warns(DeprecatedSpellingWarning, match="deprecated; use --"):
        args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value


def test_lists_are_comma_separated_everywhere():
    p = build_parser()
    assert p.parse_args(["demo", "--snr-sweep", "0,10,20"]).snr_sweep == (0.0, 10.0, 20.0)
    assert p.parse_args(["experiment", "perplexity", "--node-counts", "2,4"]).node_counts == (2, 4)
    assert p.parse_args(["keys", "--out", "k", "--clients", "node0,node1"]).clients == \
        ("node0", "node1")
    assert p.parse_args(["run", "--bench", "b", "--prompt-ids", "1,2,3"]).prompt_ids == (1, 2, 3)


def test_method_old_spellings_warn_and_map_to_one_name():
    from testbed.commands._options import canonical_method
    from testbed.errors import ConfigError
    from testbed.methods import METHOD_NAMES
    for old in ("zf-sdr", "zf_sdr", "aircomp_zf_sdr"):
        with pytest.warns(DeprecatedSpellingWarning):
            assert canonical_method(old, METHOD_NAMES) == "aircomp-zf-sdr"
    with pytest.warns(DeprecatedSpellingWarning):
        assert canonical_method("analog_fdma", METHOD_NAMES) == "fdma"
    assert canonical_method("exact", METHOD_NAMES) == "exact"
    with pytest.raises(ConfigError, match="--method: unknown method 'carrier-pigeon'"):
        canonical_method("carrier-pigeon", METHOD_NAMES)


def test_short_bench_name_everywhere_and_unknown_name_lists_the_shipped_ones(capsys):
    assert main(["calibrate", "--bench", "no_such_bench", "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "no_such_bench" in err and "sim_4node" in err


def test_usage_errors_return_2_and_help_returns_0(capsys):
    assert main(["run", "--no-such-flag"]) == 2
    assert main(["channel", "--help"]) == 0
    assert "--bench" in capsys.readouterr().out


def test_error_texts_name_only_flags_that_exist():
    top = build_parser()
    known = set()
    for p in [top, *subcommand_parsers(top).values()]:
        for a in p._actions:
            known.update(a.option_strings)
    mentioned = {}
    for src in [*ROOT.glob("testbed/**/*.py"), *ROOT.glob("sim_backend/**/*.py"),
                *ROOT.glob("calibration/**/*.py")]:
        if src.name == "echo.py":        # the control-plane echo agent has its own argparse
            continue
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", src.read_text()):
            mentioned.setdefault(flag, src.relative_to(ROOT))
    unknown = {f: str(where) for f, where in mentioned.items() if f not in known}
    assert unknown == {}


def test_up_honours_the_address_flags_and_fills_in_the_rest():
    from testbed.net.roles.bench_runner import local_addresses
    args = build_parser().parse_args(["up", "--bench", "sim_4node", "--router",
                                      "tcp://127.0.0.1:5999", "--broker", "tcp://127.0.0.1:5998"])
    a = local_addresses(args.router, args.pub, args.broker, args.estimates, args.tap)
    assert a.router == "tcp://127.0.0.1:5999" and a.broker == "tcp://127.0.0.1:5998"
    others = {a.pub, a.estimates, a.tap}
    assert len(others) == 3 and all(x.startswith("tcp://127.0.0.1:") for x in others)
