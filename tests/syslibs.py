"""Skip tests that need a system library or tool that is not installed, naming the package.

`pytest.importorskip` catches only ImportError, but pylibiio without Debian's libiio0 fails
with AttributeError/OSError; `require_module` catches them all (through
`testbed.radio.system_libs`) and skips with the package to install.
"""
from __future__ import annotations

import pytest

from testbed.radio.system_libs import (SystemLibraryMissing, find_tool, import_system_module,
                                       tool_package)


def require_module(name: str):
    """Import ``iio``/``adi``/``uhd`` or skip (module level or inside a test) naming the package."""
    try:
        return import_system_module(name)
    except SystemLibraryMissing as exc:
        pytest.skip(str(exc), allow_module_level=True)


def require_tool(tool: str) -> str:
    """Path of a system tool (``iiod``, ``iio_info``, ...) or skip naming its Debian package."""
    path = find_tool(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (apt-get install {tool_package(tool)})",
                    allow_module_level=True)
    return path
