"""Small matplotlib (Agg) helpers for experiment figures: one function per figure kind, each
writing a PNG and returning its path. Axis labels must carry units; pass them in."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402


def plain_log_axis(ax, values: Sequence[float], axis: str = "y") -> None:
    """A readable axis for positive ``values`` spanning a wide range (perplexity): log scale
    with ticks at 1-2-5 x 10^k labelled as plain numbers (``20``, ``0.5``, not ``2x10^1``); a
    linear axis when the values span less than a factor 3 (a log axis would show no tick)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], float)
    which = ax.yaxis if axis == "y" else ax.xaxis
    if v.size and v.max() / v.min() < 3.0:
        which.set_major_formatter(ticker.ScalarFormatter(useOffset=False))
        return
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    which.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    which.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    which.set_minor_formatter(ticker.NullFormatter())


def integer_axis(ax, values: Sequence[float] | None = None, axis: str = "x") -> None:
    """Integer ticks only (node counts): at ``values`` when given, else wherever integers fall."""
    which = ax.xaxis if axis == "x" else ax.yaxis
    if values is not None:
        which.set_major_locator(ticker.FixedLocator(sorted({int(v) for v in values})))
    else:
        which.set_major_locator(ticker.MaxNLocator(integer=True))
    which.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{int(round(x))}"))


def line_plot(path: str | os.PathLike, x: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
              xlabel: str, ylabel: str, title: str, logy: bool = False,
              dashed: Mapping[str, Sequence[float | None]] | None = None,
              hlines: Mapping[str, float] | None = None, plain_logy: bool = False,
              integer_x: bool = False) -> Path:
    """Plot one line per entry of ``series`` (name -> y values over ``x``; None = missing point),
    optional ``dashed`` lines (e.g. predictions) and horizontal reference lines ``hlines``
    (name -> y). ``logy`` uses a log y axis (non-positive values are dropped); ``plain_logy``
    the readable one of `plain_log_axis` (perplexity); ``integer_x`` integer x ticks at ``x``
    (node counts, rounds). Writes a PNG."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    xs = np.asarray(x, dtype=float)

    def _clean(y):
        y = np.array([np.nan if v is None else float(v) for v in y])
        if logy:
            y[y <= 0] = np.nan
        return y

    colors = {}
    for name, y in series.items():
        (line,) = ax.plot(xs, _clean(y), marker="o", label=name)
        colors[name] = line.get_color()
    for name, y in (dashed or {}).items():
        ax.plot(xs, _clean(y), linestyle="--", marker="x", color=colors.get(name), label=f"{name} (predicted)")
    for name, y in (hlines or {}).items():
        if y is None or (logy and y <= 0):
            continue
        color = colors.setdefault(name, f"C{len(colors) % 10}")
        ax.axhline(float(y), linestyle=":", color=color, label=name)
    if plain_logy:
        every = [v for ys in (*series.values(), *(dashed or {}).values()) for v in ys]
        plain_log_axis(ax, every + [v for v in (hlines or {}).values() if v is not None])
    elif logy:
        ax.set_yscale("log")
    if integer_x:
        integer_axis(ax, xs if xs.size <= 20 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def constellation_plot(path: str | os.PathLike, ideal: np.ndarray, received: np.ndarray, *, title: str,
                       max_points: int = 2000) -> Path:
    """Scatter of received complex symbols vs the ideal ones (same shape, any), plus a panel of
    received vs ideal real and imaginary parts against the identity line. At most ``max_points``
    symbols are drawn (the first ones). Symbols are in normalized units (unit mean power per node)."""
    ideal = np.asarray(ideal).ravel()[:max_points]
    received = np.asarray(received).ravel()[:max_points]
    if ideal.shape != received.shape:
        raise ValueError(f"ideal and received must have the same size, got {ideal.size} and {received.size}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.6))
    # received first, ideal on top as small black crosses: both sets stay visible
    ax1.scatter(received.real, received.imag, s=8, alpha=0.45, color="C1",
                label="received aggregate", zorder=2)
    ax1.scatter(ideal.real, ideal.imag, s=10, marker="x", linewidths=0.8, color="k", alpha=0.8,
                label="ideal sum", zorder=3)
    ax1.set_xlabel("in-phase (normalized units)")
    ax1.set_ylabel("quadrature (normalized units)")
    ax1.set_title("constellation")
    ax1.set_aspect("equal", adjustable="datalim")
    ax1.legend(fontsize=8)
    both = np.concatenate([ideal.real, ideal.imag])
    got = np.concatenate([received.real, received.imag])
    ax2.scatter(both, got, s=4, alpha=0.5)
    lim = float(np.max(np.abs(np.concatenate([both, got])))) if both.size else 1.0
    ax2.plot([-lim, lim], [-lim, lim], "k--", linewidth=1, label="received = ideal")
    ax2.set_xlabel("ideal component (normalized units)")
    ax2.set_ylabel("received component (normalized units)")
    ax2.set_title("received vs ideal (I and Q)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bench_run(run_dir: str | os.PathLike) -> list[Path]:
    """The figures of a bench run (`testbed run`) from its ``results.json``, in the demo's
    style: the all-reduce MSE per round measured by the measurement tap (``--measure-error``)
    against the design's mean prediction (``mse_per_round.png``) and the per-token (generation)
    or per-window (perplexity) latency (``latency.png``). Returns the paths written (none when
    there is nothing to plot)."""
    import json

    run_dir = Path(run_dir)
    res_path = run_dir / "results.json"
    if not res_path.is_file():
        return []
    res = json.loads(res_path.read_text())
    out = []
    air = res.get("allreduce") or {}
    mse = (res.get("measurement_tap") or {}).get("per_round_mse_tensor") or []
    if mse:
        pred = air.get("mse_tensor_predicted_mean")
        out.append(line_plot(
            run_dir / "mse_per_round.png", range(1, len(mse) + 1), {"measured": mse},
            hlines={"predicted (mean)": pred} if pred else None, logy=True, integer_x=True,
            xlabel="all-reduce round", ylabel="all-reduce MSE per real value (tensor domain, linear)",
            title=f"{res.get('method')} on bench {res.get('bench')}: measured MSE per round"))
    lat = res.get("per_token_latency_s") or res.get("per_window_latency_s") or []
    if lat:
        what = "token" if res.get("per_token_latency_s") else "window"
        out.append(line_plot(
            run_dir / "latency.png", range(1, len(lat) + 1),
            {res.get("method") or "run": [1e3 * v for v in lat]}, integer_x=True,
            xlabel=f"{what} (1 = first)", ylabel=f"latency per {what} (ms)",
            title=f"{res.get('method')} on bench {res.get('bench')} ({res.get('status')})"))
    return out
