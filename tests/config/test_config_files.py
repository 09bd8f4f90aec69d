"""Radio configs and bench files: shipped files load; bad files fail with file, key and fix."""
from pathlib import Path

import pytest

from testbed.config.loader import (FIRMWARE_CONFIGS_DIR, find_config, load_bench,
                                   load_radio_config, parse_radio_config)
from testbed.config.radio import PlutoConfig, UsrpConfig
from testbed.errors import ConfigError

RADIOS = sorted((FIRMWARE_CONFIGS_DIR / "radios").glob("*.yaml"))
BENCHES = sorted((FIRMWARE_CONFIGS_DIR / "benches").glob("*.yaml"))


@pytest.mark.parametrize("path", RADIOS, ids=lambda p: p.stem)
def test_shipped_radio_configs_load(path):
    cfg = load_radio_config(path)
    assert cfg.to_settings().sample_rate_hz == cfg.sample_rate_hz


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.stem)
def test_shipped_benches_load_with_radio_references_resolved(path):
    bench = load_bench(path)
    for node in bench.nodes:
        assert not isinstance(node.radio, str)


def test_sim_4node_bench_contents():
    bench = load_bench(find_config("sim_4node", "benches"))
    assert [n.ratio for n in bench.nodes] == [0.4, 0.3, 0.2, 0.1]
    assert bench.receiver.n_antennas == 4 and bench.channel.snr_db == 20.0
    assert bench.radio_kinds() == {"sim"}


def test_pluto_2r2t_modes_carry_their_firmware_env():
    c = load_radio_config(find_config("pluto_revc_2r2t_extref"))
    assert "fw_setenv mode 2r2t" in c.firmware_env
    assert "fw_setenv refclk_source external" in c.firmware_env
    assert c.required_firmware_env() == list(c.firmware_env)


def test_firmware_env_missing_a_required_step_is_rejected():
    with pytest.raises(ConfigError, match="fw_setenv mode 2r2t"):
        parse_radio_config({"kind": "pluto", "mode": "2r2t", "compatible": "ad9361",
                            "firmware_env": ["fw_setenv attr_name compatible"]}, "x.yaml")


@pytest.mark.parametrize("uri", ["ip:192.168.2.1", "ip:pluto.local", "usb:", "usb:1.2.5",
                                 "local:", "xml:/tmp/a.xml"])
def test_valid_pluto_uris(uri):
    assert PlutoConfig(uri=uri).uri == uri


@pytest.mark.parametrize("uri", ["192.168.2.1", "ip:", "usb:1.2", "tcp:1.2.3.4", ""])
def test_invalid_pluto_uri_names_the_forms(uri):
    with pytest.raises(ConfigError, match="ip:192.168.2.1"):
        parse_radio_config({"kind": "pluto", "uri": uri}, "r.yaml")


@pytest.mark.parametrize("field,value,needle", [
    ("sample_rate_hz", 500e3, "521000"), ("sample_rate_hz", 70e6, "S/s"),
    ("center_freq_hz", 100e6, "ad9364"), ("tx_gain_db", 3.0, "tx_gain_db"),
    ("rx_gain_db", 80.0, "rx_gain_db"), ("n_rx_channels", 2, "2r2t")])
def test_pluto_limits(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_radio_config({"kind": "pluto", field: value}, "r.yaml")


def test_ad9364_firmware_opens_70mhz():
    assert PlutoConfig(compatible="ad9364", center_freq_hz=100e6).center_freq_hz == 100e6


def test_usrp_pps_needs_external_time_source():
    with pytest.raises(ConfigError, match="time_source"):
        parse_radio_config({"kind": "usrp", "pps_align": "next_pps"}, "u.yaml")
    assert UsrpConfig(clock_source="external", time_source="external",
                      pps_align="unknown_pps").pps_align == "unknown_pps"


def test_error_names_file_key_path_and_allowed_values(tmp_path: Path):
    f = tmp_path / "bench.yaml"
    f.write_text("""
name: broken
nodes:
  - {id: a, radio: {kind: sim}, ratio: 0.5}
  - {id: b, radio: {kind: sim, sample_rate_hz: -1}, ratio: 0.5, colour: red}
receiver: {n_antennas: 2, radio: {kind: plutox}}
channel: {fading: nakagami}
""")
    with pytest.raises(ConfigError) as err:
        load_bench(f)
    msg = str(err.value)
    assert str(f) in msg
    assert "key 'nodes[1].radio.sample_rate_hz'" in msg
    assert "key 'nodes[1].colour': unknown key" in msg and "allowed keys: id, host, radio" in msg
    assert "key 'channel.fading'" in msg and "'rayleigh' or 'rician'" in msg
    assert "kind: one of pluto, usrp, sim" in msg
    assert "valid string" not in msg          # union noise filtered


def test_bench_semantic_checks(tmp_path: Path):
    f = tmp_path / "b.yaml"
    f.write_text("name: b\nnodes: [{id: a, radio: {kind: sim}, ratio: 0.5}, "
                 "{id: a, radio: {kind: sim}, ratio: 0.2}]\nreceiver: {radio: {kind: sim}}\n")
    with pytest.raises(ConfigError, match="unique.*sum to 1|unique"):
        load_bench(f)
    f.write_text("name: b\nnodes: [{id: a, radio: {kind: sim}}]\nreceiver: {radio: {kind: sim}}"
                 "\nchannel: {path_loss_db: {zz: 3}}\nassignment: equal\n")
    with pytest.raises(ConfigError, match="unknown node ids"):
        load_bench(f)


def test_missing_radio_reference_and_bad_yaml(tmp_path: Path):
    f = tmp_path / "b.yaml"
    f.write_text("name: b\nnodes: [{id: a, radio: nope.yaml, ratio: 1}]\n"
                 "receiver: {radio: {kind: sim}}\n")
    with pytest.raises(ConfigError, match=r"nodes\[0\].radio.*nope.yaml"):
        load_bench(f)
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_bench(f)
    with pytest.raises(ConfigError, match="available"):
        find_config("no_such_radio")
