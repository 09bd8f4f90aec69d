"""What each thread of this process is waiting on, for heartbeats that say why a role is slow.

A blocking call wraps itself in ``with waiting_on("waiting on channel broker ..."):``; an
agent's heartbeat thread reports the innermost wait of the agent's thread and how long it has
lasted (`describe`). The controller then names the culprit of a round that does not finish: a
role whose heartbeats stopped (dead or frozen), or a live role stuck on its radio or on the
channel broker. Pure bookkeeping: no I/O, safe from any thread.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_stacks: dict[int, list[tuple[str, float]]] = {}


@contextmanager
def waiting_on(what: str) -> Iterator[None]:
    """Record that the calling thread is busy with ``what`` (a phrase: "waiting on
    radio.receive", "handling forward") until the block ends. Nested entries are kept in
    order; the innermost one is the most specific."""
    tid = threading.get_ident()
    entry = (what, time.monotonic())
    with _lock:
        _stacks.setdefault(tid, []).append(entry)
    try:
        yield
    finally:
        with _lock:
            stack = _stacks.get(tid, [])
            if entry in stack:
                stack.remove(entry)
            if not stack:
                _stacks.pop(tid, None)


def current(thread_id: int) -> list[tuple[str, float]]:
    """The waits of thread ``thread_id``, outermost first: (what, monotonic start s)."""
    with _lock:
        return list(_stacks.get(thread_id, ()))


def describe(thread_id: int, now: float | None = None) -> str:
    """One line for a heartbeat: ``"ok"`` when the thread waits on nothing, else
    ``"<innermost> for 2.3 s (in <outer>, ...)"``."""
    waits = current(thread_id)
    if not waits:
        return "ok"
    now = time.monotonic() if now is None else now
    what, since = waits[-1]
    text = f"{what} for {now - since:.1f} s"
    if len(waits) > 1:
        text += " (in " + ", ".join(w for w, _ in reversed(waits[:-1])) + ")"
    return text
