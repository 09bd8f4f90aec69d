"""`testbed emulate`: a single Pluto from the command line (the real iio_info sees it and its
cable), and the emulated 4-node Pluto bench: every radio on its port, a node's tone reaches
the receiver at the carrier offset of the bench's impairment preset."""
import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emulated_support import need_tool, tone_freq_hz
from sim_backend.emulated_bench import EmulatedBench
from sim_backend.impairment_presets import preset_by_name
from testbed.config.loader import find_config, load_bench

from syslibs import require_module  # noqa: E402 (after the module's imports)
require_module("iio")
adi = require_module("adi")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_emulate_pluto_command_serves_iio_info():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "emulate", "pluto", "--port",
                             str(port), "--name", "cli", "--loopback-cable-db", "-30",
                             "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line:
                break
        assert f"cli ip:127.0.0.1:{port} serial 104473" in "".join(lines)
        out = subprocess.run([need_tool("iio_info"), "-u", f"ip:127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        assert "cf-ad9361-lpc (buffer capable)" in out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _bench_on_free_ports(tmp_path):
    text = Path(find_config("pluto_4node_emulated", "benches")).read_text()
    for old in sorted(set(re.findall(r"127\.0\.0\.1:(\d{5})", text))):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{_free_port()}")
    p = tmp_path / "bench.yaml"
    p.write_text(text)
    return load_bench(p)


def test_emulated_4node_bench_node_tone_at_the_presets_cfo(tmp_path):
    bench = _bench_on_free_ports(tmp_path)
    emu = EmulatedBench.from_bench(bench)
    try:
        assert sorted(emu.servers) == ["orin-a", "orin-b", "pi5-a", "pi5-b", "receiver-0",
                                       "receiver-1"]
        assert emu.servers["receiver-0"].device.mode == "2r2t"
        node = adi.Pluto(emu.servers["pi5-b"].uri)
        rx = adi.ad9361(emu.servers["receiver-1"].uri)
        for p in (node, rx):
            p.sample_rate = 1_000_000
            p.rx_lo = p.tx_lo = 915_000_000
            p.gain_control_mode_chan0 = "manual"
            p.rx_hardwaregain_chan0 = 30
            p.rx_buffer_size = 16384
        node.tx_hardwaregain_chan0 = -30
        rx.rx_enabled_channels = [0]
        node.tx_cyclic_buffer = True
        node.tx(np.full(1024, 0.5 * 2 ** 15, complex))
        for _ in range(4):
            rx.rx()
        x = rx.rx()
        f = tone_freq_hz(x)
        preset = preset_by_name("uncalibrated-pluto", 4, 915e6, bench.channel.seed)
        assert abs(f - preset.tx[1].cfo_hz) < 1.0
        node.tx_destroy_buffer()
        rx.rx_destroy_buffer()
        del node, rx
    finally:
        emu.close()
