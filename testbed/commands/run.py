"""`testbed run --bench B --method M (--prompt T --max-new-tokens K | --eval-text F|heldout
--eval-windows N) [--up]`: generate or measure perplexity over a bench's role processes.

Without ``--up`` this process is the controller of roles started elsewhere (`testbed node`,
`testbed receiver`, `testbed channel`, pointed at the bench's controller address); with
``--up`` it starts them itself on loopback. Writes a run directory with results.json and the
plots of the demo that apply to one method."""
from __future__ import annotations

from pathlib import Path

from testbed.errors import ConfigError


def register(subparsers) -> None:
    """Add the `run` subcommand."""
    from testbed.commands._options import add_address_args, add_calibration_args, add_run_args
    p = subparsers.add_parser("run", help="generate / measure perplexity over a bench",
                              description=__doc__)
    add_address_args(p)
    add_run_args(p)
    add_calibration_args(p)
    p.add_argument("--up", action="store_true",
                   help="start the bench's role processes first (on this host)")
    p.set_defaults(func=run)


def method_from_args(args) -> str:
    """``--method`` in its canonical spelling (old spellings warn)."""
    from testbed.commands._options import canonical_method
    from testbed.methods import METHOD_NAMES
    return canonical_method(args.method, METHOD_NAMES)


def job_from_args(args, model_dir):
    """Build the `JobSpec` from the flags (tokenizing with the checkpoint's tokenizer)."""
    from testbed.net.roles.bench_runner import JobSpec
    wants_gen = args.prompt is not None or args.prompt_ids is not None
    if wants_gen and args.eval_text:
        raise ConfigError("give either --prompt/--prompt-ids (generation) or --eval-text "
                          "(perplexity), not both")
    if args.prompt_ids:
        return JobSpec("generate", prompt_ids=list(args.prompt_ids),
                       max_new_tokens=args.max_new_tokens)
    if args.prompt is not None:
        from testbed.llm.loading import load_tokenizer
        ids = [int(i) for i in load_tokenizer(model_dir).encode(args.prompt)]
        return JobSpec("generate", prompt_ids=ids, max_new_tokens=args.max_new_tokens,
                       prompt_text=args.prompt)
    if args.eval_text:
        if args.eval_text == "heldout":
            from testbed.llm.textdata import heldout_tokens
            ids = heldout_tokens().tolist()
        else:
            from testbed.llm.loading import load_tokenizer
            text = Path(args.eval_text).read_text(encoding="utf-8")
            ids = [int(i) for i in load_tokenizer(model_dir).encode(text)]
        return JobSpec("perplexity", eval_ids=ids, window=args.window,
                       n_windows=args.eval_windows)
    return None


def csi_interval_from_args(args, bench) -> int:
    """``--csi-interval-ms`` in samples of the receiver's clock (0: a sounding every round);
    ConfigError when negative, or on a simulated bench that draws a new channel every round
    (every reused estimate would be stale)."""
    ms = float(getattr(args, "csi_interval_ms", 0.0) or 0.0)
    if ms < 0:
        raise ConfigError(f"--csi-interval-ms must be >= 0 (ms), got {ms:g}")
    if ms and bench.new_channel_every_round:
        raise ConfigError(f"--csi-interval-ms {ms:g}: bench {bench.name!r} draws a new channel "
                          "every round (channel.realization: per_round), so every reused channel "
                          "estimate would be stale; set channel.realization: fixed or drop the "
                          "option")
    return int(round(ms * 1e-3 * float(bench.receiver.primary_radio.sample_rate_hz)))


def calibration_from_args(args, bench):
    """The checked `BenchCalibration` of ``--calibration`` (None without it); refuses a file
    made for another bench (CalibrationMismatchError) before anything starts."""
    path = getattr(args, "calibration", None)
    if path is None:
        if getattr(args, "strict_calibration", False) or getattr(args, "calibration_max_age", None):
            raise ConfigError("--strict-calibration / --calibration-max-age need --calibration FILE")
        return None
    from testbed.net.roles.bench_calibration import load_bench_calibration
    return load_bench_calibration(path, bench, max_age_s=args.calibration_max_age,
                                  strict=args.strict_calibration)


def run(args) -> int:
    """Run the job; exit 1 (with the reason) if a role was lost mid-run."""
    from testbed.commands._options import run_dir_from_args
    from testbed.net.roles.bench_runner import local_addresses, run_on_bench, up_and_run
    from testbed.net.roles.common import addresses_from_args, resolve_bench, resolve_model_dir
    bench = resolve_bench(args.bench)
    method = method_from_args(args)
    model_dir = resolve_model_dir(args.model)
    job = job_from_args(args, model_dir)
    if job is None:
        raise ConfigError("nothing to run: give --prompt/--prompt-ids or --eval-text")
    cal = calibration_from_args(args, bench)
    interval = csi_interval_from_args(args, bench)         # refused before anything starts
    run_dir = run_dir_from_args(args, f"bench-{bench.name}-{method}")
    addresses = addresses_from_args(bench, args)
    if args.up:
        code = up_and_run(args.bench, bench, str(model_dir), method, job, run_dir,
                          args.register_timeout, args.streams, csi=args.csi, calibration=cal,
                          measure_error=args.measure_error,
                          csi_interval_samples=interval,
                          addresses=local_addresses(args.router, args.pub, args.broker,
                                                    args.estimates, args.tap))
    else:
        print(f"controller: ROUTER {addresses.router}, PUB {addresses.pub}; run directory "
              f"{run_dir}", flush=True)
        code = run_on_bench(bench, addresses, model_dir, method, job,
                            run_dir, register_timeout_s=args.register_timeout,
                            n_streams=args.streams, csi=args.csi, calibration=cal,
                            measure_error=args.measure_error,
                            csi_interval_samples=interval)
    print_summary(run_dir / "results.json", model_dir)
    if not args.no_plots:
        from testbed.experiments.plots import plot_bench_run
        for path in plot_bench_run(run_dir):
            print(f"wrote {path}")
    print(f"results: {run_dir / 'results.json'}", flush=True)
    return code


