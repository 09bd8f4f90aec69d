"""Kill -9 or freeze (SIGSTOP) each role of a running AirComp job, ``--trials`` times per case,
and print how often the run named the right role and how long detection took (seconds from
the signal to the role being named, results.json's ``detected_unix``, median and max; target:
right role every time, < 5 s) and the run's end (after the survivors' counters are saved).

Uses the 2-node simulated bench and the fault injection of tests/bench/test_fault_blame.py
(one trial per case runs in CI). Run: ``python benchmarks/bench_fault_blame.py [--trials 20]``
(about 25 s per trial on 2 cores).
"""
from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "bench"))
from test_fault_blame import _alive, run_with_fault  # noqa: E402

from testbed.llm.default_model import ensure_default_model  # noqa: E402

CASES = [("node1", "node"), ("receiver", "receiver"), ("channel", "broker")]
SIGNALS = {"kill9": signal.SIGKILL, "sigstop": signal.SIGSTOP}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="trials per (role, signal)")
    p.add_argument("--after-steps", type=int, default=1,
                   help="inject the fault once this many tokens are saved")
    p.add_argument("--cases", nargs="*", metavar="ROLE:SIGNAL",
                   help="only these cases, e.g. receiver:sigstop channel:kill9 (default: all)")
    args = p.parse_args()
    model_dir = ensure_default_model(progress=False)
    print(f"{'role':>9} {'signal':>8} {'right role':>11} {'detect med [s]':>15} "
          f"{'detect max [s]':>15} {'end max [s]':>12} {'orphans':>8} {'wall/trial [s]':>15}")
    for victim, kind in CASES:
        for sig_name, sig in SIGNALS.items():
            if args.cases and f"{victim}:{sig_name}" not in args.cases:
                continue
            right, times, ends, orphans, t0 = 0, [], [], 0, time.perf_counter()
            for _ in range(args.trials):
                with tempfile.TemporaryDirectory() as tmp:
                    code, res, t_fault, pids = run_with_fault(Path(tmp), model_dir, victim, sig,
                                                              args.after_steps)
                if t_fault is None:
                    continue
                right += int(code == 1 and res.get("culprit") == {"kind": kind, "id": victim})
                times.append(res.get("detected_unix", res["ended_unix"]) - t_fault)
                ends.append(res["ended_unix"] - t_fault)
                orphans += len(_alive(pids))
            wall = (time.perf_counter() - t0) / max(args.trials, 1)
            print(f"{victim:>9} {sig_name:>8} {right:>5} of {len(times):<3} "
                  f"{statistics.median(times) if times else float('nan'):>15.2f} "
                  f"{max(times) if times else float('nan'):>15.2f} "
                  f"{max(ends) if ends else float('nan'):>12.2f} {orphans:>8} {wall:>15.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
