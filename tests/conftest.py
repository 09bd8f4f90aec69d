"""Shared pytest configuration: the --hardware switch for tests that need real radios, and
the real-time emulation tests kept on one xdist worker (``make test`` runs ``-n auto --dist
loadgroup``): two emulated airs running against the wall clock at once on a 2-core machine
would starve each other, while a real-time test beside an ordinary one keeps up."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--hardware", action="store_true", default=False,
                     help="run tests marked 'hardware' (needs a PlutoSDR/USRP attached)")


REALTIME_FOLDER = "emulated"   # tests/emulated: emulated radios on a real-time air
MULTIPROCESS_FOLDER = "bench"  # tests/bench: role processes of simulated benches


def pytest_collection_modifyitems(config, items):
    realtime = [it for it in items if REALTIME_FOLDER in it.path.parent.parts]
    for item in realtime:
        item.add_marker(pytest.mark.xdist_group("realtime"))
    # the real-time group first: its worker starts the suite's longest stretch at once while
    # the other workers share the rest; the multi-process benches (tests/bench: six processes
    # each) last, so that they do not run beside the real-time group's most demanding tests
    # (beside them the 4-radio array test missed its MSE bound 3 times in a row)
    rest = [it for it in items if REALTIME_FOLDER not in it.path.parent.parts]
    benches = [it for it in rest if MULTIPROCESS_FOLDER in it.path.parent.parts]
    items[:] = realtime + [it for it in rest if it not in benches] + benches
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs a real radio attached; run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
