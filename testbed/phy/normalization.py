"""Normalization of real partial sums to unit-power symbols, with a scale the receiver knows.

Option used by default here: a **common scale** c per (layer, site). Every node sends
s_n = pack(z_n / c); the receiver gets sum_n s_n (+ error) and multiplies by c, so the sum is
recovered without any per-node quantity. c is chosen so that the packed complex symbols have
mean power <= 1 for every node:  c = sqrt(2 * max_n mean(z_n^2))  (two reals per symbol).

Where c comes from (`scale_policy` in the all-reduce):
* "calibrated": `SiteScale` statistics gathered in a calibration pass (no per-round exchange);
  ``headroom_db`` adds margin for rounds that are louder than calibration.
* "oracle": computed from the current partials (needs the N mean powers: N scalars of a digital
  exchange per round; useful as a reference).
* a fixed float.
Other options (documented, not the default path): per-node scales c_n folded into the precoders
(B_n' = c_n B_n / c, so that the air sums z_n / c); per-node means removed before sending and
added back from one scalar per node (sum_n mean_n) - both need those scalars at the receiver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def symbol_power(z: np.ndarray) -> float:
    """Mean power of the complex symbols `pack_reals(z)` would give: 2 * mean(z^2) (linear)."""
    z = np.asarray(z, dtype=np.float64)
    return 2.0 * float(np.mean(z * z)) if z.size else 0.0


def symbol_powers(z: np.ndarray) -> np.ndarray:
    """`symbol_power` of every row of real ``z`` ``(N, ...)`` at once, float64 ``(N,)``."""
    z = np.asarray(z)
    flat = z.reshape(z.shape[0], -1).astype(np.float64, copy=False)
    if flat.shape[1] == 0:
        return np.zeros(z.shape[0])
    return 2.0 * np.add.reduce(flat * flat, axis=1) / flat.shape[1]


def common_scale(partials: list[np.ndarray], floor: float = 1e-12) -> float:
    """c = sqrt(max_n symbol_power(z_n)) so that every z_n / c packs to mean power <= 1."""
    return scale_from_powers([symbol_power(z) for z in partials], floor)


def scale_from_powers(powers, floor: float = 1e-12) -> float:
    """c = sqrt(max_n p_n) from the nodes' symbol powers p_n (`symbol_power`, linear): what a
    receiver can compute from N reported scalars instead of the partials themselves."""
    values = powers.tolist() if isinstance(powers, np.ndarray) else map(float, powers)
    return math.sqrt(max(max(values), floor))


def normalize(z: np.ndarray, scale: float) -> np.ndarray:
    """z / scale (any shape)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return np.asarray(z, dtype=np.float64) / scale


def denormalize(s_sum: np.ndarray, scale: float) -> np.ndarray:
    """scale * (recovered normalized sum), any shape."""
    return np.asarray(s_sum) * scale


@dataclass
class SiteScale:
    """Running statistics of one (layer, site): largest per-node symbol power seen, and the
    mean over rounds. `scale(headroom_db)` = sqrt(max power * 10**(headroom_db / 10))."""

    max_power: float = 0.0
    sum_power: float = 0.0
    rounds: int = 0

    def update(self, powers) -> None:
        """Add one round of per-node symbol powers (`symbol_power` of each partial, linear)."""
        p = max(float(x) for x in powers)
        self.max_power = max(self.max_power, p)
        self.sum_power += p
        self.rounds += 1

    @property
    def mean_power(self) -> float:
        """Mean over rounds of the largest per-node symbol power (linear)."""
        return self.sum_power / self.rounds if self.rounds else 0.0

    def scale(self, headroom_db: float = 0.0) -> float:
        """Common scale c from the statistics; ValueError if nothing was gathered."""
        if self.rounds == 0 or self.max_power <= 0:
            raise ValueError("no statistics gathered for this site; run the statistics pass first")
        return float(np.sqrt(self.max_power * 10.0 ** (headroom_db / 10.0)))
