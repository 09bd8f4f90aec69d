"""Helpers of the emulated-radio tests (a uniquely named module: several test folders have a
`conftest.py`, so `from conftest import ...` would pick whichever was imported first)."""

import pytest
from syslibs import require_tool

from sim_backend.pluto_emu import EmulatedPluto, IIODServer
from sim_backend.realtime_air import LOParams, RealtimeAir


class Bench:
    """An air plus the emulated radios served on it; `close()` stops every server."""

    def __init__(self, **air_kw):
        self.air = RealtimeAir(1e6, seed=7, **air_kw)
        self.servers = []

    def pluto(self, name, *, mode="1r1t", ppm=0.0, loopback_cable_db=None, **lo_kw):
        dev = EmulatedPluto(self.air, name, mode=mode, lo=LOParams(ppm=ppm, **lo_kw),
                            loopback_cable_db=loopback_cable_db)
        srv = IIODServer(dev)
        self.servers.append(srv)
        return srv

    def close(self):
        for s in self.servers:
            s.close()


def need_tool(name):
    """Path of a libiio command-line tool, or skip naming its Debian package."""
    return require_tool(name)


def tone_freq_hz(x, fs=1e6):
    """Frequency (Hz) of one complex tone: least-squares slope of its unwrapped phase (the
    maximum-likelihood estimate at high SNR; ~0.01 Hz at 26 dB over 16k samples)."""
    import numpy as np
    ph = np.unwrap(np.angle(np.asarray(x)))
    return float(np.polyfit(np.arange(ph.size) / fs, ph, 1)[0] / (2 * np.pi))


def free_tcp_ports(n):
    """``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    import socket
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def emulated_bench_config(n_nodes=4, n_rx_radios=2, name="pluto_4node_emulated"):
    """The shipped emulated Pluto bench with its first ``n_nodes`` nodes and ``n_rx_radios``
    receiver radios, every URI moved to a free port (tests run next to each other)."""
    from testbed.config.bench import BenchConfig
    from testbed.net.roles.common import resolve_bench
    data = resolve_bench(name).model_dump()
    data["nodes"] = data["nodes"][:n_nodes]
    rx = data["receiver"]["radio"]
    rx = (rx if isinstance(rx, list) else [rx])[:n_rx_radios]
    ports = iter(free_tcp_ports(n_nodes + len(rx) + 2))
    for node in data["nodes"]:
        node["radio"]["uri"] = f"ip:127.0.0.1:{next(ports)}"
    for r in rx:
        r["uri"] = f"ip:127.0.0.1:{next(ports)}"
    data["receiver"]["radio"] = rx if len(rx) > 1 else rx[0]
    data["receiver"]["n_antennas"] = sum(r["n_rx_channels"] for r in rx)
    data["controller"]["router_port"], data["controller"]["pub_port"] = next(ports), next(ports)
    return BenchConfig.model_validate(data)


def emulated_usrp_bench_config():
    """usrp_2node_emulated with every emulated USRP and controller port moved to a free one."""
    from testbed.config.bench import BenchConfig
    from testbed.net.roles.common import resolve_bench
    data = resolve_bench("usrp_2node_emulated").model_dump()
    radios = [n["radio"] for n in data["nodes"]] + [data["receiver"]["radio"]]
    ports = iter(free_tcp_ports(len(radios) + 2))
    for r in radios:
        r["args"] = f"type=emulated,addr=127.0.0.1:{next(ports)}"
    data["controller"]["router_port"], data["controller"]["pub_port"] = next(ports), next(ports)
    return BenchConfig.model_validate(data)


class EmulatorProcess:
    """`testbed emulate --bench FILE` in its own process (the radios' air off this process's
    interpreter); `fault("stall pi5-a 0.8")` writes a fault line to its stdin; `close()`
    ends it."""

    def __init__(self, bench, tmp_path, time_scale):
        import subprocess
        import sys
        import time

        import yaml
        data = bench.model_dump(mode="json")
        self.path = tmp_path / f"{bench.name}.yaml"
        self.path.write_text(yaml.safe_dump(data))
        self.log = tmp_path / f"{bench.name}-emulate.log"
        out = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testbed.cli", "emulate", "--bench", str(self.path),
             "--time-scale", str(float(time_scale))],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
        out.close()
        deadline = time.monotonic() + 300
        while "emulate: ready" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("testbed emulate did not start: " + self.log.read_text())
            time.sleep(0.2)

    def fault(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)


def realtime_retry(attempts: int = 3, pause_s: float = 2.0):
    """Run a real-time emulation test up to ``attempts`` times: its radios stream with the wall
    clock, and on a 2-core machine a scheduling hiccup of the test process itself can drop a
    block (an overflow the radio rightly reports) or starve a sync. Each attempt opens fresh
    radios, ``pause_s`` wall seconds after the failed one (the load that starved it, e.g. the
    other test worker starting a bench, often lasts several seconds); the last attempt's
    failure is the test's. Only for tests of timing on emulated radios, never for numerical
    checks that do not depend on the machine's load."""
    import functools
    import time

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:            # assertion, stream error, lost time base
                    if attempt == attempts:
                        raise
                    print(f"{fn.__name__}: attempt {attempt} of {attempts} failed "
                          f"({type(exc).__name__}: {str(exc)[:300]}); retrying")
                    time.sleep(pause_s)             # let a burst of load on the machine pass
        return wrapper
    return deco


