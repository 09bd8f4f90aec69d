"""The test tree itself: pytest imports test modules by basename (rootdir, no packages), so two
test files with the same name in different folders break collection of the whole suite."""
from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    clashes = sorted(n for n, k in names.items() if k > 1)
    assert not clashes, (f"test files share a basename {clashes}; rename one (e.g. prefix the "
                         "folder: test_emulated_<name>.py)")
