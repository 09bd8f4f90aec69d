"""`testbed up --bench B [--then-run --method M --prompt ...]`: start the channel broker,
receiver and nodes on this host under a supervisor (logs in <run dir>/logs) and be their
controller. Prints the addresses the roles use and the run directory. Without --then-run it
stays up until Ctrl-C; with it, it runs the job and tears down. A role that dies while starting
stops everything within seconds, quoting the end of its log."""
from __future__ import annotations

from testbed.errors import ConfigError


def register(subparsers) -> None:
    """Add the `up` subcommand."""
    from testbed.commands._options import add_address_args, add_calibration_args, add_run_args
    p = subparsers.add_parser("up", help="start a local bench (all roles) and be its controller",
                              description=__doc__)
    add_address_args(p)
    p.add_argument("--then-run", action="store_true",
                   help="run the job given by the job flags, then tear the bench down")
    add_run_args(p)
    add_calibration_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Bring the bench up; run the job if asked; always tear everything down."""
    from testbed.commands._options import run_dir_from_args
    from testbed.commands.run import (calibration_from_args, csi_interval_from_args,
                                      job_from_args, method_from_args)
    from testbed.net.roles.bench_runner import JobSpec, local_addresses, up_and_run
    from testbed.net.roles.common import resolve_bench, resolve_model_dir
    bench = resolve_bench(args.bench)
    method = method_from_args(args)
    model_dir = resolve_model_dir(args.model)
    job = job_from_args(args, model_dir) if args.then_run else JobSpec("none")
    if job is None:
        raise ConfigError("--then-run needs --prompt/--prompt-ids or --eval-text")
    cal = calibration_from_args(args, bench)
    interval = csi_interval_from_args(args, bench)         # refused before anything starts
    run_dir = run_dir_from_args(args, f"up-{bench.name}")
    return up_and_run(args.bench, bench, str(model_dir), method, job, run_dir,
                      args.register_timeout, args.streams, csi=args.csi, calibration=cal,
                      measure_error=args.measure_error,
                      csi_interval_samples=interval,
                      addresses=local_addresses(args.router, args.pub, args.broker,
                                                args.estimates, args.tap))
