"""`testbed emulate`: emulated radios on a real-time air, each on its own TCP port.

    testbed emulate --bench B [--time-scale k]          every radio of an emulated bench file
    testbed emulate pluto --port P [--mode 1r1t|2r2t] [--loopback-cable-db X] [--time-scale k]
    testbed emulate usrp --port P [--usrp-model x310|b210] [--channels N] [--loopback-cable-db X]

Plutos speak iiod (point `iio_info -u ip:127.0.0.1:P`, pyadi-iio or a radio config at the
printed URIs); USRPs are reached by UsrpRadio with device args `type=emulated,addr=HOST:PORT`
(docs/emulated_radios.md). The time scale defaults to the bench's `channel.time_scale`. Faults:
``--cap MBPS`` (throughput cap of every radio), ``--fault AT:NAME:KIND[:ARG]`` (at wall
second AT after start: ``unplug``, ``replug``, ``stall:SECONDS``, ``cap:MBPS``), or the same
as lines on stdin: ``unplug NAME``, ``replug NAME``, ``stall NAME SECONDS``, ``cap NAME MBPS``.
Runs until interrupted (or ``--duration`` seconds).
"""
from __future__ import annotations

import sys
import threading
import time


def register(subparsers) -> None:
    """Add the `emulate` subcommand."""
    from testbed.commands._options import add_bench_arg
    p = subparsers.add_parser("emulate", help="serve emulated radios (PlutoSDR on iiod, USRP "
                                              "behind the UHD API) on a real-time air", description=__doc__)
    p.add_argument("what", nargs="?", choices=["pluto", "usrp"],
                   help="serve a single Pluto or USRP")
    add_bench_arg(p, required=False)
    p.add_argument("--port", type=int, default=None,
                   help="TCP port of the single radio (default: Pluto 30431, USRP 30451)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--name", default=None,
                   help="radio name (sets its serial; default: the kind, pluto or usrp)")
    p.add_argument("--mode", choices=["1r1t", "2r2t"], default="1r1t",
                   help="firmware mode of the single Pluto: one or two RX/TX channels")
    p.add_argument("--usrp-model", choices=["x310", "x300", "b210", "b200"], default="x310",
                   help="model of the single USRP")
    p.add_argument("--channels", type=int, default=1, metavar="N",
                   help="RX/TX channels of the single USRP")
    p.add_argument("--loopback-cable-db", type=float, default=None, metavar="DB",
                   help="TX->RX cable of this gain in dB (negative = attenuation)")
    p.add_argument("--ppm", type=float, default=0.0,
                   help="TCXO frequency offset of the single radio, ppm")
    p.add_argument("--time-scale", type=float, default=None, metavar="K",
                   help="emulated time runs K times slower than the wall clock (default: the "
                        "bench's channel.time_scale, else 1)")
    p.add_argument("--seed", type=int, default=None, help="air seed (default: the bench's)")
    p.add_argument("--cap", type=float, default=None, metavar="MBPS",
                   help="throughput cap per radio, MB/s (default: none)")
    p.add_argument("--fault", action="append", default=[], metavar="AT:NAME:KIND[:ARG]",
                   help="inject a fault AT seconds after start (repeatable), e.g. "
                        "5:pi5-a:stall:3 or 2:pluto:unplug")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    p.set_defaults(func=run)


def _apply(bench, name: str, kind: str, arg: str | None) -> str:
    from testbed.errors import ConfigError
    faults = bench.faults.get(name)
    if faults is None:
        raise ConfigError(f"no emulated radio {name!r}; radios: {sorted(bench.faults)}")
    if kind == "unplug":
        faults.unplug()
    elif kind == "replug":
        faults.replug()
    elif kind == "stall":
        faults.stall(float(arg))
    elif kind == "cap":
        faults.cap(float(arg))
    else:
        raise ConfigError(f"unknown fault {kind!r}; use unplug, replug, stall or cap")
    return f"emulate: {name}: {kind}{' ' + arg if arg else ''}"


def _stdin_loop(bench) -> None:
    for line in sys.stdin:
        words = line.split()
        if len(words) < 2:
            continue
        try:
            print(_apply(bench, words[1], words[0].lower(), words[2] if len(words) > 2
                         else None), flush=True)
        except Exception as exc:  # a typo on stdin must not stop the radios
            print(f"emulate: {exc}", flush=True)


def run(args) -> int:
    """Serve until interrupted or --duration."""
    from sim_backend.emulated_bench import EmulatedBench
    from sim_backend.realtime_air import LOParams, RealtimeAir
    from testbed.errors import ConfigError
    if (args.what is None) == (args.bench is None):
        raise ConfigError("give either --bench B or `pluto --port P` / `usrp --port P`")
    if args.bench:
        from testbed.net.roles.common import resolve_bench
        bench = EmulatedBench.from_bench(resolve_bench(args.bench),
                                         time_scale=args.time_scale, seed=args.seed)
        args.time_scale = bench.air.time_scale
    else:
        args.time_scale = args.time_scale or 1.0
        bench = EmulatedBench(RealtimeAir(1e6, time_scale=args.time_scale,
                                          seed=args.seed or 0))
        name = args.name or args.what
        if args.what == "pluto":
            bench.serve(name, args.host, args.port or 30431, mode=args.mode,
                        lo=LOParams(ppm=args.ppm), loopback_cable_db=args.loopback_cable_db)
        else:
            srv = bench.serve_usrp(name, args.host, args.port or 30451, model=args.usrp_model,
                                   n_channels=args.channels, lo=LOParams(ppm=args.ppm))
            if args.loopback_cable_db is not None:
                port = srv.device.port
                for ch in range(srv.device.n):
                    bench.air.connect(port, ch, port, ch, gain_db=args.loopback_cable_db)
    try:
        faults = []
        for spec in args.fault:
            parts = spec.split(":")
            if len(parts) < 3:
                raise ConfigError(f"--fault {spec!r}: use AT:NAME:KIND[:ARG]")
            faults.append((float(parts[0]), parts[1], parts[2],
                           parts[3] if len(parts) > 3 else None))
            if parts[1] not in bench.faults:
                raise ConfigError(f"--fault {spec!r}: no radio {parts[1]!r}; radios: "
                                  f"{sorted(bench.faults)}")
        if args.cap:
            for f in bench.faults.values():
                f.cap(args.cap)
        for name, srv in bench.servers.items():
            dev = srv.device
            serial, mode = ((dev.serial, dev.model) if hasattr(dev, "model")
                            else (dev.ctx.serial, dev.mode))
            print(f"emulate: {name} {srv.uri} serial {serial} ({mode}, time scale "
                  f"{args.time_scale:g})", flush=True)
        print("emulate: ready", flush=True)
        threading.Thread(target=_stdin_loop, args=(bench,), daemon=True).start()
        t0 = time.monotonic()
        for at, name, kind, arg in sorted(faults):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            print(_apply(bench, name, kind, arg), flush=True)
        while args.duration is None or time.monotonic() - t0 < args.duration:
            time.sleep(0.2 if args.duration is None else
                       min(0.2, max(0.0, args.duration - (time.monotonic() - t0))))
    finally:
        bench.close()
    return 0
