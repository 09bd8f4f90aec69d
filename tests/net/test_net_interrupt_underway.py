"""A failure that follows a Ctrl-C is the interrupt, not a fault: `interrupt_underway` decides
which, for the run's results.json ("interrupted" with exit 130, not "failed" with a culprit)."""
import signal
from types import SimpleNamespace

from testbed.net.errors import PeerLostError, RequestTimeout
from testbed.net.roles.bench_runner import interrupt_underway


def _lost():
    return PeerLostError("node0", 0.1, 3.0, detail="connection gone", role="node")


def test_a_plain_lost_peer_is_a_fault():
    assert not interrupt_underway(_lost())
    assert not interrupt_underway(_lost(), SimpleNamespace(stop_signal=None))


def test_a_lost_peer_raised_while_a_ctrl_c_unwinds_is_the_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        finally:
            raise _lost()                       # e.g. a send to a role the interrupt stopped
    except PeerLostError as exc:
        assert interrupt_underway(exc)


def test_the_interrupt_deep_in_the_chain_and_as_a_cause():
    try:
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise RequestTimeout("no reply")
        except RequestTimeout as inner:
            raise _lost() from inner
    except PeerLostError as exc:
        assert interrupt_underway(exc)


def test_the_supervisors_sigint_marks_any_later_failure_as_the_interrupt():
    assert interrupt_underway(_lost(), SimpleNamespace(stop_signal=signal.SIGINT))
    assert not interrupt_underway(_lost(), SimpleNamespace(stop_signal=signal.SIGTERM))
