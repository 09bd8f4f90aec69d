"""Where the common normalization scale of each (layer, site) comes from (see
`testbed.phy.normalization`): "oracle" (from the current partials: N scalars of digital side
information per round), "calibrated" (from `SiteScale` statistics of a calibration pass: no
per-round exchange), or a fixed float."""
from __future__ import annotations

import numpy as np

from testbed.phy.normalization import SiteScale, common_scale


class ScaleKeeper:
    """Holds the scale policy and per-(layer, site) statistics.

    policy: "oracle" | "calibrated" | a positive float. headroom_db: margin (dB of power) added
    to calibrated scales. While ``calibrating`` is True, `observe` gathers statistics.
    """

    def __init__(self, policy: str | float = "oracle", headroom_db: float = 0.0) -> None:
        if isinstance(policy, str) and policy not in ("oracle", "calibrated"):
            raise ValueError(f"scale_policy must be 'oracle', 'calibrated' or a float > 0, got {policy!r}")
        if not isinstance(policy, str) and not float(policy) > 0:
            raise ValueError(f"a fixed scale must be > 0, got {policy}")
        self.policy = policy
        self.headroom_db = float(headroom_db)
        self.sites: dict[tuple[int, str], SiteScale] = {}
        self.calibrating = False

    def observe(self, partials: list[np.ndarray], layer: int, site: str) -> None:
        """Add one round's partials to the statistics of (layer, site)."""
        self.sites.setdefault((layer, site), SiteScale()).update(partials)

    def scale(self, partials: list[np.ndarray], layer: int, site: str) -> float:
        """The common scale c for this round (linear, same units as the partials)."""
        if self.policy == "oracle":
            return common_scale(partials)
        if self.policy == "calibrated":
            if (layer, site) not in self.sites:
                raise ValueError(f"no calibrated scale for layer {layer} site {site!r}: run a "
                                 "calibration pass (calibrating=True) over some inputs first")
            return self.sites[(layer, site)].scale(self.headroom_db)
        return float(self.policy)