def print_summary(results_path: Path, model_dir) -> None:
    """A few lines a person reads first: status, generated text or perplexity, speed, MSE."""
    import json
    if not results_path.is_file():
        return
    res = json.loads(results_path.read_text())
    print(f"status: {res.get('status')}  method: {res.get('method')}  bench: {res.get('bench')}")
    if res.get("generated_ids"):
        try:
            from testbed.llm.loading import load_tokenizer
            text = load_tokenizer(model_dir).decode(res["generated_ids"])
            print(f"generated: {text!r}")
        except Exception:  # the ids are in results.json either way
            print(f"generated ids: {res['generated_ids']}")
    if res.get("ppl") is not None:
        print(f"perplexity: {res['ppl']:.4f} over {res.get('windows_evaluated')} windows")
    if res.get("tokens_per_s_decode"):
        print(f"decode speed: {res['tokens_per_s_decode']:.2f} tokens/s")
    air = res.get("allreduce") or {}
    if res.get("calibration"):
        print(f"calibration: {res['calibration']['path']} (sha256 "
              f"{res['calibration']['sha256'][:12]})")
    tap = res.get("measurement_tap") or {}
    if "mse_tensor_mean" in tap:
        print(f"all-reduce MSE (tensor domain, measurement tap): measured "
              f"{tap['mse_tensor_mean']:.3e}, predicted {air['mse_tensor_predicted_mean']:.3e} "
              f"over {tap['rounds_measured']} rounds")
    elif "mse_tensor_predicted_mean" in air:
        print(f"all-reduce MSE (tensor domain): predicted {air['mse_tensor_predicted_mean']:.3e} "
              f"over {air['rounds']} rounds (measure it with --measure-error)")
    rows = res.get("traffic") or []
    if rows:
        got = sum(r["bytes"] for r in rows if r["process"] == "controller" and r["direction"] == "in")
        print(f"traffic: the controller received {got / 1e3:.1f} kB in all")
    for line in stream_health_lines(res):
        print(line)
    rss = res.get("process_rss_bytes") or {}
    if rss:
        print("memory (RSS, MiB): " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in rss.items()))


def stream_health_lines(res: dict) -> list[str]:
    """Summary lines of every radio's stream counters in results.json (``radios``): one line
    when all are clean, else one per radio with errors; counts from before a role's first time
    base (``before_timebase``: a start-up glitch while it loads its model) on a line of their
    own, not as errors of the run; roles whose counters could not be fetched (a failed run) are
    named."""
    from testbed.net.roles.common import HEALTH_COUNTERS
    label = {"stream_breaks": "stream breaks", "resyncs": "re-syncs"}
    radios = res.get("radios") or {}
    lines = []
    bad = []
    early = []
    for role, r in sorted(radios.items()):
        c = dict(r.get("counters", {}))
        before = r.get("before_timebase") or {}
        # what happened before the first time base cannot have hurt a round (it is measured
        # after): counted apart, not as an error of the run
        pre = [f"{label.get(k, k)} {before[k]}" for k in HEALTH_COUNTERS if before.get(k)]
        for k in before:
            if k in c:
                c[k] = c[k] - before[k]
        errs = [f"{label.get(k, k)} {c[k]}" for k in HEALTH_COUNTERS if c.get(k)]
        if errs:
            bad.append(f"  {role} ({r.get('kind')} {r.get('serial')}): " + ", ".join(errs))
        if pre:
            early.append(f"{role} ({', '.join(pre)})")
    if radios:
        shown = [label.get(k, k) for k in HEALTH_COUNTERS
                 if any(k in r.get("counters", {}) for r in radios.values())]
        since = (" since the time base" if any("before_timebase" in r for r in radios.values())
                 else "")
        if bad:
            lines.append(f"stream health: {len(bad)} of {len(radios)} radios had errors{since} "
                         f"({' / '.join(shown)}):")
            lines += bad
        else:
            lines.append(f"stream health: {len(radios)} radios clean{since} (no "
                         f"{', '.join(shown)})")
    if early:
        lines.append("stream health: before the time base was set up (harmless, it is "
                     "measured after them): " + "; ".join(early))
    missing = res.get("radios_unreported") or []
    if missing:
        lines.append(f"stream health: no counters from {', '.join(missing)} (lost or busy when "
                     "the run stopped)")
    return lines
