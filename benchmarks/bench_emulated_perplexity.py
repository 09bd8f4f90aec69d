"""Issue 14's done-when figure: perplexity on an emulated hardware bench, run exactly as
docs/bench.md's multi-host recipe, against the ideal simulated bench.

1. `testbed emulate --bench B` (the radios on a real-time air; the bench file's impairments).
2. Calibration: `testbed receiver` and one `testbed node` per node (no checkpoint: slices come
   from the controller), then `testbed calibrate --bench B`; the roles stop when it is done.
3. Per method: the roles again, then `testbed controller --bench B --method M --csi estimated
   --eval-text heldout --eval-windows W --calibration FILE`.
4. The ideal simulated bench on the same channels: the same nodes, split, antennas and SNR, and
   the emulated air's one fading block (``channel.realization: fixed``), as a lock-step
   simulated bench without impairments (`testbed run --up`, the same job, `--csi estimated`).

Printed: the calibration residuals, per method the perplexity on the emulated bench and on the
ideal one with their ratio (target within 3 %), with ``--measure-error`` the measured / predicted
all-reduce MSE of both and the emulated receiver's measured MSE over the ideal one's (target
<= 1.5 for the 4-antenna array) -- also against an ideal receiver on the channels with the
nodes' transmit-chain gain errors folded in (the preset's +-2 dB: on the node side, part of what
any receiver sees) --, the partial-sum bytes on the controller's
sockets (target 0: partials travel over the air only) and each radio's stream counters.
Every process runs on this host on the bench file's ports (shipped benches: 5555.., 30431..).

Usage: .venv/bin/python benchmarks/bench_emulated_perplexity.py [--bench pluto_4node_emulated]
           [--windows 8] [--methods aircomp-zf-sdr,aircomp-mmse] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from testbed.config.loader import find_config, load_bench

PARTIAL_TYPES = ("partial", "tap_partial")


def _cli(args: list[str], log: Path) -> subprocess.Popen:
    out = open(log, "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "testbed.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True)
    finally:
        out.close()


def _stop(procs: list[subprocess.Popen], timeout_s: float = 20.0) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _roles(bench_path: Path, bench, logs: Path) -> list[subprocess.Popen]:
    """`testbed receiver` and every `testbed node` of the bench, each with its own radio."""
    procs = [_cli(["receiver", "--bench", str(bench_path)], logs / "receiver.log")]
    for n in bench.nodes:
        procs.append(_cli(["node", "--bench", str(bench_path), "--id", n.id],
                          logs / f"{n.id}.log"))
    return procs


def _controller(args: list[str], log: Path, roles: list[subprocess.Popen],
                timeout_s: float) -> int:
    ctl = _cli(args, log)
    try:
        code = ctl.wait(timeout_s)
    except subprocess.TimeoutExpired:
        ctl.terminate()
        code = ctl.wait(30)
    _stop(roles)
    return code


def node_chain_gains_db(bench) -> dict[str, float]:
    """Each node's transmit-chain gain error (dB) as the emulated air draws it
    (`sim_backend.emulated_bench.bench_impairments`): part of the channel a receiver sees from
    that node. Empty without a preset."""
    from sim_backend.emulated_bench import bench_impairments
    imp = bench_impairments(bench)
    if imp is None:
        return {}
    return {n.id: float(p.gain_error_db) for n, p in zip(bench.nodes, imp.tx)}


def _ideal_bench(bench, path: Path, node_gains_db: dict[str, float] | None = None) -> Path:
    """The bench as an ideal simulated bench: same nodes, split, antennas and channel section,
    radios kind sim, no impairments, the emulated air's one fading block for the whole run.
    ``node_gains_db``: the nodes' transmit-chain gain errors (dB, `node_chain_gains_db`) folded
    into their path loss, i.e. the channels the emulated receiver sees from each node (the
    receiver array's comparison: everything on the node side equal, only the receiver ideal)."""
    data = bench.model_dump(mode="json", exclude_none=True)
    rx = bench.receiver.primary_radio
    sim = {"kind": "sim", "sample_rate_hz": rx.sample_rate_hz,
           "center_freq_hz": rx.center_freq_hz, "n_tx_channels": 1}
    for n in data["nodes"]:
        n["radio"] = dict(sim, n_rx_channels=1)
    data["receiver"]["radio"] = dict(sim, n_rx_channels=bench.receiver.n_antennas)
    data["name"] = f"{bench.name}_ideal_sim"
    ch = data["channel"]
    ch.pop("impairments", None)
    ch.pop("time_scale", None)
    ch["realization"] = "fixed"
    if node_gains_db:
        loss = dict(ch.get("path_loss_db") or {})
        for node_id, g in node_gains_db.items():
            loss[node_id] = float(loss.get(node_id, 0.0)) - g
        ch["path_loss_db"] = loss
        data["name"] += "_node_chains"
    path.write_text(yaml.safe_dump(data))
    return path


def _results(folder: Path) -> Path | None:
    """The results.json of the one run directory `--out folder` created."""
    found = sorted(folder.glob("*/results.json"))
    return found[-1] if found else None


def _summary(results: Path | None) -> dict:
    if results is None:
        return {}
    res = json.loads(results.read_text())
    partial = 0
    for row in res.get("traffic", []):
        if row.get("process") == "controller" and row.get("type") in PARTIAL_TYPES:
            partial += int(row.get("bytes", 0))
    radios = {p: r.get("counters", {}) for p, r in (res.get("radios") or {}).items()}
    tap = res.get("measurement_tap") or {}
    air = res.get("allreduce") or {}
    mse = None
    if "mse_tensor_mean" in tap and air.get("mse_tensor_predicted_mean"):
        mse = {"measured": tap["mse_tensor_mean"], "predicted": air["mse_tensor_predicted_mean"],
               "ratio": tap["mse_tensor_mean"] / air["mse_tensor_predicted_mean"]}
    rx = (res.get("process_stats") or {}).get(res.get("registered", {}) and "receiver", {})
    clip = None
    if rx.get("window_components"):
        clip = rx["adc_full_scale_components"] / rx["window_components"]
    return {"status": res.get("status"), "ppl": res.get("ppl"), "partial_bytes": partial,
            "mse": mse, "rx_full_scale_fraction": clip,
            "radios": radios, "rounds": (res.get("allreduce") or {}).get("rounds"),
            "syncs": len((res.get("allreduce") or {}).get("timebase_syncs") or []),
            "run_s": res.get("run_s"), "error": res.get("error")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default="pluto_4node_emulated")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--methods", default="aircomp-zf-sdr,aircomp-mmse")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=3600.0, help="per controller, seconds")
    ap.add_argument("--time-scale", type=float, default=None,
                    help="the emulated air's time scale (default: the bench file's); raise it "
                         "on a loaded machine (the radios must keep up in real time)")
    ap.add_argument("--ideal-only", action="store_true",
                    help="reuse the emulated runs already in --out; run the ideal bench only")
    ap.add_argument("--measure-error", action="store_true",
                    help="the emulated runs also copy the partials to the measurement sink "
                         "(never read by the computation): measured / predicted all-reduce MSE "
                         "of the receiver (the prediction is what an ideal receiver gets on the "
                         "same estimated channels and noise)")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="bench_emulated_ppl_"))
    out.mkdir(parents=True, exist_ok=True)
    bench_path = Path(find_config(a.bench, "benches"))
    bench = load_bench(bench_path)
    methods = a.methods.split(",")
    job = ["--csi", "estimated", "--eval-text", "heldout", "--eval-windows", str(a.windows),
           "--no-plots"]
    print(f"bench {bench.name}, {a.windows} windows, methods {methods}; logs and runs in {out}",
          flush=True)
    rows, cal_file = [], out / "cal" / f"calibration_{bench.name}.json"
    if a.ideal_only:
        rows = [(m, _summary(_results(out / f"emulated-{m}"))) for m in methods]
    else:
        code = _emulated(a, bench_path, bench, methods, job, out, cal_file, rows)
        if code:
            return code
    return _ideal(bench, methods, job, out, rows, a.measure_error)


