"""The agreed PPS latch time (`calibration.pps.pps_latch_time`), as properties: for any edge
phase, period and host clocks in step, the time handed out is halfway between two edges of
the common PPS (so every host's "next edge" is the same one), not before the asked time and
less than a period after it; edges of different sources are refused naming the role."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibration.pps import PHASE_TOLERANCE, phase_offset, pps_latch_time

periods = st.floats(0.5, 50.0)
phases = st.floats(0.0, 1.0, exclude_max=True)
times = st.floats(1.0e9, 2.0e9)        # host wall clock, epoch seconds


@given(period=periods, phase=phases, now=times,
       jitter=st.lists(st.floats(-0.1, 0.1), min_size=1, max_size=6),
       cycles=st.lists(st.integers(-3, 3), min_size=6, max_size=6))
def test_latch_time_is_halfway_between_edges_of_the_common_pps(period, phase, now, jitter,
                                                                cycles):
    edge0 = now - 10 * period + phase * period          # one true edge of the source
    # each role saw some edge of the source, read on a host clock off by `jitter` periods
    edges = {f"r{i}": edge0 + (c + j) * period for i, (j, c) in enumerate(zip(jitter, cycles))}
    t = pps_latch_time(edges, period, now)
    assert now <= t < now + period + 1e-6 * period
    # the true edges nearest t are half a period away on both sides (within the clock jitter)
    off = phase_offset(t, edge0, period)
    assert abs(abs(off) - 0.5) <= max(abs(j) for j in jitter) + 1e-6
    # so every host, whose clock is off by less than a quarter period, picks the same edge
    for j in jitter:
        host_t = t + j * period
        next_edge = edge0 + math.ceil((host_t - edge0) / period) * period
        assert next_edge == pytest.approx(
            edge0 + math.ceil((t - edge0) / period) * period, abs=1e-6 * period)


@given(period=periods, now=times, off=st.floats(PHASE_TOLERANCE + 0.01, 0.5))
def test_an_edge_off_the_others_is_refused_naming_the_role(period, now, off):
    edges = {"node0": now, "node1": now + 2 * period, "receiver": now + (3 + off) * period}
    with pytest.raises(ValueError, match="receiver's PPS edge"):
        pps_latch_time(edges, period, now)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no PPS edges"):
        pps_latch_time({}, 1.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        pps_latch_time({"a": 0.0}, 0.0, 0.0)
