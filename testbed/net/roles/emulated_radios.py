"""Emulated benches under `testbed up`: the emulated radios start with the roles.

A bench whose every radio is an emulated one (Pluto ``ip:127.0.0.1:P``, USRP
``type=emulated,addr=127.0.0.1:P``, see `sim_backend.emulated_bench`) needs its radios served
before the node and receiver processes open them: `start_emulated_radios` runs
``testbed emulate --bench B`` as a supervised child and waits until every radio's port accepts.
"""
from __future__ import annotations

import socket
import time

from testbed.errors import TestbedError

#: the supervisor's name of the radios' process (its log: logs/emulated-radios.log)
RADIOS_ID = "emulated-radios"


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_emulated_radios(sup, bench_spec: str, bench, timeout_s: float = 60.0) -> list[str]:
    """Start ``testbed emulate --bench bench_spec`` under ``sup`` if ``bench`` is emulated and
    wait until each radio's port accepts (``timeout_s`` wall seconds); returns the started
    process names ([] for a hardware or simulated bench)."""
    from sim_backend.emulated_bench import bench_radios, emulated_address, is_emulated
    if not is_emulated(bench):
        return []
    addrs = [emulated_address(r, who) for who, r in bench_radios(bench)]
    busy = [f"{h}:{p}" for h, p in addrs if _accepts(h, p)]
    if busy:
        raise TestbedError(f"bench {bench.name!r}: ports {busy} already answer (another "
                           "`testbed emulate` running?); stop it or edit the bench's ports")
    proc = sup.start_python(RADIOS_ID, "testbed.cli", ["emulate", "--bench", str(bench_spec)])
    deadline = time.monotonic() + timeout_s
    for host, port in addrs:
        while not _accepts(host, port):
            if proc.returncode() is not None:
                raise TestbedError(f"the emulated radios of {bench.name!r} exited (code "
                                   f"{proc.returncode()}); see {proc.log_path}")
            if time.monotonic() > deadline:
                raise TestbedError(f"emulated radio {host}:{port} of {bench.name!r} not "
                                   f"serving after {timeout_s:g} s; see {proc.log_path}")
            time.sleep(0.1)
    return [RADIOS_ID]
