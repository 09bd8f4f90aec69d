"""Process supervision: logs land in the run dir with a prefix, SIGTERM-deaf children and
grandchildren are killed, and children die with a supervisor that is SIGKILLed."""
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from testbed.net.supervisor import Supervisor

PY = sys.executable


def _gone(pid, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie":
            return True
        time.sleep(0.05)
    return False


def test_output_goes_to_the_run_dir_and_logger_with_prefix(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="testbed.net.supervisor"):
        with Supervisor(tmp_path, install_signal_handlers=False) as sup:
            sup.start("hello", [PY, "-c", "import sys; print('hi out'); "
                                          "print('hi err', file=sys.stderr)"])
            assert sup.wait("hello", 10) == 0
            sup.procs["hello"]._pump.join(5)
    text = (tmp_path / "logs" / "hello.log").read_text()
    assert "hi out" in text and "hi err" in text
    assert any("[hello] hi out" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_term_deaf_child_and_its_grandchild_are_killed(tmp_path):
    script = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        print("grandchild", child.pid, flush=True)
        time.sleep(60)
    """)
    sup = Supervisor(tmp_path, grace_s=0.5, install_signal_handlers=False)
    proc = sup.start("deaf", [PY, "-c", script])
    log = tmp_path / "logs" / "deaf.log"
    deadline = time.monotonic() + 20
    while "grandchild" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    grandchild = int(log.read_text().split("grandchild")[1].split()[0])
    t0 = time.monotonic()
    codes = sup.stop_all()
    sup.close()
    assert codes["deaf"] == -signal.SIGKILL
    assert 0.4 < time.monotonic() - t0 < 5
    assert _gone(proc.pid) and _gone(grandchild)


@pytest.mark.slow
def test_children_die_with_a_killed_supervisor(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from testbed.net.supervisor import Supervisor
        sup = Supervisor({str(tmp_path)!r})
        p = sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        print(p.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert psutil.pid_exists(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _gone(child), "orphan survived its supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()


def test_sigterm_to_the_supervisor_process_tears_children_down(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from testbed.net.supervisor import Supervisor
        sup = Supervisor({str(tmp_path)!r}, grace_s=1.0)
        p = sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],)
        print(p.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(10) == 128 + signal.SIGTERM
        assert _gone(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
