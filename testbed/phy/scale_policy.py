"""Where the common normalization scale of each (layer, site) comes from (see
`testbed.phy.normalization`): "calibrated" (from `SiteScale` statistics of a statistics pass:
no per-round exchange in the run), "oracle" (from the nodes' symbol powers every round: N
scalars of digital side information per round, a reference), or a fixed float.

The statistics pass (``calibrating = True``) runs real rounds with the per-round scale from the
nodes' symbol powers and records them; on a bench the nodes report those N scalars (never
their partials) during the pass only.
"""
from __future__ import annotations

from typing import Sequence

from testbed.phy.normalization import SiteScale, scale_from_powers


class ScaleKeeper:
    """Holds the scale policy and per-(layer, site) statistics.

    policy: "oracle" | "calibrated" | a positive float. headroom_db: margin (dB of power) added
    to calibrated scales. While ``calibrating`` is True, `scale_for` gathers statistics.
    """

    def __init__(self, policy: str | float = "calibrated", headroom_db: float = 0.0) -> None:
        if isinstance(policy, str) and policy not in ("oracle", "calibrated"):
            raise ValueError(f"scale_policy must be 'oracle', 'calibrated' or a float > 0, got {policy!r}")
        if not isinstance(policy, str) and not float(policy) > 0:
            raise ValueError(f"a fixed scale must be > 0, got {policy}")
        self.policy = policy
        self.headroom_db = float(headroom_db)
        self.sites: dict[tuple[int, str], SiteScale] = {}
        self.calibrating = False

    @property
    def needs_powers(self) -> bool:
        """True when the next rounds need the nodes' symbol powers (statistics pass or oracle)."""
        return self.calibrating or self.policy == "oracle"

    def scale_for(self, key: tuple[int, str], powers: Sequence[float] | None) -> float:
        """The common scale c of this round for site ``key`` = (layer, site) (linear, units of
        the partials). ``powers``: the nodes' symbol powers, required when `needs_powers`."""
        if self.needs_powers:
            if powers is None:
                raise ValueError(f"site {key}: the scale statistics pass (or the oracle policy) "
                                 "needs the nodes' symbol powers")
            if self.calibrating:
                self.sites.setdefault(key, SiteScale()).update(powers)
            return scale_from_powers(powers)
        if self.policy == "calibrated":
            if key not in self.sites:
                raise ValueError(f"no calibrated scale for layer {key[0]} site {key[1]!r}: run "
                                 "the statistics pass (calibrating=True) over some inputs first")
            return self.sites[key].scale(self.headroom_db)
        return float(self.policy)

    def table(self) -> dict[str, float]:
        """Calibrated scales as {"layer/site": c} (JSON-able)."""
        return {f"{k[0]}/{k[1]}": v.scale(self.headroom_db) for k, v in sorted(self.sites.items())}
