"""A time base across USRPs in separate processes: one PPS edge agreed by all of them.

USRPs on one 10 MHz/PPS source (OctoClock, GPSDO) share their edges, but each process that
zeroes its device time on "the next edge" (`set_time_unknown_pps`, `set_time_next_pps`) picks
the edge after its own call, so processes started by hand end up whole seconds apart. The
bench agrees on one edge instead, in two steps over the control plane:

1. every role reports the host wall time (``time.time()``, s) at which its device saw a PPS
   edge (`testbed.radio.usrp.UsrpRadio.observe_pps_edge`);
2. the controller checks that the edges agree modulo the PPS period (one source; hosts'
   clocks in step, e.g. NTP to a few ms) and hands every role the same host time halfway
   between two edges (`pps_latch_time`); each role calls ``set_time_next_pps(0)`` just after
   it (`UsrpRadio.latch_time_at_pps_after`), so all latch the edge half a period later.

This holds while the hosts' clocks disagree by less than a quarter period (``tolerance``).
"""
from __future__ import annotations

import math
from typing import Mapping

#: edges further apart than this fraction of a period (modulo the period) are not one source
PHASE_TOLERANCE = 0.25


def phase_offset(t_s: float, ref_s: float, period_s: float) -> float:
    """Signed offset of edge time ``t_s`` from the edge train through ``ref_s``, in periods
    (-0.5..0.5)."""
    x = (t_s - ref_s) / period_s
    return x - math.floor(x + 0.5)


def pps_latch_time(edges_host_s: Mapping[str, float], period_s: float, not_before_s: float,
                   tolerance: float = PHASE_TOLERANCE) -> float:
    """The host wall time (s) to hand every role for an agreed PPS latch: halfway between two
    edges of the common PPS and not before ``not_before_s``.

    ``edges_host_s``: each role's observed edge (host wall time, s); ``period_s``: wall
    seconds between edges (1; k on an emulated USRP at time scale k). `ValueError` naming the
    role whose edge is more than ``tolerance`` periods off the others' (another PPS source or
    a host clock out of step)."""
    if not edges_host_s:
        raise ValueError("no PPS edges reported")
    if not period_s > 0 or not math.isfinite(period_s):
        raise ValueError(f"PPS period must be a positive number of seconds, got {period_s!r}")
    names = sorted(edges_host_s)
    ref = float(edges_host_s[names[0]])
    offsets = {n: phase_offset(float(edges_host_s[n]), ref, period_s) for n in names}
    bad = {n: d for n, d in offsets.items() if abs(d) > tolerance}
    if bad:
        worst = max(bad, key=lambda n: abs(bad[n]))
        raise ValueError(
            f"{worst}'s PPS edge is {bad[worst] * period_s:+.3f} s off {names[0]}'s (modulo the "
            f"{period_s:g} s period): not the same PPS source, or its host clock is out of step "
            "(check the PPS cabling and NTP on that host)")
    phase = ref + period_s * sum(offsets.values()) / len(offsets)
    k = math.ceil((not_before_s - phase) / period_s - 0.5)
    return phase + (k + 0.5) * period_s
