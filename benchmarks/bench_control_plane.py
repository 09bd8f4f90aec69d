"""Control-plane round trip (controller -> node -> controller) on loopback.

An echo agent runs as a separate process. Measured: a small message (a SOUND command with its
round plan, ~250 bytes, echoed) and a PARTIAL carrying 4096 float32 (16 KiB, echoed as
AGGREGATE), each with plain TCP and with CURVE.
Prints median and p99 latency in microseconds, and the CURVE / plain ratio; then the decode cost
of the hostile-input checks (strict JSON with limits, `testbed.strict_json`) against a plain
``json.loads`` of the same header, per message.

Then the messaging floor of a bench all-reduce round (`gather_round_trip`): the controller
sends one AGGREGATE-sized request to each of ``--agents`` echo processes at once and waits for
every reply, the message pattern of an exact round over the multi-process bench (one message
down and one up per node) without the model; `bench_multiprocess.py` prints its bench rounds
against it.

Usage: python benchmarks/bench_control_plane.py [--n 2000] [--agents 4] [--values 128]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from testbed.net.controller import Controller, ControllerConfig
from testbed.net.codec import decode, encode
from testbed.net.schema import Partial, PlanFields, SoundCommand
from testbed.net.supervisor import Supervisor
from testbed.net.transport import CurveServerKeys, generate_keys


def measure(ctl: Controller, make_msg, n: int, warmup: int = 50) -> np.ndarray:
    """Round-trip times of ``n`` sequential requests to node "n0", microseconds."""
    out = np.empty(n)
    for i in range(warmup + n):
        msg = make_msg(i)
        t0 = time.perf_counter()
        ctl.request("n0", msg, timeout_s=10)
        if i >= warmup:
            out[i - warmup] = (time.perf_counter() - t0) * 1e6
    return out


def _small(i: int) -> SoundCommand:
    return SoundCommand(round_id=i, plan=PlanFields(scheme="aircomp", n_nodes=4, n_tx=1,
                                                     n_streams=1, n_values=4096,
                                                     start=1000 * i))


def decode_cost(n: int) -> dict[str, tuple[float, float, float]]:
    """Median microseconds per message: full `decode` (strict JSON + checks + model), the strict
    JSON parse alone (`testbed.strict_json.load_json`) and a plain ``json.loads`` of the same
    header, for both payloads."""
    import json

    from testbed.strict_json import load_json
    tensor = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    out = {}
    for name, msg in (("small", _small(7)), ("4096xf32", Partial(layer=0, site="attn",
                                                                  round_id=7, tensor=tensor))):
        frames = encode(msg)
        t = np.empty((n, 3))
        for i in range(n):
            t0 = time.perf_counter()
            decode(frames)
            t1 = time.perf_counter()
            load_json(frames[0])
            t2 = time.perf_counter()
            json.loads(frames[0])
            t3 = time.perf_counter()
            t[i] = np.diff([t0, t1, t2, t3]) * 1e6
        out[name] = tuple(float(v) for v in np.median(t, axis=0))
    return out


def run_case(run_dir: Path, curve: bool, n: int) -> dict[str, np.ndarray]:
    """Start a controller and one echo agent process, time both payloads."""
    keys = generate_keys(run_dir / "keys", ["n0"]) if curve else None
    server = CurveServerKeys(keys["server_secret"], keys["allowed_dir"]) if curve else None
    cfg = ControllerConfig({"n0": "node"}, "bench", curve=server)
    tensor = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    with Supervisor(run_dir, grace_s=2.0) as sup, Controller(cfg) as ctl:
        args = ["--node-id", "n0", "--router", ctl.router_address, "--pub", ctl.pub_address,
                "--fingerprint", "bench"]
        if curve:
            args += ["--curve-secret", str(keys["client_secret:n0"]),
                     "--curve-server", str(keys["server_public"])]
        sup.start_python("n0", "testbed.net.echo", args)
        ctl.wait_for_peers(timeout_s=60)
        small = measure(ctl, lambda i: _small(i), n)
        big = measure(ctl, lambda i: Partial(layer=0, site="attn", round_id=i, tensor=tensor), n)
        ctl.shutdown("benchmark done")
    return {"small": small, "4096xf32": big}


def gather_round_trip(run_dir: Path, n_agents: int, n_values: int, n: int,
                      warmup: int = 50) -> np.ndarray:
    """Wall times (microseconds) of ``n`` gather rounds: a PARTIAL of ``n_values`` float32 to
    each of ``n_agents`` echo agent processes at once (plain TCP), every AGGREGATE back."""
    names = [f"n{i}" for i in range(n_agents)]
    cfg = ControllerConfig({name: "node" for name in names}, "bench")
    tensor = np.random.default_rng(0).standard_normal(n_values).astype(np.float32)
    out = np.empty(n)
    with Supervisor(run_dir, grace_s=2.0) as sup, Controller(cfg) as ctl:
        for name in names:
            sup.start_python(name, "testbed.net.echo",
                             ["--node-id", name, "--router", ctl.router_address,
                              "--pub", ctl.pub_address, "--fingerprint", "bench"])
        ctl.wait_for_peers(timeout_s=60)
        for i in range(warmup + n):
            msgs = {name: Partial(layer=0, site="attn", round_id=i, tensor=tensor)
                    for name in names}
            t0 = time.perf_counter()
            ctl.gather(msgs, timeout_s=10)
            if i >= warmup:
                out[i - warmup] = (time.perf_counter() - t0) * 1e6
        ctl.shutdown("benchmark done")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="round trips per case")
    p.add_argument("--agents", type=int, default=4, help="echo processes of the gather round")
    p.add_argument("--values", type=int, default=128,
                   help="float32 values per gather message (128: a decode step of the default "
                        "model)")
    args = p.parse_args()
    if args.n < 1 or args.agents < 1 or args.values < 1:
        raise SystemExit("--n, --agents and --values must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for curve in (False, True):
            res = run_case(Path(tmp) / ("curve" if curve else "plain"), curve, args.n)
            for payload, us in res.items():
                rows[(payload, curve)] = (np.median(us), np.percentile(us, 99))
    print(f"control-plane round trip, loopback, n={args.n} per case (microseconds)")
    print(f"{'payload':<10} {'security':<8} {'median':>9} {'p99':>9}")
    for (payload, curve), (med, p99) in rows.items():
        print(f"{payload:<10} {'CURVE' if curve else 'plain':<8} {med:9.0f} {p99:9.0f}")
    for payload in ("small", "4096xf32"):
        ratio = rows[(payload, True)][0] / rows[(payload, False)][0]
        print(f"CURVE/plain median ratio, {payload}: {ratio:.2f}")
    print("decode per message (microseconds, median): full decode, strict JSON, json.loads")
    for payload, (full, strict, plain) in decode_cost(args.n).items():
        print(f"{payload:<10} decode {full:7.1f}  strict JSON {strict:6.1f}  json.loads "
              f"{plain:6.1f}  strict/plain {strict / plain:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        us = gather_round_trip(Path(tmp), args.agents, args.values, args.n)
    print(f"gather round, {args.agents} echo processes, {args.values} float32 each way, plain "
          f"TCP: median {np.median(us):.0f} us, p90 {np.percentile(us, 90):.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
