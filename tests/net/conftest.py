"""Helpers for control-plane tests: run an agent in a thread while the test pumps the
controller, and wait for conditions while pumping."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from testbed.net.agent import Agent


class AgentThread:
    """Runs ``agent.run()`` in a daemon thread; keeps its return value or exception."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.result: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"agent-{agent.config.node_id}")

    def _main(self) -> None:
        try:
            self.result = self.agent.run()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def done(self) -> bool:
        return not self.thread.is_alive()


@contextmanager
def agent_thread(agent: Agent):
    """Start ``agent`` in a thread; on exit stop it and wait for it (at most 5 s)."""
    t = AgentThread(agent)
    t.thread.start()
    try:
        yield t
    finally:
        agent.stop()
        t.thread.join(5)
        assert not t.thread.is_alive(), "agent thread did not stop"


def pump_until(ctl, cond, timeout_s: float = 5.0, step_s: float = 0.02) -> None:
    """Pump ``ctl`` until ``cond()`` is true; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        ctl.pump(step_s)
