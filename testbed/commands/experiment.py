"""`testbed experiment <name>`: run one reproduction experiment into a fresh run directory
(``<out>/<name>-<timestamp>/`` with ``results.json`` and PNG plots)."""
from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    """Add the `experiment` subcommand with one sub-parser per registered experiment."""
    from testbed.commands._options import add_out_arg
    from testbed.experiments.registry import experiment_names, load_experiment

    parser = subparsers.add_parser(
        "experiment", help="run a reproduction experiment (MSE, latency, perplexity, assignment)",
        description="Run one experiment of the paper reproduction; results.json and plots go to "
                    "a fresh run directory under --out.")
    sub = parser.add_subparsers(dest="experiment", metavar="NAME")
    for name in experiment_names():
        module = load_experiment(name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        add_out_arg(p)
        p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
        p.add_argument("--quick", action="store_true",
                       help="tiny sizes for a smoke test (< 30 s); numbers are not meaningful")
        module.add_arguments(p)
        p.set_defaults(func=run, experiment_module=module)
    parser.set_defaults(func=_no_experiment, experiment_parser=parser)


def _no_experiment(args: argparse.Namespace) -> int:
    args.experiment_parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the selected experiment, write results.json, print where it went; returns 0."""
    from testbed.experiments.runs import environment_versions, make_run_dir, write_json

    module = args.experiment_module
    run_dir = make_run_dir(args.out, module.NAME)
    options = {k: v for k, v in vars(args).items()
               if k not in ("func", "experiment_module", "experiment_parser", "command", "verbose",
                            "verbose_cmd")}
    t0 = time.perf_counter()
    results = module.run(args, run_dir)
    elapsed = time.perf_counter() - t0
    write_json(run_dir / "results.json", {"experiment": module.NAME, "options": options,
                                          "wall_time_s": elapsed, "versions": environment_versions(),
                                          "results": results})
    plots = sorted(p.name for p in run_dir.glob("*.png"))
    print(f"experiment {module.NAME}: done in {elapsed:.1f} s")
    print(f"  run directory: {run_dir}")
    print(f"  files: results.json, {', '.join(plots)}")
    for line in results.get("summary", []):
        print(f"  {line}")
    return 0
