"""Impaired demo vs ideal demo, side by side: wall and CPU seconds of ``testbed demo
--impairments PRESET`` (default options otherwise: fresh calibration of every bench, estimated
CSI) against ``testbed demo --csi estimated`` (the ideal bench with the same CSI mode), run
alternately in fresh processes, and their ratio (issue 15's target: impaired <= 1.5x ideal).
Also prints each run's per-method table wall seconds and its perplexities, so a speed change
that moved the results shows.

Run: ``python benchmarks/bench_impaired_demo.py [--pairs 2] [--impairments uncalibrated-pluto]``
(about a minute per pair on a 2-core machine).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ROW = re.compile(r"^(exact|digital|fdma|aircomp-zf-sdr|aircomp-mmse)\s+(\d+\.\d+)\s.*\s(\d+\.\d+)$")


def run_demo(extra: list[str], out: Path) -> dict:
    """One ``testbed demo --no-plots --no-progress`` with ``extra`` options in a fresh process:
    wall seconds, CPU seconds of the child (user + sys), and {method: (ppl, table wall s)}."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "testbed.cli", "demo", "--no-plots", "--no-progress",
            "--out", str(out), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rows = {}
    for line in done.stdout.splitlines():
        m = _ROW.match(line.strip())
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2, help="(ideal, impaired) pairs, alternating")
    p.add_argument("--impairments", default="uncalibrated-pluto",
                   help="impairment preset of the impaired run")
    p.add_argument("--json", type=Path, help="also write the runs to this JSON file")
    args = p.parse_args()
    if args.pairs < 1:
        raise SystemExit("--pairs must be >= 1")
    runs: dict[str, list[dict]] = {"ideal": [], "impaired": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            runs["ideal"].append(run_demo(["--csi", "estimated"], Path(tmp)))
            runs["impaired"].append(run_demo(["--impairments", args.impairments], Path(tmp)))
            print(f"pair {i + 1}: ideal {runs['ideal'][-1]['wall_s']:.1f} s, impaired "
                  f"{runs['impaired'][-1]['wall_s']:.1f} s", file=sys.stderr)
    print(f"## impaired demo ({args.impairments}) vs ideal demo (CSI estimated), "
          f"{args.pairs} alternating pair(s), fresh processes")
    print("| run | wall s (median) | CPU s (median) | fdma / zf-sdr / mmse table rows, wall s | "
          "fdma / zf-sdr / mmse perplexity |")
    print("|---|---|---|---|---|")
    med = {}
    for name, rs in runs.items():
        med[name] = (statistics.median(r["wall_s"] for r in rs),
                     statistics.median(r["cpu_s"] for r in rs))
        last = rs[-1]["rows"]
        methods = ("fdma", "aircomp-zf-sdr", "aircomp-mmse")
        walls = " / ".join(f"{last[m][1]:.1f}" if m in last else "-" for m in methods)
        ppls = " / ".join(f"{last[m][0]:.4f}" if m in last else "-" for m in methods)
        print(f"| {name} | {med[name][0]:.1f} | {med[name][1]:.1f} | {walls} | {ppls} |")
    print(f"| ratio impaired / ideal | **{med['impaired'][0] / med['ideal'][0]:.2f}x** | "
          f"{med['impaired'][1] / med['ideal'][1]:.2f}x | | |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
