"""The test tree itself: pytest imports test modules by basename (rootdir, no packages), so two
test files with the same name in different folders break collection of the whole suite."""
from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    clashes = sorted(n for n, k in names.items() if k > 1)
    assert not clashes, (f"test files share a basename {clashes}; rename one (e.g. prefix the "
                         "folder: test_emulated_<name>.py)")


def test_system_libraries_are_required_through_syslibs():
    """pylibiio without Debian's libiio0 fails with AttributeError/OSError, which
    pytest.importorskip does not catch: one such module would break collection of the whole
    suite on a machine without the package. Tests use `syslibs.require_module` instead."""
    import re
    bad = [f"{p.relative_to(Path(__file__).parent)}:{i}"
           for p in Path(__file__).parent.rglob("*.py")
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if re.search(r"importorskip\(\s*[\"'](iio|adi|uhd)[\"']", line)]
    assert not bad, f"use syslibs.require_module for iio/adi/uhd: {bad}"
