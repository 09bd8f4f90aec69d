"""Estimator standard deviation vs the Cramer-Rao bound over SNR (Monte Carlo, seeded).

Run:  .venv/bin/python benchmarks/bench_estimators.py [--trials 1000] [--out docs/figures]
Prints a Markdown table and writes docs/figures/estimators_vs_crb.png.

Setups (per-sample SNR = |a|^2 / noise_var, unit-power references, random phase per trial):
* timing: RRC-shaped (sps 2, roll-off 0.35) Zadoff-Chu 31 (78 samples) in a 128-sample window,
  delay uniform in [10, 40) samples, exact band-limited delay; `estimate_delay` vs `crb_delay`.
* CFO: Zadoff-Chu 31 repeated; Moose on 2 periods (N = 62) and Moose + ML on 4 periods
  (N = 124), CFO uniform in +-0.8 fs / (2 P); vs `crb_cfo_constant_modulus` for the same N.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.estimators.cfo import estimate_cfo, estimate_cfo_repeated  # noqa: E402
from calibration.estimators.crb import crb_cfo_constant_modulus, crb_delay  # noqa: E402
from calibration.estimators.sequences import (repeated_preamble, shaped_preamble,  # noqa: E402
                                              zadoff_chu)
from calibration.estimators.timing import estimate_delay  # noqa: E402

FS = 1.0e6
P = 31
N_WIN = 128


def _noise(rng, shape, var):
    return np.sqrt(var / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def timing_point(snr_db: float, trials: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(bias, std, crb std) of the delay estimate in samples at ``snr_db``."""
    ref = shaped_preamble(zadoff_chu(P))
    k = np.fft.fftfreq(N_WIN) * N_WIN
    tau = rng.uniform(10.0, 40.0, trials)
    amp = np.exp(2j * np.pi * rng.uniform(size=trials))
    clean = amp[:, None] * np.fft.ifft(np.fft.fft(ref, N_WIN)
                                       * np.exp(-2j * np.pi * np.outer(tau, k) / N_WIN), axis=-1)
    var = 10 ** (-snr_db / 10)
    err = estimate_delay(clean + _noise(rng, clean.shape, var), ref) - tau
    return err.mean(), err.std(), np.sqrt(crb_delay(np.pad(ref, (0, N_WIN - ref.size)), var))


def cfo_point(snr_db: float, trials: int, n_periods: int, refined: bool,
              rng: np.random.Generator) -> tuple[float, float, float]:
    """(bias, std, crb std) of the CFO estimate in Hz at ``snr_db``."""
    pilot = repeated_preamble(zadoff_chu(P), n_periods)
    cfo = rng.uniform(-0.8, 0.8, trials) * FS / (2 * P)
    amp = np.exp(2j * np.pi * rng.uniform(size=trials))
    n = np.arange(pilot.size)
    clean = amp[:, None] * pilot * np.exp(2j * np.pi * np.outer(cfo, n) / FS)
    var = 10 ** (-snr_db / 10)
    rx = clean + _noise(rng, clean.shape, var)
    est = estimate_cfo(rx, pilot, P, FS) if refined else estimate_cfo_repeated(rx, P, FS)
    err = est - cfo
    return err.mean(), err.std(), np.sqrt(crb_cfo_constant_modulus(snr_db, pilot.size, FS))


def main(argv: list[str] | None = None) -> int:
    """Run the sweep, print the table, write the figure; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="Monte Carlo trials per point")
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="figure directory")
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    snrs = [5, 10, 15, 20, 25, 30]
    t0 = time.perf_counter()
    rows = {"timing [samples]": [], "CFO Moose, 2x31 [Hz]": [], "CFO Moose+ML, 4x31 [Hz]": []}
    for s in snrs:
        rows["timing [samples]"].append(timing_point(s, args.trials, rng))
        rows["CFO Moose, 2x31 [Hz]"].append(cfo_point(s, args.trials, 2, False, rng))
        rows["CFO Moose+ML, 4x31 [Hz]"].append(cfo_point(s, args.trials, 4, True, rng))
    elapsed = time.perf_counter() - t0
    print(f"| estimator | SNR dB | bias | std | CRB std | std/CRB |\n|---|---|---|---|---|---|")
    for name, vals in rows.items():
        for s, (b, sd, c) in zip(snrs, vals):
            print(f"| {name} | {s} | {b:.3g} | {sd:.3g} | {c:.3g} | {sd / c:.2f} |")
    print(f"\n{args.trials} trials per point, {elapsed:.1f} s")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    t = rows["timing [samples]"]
    axes[0].semilogy(snrs, [v[1] for v in t], "o-", label="estimate_delay std")
    axes[0].semilogy(snrs, [v[2] for v in t], "k--", label="CRB")
    axes[0].set(xlabel="per-sample SNR [dB]", ylabel="std [samples]", title="timing")
    for name, mark in (("CFO Moose, 2x31 [Hz]", "s-"), ("CFO Moose+ML, 4x31 [Hz]", "o-")):
        v = rows[name]
        axes[1].semilogy(snrs, [x[1] for x in v], mark, label=name.split(" [")[0] + " std")
        axes[1].semilogy(snrs, [x[2] for x in v], "--", label="CRB N=%d" % (62 if "2x" in name else 124))
    axes[1].set(xlabel="per-sample SNR [dB]", ylabel="std [Hz] at fs = 1 MHz", title="CFO")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "estimators_vs_crb.png", dpi=110)
    print(f"figure: {out / 'estimators_vs_crb.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
