"""Digital all-reduce baseline (OFDMA uplink, b-bit uniform quantization).

Each node quantizes its partial uniformly with ``bits`` bits (symmetric mid-tread quantizer,
step = max|z_n| / (2**(bits-1) - 1), one float32 scale per tensor as side information), sends it
over its OFDMA sub-band, assumed error-free given adequate channel coding (airtime is accounted
by the latency model, `testbed.optim.latency`), and the receiver sums the dequantized values
exactly. The only error is quantization: for values spread over many steps it is uniform, with
variance step_n^2 / 12 per value per node, independent across nodes.
"""
from __future__ import annotations

import numpy as np
import torch

from testbed.llm.allreduce import AllReduce, register_allreduce
from testbed.phy.analog_allreduce import RunningStats, partials_to_numpy


def quantize_uniform(z: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Symmetric uniform quantization of real ``z`` (any shape) with ``bits`` bits.

    Returns (dequantized values, step); step = max|z| / (2**(bits-1) - 1) (0 for all-zero z).
    """
    if bits < 2:
        raise ValueError(f"bits must be >= 2, got {bits}")
    z = np.asarray(z, dtype=np.float64)
    peak = float(np.max(np.abs(z))) if z.size else 0.0
    if peak == 0.0:
        return np.zeros_like(z), 0.0
    step = peak / (2 ** (bits - 1) - 1)
    return np.round(z / step) * step, step


class DigitalAllReduce(AllReduce):
    """Quantized digital all-reduce; see the module docstring. bits: per value (default 8)."""

    name = "digital"

    def __init__(self, bits: int = 8) -> None:
        if bits < 2:
            raise ValueError(f"bits must be >= 2, got {bits}")
        self.bits = int(bits)
        self._stats = RunningStats()

    def reduce(self, partials, *, layer, site):
        zs = partials_to_numpy(partials)
        exact = np.sum(zs, axis=0)
        q = [quantize_uniform(z, self.bits) for z in zs]
        total = np.sum([zq for zq, _ in q], axis=0)
        self._stats.add((layer, site), {
            "mse_tensor": float(np.mean((total - exact) ** 2)),
            "mse_tensor_predicted": float(sum(step ** 2 for _, step in q) / 12.0),
            "bits_per_node": float(zs[0].size * self.bits + 32),
        })
        out = torch.as_tensor(total, dtype=partials[0].dtype, device=partials[0].device)
        return [out] * len(partials)

    def stats(self) -> dict:
        """{(layer, site): means of mse_tensor (per value), mse_tensor_predicted (sum_n step_n^2
        / 12), bits_per_node (payload bits incl. the float32 scale), 'rounds'}."""
        return self._stats.as_dict()

    def reset_stats(self) -> None:
        self._stats = RunningStats()


register_allreduce("digital", DigitalAllReduce)
