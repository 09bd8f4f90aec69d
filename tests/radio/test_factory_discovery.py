"""open_radio dispatch, kind registration, discovery and the `testbed devices` command."""
import json
import sys
import types

import pytest

from fakes.fake_adi import FakePluto
from syslibs import require_module
from fakes.fake_uhd import FakeDevice, make_fake_uhd
from testbed.cli import main
from testbed.config.radio import PlutoConfig, SimRadioConfig
from testbed.errors import ConfigError, RadioNotFoundError
from testbed.radio import factory
from testbed.radio.discovery import scan_plutos, scan_usrps
from testbed.radio.pluto import PlutoRadio
from testbed.radio.usrp import UsrpRadio


def test_open_radio_dispatches_pluto_with_options():
    radio = factory.open_radio(PlutoConfig(rx_buffer_size=256, tx_buffer_size=256),
                               role="node", node_id="n0", device=FakePluto(),
                               background=False, timing_checks=False)
    assert isinstance(radio, PlutoRadio) and radio.settings.sample_rate_hz == 1e6
    radio.close()


def test_open_radio_dispatches_usrp_from_a_mapping():
    radio = factory.open_radio({"kind": "usrp", "args": "type=b200"}, node_id="u",
                               uhd_module=make_fake_uhd(FakeDevice()))
    assert isinstance(radio, UsrpRadio)


def test_register_radio_kind_used_by_sim_backend():
    made = {}

    def ctor(config, role, node_id, **opts):
        made.update(role=role, node_id=node_id)
        return "a-sim-radio"

    factory.register_radio_kind("sim", ctor, replace=True)
    try:
        assert factory.open_radio(SimRadioConfig(), role="receiver", node_id="rx") == \
            "a-sim-radio"
        assert made == {"role": "receiver", "node_id": "rx"}
        with pytest.raises(ValueError, match="already registered"):
            factory.register_radio_kind("sim", lambda *a, **k: None)
    finally:
        factory._CONSTRUCTORS.pop("sim", None)


def test_unknown_kind_and_role_are_config_errors():
    with pytest.raises(ConfigError, match="kind: one of pluto, usrp, sim"):
        factory.open_radio({"kind": "hackrf"})
    with pytest.raises(ConfigError, match="role"):
        factory.open_radio(PlutoConfig(), role="boss")
    bogus = types.SimpleNamespace(kind="limesdr")
    with pytest.raises(ConfigError, match="known kinds"):
        factory.open_radio(bogus)


def test_missing_pluto_names_node_uri_and_checks():
    require_module("adi")          # a missing device, not a missing library
    with pytest.raises(RadioNotFoundError) as err:
        factory.open_radio(PlutoConfig(uri="xml:/no/such/context.xml"), node_id="pi5-a",
                           background=False)
    msg = str(err.value)
    assert "pi5-a" in msg and "xml:/no/such/context.xml" in msg
    assert "testbed devices" in msg and "iio_info -s" in msg


def test_scan_reports_library_missing_plainly(monkeypatch):
    monkeypatch.setitem(sys.modules, "iio", None)
    monkeypatch.setitem(sys.modules, "uhd", None)
    p, u = scan_plutos(), scan_usrps()
    assert p.status == u.status == "library-missing"
    assert "pylibiio" in p.message and "python3-uhd" in u.message


def test_usrp_scan_lists_serials():
    res = scan_usrps(make_fake_uhd(FakeDevice(serial="ABC123")))
    assert res.status == "ok" and res.radios[0].serial == "ABC123"
    assert "serial=ABC123" in res.radios[0].address


def test_real_scans_say_why_nothing_was_found():
    require_module("iio")
    res = scan_plutos()
    assert res.radios or "no PlutoSDR found" in res.message


def test_devices_command_json(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "iio", None)
    monkeypatch.setitem(sys.modules, "uhd", make_fake_uhd(FakeDevice(serial="S1")))
    rc = main(["devices", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["found"] == 1
    assert out["scans"][0]["status"] == "library-missing"
    assert out["scans"][1]["radios"][0]["serial"] == "S1"


def test_devices_command_none_found_exit_code(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "iio", None)
    monkeypatch.setitem(sys.modules, "uhd", make_fake_uhd())
    assert main(["devices"]) == 3
    assert "no radio found" in capsys.readouterr().out
