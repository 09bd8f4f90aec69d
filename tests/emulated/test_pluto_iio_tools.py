"""The libiio command-line tools (Debian libiio-utils 0.24) against an emulated Pluto: the
context is listed, the LO is read/written with the RF PLL's rounding and an out-of-range value
gets the driver's EINVAL, iio_readdev reads a noise floor that matches the air's settings."""
import errno
import subprocess

import numpy as np
import pytest

from emulated_support import need_tool
from sim_backend.pluto_emu.ad9361 import RFPLL_MODULUS, XO_HZ

TIMEOUT = 20


def run(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, check=check)


def test_iio_info_lists_the_plutos_devices_and_attributes(bench):
    srv = bench.pluto("info")
    out = run(need_tool("iio_info"), "-u", srv.uri).stdout
    for dev in ("ad9361-phy", "cf-ad9361-lpc", "cf-ad9361-dds-core-lpc", "xadc", "adm1177"):
        assert dev in out
    assert "cf-ad9361-lpc (buffer capable)" in out
    assert "gain_control_mode_available value: manual fast_attack slow_attack hybrid" in out
    assert "debug attr" in out and "loopback value: 0" in out
    assert srv.device.ctx.serial in out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "multichip_sync ERROR: Permission denied" in errors[0]  # write-only


def test_iio_info_2r2t_has_four_converter_channels(bench):
    out = run(need_tool("iio_info"), "-u", bench.pluto("two", mode="2r2t").uri).stdout
    lpc = out.split("cf-ad9361-lpc")[1]
    assert "4 channels found" in lpc
    assert "voltage3:  (input, index: 3, format: le:S12/16>>0)" in lpc


def _pll_step_hz(f_hz):
    div = -1
    while f_hz * 2 ** (div + 1) <= 6e9:
        div += 1
    return XO_HZ / RFPLL_MODULUS / 2 ** (div + 1), div


@pytest.mark.parametrize("request_hz", [915_000_000, 2_400_000_001, 433_920_123])
def test_iio_attr_writes_the_lo_with_the_pll_rounding(bench, request_hz):
    uri = bench.pluto("lo").uri
    tool = need_tool("iio_attr")
    run(tool, "-u", uri, "-c", "ad9361-phy", "altvoltage0", "frequency", str(request_hz))
    got = int(run(tool, "-u", uri, "-c", "ad9361-phy", "altvoltage0", "frequency").stdout)
    step, div = _pll_step_hz(request_hz)
    assert abs(got - request_hz) <= step / 2 + 1          # nearest PLL word, floored to Hz
    # what comes back is an exact PLL output: 2^(d+1) f = ref (N + F / modulus), F integer
    frac = (got * 2 ** (div + 1) / XO_HZ) % 1 * RFPLL_MODULUS
    assert min(frac % 1, 1 - frac % 1) < 2 ** (div + 1) * RFPLL_MODULUS / XO_HZ + 1e-6


@pytest.mark.parametrize("bad", ["6000000000", "100000000"])
def test_iio_attr_out_of_range_lo_is_einval(bench, bad):
    uri = bench.pluto("bad").uri
    before = run(need_tool("iio_attr"), "-u", uri, "-c", "ad9361-phy", "altvoltage0",
                 "frequency").stdout
    res = run(need_tool("iio_attr"), "-u", uri, "-c", "ad9361-phy", "altvoltage0", "frequency",
              bad, check=False)
    assert res.returncode != 0
    assert f"({errno.EINVAL})" in res.stderr + res.stdout
    after = run(need_tool("iio_attr"), "-u", uri, "-c", "ad9361-phy", "altvoltage0",
                "frequency").stdout
    assert after == before                              # the LO did not move


def test_iio_readdev_noise_floor_matches_the_air(bench):
    srv = bench.pluto("noise")
    tool = need_tool("iio_attr")
    for chan, attr, val in (("voltage0", "gain_control_mode", "manual"),
                            ("voltage0", "hardwaregain", "60")):
        run(tool, "-u", srv.uri, "-i", "-c", "ad9361-phy", chan, attr, val)   # -i: the RX side
    raw = subprocess.run([need_tool("iio_readdev"), "-u", srv.uri, "-b", "16384", "-s", "65536",
                          "cf-ad9361-lpc", "voltage0", "voltage1"],
                         capture_output=True, timeout=TIMEOUT, check=True).stdout
    iq = np.frombuffer(raw, "<i2").astype(float).reshape(-1, 2)
    assert iq.shape == (65536, 2)
    measured = np.mean(iq[:, 0] ** 2 + iq[:, 1] ** 2)           # counts^2 per complex sample
    air = bench.air
    expected = air.noise_var(1e6) * 10 ** (60 / 10) * 2048 ** 2 + 2 / 12   # + rounding
    assert measured == pytest.approx(expected, rel=0.05)
