"""`testbed controller --bench B [job flags]`: the controller of roles started separately
(same as `testbed run` without --up; with no job flags it holds the bench up until Ctrl-C)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the `controller` subcommand."""
    from testbed.commands.run import add_calibration_args, add_run_args
    from testbed.net.roles.common import add_address_args
    p = subparsers.add_parser("controller", help="be the controller of a bench's role processes",
                              description=__doc__)
    add_address_args(p)
    add_run_args(p)
    add_calibration_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Register roles, assign shards, run the job (if any)."""
    from testbed.commands.run import calibration_from_args, job_from_args
    from testbed.experiments.runs import make_run_dir
    from testbed.net.roles.bench_runner import JobSpec, run_on_bench
    from testbed.net.roles.common import addresses_from_args, resolve_bench, resolve_model_dir
    bench = resolve_bench(args.bench)
    calibration = calibration_from_args(args, bench)      # refuse a wrong file before waiting
    model_dir = resolve_model_dir(args.model)
    job = job_from_args(args, model_dir) or JobSpec("none")
    run_dir = args.run_dir or make_run_dir("runs", f"controller-{bench.name}")
    return run_on_bench(bench, addresses_from_args(bench, args), model_dir, args.method, job,
                        run_dir, register_timeout_s=args.register_timeout,
                        n_streams=args.streams, csi=args.csi, calibration=calibration,
                        measure_error=args.measure_error)
