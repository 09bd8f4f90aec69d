"""Shared pytest configuration: the --hardware switch for tests that need real radios."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--hardware", action="store_true", default=False,
                     help="run tests marked 'hardware' (needs a PlutoSDR/USRP attached)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs a real radio attached; run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
