"""Missing or broken system libraries become one ImportError naming the package to install."""
import sys

import pytest

from testbed.radio.system_libs import (SystemLibraryMissing, find_tool, import_system_module,
                                       tool_package)


@pytest.mark.parametrize("error", ["AttributeError('undefined symbol: iio_get_backends_count')",
                                   "OSError('libiio.so.0: cannot open shared object file')",
                                   "ImportError('no module')"])
def test_broken_binding_is_reported_with_the_package(tmp_path, monkeypatch, error):
    # a module named like pylibiio whose import fails the way ctypes bindings fail
    (tmp_path / "iio.py").write_text(f"raise {error}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "iio", raising=False)
    with pytest.raises(SystemLibraryMissing, match="libiio0") as err:
        import_system_module("iio")
    assert isinstance(err.value, ImportError)
    assert "pylibiio==0.25" in str(err.value)


def test_uhd_hint_names_debian_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "uhd", None)      # import of uhd raises ImportError
    with pytest.raises(SystemLibraryMissing, match="python3-uhd"):
        import_system_module("uhd")


def test_tools_map_to_debian_packages():
    assert tool_package("iio_info") == "libiio-utils" and tool_package("iiod") == "iiod"
    assert find_tool("sh") is not None and find_tool("no-such-tool-xyz") is None


def test_empty_package_directory_counts_as_missing(tmp_path, monkeypatch):
    """A removed Debian package can leave an empty directory that imports as a namespace
    package; it must not pass for the library."""
    from testbed.radio import system_libs
    (tmp_path / "emptylib_xyz").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(system_libs.REQUIRED_ATTRIBUTE, "emptylib_xyz", "usrp")
    monkeypatch.setitem(system_libs.PACKAGE_HINTS, "emptylib_xyz", "Debian package python3-xyz")
    with pytest.raises(SystemLibraryMissing, match="empty or incomplete.*python3-xyz"):
        import_system_module("emptylib_xyz")
