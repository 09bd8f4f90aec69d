"""Shared pytest configuration: the --hardware switch for tests that need real radios, and
the real-time emulation tests kept on one xdist worker (``make test`` runs ``-n auto --dist
loadgroup``): two emulated airs running against the wall clock at once on a 2-core machine
would starve each other, while a real-time test beside an ordinary one keeps up."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--hardware", action="store_true", default=False,
                     help="run tests marked 'hardware' (needs a PlutoSDR/USRP attached)")


REALTIME_FOLDER = "emulated"   # tests/emulated: emulated radios on a real-time air


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REALTIME_FOLDER in item.path.parent.parts:
            item.add_marker(pytest.mark.xdist_group("realtime"))
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs a real radio attached; run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
