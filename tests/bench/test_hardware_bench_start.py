"""A hardware bench file runs the same roles as a simulated one; with no radio attached the role
fails at start, naming the node, its address and the check to run (no code change needed);
without the radio's system library it names the package to install instead."""
import pathlib

import pytest

from testbed.cli import main
from testbed.radio.system_libs import SystemLibraryMissing, import_system_module


def _the_fix(module: str, package: str, device_checks: tuple[str, ...]) -> tuple[str, ...]:
    """What the error must tell the user: the package when ``module`` cannot be imported,
    else the command that lists attached radios."""
    try:
        import_system_module(module)
    except SystemLibraryMissing:
        return (package,)
    return device_checks

BENCHES = pathlib.Path(__file__).resolve().parents[2] / "firmware_configs" / "benches"


@pytest.mark.slow
def test_pluto_node_without_device_fails_at_start_naming_radio_and_check(capsys):
    rc = main(["node", "--bench", str(BENCHES / "pluto_4node.yaml"), "--id", "pi5-a"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "pi5-a" in err and "PlutoSDR" in err
    assert any(fix in err for fix in _the_fix("adi", "libiio0", ("testbed devices",)))


@pytest.mark.slow
def test_usrp_receiver_without_device_fails_at_start(capsys):
    rc = main(["receiver", "--bench", str(BENCHES / "usrp_2node.yaml")])
    err = capsys.readouterr().err
    assert rc != 0
    assert any(fix in err for fix in _the_fix("uhd", "python3-uhd",
                                               ("testbed devices", "uhd_find_devices")))
