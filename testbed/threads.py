"""Thread settings of the process: torch's intra-op pool and the BLAS libraries numpy/scipy load.

Measured on the project's 2-core machine shared with other work: OpenBLAS with 2 threads takes
~90 us for an 8x8 complex solve that takes ~8 us with 1 (the designs make thousands of such
calls), and torch with 2 intra-op threads burns ~1.8x the CPU for little wall-clock gain. So:

* BLAS: 1 thread (every numpy/scipy matrix of this project is small; the large products run in
  torch);
* torch: `default_torch_threads` = usable cores - 1 (at least 1): one core is left to the rest
  of the machine (the simulator, the other roles).

`configure_threads` applies both; the `testbed` command calls it with ``--threads`` or the
``TESTBED_THREADS`` environment variable (torch threads), and ``TESTBED_BLAS_THREADS``.
OpenBLAS is found among the loaded libraries (``/proc/self/maps``) and set through its own
``*openblas_set_num_threads*`` entry point; elsewhere (no OpenBLAS, not Linux) BLAS is left alone.
"""
from __future__ import annotations

import ctypes
import os
import sys

from testbed.errors import ConfigError

_SETTERS = ("openblas_set_num_threads64_", "openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads")
_GETTERS = ("openblas_get_num_threads64_", "openblas_get_num_threads",
            "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_torch_threads() -> int:
    """torch intra-op threads by default: usable cores - 1, at least 1 (1 on a 2-core machine)."""
    return max(1, usable_cores() - 1)


def _openblas_libraries() -> list[ctypes.CDLL]:
    """The OpenBLAS builds loaded in this process (numpy's and scipy's may differ)."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        return []
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def _entry(lib: ctypes.CDLL, names) -> object | None:
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def blas_threads() -> list[int]:
    """Threads of every loaded OpenBLAS (empty if none is found)."""
    out = []
    for lib in _openblas_libraries():
        fn = _entry(lib, _GETTERS)
        if fn is not None:
            fn.restype = ctypes.c_int
            out.append(int(fn()))
    return out


def set_blas_threads(n: int) -> int:
    """Set every loaded OpenBLAS to ``n`` threads; returns how many libraries were set (only
    libraries already loaded are seen)."""
    if int(n) < 1:
        raise ConfigError(f"BLAS threads must be >= 1, got {n}")
    count = 0
    for lib in _openblas_libraries():
        fn = _entry(lib, _SETTERS)
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn.restype = None
            fn(int(n))
            count += 1
    return count


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"{name} must be >= 1, got {n}")
    return n


def configure_threads(torch_threads: int | None = None, blas_threads: int | None = None) -> dict:
    """Apply the thread settings: torch intra-op threads (``torch_threads``, else
    ``$TESTBED_THREADS``, else `default_torch_threads`) and
    BLAS threads (``blas_threads``, else ``$TESTBED_BLAS_THREADS``, else 1). Nothing is
    imported for this (a light start): libraries already loaded are set now, and
    ``OMP_NUM_THREADS`` (torch, if not loaded yet) and ``OPENBLAS_NUM_THREADS`` are set for those
    loaded later (and for child processes). Returns ``{"torch": n, "blas": n, "blas_libraries": count}``."""
    t = torch_threads if torch_threads is not None else _env_int("TESTBED_THREADS")
    t = default_torch_threads() if t is None else int(t)
    if t < 1:
        raise ConfigError(f"torch threads (--threads) must be >= 1, got {t}")
    b = blas_threads if blas_threads is not None else _env_int("TESTBED_BLAS_THREADS")
    b = 1 if b is None else int(b)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(t)
    else:                                                     # read by torch when it is imported
        os.environ["OMP_NUM_THREADS"] = str(t)
    os.environ["OPENBLAS_NUM_THREADS"] = str(b)               # read by an OpenBLAS loaded later
    return {"torch": t, "blas": b, "blas_libraries": set_blas_threads(b)}