def _emulated(a, bench_path, bench, methods, job, out, cal_file, rows) -> int:
    """Steps 1-3 (module docstring); appends (method, summary) to ``rows``; 0 on success."""
    scale = [] if a.time_scale is None else ["--time-scale", str(a.time_scale)]
    emu = _cli(["emulate", "--bench", str(bench_path), *scale], out / "emulate.log")
    try:
        deadline = time.monotonic() + 300
        while "emulate: ready" not in (out / "emulate.log").read_text():
            if emu.poll() is not None or time.monotonic() > deadline:
                print((out / "emulate.log").read_text(), file=sys.stderr)
                return 1
            time.sleep(0.2)
        t0 = time.monotonic()
        (out / "cal").mkdir(exist_ok=True)
        code = _controller(["calibrate", "--bench", str(bench_path), "--out", str(out / "cal"),
                            "--no-plots"], out / "cal" / "calibrate.log",
                           _roles(bench_path, bench, out / "cal"), a.timeout)
        print(f"calibrate: exit {code} in {time.monotonic() - t0:.0f} s", flush=True)
        if code != 0:
            print((out / "cal" / "calibrate.log").read_text()[-3000:], file=sys.stderr)
            return 1
        cal = json.loads(cal_file.read_text())
        print("residuals:", json.dumps(cal["residual"]), flush=True)
        for m in methods:
            d = out / f"emulated-{m}"
            d.mkdir(exist_ok=True)
            t0 = time.monotonic()
            tap = ["--measure-error"] if a.measure_error else []
            code = _controller(["controller", "--bench", str(bench_path), "--method", m, *job, *tap,
                                "--calibration", str(cal_file), "--out", str(d)],
                               d / "controller.log", _roles(bench_path, bench, d), a.timeout)
            s = _summary(_results(d))
            print(f"emulated {m}: exit {code}, {time.monotonic() - t0:.0f} s: {s}", flush=True)
            rows.append((m, s))
    finally:
        _stop([emu], 0.0)
    return 0