def start_roles(sup, bench, bench_path, addresses, model=None, stagger_s: float = 0.0):
    """Start the bench file's receiver and nodes as `testbed receiver` / `testbed node`
    processes under the `Supervisor` ``sup`` (each opens its own emulated radio), node
    processes ``stagger_s`` wall seconds apart; ``model``: the checkpoint every role loads
    itself (None: the nodes get their slices from the controller)."""
    import time

    from testbed.net.roles.common import node_ids
    common = ["--bench", str(bench_path), *addresses.as_args()]
    if model is not None:
        common += ["--model", str(model)]
    sup.start_python(bench.receiver.id, "testbed.cli", ["receiver", *common])
    for nid in node_ids(bench):
        time.sleep(stagger_s)
        sup.start_python(nid, "testbed.cli", ["node", "--id", nid, *common])


class RolesAsProcesses:
    """The bench file's receiver and nodes as `testbed receiver` / `testbed node` processes
    (each opens its own emulated radio), node processes started ``stagger_s`` wall seconds
    apart, and a `Controller` here with every role registered. Attributes: ``bench``,
    ``ctl``, ``fingerprint``, ``model``; ``reference(ids, ratios)``: the exact last-position
    logits of the split model. Use as a context manager (ends every process)."""

    def __init__(self, bench_path, run_dir, stagger_s: float = 0.0):
        from testbed.config.loader import load_bench
        from testbed.net.roles.common import model_fingerprint, resolve_model_dir
        self.bench_path, self.run_dir, self.stagger_s = bench_path, run_dir, stagger_s
        self.bench = load_bench(bench_path)
        self.model = resolve_model_dir("default")
        self.fingerprint = model_fingerprint(self.model)

    def reference(self, ids, ratios):
        import torch

        from testbed.llm.sharding import shard_checkpoint
        return shard_checkpoint(self.model, ratios)(torch.tensor([ids]))[0, -1].detach().numpy()

    def __enter__(self):
        import sys

        from testbed.net.controller import Controller
        from testbed.net.roles.bench_runner import controller_config, loopback_addresses
        from testbed.net.supervisor import Supervisor
        addresses = loopback_addresses()
        self.sup = Supervisor(self.run_dir).__enter__()
        try:
            start_roles(self.sup, self.bench, self.bench_path, addresses, self.model,
                        self.stagger_s)
            self.ctl = Controller(controller_config(self.bench, addresses, self.fingerprint))
            self.ctl.__enter__()
            try:
                self.ctl.wait_for_peers(timeout_s=300)
            except BaseException:
                self.ctl.__exit__(*sys.exc_info())
                raise
        except BaseException:
            self.sup.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        try:
            try:
                if exc[0] is None:
                    self.ctl.shutdown("test done")
            finally:
                self.ctl.__exit__(*exc)
            if exc[0] is None:
                for name in self.sup.alive():
                    self.sup.wait(name, 5.0)
        finally:
            self.sup.__exit__(*exc)
        return False
