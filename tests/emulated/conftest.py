"""Emulated Plutos on an in-process real-time air, served on 127.0.0.1 for the real clients.
Every server a fixture starts is closed by it (helpers: `emulated_support`)."""
import pytest

from emulated_support import Bench


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.close()