def _ideal(bench, methods, job, out, rows, measure_error: bool = False) -> int:
    """Step 4 and the table (with ``measure_error`` the ideal runs use the tap too: the
    emulated receiver's measured MSE against the ideal receiver's on the same channels)."""
    ideal = _ideal_bench(bench, out / "ideal.yaml")
    gains = node_chain_gains_db(bench) if measure_error else {}
    chains = (_ideal_bench(bench, out / "ideal_node_chains.yaml", node_gains_db=gains)
              if gains else None)
    tap = ["--measure-error"] if measure_error else []

    def run(path: Path, name: str) -> dict:
        d = out / name
        if _results(d) is None:          # a run already in --out is reused (--ideal-only)
            with open(out / f"{name}.log", "w") as log:
                subprocess.run([sys.executable, "-m", "testbed.cli", "run", "--up", "--bench",
                                str(path), "--method", m, *job, *tap, "--out", str(d)],
                               stdout=log, stderr=subprocess.STDOUT, check=False)
        return _summary(_results(d))

    table, chain_mse = [], {}
    for m, s in rows:
        ref = run(ideal, f"ideal-{m}")
        if chains is not None:
            chain_mse[m] = run(chains, f"ideal-node-chains-{m}").get("mse")
        ratio = (s.get("ppl") or float("nan")) / (ref.get("ppl") or float("nan"))
        table.append((m, s.get("ppl"), ref.get("ppl"), ratio, s.get("partial_bytes"),
                      s.get("syncs"), s.get("radios"), s.get("mse"), ref.get("mse")))
    print("\n| method | emulated ppl | ideal simulated ppl | ratio | partial bytes on the "
          "controller | time-base syncs |")
    print("|---|---|---|---|---|---|")
    for m, p, r, q, pb, sy, *_ in table:
        print(f"| {m} | {p} | {r} | {q:.4f} | {pb} | {sy} |")
    for m, *_, radios, mse, ideal_mse in table:
        print(f"{m} stream counters: {json.dumps(radios)}")
        if mse:
            print(f"{m} all-reduce MSE (tensor domain): measured {mse['measured']:.4e}, "
                  f"predicted {mse['predicted']:.4e}, ratio {mse['ratio']:.3f}")
        if mse and ideal_mse:
            print(f"{m} ideal receiver on the same channels: measured {ideal_mse['measured']:.4e}, "
                  f"predicted {ideal_mse['predicted']:.4e}; emulated / ideal measured MSE "
                  f"{mse['measured'] / ideal_mse['measured']:.3f} (target <= 1.5)")
        c = chain_mse.get(m)
        if mse and c:
            print(f"{m} ideal receiver on the channels with the nodes' chain gains "
                  f"{json.dumps(gains)} dB: measured {c['measured']:.4e}, "
                  f"predicted {c['predicted']:.4e}; emulated / ideal measured MSE "
                  f"{mse['measured'] / c['measured']:.3f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
