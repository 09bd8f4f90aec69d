"""pyadi-iio (adi.Pluto / adi.ad9361 on pylibiio 0.25 + Debian libiio0 0.24) against emulated
Plutos on one real-time air: a tone sent by one arrives at the other at the two TCXOs' carrier
offset and at the level of the link; a cabled Pluto hears its own cyclic tone; digital
loopback returns the DAC words; 2R2T receives on both channels."""
import math

import numpy as np
import pytest

from syslibs import require_module  # noqa: E402 (after the module's imports)
require_module("iio")
adi = require_module("adi")

from emulated_support import tone_freq_hz  # noqa: E402

CARRIER = 915_000_000


def _setup(p, rx_gain=30, tx_gain=0):
    p.sample_rate = 1_000_000
    p.rx_lo = CARRIER
    p.tx_lo = CARRIER
    p.tx_hardwaregain_chan0 = tx_gain
    p.gain_control_mode_chan0 = "manual"
    p.rx_hardwaregain_chan0 = rx_gain
    p.rx_buffer_size = 8192


def _close(*devs):
    for d in devs:
        d.tx_destroy_buffer()
        d.rx_destroy_buffer()


def test_tone_crosses_the_air_at_the_tcxo_cfo_and_link_level(bench):
    ppm_a, ppm_b = 11.3, -6.1
    sa = bench.pluto("a", ppm=ppm_a, random_phase_per_tune=True)
    sb = bench.pluto("b", ppm=ppm_b)
    bench.air.connect(sa.device.port, 0, sb.device.port, 0, gain_db=-50.0)
    a, b = adi.Pluto(sa.uri), adi.Pluto(sb.uri)
    _setup(a)
    _setup(b, rx_gain=30)
    a.tx_cyclic_buffer = True
    a.tx(np.full(1024, 0.5 * 2 ** 15, complex))      # DC: the carrier itself
    for _ in range(4):                               # stale kernel blocks
        b.rx()
    x = b.rx()
    lo = sa.device.phy.rx_lo                         # the rounded LO both radios run at
    cfo = lo * (1 + ppm_a * 1e-6) - lo * (1 + ppm_b * 1e-6)
    # measured on b's own clock (1 - 6.1 ppm fast): cfo / (1 + ppm_b 1e-6)
    assert abs(tone_freq_hz(x) - cfo / (1 + ppm_b * 1e-6)) < 1.0
    assert abs(tone_freq_hz(x) - CARRIER * (ppm_a - ppm_b) * 1e-6) < 1.0
    # level: DAC 0.5 full scale (12 MSBs), -50 dB, +30 dB RX gain -> 0.5 * 10^(-20/20) of 2048
    assert np.median(np.abs(x)) == pytest.approx(0.5 * 0.1 * 2048, rel=0.02)
    _close(a, b)
    del a, b                     # libiio contexts go before the servers stop


def test_loopback_cable_self_reception_of_a_cyclic_tone(bench):
    s = bench.pluto("self", loopback_cable_db=-30.0)
    p = adi.Pluto(s.uri)
    _setup(p, rx_gain=20, tx_gain=-10)
    p.tx_cyclic_buffer = True
    n = 1000
    p.tx(0.5 * 2 ** 15 * np.exp(2j * np.pi * 50e3 * np.arange(n) / 1e6))   # 50 kHz, 1000 = 50 cycles
    for _ in range(4):
        p.rx()
    x = p.rx()
    assert abs(tone_freq_hz(x) - 50e3) < 0.05            # one radio, one clock: no CFO
    # 0.5 FS, -10 dB TX, -30 dB cable, +20 dB RX -> 0.5 * 10^(-20/20)
    assert np.median(np.abs(x)) == pytest.approx(0.05 * 2048, rel=0.02)
    _close(p)
    del p


def test_digital_loopback_returns_the_dac_words(bench):
    s = bench.pluto("digital")
    p = adi.Pluto(s.uri)
    _setup(p)
    p.loopback = 1
    assert int(p.loopback) == 1
    p.tx_cyclic_buffer = True
    rng = np.random.default_rng(5)
    words = rng.integers(-2048, 2048, size=(2, 512)) * 16        # 12-bit values in the MSBs
    p.tx(words[0] + 1j * words[1])
    for _ in range(4):
        p.rx()
    x = p.rx()
    i0 = int(np.argmax(np.abs(np.correlate(x.real[:2048], words[0] / 16.0, "valid"))))
    period = np.tile(words[0] // 16 + 1j * (words[1] // 16), 40)
    seg = x[i0:i0 + 4096]
    assert np.array_equal(seg, period[:4096])     # exact: no air, no noise, the 12 MSBs
    with pytest.raises(OSError):
        p.loopback = 3
    _close(p)
    del p


def test_2r2t_receives_two_channels(bench):
    s = bench.pluto("rx2", mode="2r2t", loopback_cable_db=-40.0)
    p = adi.ad9361(s.uri)
    _setup(p)
    p.gain_control_mode_chan1 = "manual"
    p.rx_hardwaregain_chan1 = 30
    p.tx_hardwaregain_chan1 = 0
    p.rx_enabled_channels = [0, 1]
    p.tx_enabled_channels = [0, 1]
    p.tx_cyclic_buffer = True
    n = 1000
    t = np.arange(n) / 1e6
    p.tx([0.5 * 2 ** 15 * np.exp(2j * np.pi * 20e3 * t), 0.25 * 2 ** 15 * np.exp(2j * np.pi * 40e3 * t)])
    for _ in range(4):
        p.rx()
    x0, x1 = p.rx()
    assert abs(tone_freq_hz(x0) - 20e3) < 0.05 and abs(tone_freq_hz(x1) - 40e3) < 0.05
    assert np.median(np.abs(x0)) / np.median(np.abs(x1)) == pytest.approx(2.0, rel=0.02)
    _close(p)
    del p
