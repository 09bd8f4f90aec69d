"""Start and tear down the processes of a local bench, leaving no orphans.

Each child runs in its own session / process group (so a signal reaches the child and its own
children), gets ``PR_SET_PDEATHSIG=SIGKILL`` on Linux (the kernel kills it if the supervisor
dies, even by SIGKILL -- note: "dies" means the *thread* that started it exits, so call
``start`` from a long-lived thread, normally the main one), and has its stdout+stderr
streamed line by line into ``<run_dir>/logs/<name>.log`` and, prefixed with ``[name]``, to
the supervisor's logger. Agents additionally watch ``os.getppid()`` (see `testbed.net.agent.Agent`).

Teardown (``stop_all``, context-manager exit, ``atexit``, SIGINT/SIGTERM while installed):
SIGTERM (plus SIGCONT, so a frozen child can act on it) to every process group, wait up to
``grace_s`` seconds, then SIGKILL what is left, and reap everything.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from testbed.errors import ConfigError, TestbedError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass


@dataclass
class ManagedProcess:
    """A started child: its name, command, `subprocess.Popen`, log file path."""

    name: str
    cmd: list[str]
    popen: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    _pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The child's pid (= its process group id)."""
        return self.popen.pid

    def returncode(self) -> int | None:
        """Exit code if it has exited (negative = killed by that signal), else None."""
        return self.popen.poll()


class Supervisor:
    """Runs named child processes for one run directory; use as a context manager."""

    def __init__(self, run_dir: str | Path, grace_s: float = 3.0,
                 install_signal_handlers: bool = True):
        self.run_dir = Path(run_dir)
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.grace_s = grace_s
        self.procs: dict[str, ManagedProcess] = {}
        self._lock = threading.Lock()
        self._old_handlers: dict[int, object] = {}
        #: the signal (SIGINT / SIGTERM) that made this supervisor stop its children, if any
        self.stop_signal: int | None = None
        atexit.register(self.stop_all)
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    # ------------------------------------------------------------------ start
    def start(self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | Path | None = None) -> ManagedProcess:
        """Start ``cmd`` (argv list) as child ``name``; its output goes to logs/<name>.log."""
        if not name or "/" in name:
            raise ConfigError(f"process name {name!r} must be a plain file name")
        if name in self.procs and self.procs[name].returncode() is None:
            raise ConfigError(f"a process named {name!r} is already running")
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1",
                    "TESTBED_SUPERVISOR_PID": str(os.getpid())}
        log_path = self.log_dir / f"{name}.log"
        try:
            popen = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
                                     start_new_session=True, preexec_fn=_child_setup)
        except OSError as exc:
            raise TestbedError(f"cannot start {name}: {cmd[0]}: {exc}") from exc
        proc = ManagedProcess(name, list(cmd), popen, log_path)
        proc._pump = threading.Thread(target=self._stream, args=(proc,), daemon=True,
                                      name=f"log-{name}")
        proc._pump.start()
        with self._lock:
            self.procs[name] = proc
        log.info("started %s (pid %d): %s", name, popen.pid, " ".join(cmd))
        return proc

    def start_python(self, name: str, module: str, args: Sequence[str] = (),
                     **kwargs) -> ManagedProcess:
        """Start ``sys.executable -m module *args`` (e.g. ``testbed.cli node ...``)."""
        return self.start(name, [sys.executable, "-m", module, *args], **kwargs)

    @staticmethod
    def _stream(proc: ManagedProcess) -> None:
        child_log = logging.getLogger(f"{__name__}.{proc.name}")
        with open(proc.log_path, "a", encoding="utf-8", errors="replace") as fh:
            for raw in iter(proc.popen.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                fh.write(line + "\n")
                fh.flush()
                child_log.info("[%s] %s", proc.name, line)
        proc.popen.stdout.close()

    # ------------------------------------------------------------------ watch
    def poll(self) -> dict[str, int | None]:
        """Exit code per child (None while running)."""
        return {n: p.returncode() for n, p in self.procs.items()}

    def exited(self) -> dict[str, int]:
        """Exit code of every child that has exited (negative = killed by that signal)."""
        return {n: rc for n, rc in self.poll().items() if rc is not None}

    def log_tail(self, name: str, n_lines: int = 12) -> list[str]:
        """The last ``n_lines`` lines of child ``name``'s log (waits up to 1 s for the log
        pump to catch up with an exited child)."""
        proc = self.procs[name]
        if proc.returncode() is not None and proc._pump is not None:
            proc._pump.join(timeout=1.0)
        try:
            lines = proc.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return lines[-n_lines:]

    def raise_if_exited(self, names: Sequence[str] | None = None) -> None:
        """Raise `ChildExitedError` for the first of ``names`` (default: all children) that has
        exited, quoting the end of its log."""
        for name, rc in self.exited().items():
            if names is None or name in names:
                raise ChildExitedError(name, rc, self.procs[name].log_path, self.log_tail(name))

    def alive(self) -> list[str]:
        """Names of children still running."""
        return [n for n, p in self.procs.items() if p.returncode() is None]

    def wait(self, name: str, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` s for child ``name`` to exit; its exit code or None."""
        try:
            return self.procs[name].popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    # ------------------------------------------------------------------ teardown
    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to child ``name``'s whole process group (if it still exists)."""
        _killpg(self.procs[name].pid, sig)

    def stop_all(self, grace_s: float | None = None) -> dict[str, int | None]:
        """SIGTERM (+SIGCONT) every child group, SIGKILL after ``grace_s`` s; reap all.
        Returns each child's exit code. Safe to call more than once."""
        grace = self.grace_s if grace_s is None else grace_s
        with self._lock:
            procs = list(self.procs.values())
        for p in procs:
            if p.returncode() is None:
                _killpg(p.pid, signal.SIGTERM)
                _killpg(p.pid, signal.SIGCONT)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            # the group may hold grandchildren even if the leader exited
            _killpg(p.pid, signal.SIGKILL)
            if p.returncode() is None:
                log.warning("%s (pid %d) ignored SIGTERM for %.1f s; killed", p.name, p.pid,
                            grace)
            p.popen.wait()
            if p._pump is not None:
                p._pump.join(timeout=1.0)
        return {p.name: p.returncode() for p in procs}

    def close(self) -> None:
        """Stop all children and restore the signal handlers this object installed."""
        self.stop_all()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        atexit.unregister(self.stop_all)

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame) -> None:
        self.stop_signal = signum
        log.warning("signal %d: stopping %d children", signum, len(self.alive()))
        self.stop_all()
        old = self._old_handlers.get(signum)
        if callable(old):
            old(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)


class ChildExitedError(TestbedError):
    """A supervised child exited when it should be running (e.g. while the bench starts).
    ``name``, ``returncode`` (negative: killed by that signal), ``log_path``, ``tail`` (the
    last lines of its log)."""

    def __init__(self, name: str, returncode: int, log_path: Path, tail: list[str]):
        self.name, self.returncode, self.log_path, self.tail = name, returncode, log_path, tail
        how = (f"was killed by signal {-returncode}" if returncode < 0
               else f"exited with status {returncode}")
        quoted = "\n".join(f"    {line}" for line in tail) or "    (empty log)"
        super().__init__(f"{name} {how} while the bench was starting; the end of {log_path}:"
                         f"\n{quoted}\nfix the cause above and start again")


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
