"""`testbed controller --bench B [job flags]`: the controller of roles started separately
(same as `testbed run` without --up; with no job flags it holds the bench up until Ctrl-C)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the `controller` subcommand."""
    from testbed.commands._options import add_address_args, add_calibration_args, add_run_args
    p = subparsers.add_parser("controller", help="be the controller of a bench's role processes",
                              description=__doc__)
    add_address_args(p)
    add_run_args(p)
    add_calibration_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Register roles, assign shards, run the job (if any)."""
    from testbed.commands._options import run_dir_from_args
    from testbed.commands.run import (calibration_from_args, csi_interval_from_args,
                                      job_from_args, method_from_args)
    from testbed.net.roles.bench_runner import JobSpec, run_on_bench
    from testbed.net.roles.common import addresses_from_args, resolve_bench, resolve_model_dir
    bench = resolve_bench(args.bench)
    method = method_from_args(args)
    calibration = calibration_from_args(args, bench)      # refuse a wrong file before waiting
    interval = csi_interval_from_args(args, bench)
    model_dir = resolve_model_dir(args.model)
    job = job_from_args(args, model_dir) or JobSpec("none")
    run_dir = run_dir_from_args(args, f"controller-{bench.name}")
    addresses = addresses_from_args(bench, args)
    print(f"controller: ROUTER {addresses.router}, PUB {addresses.pub}; run directory "
          f"{run_dir}", flush=True)
    return run_on_bench(bench, addresses, model_dir, method, job,
                        run_dir, register_timeout_s=args.register_timeout,
                        n_streams=args.streams, csi=args.csi, calibration=calibration,
                        measure_error=args.measure_error,
                        csi_interval_samples=interval)
