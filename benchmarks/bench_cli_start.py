"""Fast start: wall time of ``testbed --help`` and ``testbed <cmd> --help`` (fresh processes,
median of ``--repeat``) next to a bare ``python -c pass`` and ``import numpy, zmq``, then one
`testbed up` of sim_4node (exact, 1 token): registration seconds (all roles started until all
registered) and each role process's RSS (target: < 5 s, channel and receiver < 150 MiB).

Run: ``python benchmarks/bench_cli_start.py [--repeat 5] [--no-bench]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall_s(argv: list[str], repeat: int) -> float:
    """Median wall time (s) of running ``argv`` ``repeat`` times."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="runs per command (median)")
    p.add_argument("--no-bench", action="store_true", help="skip the `testbed up` part")
    args = p.parse_args()
    py = sys.executable
    base = wall_s([py, "-c", "pass"], args.repeat)
    light = wall_s([py, "-c", "import numpy, zmq"], args.repeat)
    print(f"python -c pass: {base:.3f} s; import numpy, zmq: {light:.3f} s")
    print(f"{'command':<34} {'wall [s]':>9} {'/ numpy+zmq':>12}")
    for cmd in ([], ["channel"], ["receiver"], ["node"], ["run"], ["demo"], ["calibrate"],
                ["experiment", "perplexity"]):
        t = wall_s([py, "-m", "testbed.cli", *cmd, "--help"], args.repeat)
        print(f"{'testbed ' + ' '.join(cmd + ['--help']):<34} {t:>9.3f} {t / light:>12.2f}")
    if args.no_bench:
        return
    from testbed.llm.default_model import ensure_default_model
    from testbed.net.roles.bench_runner import JobSpec, up_and_run
    from testbed.net.roles.common import resolve_bench
    model_dir = ensure_default_model(progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        up_and_run("sim_4node", resolve_bench("sim_4node"), str(model_dir), "exact",
                   JobSpec("generate", prompt_ids=[72, 101], max_new_tokens=1), tmp)
        res = json.loads((Path(tmp) / "results.json").read_text())
    rss = {k: v / 2**20 for k, v in (res.get("process_rss_bytes") or {}).items()}
    print(f"sim_4node registration: {res.get('registration_s', float('nan')):.2f} s (target < 5)")
    print("RSS per role [MiB]: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
          + " (target channel, receiver < 150)")


if __name__ == "__main__":
    main()
