"""The run summary's stream-health lines (`testbed.commands.run.stream_health_lines`): counts a
role had before its first time base (a start-up glitch while it loads its model; the time base
is measured after it) are shown apart and not as errors of the run; what came after is."""
from testbed.commands.run import stream_health_lines


def _radio(serial, before=None, **counters):
    c = {"underflows": 0, "overflows": 0, "late": 0, "stream_breaks": 0, "resyncs": 0}
    c.update(counters)
    r = {"kind": "pluto", "serial": serial, "address": "ip:x", "counters": c}
    if before is not None:
        r["before_timebase"] = before
    return r


def test_glitches_before_the_time_base_are_not_errors_of_the_run():
    early = {"underflows": 1, "overflows": 3, "late": 0, "stream_breaks": 4}
    res = {"radios": {"orin-a": _radio("A", early, underflows=1, overflows=3, stream_breaks=4),
                      "receiver": _radio("R", {"underflows": 0, "overflows": 0, "late": 0,
                                               "stream_breaks": 0})}}
    assert stream_health_lines(res) == [
        "stream health: 2 radios clean since the time base (no underflows, overflows, late, "
        "stream breaks, re-syncs)",
        "stream health: before the time base was set up (harmless, it is measured after them): "
        "orin-a (underflows 1, overflows 3, stream breaks 4)"]


def test_what_came_after_the_time_base_is_an_error_with_its_own_count():
    res = {"radios": {"pi5-a": _radio("P", {"underflows": 0, "overflows": 1, "late": 0,
                                            "stream_breaks": 1},
                                      overflows=3, stream_breaks=3, resyncs=2)}}
    lines = stream_health_lines(res)
    assert lines[0].startswith("stream health: 1 of 1 radios had errors since the time base")
    assert lines[1] == "  pi5-a (pluto P): overflows 2, stream breaks 2, re-syncs 2"
    assert lines[2].endswith("pi5-a (overflows 1, stream breaks 1)")


def test_roles_without_a_time_base_report_their_totals_as_before():
    res = {"radios": {"n0": _radio("S", underflows=2, stream_breaks=2)}}
    assert stream_health_lines(res) == [
        "stream health: 1 of 1 radios had errors (underflows / overflows / late / stream "
        "breaks / re-syncs):",
        "  n0 (pluto S): underflows 2, stream breaks 2"]
