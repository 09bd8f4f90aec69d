"""Edge-node models: memory, compute speed, energy per FLOP, energy budget per token, radio power.

FLOP convention used throughout `testbed.optim`: one multiply-accumulate (MAC) is **2 FLOPs**.
A dense layer with W parameters applied to one token costs W MACs = 2 W FLOPs. So a node that
holds a fraction m_n of a model with s_tot split parameters spends 2 * m_n * s_tot FLOPs per
token; with `energy_per_flop_j` = e_n that is 2 * e_n * m_n * s_tot joules (the paper's
"e_n m_n s_tot" with e_n read as energy per parameter-operation = 2 FLOPs).

The preset numbers (Raspberry Pi 5, Jetson Orin Nano 8GB, Jetson Orin NX 16GB) and where they
come from are in ``docs/node_presets.md``; sustained FLOP/s and J/FLOP are estimates derived from
spec-sheet peaks and board power, not measurements. `measure_compute_flops` measures the machine
it runs on, for real nodes.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass


GB = 1e9  #: decimal gigabyte, bytes


@dataclass(frozen=True)
class NodeModel:
    """One edge node as the optimizer sees it.

    Attributes:
        name: label, e.g. ``"pi5-0"``.
        memory_bytes: memory available for model weights, bytes (board RAM minus OS/runtime).
        compute_flops: sustained fp32 matmul throughput, FLOP/s (1 MAC = 2 FLOPs).
        energy_per_flop_j: energy per FLOP while computing, J/FLOP (board power / sustained FLOP/s).
        energy_budget_per_token_j: E_n^max, total energy the node may spend per generated token
            (computation + transmission), J.
        radio_power_limit_w: maximum transmit power of the node's radio, W (RF output). ``None``
            means no cap beyond the energy budget.
    """

    name: str
    memory_bytes: float
    compute_flops: float
    energy_per_flop_j: float
    energy_budget_per_token_j: float
    radio_power_limit_w: float | None = None

    def __post_init__(self) -> None:
        for field in ("memory_bytes", "compute_flops", "energy_per_flop_j",
                      "energy_budget_per_token_j"):
            value = getattr(self, field)
            if not value > 0:
                raise ValueError(f"NodeModel {self.name!r}: {field} must be > 0, got {value}")
        if self.radio_power_limit_w is not None and not self.radio_power_limit_w > 0:
            raise ValueError(f"NodeModel {self.name!r}: radio_power_limit_w must be > 0 or None, "
                             f"got {self.radio_power_limit_w}")

    def compute_energy_j(self, flops: float) -> float:
        """Energy (J) to execute `flops` floating-point operations on this node."""
        return self.energy_per_flop_j * flops

    def with_budget(self, energy_budget_per_token_j: float, name: str | None = None) -> "NodeModel":
        """A copy with another per-token energy budget (J) and optionally another name."""
        return dataclasses.replace(self, energy_budget_per_token_j=energy_budget_per_token_j,
                                   name=self.name if name is None else name)


# --- presets (sources and which numbers are estimates: docs/node_presets.md) -------------------

def raspberry_pi5(name: str = "pi5", energy_budget_per_token_j: float = 0.9,
                  radio_power_limit_w: float | None = None) -> NodeModel:
    """Raspberry Pi 5, 8 GB: 4x Cortex-A76 @ 2.4 GHz, NEON fp32.

    Peak 153.6 GFLOP/s (4 cores x 2.4 GHz x 16 FLOP/cycle); sustained fp32 matmul estimated at
    50 GFLOP/s; ~7 W board power under full CPU load -> 1.4e-10 J/FLOP (estimate).
    6.5 GB of the 8 GB usable for weights.
    """
    return NodeModel(name=name, memory_bytes=6.5 * GB, compute_flops=50e9,
                     energy_per_flop_j=7.0 / 50e9,
                     energy_budget_per_token_j=energy_budget_per_token_j,
                     radio_power_limit_w=radio_power_limit_w)


def jetson_orin_nano(name: str = "orin-nano", energy_budget_per_token_j: float = 0.25,
                     radio_power_limit_w: float | None = None) -> NodeModel:
    """Jetson Orin Nano 8 GB (15 W mode): 1024 CUDA cores @ 625 MHz.

    Peak fp32 1.28 TFLOP/s (1024 x 2 x 625 MHz); sustained estimated at 0.9 TFLOP/s; 15 W module
    power -> 1.67e-11 J/FLOP (estimate). 6 GB of the 8 GB unified memory usable for weights.
    """
    return NodeModel(name=name, memory_bytes=6.0 * GB, compute_flops=0.9e12,
                     energy_per_flop_j=15.0 / 0.9e12,
                     energy_budget_per_token_j=energy_budget_per_token_j,
                     radio_power_limit_w=radio_power_limit_w)


def jetson_orin_nx(name: str = "orin-nx", energy_budget_per_token_j: float = 0.3,
                   radio_power_limit_w: float | None = None) -> NodeModel:
    """Jetson Orin NX 16 GB (25 W mode): 1024 CUDA cores @ 918 MHz.

    Peak fp32 1.88 TFLOP/s (1024 x 2 x 918 MHz); sustained estimated at 1.3 TFLOP/s; 25 W module
    power -> 1.92e-11 J/FLOP (estimate). 13.5 GB of the 16 GB usable for weights.
    """
    return NodeModel(name=name, memory_bytes=13.5 * GB, compute_flops=1.3e12,
                     energy_per_flop_j=25.0 / 1.3e12,
                     energy_budget_per_token_j=energy_budget_per_token_j,
                     radio_power_limit_w=radio_power_limit_w)


def heterogeneous_4node() -> list[NodeModel]:
    """Two Raspberry Pi 5 (budgets 0.9 and 0.7 J/token), one Orin Nano (0.25 J), one Orin NX (0.3 J).

    Sized for Llama-2-7B in fp16 (12.95 GB of split weights): only the Orin NX could hold them
    alone, and computing them all would leave it little transmit energy; the Pis are 10-20x
    slower and ~8x less energy-efficient per FLOP than the Orins but have larger budgets, so the
    energy left for transmission depends strongly on the split.
    """
    return [raspberry_pi5("pi5-a", 0.9), raspberry_pi5("pi5-b", 0.7),
            jetson_orin_nano("orin-nano", 0.25), jetson_orin_nx("orin-nx", 0.3)]


# --- measuring a real node ----------------------------------------------------------------------

def measure_compute_flops(seconds: float = 1.0, size: int = 512, threads: int | None = None) -> float:
    """Benchmark this machine's sustained fp32 matmul throughput with torch, FLOP/s.

    Multiplies two (size, size) fp32 matrices repeatedly for about `seconds` wall-clock seconds
    (after one warm-up product) and counts 2 * size**3 FLOPs per product. `threads` sets torch's
    intra-op threads for the run (restored afterwards); None keeps the current setting.
    """
    if seconds <= 0 or size < 1:
        raise ValueError(f"seconds must be > 0 and size >= 1, got seconds={seconds}, size={size}")
    import torch    # only here: the optimizer and the CLI must not load torch to list nodes

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, dtype=torch.float32, generator=gen)
        b = torch.randn(size, size, dtype=torch.float32, generator=gen)
        out = torch.empty(size, size, dtype=torch.float32)
        torch.matmul(a, b, out=out)
        count = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            torch.matmul(a, b, out=out)
            count += 1
            elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return 2.0 * size ** 3 * count / elapsed
