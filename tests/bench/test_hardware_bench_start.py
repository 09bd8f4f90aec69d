"""A hardware bench file runs the same roles as a simulated one; with no radio attached the role
fails at start, naming the node, its address and the check to run (no code change needed)."""
import pathlib

import pytest

from testbed.cli import main

BENCHES = pathlib.Path(__file__).resolve().parents[2] / "firmware_configs" / "benches"


@pytest.mark.slow
def test_pluto_node_without_device_fails_at_start_naming_radio_and_check(capsys):
    rc = main(["node", "--bench", str(BENCHES / "pluto_4node.yaml"), "--id", "pi5-a"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "pi5-a" in err and "PlutoSDR" in err
    assert "testbed devices" in err


@pytest.mark.slow
def test_usrp_receiver_without_device_fails_at_start(capsys):
    rc = main(["receiver", "--bench", str(BENCHES / "usrp_2node.yaml")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "testbed devices" in err or "uhd_find_devices" in err
