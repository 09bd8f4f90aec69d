"""The real pyadi-iio / libiio / iiod / UHD, no radio attached: constructors on a faithful
Pluto context XML (directly and served by iiod on loopback), the API names the drivers use,
and the errors when no device answers."""
import functools
import socket
import subprocess
import time
from pathlib import Path

import pytest

import fakes.fake_adi as fake_adi
import fakes.fake_uhd as fake_uhd
from testbed.config.radio import PlutoConfig, UsrpConfig
from testbed.errors import ConfigError, RadioError, RadioNotFoundError
from testbed.radio import pluto as pluto_mod
from testbed.radio import usrp as usrp_mod
from testbed.radio.discovery import _pluto_details

from syslibs import require_module, require_tool

iio = require_module("iio")
adi = require_module("adi")

XML = Path(__file__).resolve().parents[2] / "sim_backend" / "pluto_emu" / "data" / "pluto_revc_context.xml"
XML_URI = f"xml:{XML}"


def test_real_pluto_constructs_on_xml_context():
    dev = adi.Pluto(uri=XML_URI)
    assert dev._rxadc.name == "cf-ad9361-lpc" and dev._txdac.name == "cf-ad9361-dds-core-lpc"
    assert dev._ctrl.name == "ad9361-phy"
    # the formats the scaling module relies on
    assert dev._rxadc.find_channel("voltage0").data_format.length == 16
    assert dev._rxadc.find_channel("voltage0").data_format.bits == 12
    assert dev._txdac.find_channel("voltage0", True).data_format.bits == 16


def test_driver_on_xml_context_reads_identity_and_fails_cleanly_at_attribute_io():
    dev = adi.Pluto(uri=XML_URI)
    radio = pluto_mod.PlutoRadio(PlutoConfig(uri=XML_URI), node_id="n1", device=dev)
    ident = radio.identity()
    assert ident.firmware == "v0.38" and ident.serial.startswith("104473")
    with pytest.raises(RadioError, match="rejected the settings"):
        radio.open()             # xml contexts do no attribute I/O (ENOSYS)


def test_2r2t_config_on_1r1t_context_asks_for_firmware_change():
    dev = adi.ad9361(uri=XML_URI)
    cfg = PlutoConfig(uri=XML_URI, mode="2r2t", compatible="ad9361", n_rx_channels=2,
                      n_tx_channels=2)
    with pytest.raises(ConfigError, match="fw_setenv attr_val ad9361"):
        pluto_mod.PlutoRadio(cfg, device=dev).open()


def test_wrong_uri_gives_radio_not_found_with_checks():
    with pytest.raises(RadioNotFoundError, match="iio_info") as err:
        pluto_mod.open_pluto_device("xml:/nonexistent/ctx.xml", "1r1t", "node7")
    assert "node7" in str(err.value)


@pytest.mark.parametrize("names,cls", [(pluto_mod.PYADI_ATTRIBUTES, "Pluto"),
                                       (pluto_mod.PYADI_ATTRIBUTES, "ad9361"),
                                       (pluto_mod.PYADI_ATTRIBUTES_2R2T, "ad9361")])
def test_every_pyadi_name_the_driver_uses_exists_on_real_and_fake(names, cls):
    real = getattr(adi, cls)
    fake = fake_adi.FakeAd9361() if cls == "ad9361" else fake_adi.FakePluto()
    for name in names:
        assert hasattr(real, name), f"adi.{cls} has no {name}"
        assert hasattr(fake, name), f"fake of adi.{cls} lacks {name}"
    assert hasattr(iio.Device, "reg_read") and hasattr(iio.Device, "set_kernel_buffers_count")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def iiod_xml():
    iiod = require_tool("iiod")
    port = _free_port()
    proc = subprocess.Popen([iiod, "-u", XML_URI, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"ip:127.0.0.1:{port}"
    try:
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield uri
    finally:
        proc.kill()                 # iiod 0.24 ignores SIGTERM while clients are connected
        proc.wait(timeout=5)


def test_real_pluto_over_iiod_loopback(iiod_xml):
    dev = adi.Pluto(uri=iiod_xml)
    assert dev._rxadc.name == "cf-ad9361-lpc"
    radio = pluto_mod.PlutoRadio(PlutoConfig(uri="ip:127.0.0.1"), device=dev)
    assert radio.identity().serial.startswith("104473")
    found = _pluto_details(iio, iiod_xml)
    assert found.firmware == "v0.38" and found.extra["mode"] == "1r1t"
    dev.close()


@functools.lru_cache(maxsize=1)
def _uhd():
    return require_module("uhd")


def test_every_uhd_name_the_driver_uses_exists_on_real_and_fake():
    uhd = _uhd()
    fake = fake_uhd.make_fake_uhd()
    for dotted in usrp_mod.UHD_NAMES:
        mod, name = dotted.split(".")
        assert hasattr(getattr(uhd, mod), name), f"uhd.{dotted} missing"
        assert hasattr(getattr(fake, mod), name), f"fake uhd.{dotted} missing"
    for meth in usrp_mod.MULTI_USRP_METHODS:
        assert hasattr(uhd.usrp.MultiUSRP, meth), meth
        assert hasattr(fake.usrp.MultiUSRP, meth), f"fake lacks {meth}"
    md = uhd.types.TXMetadata()
    for attr in ("start_of_burst", "end_of_burst", "has_time_spec", "time_spec"):
        assert hasattr(md, attr)
    for code in ("underflow", "underflow_in_packet", "seq_error", "seq_error_in_packet",
                 "time_error", "burst_ack"):
        assert hasattr(uhd.types.TXMetadataEventCode, code)
    for code in ("none", "overflow", "late", "timeout"):
        assert hasattr(uhd.types.RXMetadataErrorCode, code)
    ts = uhd.types.TimeSpec.from_ticks(12345, 1e6)
    assert ts.to_ticks(1e6) == 12345
    for streamer in (uhd.usrp.TXStreamer, uhd.usrp.RXStreamer):
        assert hasattr(streamer, "get_max_num_samps")
    assert hasattr(uhd.usrp.TXStreamer, "recv_async_msg")
    assert hasattr(uhd.usrp.RXStreamer, "issue_stream_cmd")


def test_real_uhd_with_no_device_gives_radio_not_found():
    uhd = _uhd()
    cfg = UsrpConfig(args="type=b200,serial=NO_SUCH_USRP")
    with pytest.raises(RadioNotFoundError, match="uhd_find_devices") as err:
        usrp_mod.UsrpRadio(cfg, node_id="rx0", uhd_module=uhd).open()
    assert "rx0" in str(err.value) and "NO_SUCH_USRP" in str(err.value)
