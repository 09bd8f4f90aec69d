"""`testbed demo`: the trained default LLM split over N simulated nodes, all-reduced exactly,
digitally (8-bit), by uncoded FDMA and by AirComp (ZF+SDR, MMSE) over the simulated air; prints
the plan and a results table, writes a run directory with results.json and plots. With
``--impairments`` the analog methods run on an impaired simulated bench (Pluto or USRP preset)
with a calibration (fresh per bench, or ``--calibration FILE``) and per-frame pilots."""
from __future__ import annotations

import argparse
import time

from testbed.errors import ConfigError


def register(subparsers) -> None:
    """Add the `demo` subcommand."""
    from testbed.commands._options import (ListAction, add_model_arg, add_out_arg, float_list,
                                           name_list)
    from calibration.session import EXPIRY_POLICIES
    from sim_backend.impairment_presets import PRESET_NAMES
    from testbed.methods import METHOD_NAMES as DEMO_METHODS

    p = subparsers.add_parser(
        "demo", help="LLM tensor parallelism over the simulated air: exact vs digital vs FDMA vs AirComp",
        description=(
            "Split the trained default tiny Llama (or --model DIR) over N simulated nodes and "
            "compare all-reduce methods: held-out perplexity, greedy-token agreement with the "
            "exact split, generated text, all-reduce MSE (measured vs predicted) and wall time; "
            "then sweep the SNR. Analog methods use calibrated normalization scales (a "
            "calibration pass over training text, never held-out text). SNR is the signal-model "
            "SNR at unit precoder power, Rayleigh fading, a new block per all-reduce. Writes "
            "<out>/demo-<timestamp>/results.json and PNG plots."))
    p.add_argument("--snr-db", type=float, default=20.0, help="SNR of the per-method table, dB")
    p.add_argument("--nodes", type=int, default=None, metavar="N",
                   help="number of nodes N, equal split 1/N (default: the number of --ratios)")
    p.add_argument("--ratios", type=float_list, default=None, metavar="R,R,...",
                   help="model fraction per node, comma-separated, summing to 1 "
                        "(default 0.4,0.3,0.2,0.1, or 1/N each with --nodes)")
    p.add_argument("--rx-antennas", type=int, default=4, metavar="N_R",
                   help="receiver antennas N_r")
    p.add_argument("--tx-antennas", type=int, default=1, metavar="N_T",
                   help="antennas per node N_t")
    p.add_argument("--methods", type=name_list, action=ListAction,
                   default=",".join(DEMO_METHODS), metavar="M,M,...",
                   help=f"comma-separated subset of {', '.join(DEMO_METHODS)}")
    p.add_argument("--prompt", default=None, metavar="TEXT",
                   help="prompt for greedy generation (default: the first 30 bytes of a "
                        "held-out-style Python docstring)")
    p.add_argument("--max-new-tokens", type=int, default=32, metavar="K",
                   help="greedy generation length, tokens")
    p.add_argument("--eval-windows", type=int, default=8, metavar="N",
                   help="held-out windows for the per-method perplexity")
    p.add_argument("--sweep-windows", type=int, default=4, metavar="N",
                   help="held-out windows per SNR-sweep point")
    p.add_argument("--window", type=int, default=128, metavar="TOKENS",
                   help="perplexity window, tokens (= bytes)")
    p.add_argument("--snr-sweep", type=float_list, action=ListAction, default="0,10,20,30",
                   metavar="DB,DB,...", help="SNRs of the sweep, comma-separated, dB")
    p.add_argument("--seed", type=int, default=0, help="seed of channels and noise")
    add_out_arg(p)
    add_model_arg(p)
    p.add_argument("--quick", action="store_true",
                   help="small run for tests: 2 windows of 64 tokens, 4 new tokens, sweep 0,30 dB")
    p.add_argument("--impairments", choices=("none", *PRESET_NAMES), default="none",
                   help="impairment preset of the analog methods' simulated bench (none: ideal "
                        "bench)")
    p.add_argument("--impairments-seed", type=int, default=1234,
                   help="seed of the preset's draw (the simulated hardware; 1234 = the "
                        "channel seed of sim_4node, what `testbed calibrate --bench sim_4node` "
                        "uses)")
    p.add_argument("--csi", choices=("perfect", "estimated"), default=None,
                   help="channel knowledge of the analog methods (default: estimated, from "
                        "per-frame pilots and silent samples, as on a bench; perfect: the "
                        "simulator's true channels and noise, recorded in results.json)")
    p.add_argument("--calibration", default="fresh", metavar="fresh|none|FILE",
                   help="with --impairments: 'fresh' calibrates every bench, 'none' runs the raw "
                        "radios (to see them fail), FILE loads a calibration (refused if it does "
                        "not match the bench)")
    p.add_argument("--calibration-max-age", type=float, default=None, metavar="S",
                   help="warn (or with --strict-calibration refuse) when the calibration file "
                        "is older than S seconds")
    p.add_argument("--strict-calibration", action="store_true",
                   help="refuse (instead of warn about) a calibration file older than "
                        "--calibration-max-age")
    p.add_argument("--on-expiry", choices=EXPIRY_POLICIES, default="recalibrate",
                   help="what a run does when its calibration expires or a radio re-tunes")
    p.add_argument("--valid-for", type=float, default=None, metavar="S",
                   help="calibration validity in seconds when the calibration carries none "
                        "(default: from its residual CFO)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """Build and validate a `DemoConfig` from parsed arguments; ConfigError on bad options."""
    from testbed.experiments.demo import DemoConfig, validate_config

    from testbed.commands._options import canonical_method
    from testbed.methods import METHOD_NAMES as DEMO_METHODS

    if args.ratios is not None:
        ratios = tuple(args.ratios)
        if args.nodes is not None and args.nodes != len(ratios):
            raise ConfigError(f"--nodes {args.nodes} but --ratios has {len(ratios)} entries; "
                              "give one ratio per node or drop --nodes")
    elif args.nodes is not None:
        if args.nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {args.nodes}")
        ratios = tuple([1.0 / args.nodes] * args.nodes)
    else:
        ratios = (0.4, 0.3, 0.2, 0.1)
    methods = tuple(canonical_method(m, DEMO_METHODS, "--methods") for m in args.methods)
    prompt = {} if args.prompt is None else {"prompt": args.prompt}
    cfg = DemoConfig(ratios=ratios, n_rx=args.rx_antennas, n_tx=args.tx_antennas, snr_db=args.snr_db,
                     methods=methods, max_new_tokens=args.max_new_tokens, **prompt,
                     window=args.window, eval_windows=args.eval_windows,
                     sweep_windows=args.sweep_windows,
                     snr_sweep_db=tuple(args.snr_sweep), seed=args.seed,
                     model=None if args.model in (None, "default") else args.model,
                     progress=not args.no_progress, impairments=args.impairments,
                     impairments_seed=args.impairments_seed, csi=args.csi,
                     calibration=args.calibration,
                     calibration_max_age_s=args.calibration_max_age,
                     strict_calibration=args.strict_calibration, on_expiry=args.on_expiry,
                     valid_for_s=args.valid_for)
    if args.quick:
        cfg.window, cfg.eval_windows, cfg.sweep_windows, cfg.calib_windows = 64, 2, 1, 2
        cfg.max_new_tokens, cfg.snr_sweep_db = min(cfg.max_new_tokens, 4), (0.0, 30.0)
    return validate_config(cfg)


def run(args: argparse.Namespace) -> int:
    """Run the demo and write the run directory; returns the exit code."""
    from testbed.experiments.demo import (format_bench, format_sweep, format_table, run_demo,
                                          write_demo_outputs)
    from testbed.experiments.runs import make_run_dir

    cfg = config_from_args(args)
    t0 = time.perf_counter()
    results = run_demo(cfg)
    print()
    print(f"N={cfg.n_nodes} nodes, N_r={cfg.n_rx}, N_t={cfg.n_tx}, SNR {cfg.snr_db:g} dB, "
          f"{cfg.eval_windows} held-out windows of {cfg.window} tokens; calibrated scales "
          "(calibration on training text)")
    print(format_bench(results))
    print(format_table(results["methods"]))
    print("agree % = teacher-forced greedy-token agreement with exact; gen % = generated tokens "
          "equal to exact's before the first difference; MSEs are means over (layer, site)")
    for r in results["methods"]:
        if not r.get("failed"):
            print(f"  {r['method']:<15} {cfg.prompt!r} -> {r['generated_text']!r}")
    print()
    print(format_sweep(results))
    run_dir = make_run_dir(args.out, "demo")
    files = write_demo_outputs(results, run_dir, plots=not args.no_plots)
    print(f"\nwrote {files['results']}" + "".join(f"\n      {p}" for k, p in files.items() if k != "results"))
    print(f"total wall time {time.perf_counter() - t0:.1f} s")
    return 0
