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


def line_plot(path: str | os.PathLike, x: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
              xlabel: str, ylabel: str, title: str, logy: bool = False,
              dashed: Mapping[str, Sequence[float | None]] | None = None,
              hlines: Mapping[str, float] | None = None) -> Path:
    """Plot one line per entry of ``series`` (name -> y values over ``x``; None = missing point),
    optional ``dashed`` lines (e.g. predictions) and horizontal reference lines ``hlines``
    (name -> y). ``logy`` uses a log y axis (non-positive values are dropped). Writes a PNG."""
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
    if logy:
        ax.set_yscale("log")
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
    ax1.scatter(ideal.real, ideal.imag, s=6, alpha=0.6, label="ideal sum")
    ax1.scatter(received.real, received.imag, s=6, alpha=0.6, label="received aggregate")
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
