"""Thread settings: OpenBLAS and torch report what configure_threads set."""
import numpy as np
import pytest
import torch

from testbed.errors import ConfigError
from testbed.threads import (blas_threads, configure_threads, default_torch_threads,
                             set_blas_threads, usable_cores)


@pytest.fixture
def restore_threads():
    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    yield
    torch.set_num_threads(torch_before)
    if blas_before:
        set_blas_threads(max(blas_before))


def test_openblas_is_found_and_set(restore_threads):
    np.linalg.solve(np.eye(3), np.ones(3))                   # numpy's BLAS is loaded
    assert set_blas_threads(1) >= 1
    assert blas_threads() and all(n == 1 for n in blas_threads())
    with pytest.raises(ConfigError, match=">= 1"):
        set_blas_threads(0)


def test_configure_threads_defaults_options_and_environment(restore_threads, monkeypatch):
    monkeypatch.delenv("TESTBED_THREADS", raising=False)
    monkeypatch.delenv("TESTBED_BLAS_THREADS", raising=False)
    assert default_torch_threads() == max(1, usable_cores() - 1)
    got = configure_threads()
    assert got["torch"] == torch.get_num_threads() == default_torch_threads()
    assert got["blas"] == 1 and all(n == 1 for n in blas_threads())
    assert configure_threads(torch_threads=1)["torch"] == torch.get_num_threads() == 1
    monkeypatch.setenv("TESTBED_THREADS", "1")
    assert configure_threads()["torch"] == 1
    monkeypatch.setenv("TESTBED_THREADS", "two")
    with pytest.raises(ConfigError, match="TESTBED_THREADS"):
        configure_threads()
    monkeypatch.setenv("TESTBED_THREADS", "1")
    monkeypatch.setenv("TESTBED_BLAS_THREADS", "0")
    with pytest.raises(ConfigError, match="TESTBED_BLAS_THREADS"):
        configure_threads()
    with pytest.raises(ConfigError, match="--threads"):
        configure_threads(torch_threads=0, blas_threads=1)
