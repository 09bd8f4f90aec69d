"""Optional hardware libraries that need system packages, imported with errors that name them.

pylibiio (``iio``) loads Debian's ``libiio0`` with ctypes; when the shared library is missing
or too old it fails with ``AttributeError`` or ``OSError``, not ``ImportError``. pyadi-iio
(``adi``) imports ``iio``. UHD's Python module (``uhd``) comes only from Debian's
``python3-uhd``, linked into the venv by ``tools/link_debian_uhd.py``. This module turns every
such failure into one `SystemLibraryMissing` (an ImportError) whose message says what to
install, so callers (drivers, scans, tests) can catch a single type.
"""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType

#: module name -> what to install when it cannot be imported
PACKAGE_HINTS = {
    "iio": "Debian package libiio0 (apt-get install libiio0) and pylibiio==0.25 from PyPI",
    "adi": "Debian package libiio0 (apt-get install libiio0), pylibiio==0.25 and pyadi-iio",
    "uhd": "Debian packages python3-uhd and uhd-host (apt-get install python3-uhd uhd-host), "
           "then `make env` to link it into .venv (tools/link_debian_uhd.py)",
}

#: command-line tool -> Debian package that provides it
TOOL_PACKAGES = {
    "iiod": "iiod", "iio_info": "libiio-utils", "iio_attr": "libiio-utils",
    "iio_readdev": "libiio-utils", "iio_writedev": "libiio-utils",
    "uhd_find_devices": "uhd-host",
}


#: an attribute the real module has: an empty directory left where a package was removed imports
#: as a namespace package, which is as good as missing
REQUIRED_ATTRIBUTE = {"iio": "Context", "adi": "Pluto", "uhd": "usrp"}


class SystemLibraryMissing(ImportError):
    """An optional hardware library cannot be imported; the message names what to install."""


def import_system_module(name: str) -> ModuleType:
    """Import ``name`` (``iio``, ``adi`` or ``uhd``); raise `SystemLibraryMissing` naming the
    package to install when the module or the shared library under it is missing or broken."""
    hint = PACKAGE_HINTS.get(name, f"the package that provides {name!r}")
    try:
        module = importlib.import_module(name)
    except (ImportError, OSError, AttributeError) as exc:
        raise SystemLibraryMissing(
            f"cannot import {name!r} ({type(exc).__name__}: {exc}); install {hint}") from exc
    attr = REQUIRED_ATTRIBUTE.get(name)
    if attr and not hasattr(module, attr):
        raise SystemLibraryMissing(f"{name!r} at {getattr(module, '__path__', '?')} is empty or "
                                   f"incomplete (no {attr!r}); install {hint}")
    return module


def find_tool(tool: str) -> str | None:
    """Path of a system command-line tool (also looked for in /usr/sbin and /sbin, where Debian
    puts ``iiod``), or None."""
    found = shutil.which(tool)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/bin"):
        p = Path(folder) / tool
        if p.is_file():
            return str(p)
    return None


def tool_package(tool: str) -> str:
    """The Debian package that provides ``tool`` (for messages)."""
    return TOOL_PACKAGES.get(tool, tool)
