"""The emulated 4-node Pluto bench in steady state: at which time scale does it keep up?

For each time scale k: `testbed emulate --bench pluto_4node_emulated --time-scale k` in one
process (the air and all six emulated Plutos: 4 nodes 1R1T, the receiver's two 2R2T), and one
process per radio running our `PlutoRadio` driver (background streaming, as on a bench) for
``--seconds`` wall seconds after a warm-up. Printed per k: overflows and underflows counted by
the drivers (register 0x80000088 and refill gaps), the emulated sample rate that was
sustained, and whether the bench kept up (no overflow, no underflow). Ports are free ones.

``--cost`` also prints, free of the machine's load, the CPU seconds the emulated radios spend
per emulated second producing RX blocks (air + ADC, no protocol) with silent nodes and with
every node transmitting, per radio, and the time scale that cost alone needs on this many cores.

Usage: .venv/bin/python benchmarks/bench_emulated.py [--scales 1 2 4 8] [--seconds 8] [--cost]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.config.loader import find_config, load_bench


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench_file(tmp: Path) -> Path:
    text = Path(find_config("pluto_4node_emulated", "benches")).read_text()
    for old in sorted(set(re.findall(r"127\.0\.0\.1:(\d{5})", text))):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{_free_port()}")
    p = tmp / "bench.yaml"
    p.write_text(text)
    return p


def _client(cfg_json: str, name: str, warmup_s: float, seconds: float, q) -> None:
    from testbed.config.radio import PlutoConfig
    from testbed.radio.pluto import PlutoRadio
    cfg = PlutoConfig.model_validate_json(cfg_json)
    try:
        radio = PlutoRadio(cfg, node_id=name, background=True).open()
        time.sleep(warmup_s)
        c0, n0 = radio.counters(), radio.now()
        time.sleep(seconds)
        c1, n1 = radio.counters(), radio.now()
        radio.close()
        q.put((name, c1.overflows - c0.overflows, c1.underflows - c0.underflows,
               (n1 - n0) / seconds, ""))
    except Exception as exc:  # reported in the table
        q.put((name, -1, -1, 0.0, f"{type(exc).__name__}: {exc}"[:80]))


def run_scale(bench_path: Path, k: float, warmup_s: float, seconds: float) -> list[tuple]:
    bench = load_bench(bench_path)
    emu = subprocess.Popen([sys.executable, "-m", "testbed.cli", "emulate", "--bench",
                            str(bench_path), "--time-scale", str(k)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in emu.stdout:
            if "ready" in line:
                break
        radios = [(n.id, n.radio) for n in bench.nodes]
        radios += [(f"receiver-{i}", r) for i, r in enumerate(bench.receiver.radio)]
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=_client, args=(r.model_dump_json(), name, warmup_s * k,
                                                   seconds, q)) for name, r in radios]
        for p in procs:
            p.start()
        rows = [q.get(timeout=60 + (warmup_s * k + seconds) * 2) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        return sorted(rows)
    finally:
        emu.terminate()
        emu.wait(timeout=10)


def rx_cost(bench_path: Path, block: int = 16384, blocks: int = 8) -> dict[str, dict]:
    """CPU s per emulated s of `EmulatedPluto.rx_block` per radio, nodes silent / transmitting
    back-to-back 16384-sample pushes (noise-like, -10 dBFS)."""
    import numpy as np

    from sim_backend.emulated_bench import EmulatedBench
    from sim_backend.pluto_emu.context import RX_CORE
    from sim_backend.pluto_emu.device import Buffer
    emu = EmulatedBench.from_bench(load_bench(bench_path), time_scale=1e6)
    try:
        bufs = {}
        for name, srv in emu.servers.items():
            dev = srv.device
            core = dev.ctx.find_device(RX_CORE)
            bufs[name] = (dev, Buffer(core, block, [c for c in core.channels if c.is_scan],
                                      False, None))
            dev.port.tune_rx(915e6)
            dev.port.tune_tx(915e6)
        bench = load_bench(bench_path)
        receivers = set(bufs) - {n.id for n in bench.nodes}
        out = {}
        for case in ("silent", "transmitting"):
            rng = np.random.default_rng(0)
            for name, (dev, _) in bufs.items():
                dev.port.tx_cut(0)
                if case == "transmitting" and name not in receivers:
                    for j in range(-block, (blocks + 2) * block, block):
                        dev.port.tx_push(0.2 * (rng.standard_normal((1, block))
                                                + 1j * rng.standard_normal((1, block))), j)
            out[case] = {}
            for name, (dev, buf) in bufs.items():
                t = time.process_time()
                for k in range(blocks):
                    dev.rx_block(buf, k * block)
                out[case][name] = (time.process_time() - t) / (blocks * block / 1e6)
        return out
    finally:
        emu.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured wall seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up, emulated seconds")
    ap.add_argument("--cost", action="store_true", help="also print the RX block CPU cost")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = _bench_file(Path(tmp))
        if args.cost:
            cost = rx_cost(path)
            names = list(cost["silent"])
            print(f"{'RX block CPU s per emulated s':<30}" + "".join(f"{n:>11}" for n in names)
                  + f"{'total':>9}{'k needed':>10}")
            for case, row in cost.items():
                total = sum(row.values())
                print(f"{case:<30}" + "".join(f"{row[n]:>11.3f}" for n in names)
                      + f"{total:>9.2f}{total / mp.cpu_count():>10.2f}")
        print(f"{'k':>4} {'radio':<11} {'overflows':>9} {'underflows':>10} "
              f"{'samples/s':>10} {'x real time':>11}")
        verdict = []
        for k in args.scales:
            rows = run_scale(path, k, args.warmup, args.seconds)
            ok = all(o == 0 and u == 0 for _, o, u, _, _ in rows)
            for name, o, u, rate, err in rows:
                print(f"{k:>4g} {name:<11} {o:>9} {u:>10} {rate:>10.0f} "
                      f"{rate * k / 1e6:>11.2f} {err}")
            verdict.append((k, ok))
            print(f"{k:>4g} {'bench':<11} {'keeps up' if ok else 'FALLS BEHIND'}", flush=True)
        if not verdict:
            return
        good = [k for k, ok in verdict if ok]
        print(f"smallest time scale that keeps up at 1 MS/s: {min(good) if good else 'none'} "
              f"(target <= 4) on {mp.cpu_count()} cores")


if __name__ == "__main__":
    main()
