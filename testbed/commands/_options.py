"""The command line's one dialect: the parser class every subcommand gets (``-v`` anywhere,
defaults printed once), list values, deprecated spellings, and the options several subcommands
share (bench and addresses, model, output folder, job, calibration).

One name per concept (docs/cli.md lists every option): ``--out DIR`` for where results go,
``--rx-antennas``/``--tx-antennas`` for N_r/N_t, ``--snr-db`` for one SNR and ``--snr-sweep``
for a list of them (dB), comma-separated lists (``0,10,20``), method names spelled as in
the registry `testbed.methods` (``aircomp-zf-sdr``), benches by path or short name (``sim_4node``).
Old spellings keep working for a while and print a `CliDeprecationWarning`.

Light on purpose: importing this module (and building any subcommand's parser) must not import
torch, transformers or scipy.signal, so ``testbed <cmd> --help`` answers in a fraction of a
second.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from testbed.errors import DeprecatedSpellingWarning as CliDeprecationWarning


# ------------------------------------------------------------------ help formatting
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every option's help ends with its default unless
    the help already says it (no default printed twice) or there is none to print (None, False,
    a flag). Deprecated spellings are left out of the option list and named at the end."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        old = getattr(action, "deprecated_spellings", {})
        if old:
            text += f" [old spelling{'s' if len(old) > 1 else ''} {', '.join(old)}: deprecated]"
        if "%(default)" in text or "default" in text.lower() or not action.option_strings:
            return text
        if action.default in (None, False, argparse.SUPPRESS, [], ()) or action.nargs == 0:
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            return f"{text} (default: {','.join(_plain(v) for v in default)})"
        return f"{text} (default: %(default)s)"

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if isinstance(action, ListAction):      # one comma-separated word, not nargs="+"
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        old = getattr(action, "deprecated_spellings", {})
        if not old:
            return super()._format_action_invocation(action)
        shown = [s for s in action.option_strings if s not in old]
        saved = action.option_strings
        action.option_strings = shown
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = saved


def _plain(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------ deprecated spellings
def _warn_if_deprecated(action: argparse.Action, option_string: str | None) -> None:
    new = getattr(action, "deprecated_spellings", {}).get(option_string)
    if new is not None:
        deprecated_spelling(f"{option_string} is deprecated; use {new}")


def deprecated_spelling(message: str) -> None:
    """Warn (`CliDeprecationWarning`) that an old spelling was used; shown as
    ``testbed: DeprecatedSpellingWarning: <message>`` whatever the call site."""
    warnings.warn_explicit(message, CliDeprecationWarning, filename="testbed", lineno=0,
                           module="testbed")


def _warning_action(base: type[argparse.Action]) -> type[argparse.Action]:
    class _Action(base):
        def __call__(self, parser, namespace, values, option_string=None):
            _warn_if_deprecated(self, option_string)
            super().__call__(parser, namespace, values, option_string)
    _Action.__name__ = f"Warning{base.__name__}"
    return _Action


_WARNING_ACTIONS = {name: _warning_action(cls) for name, cls in (
    ("store", argparse._StoreAction), ("store_true", argparse._StoreTrueAction),
    ("store_false", argparse._StoreFalseAction), ("count", argparse._CountAction),
    ("append", argparse._AppendAction), ("store_const", argparse._StoreConstAction))}


class CommandParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` of every ``testbed`` (sub)command: `HelpFormatter`, ``-v`` in
    every subcommand (counted together with the one before the subcommand), and
    ``add_argument("--rx-antennas", ..., deprecated=("--n-rx",))`` for old spellings that still work but
    warn."""

    def __init__(self, *args, verbose_option: bool = True, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        for name, cls in _WARNING_ACTIONS.items():
            self.register("action", name, cls)
        self.register("action", None, _WARNING_ACTIONS["store"])
        if verbose_option:
            self.add_argument("-v", "--verbose", action="count", dest="verbose_cmd", default=0,
                              help="more logging: -v info, -vv debug (anywhere on the line)")

    def add_argument(self, *args, deprecated: tuple[str, ...] = (), **kwargs):
        """`ArgumentParser.add_argument`; ``deprecated``: old option strings that still work
        (each use warns, naming the first of ``args``)."""
        action = super().add_argument(*args, *deprecated, **kwargs)
        if deprecated:
            action.deprecated_spellings = {old: args[0] for old in deprecated}
        return action

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", CommandParser)
        return super().add_subparsers(**kwargs)


# ------------------------------------------------------------------ value formats
def float_list(text: str) -> tuple[float, ...]:
    """``"0,10,20"`` -> (0.0, 10.0, 20.0) (the one list format of the command line)."""
    return _list(text, float, "numbers", "0,10,20")


def int_list(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` -> (2, 4, 8)."""
    return _list(text, int, "integers", "2,4,8")


def name_list(text: str) -> tuple[str, ...]:
    """``"node0,node1"`` -> ("node0", "node1")."""
    return _list(text, str.strip, "names", "node0,node1")


def _list(text: str, kind, what: str, example: str) -> tuple:
    try:
        vals = tuple(kind(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated {what}, e.g. {example}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"empty list; give comma-separated {what}, e.g. {example}")
    return vals


class ListAction(argparse.Action):
    """Store a comma-separated list (``type`` = `float_list` / `int_list`); space-separated
    words are accepted too (``0,10 20``: older scripts wrote ``--snrs 0 10``) and joined."""

    def __init__(self, option_strings, dest, nargs=None, **kwargs):
        super().__init__(option_strings, dest, nargs="+", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _warn_if_deprecated(self, option_string)
        setattr(namespace, self.dest, tuple(v for part in values for v in part))


# ------------------------------------------------------------------ shared options
def add_bench_arg(p, required: bool = True) -> None:
    """``--bench``: a bench YAML path or a shipped short name (``sim_4node``)."""
    p.add_argument("--bench", required=required, metavar="PATH|NAME",
                   help="bench YAML file, or the short name of a shipped bench "
                        "(firmware_configs/benches/NAME.yaml, e.g. sim_4node)")


def add_model_arg(p, optional: bool = False) -> None:
    """``--model``: a checkpoint directory or ``default``; ``optional``: none by default (a
    node then loads the slice the controller sends it)."""
    if optional:
        p.add_argument("--model", default=None, metavar="DIR|default",
                       help="save_pretrained checkpoint directory (safetensors), or 'default' "
                            "(the embedded tiny Llama, cached); default: none -- the controller "
                            "sends the node its slice and checks it by hash")
        return
    p.add_argument("--model", default="default", metavar="DIR|default",
                   help="save_pretrained checkpoint directory (safetensors), or 'default': the "
                        "embedded tiny Llama, trained once and cached")


def add_controller_address_args(p) -> None:
    """``--router`` and ``--pub``: where the controller binds (and the roles connect)."""
    p.add_argument("--router", metavar="tcp://HOST:PORT",
                   help="controller ROUTER address (default: the bench's controller host and "
                        "router_port; `testbed up`: a free loopback port)")
    p.add_argument("--pub", metavar="tcp://HOST:PORT",
                   help="controller PUB address (default: the bench's host and pub_port; "
                        "`testbed up`: a free loopback port)")


def add_register_timeout_arg(p) -> None:
    """``--register-timeout S``: how long a controller waits for every role."""
    p.add_argument("--register-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for every role to register")


def add_address_args(p, model_optional: bool = False) -> None:
    """``--bench``, the role addresses (``--router``, ``--pub``, ``--broker``, ``--estimates``,
    ``--tap``) and ``--model`` of the role commands."""
    add_bench_arg(p)
    add_controller_address_args(p)
    p.add_argument("--broker", metavar="tcp://HOST:PORT",
                   help="channel broker address of a simulated bench (default: the bench's "
                        "host and pub_port + 1; `testbed up`: a free loopback port)")
    p.add_argument("--estimates", metavar="tcp://HOST:PORT",
                   help="the receiver's estimates PUB address (default: the receiver's host "
                        "and the bench's pub_port + 2; `testbed up`: a free loopback port)")
    p.add_argument("--tap", metavar="tcp://HOST:PORT",
                   help="measurement sink of --measure-error (default: the controller's host "
                        "and the bench's pub_port + 3; `testbed up`: a free loopback port)")
    add_model_arg(p, optional=model_optional)


def add_out_arg(p, default: str = "runs", *, root: bool = True) -> None:
    """``--out DIR``: the root of the run directories (``root``) or the folder written."""
    if root:
        help_ = "folder the run directory <name>-<timestamp>/ is created in"
    else:
        help_ = "folder the files are written to (created if missing)"
    p.add_argument("--out", type=Path, default=Path(default), metavar="DIR", help=help_)


def add_method_arg(p, methods: tuple[str, ...], default: str) -> None:
    """``--method M``: one all-reduce method of ``methods``."""
    p.add_argument("--method", default=default, metavar="METHOD",
                   help=f"all-reduce method: {', '.join(methods)}")


def add_run_args(p) -> None:
    """Job, method and output flags shared by `run`, `up --then-run` and `controller`."""
    from testbed.methods import METHOD_NAMES
    add_method_arg(p, METHOD_NAMES, "exact")
    p.add_argument("--prompt", metavar="TEXT", help="prompt text of a generation job")
    p.add_argument("--prompt-ids", type=int_list, metavar="ID,ID,...",
                   help="prompt of a generation job as token ids (no tokenizer needed)")
    p.add_argument("--max-new-tokens", type=int, default=8, metavar="K",
                   help="tokens to generate (greedy)")
    p.add_argument("--eval-text", metavar="FILE|heldout",
                   help="perplexity job: a UTF-8 text file to score, or 'heldout' (the default "
                        "model's held-out text)")
    p.add_argument("--eval-windows", type=int, default=2, metavar="N",
                   help="perplexity windows scored")
    p.add_argument("--window", type=int, default=64, metavar="TOKENS",
                   deprecated=("--eval-window",), help="tokens per perplexity window")
    p.add_argument("--streams", type=int, default=None, metavar="L",
                   help="AirComp data streams L per channel use (default: min(N_t, N_r))")
    p.add_argument("--csi", choices=("perfect", "estimated"), default="estimated",
                   help="channel knowledge of the analog methods: estimated (LS from a pilot "
                        "sounding frame over the air each channel realization, noise from its "
                        "silent samples; works on every bench) or perfect (the simulator's true "
                        "channels and noise: simulated benches only, recorded in results.json)")
    p.add_argument("--csi-interval-ms", type=float, default=0.0, metavar="MS",
                   help="analog methods with --csi estimated: one pilot sounding and design "
                        "per interval of this many ms of the receiver's clock, reused by every "
                        "round that starts in it (set it below the channel's coherence time; "
                        "0, the default: a sounding every round)")
    p.add_argument("--measure-error", action="store_true",
                   help="measurement tap: nodes also copy their partials to a sink in the "
                        "controller process (never read by the computation) so results.json "
                        "can report the all-reduce error")
    add_out_arg(p)
    p.add_argument("--run-dir", type=Path, default=None, metavar="DIR",
                   help="deprecated: use DIR itself as the run directory (prefer --out)")
    add_register_timeout_arg(p)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def add_calibration_args(p) -> None:
    """``--calibration FILE``, ``--calibration-max-age S``, ``--strict-calibration``."""
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE",
                   help="calibration file from `testbed calibrate`: checked against the bench "
                        "(on a bench of radios, against the serials the roles register with), "
                        "each node transmits through its correction on top of the time base")
    p.add_argument("--calibration-max-age", type=float, default=None, metavar="S",
                   help="warn (or with --strict-calibration refuse) when the file is older "
                        "than S seconds")
    p.add_argument("--strict-calibration", action="store_true",
                   help="refuse a calibration older than --calibration-max-age")


def canonical_method(name: str, allowed: tuple[str, ...], flag: str = "--method") -> str:
    """The spelling of method ``name`` in ``allowed`` (default: every registered method). Old
    spellings of the registry (`testbed.methods.ALIASES`: ``zf-sdr``, ``zf_sdr``,
    ``analog_fdma``, ...) and ``aircomp_``/underscore variants still work and warn; anything
    else is a ConfigError naming ``flag`` and the valid names."""
    from testbed.errors import ConfigError
    from testbed.methods import ALIASES
    if name in allowed:
        return name
    key = name.strip().lower()
    for cand in (ALIASES.get(key), ALIASES.get(key.replace("_", "-")), key.replace("_", "-"),
                 "aircomp-" + key.replace("_", "-").removeprefix("aircomp-")):
        if cand in allowed:
            deprecated_spelling(f"{flag} {name!r} is an old spelling; use {cand!r}")
            return cand
    raise ConfigError(f"{flag}: unknown method {name!r}; valid methods: {', '.join(allowed)}")


def run_dir_from_args(args, name: str) -> Path:
    """The run directory of a run/up/controller: ``--run-dir`` itself (deprecated) or a fresh
    ``<--out>/<name>-<timestamp>``."""
    from testbed.experiments.runs import make_run_dir
    if getattr(args, "run_dir", None) is not None:
        deprecated_spelling("--run-dir is deprecated; use --out (the run directory is created "
                            "in it)")
        return Path(args.run_dir)
    return Path(make_run_dir(args.out, name))
