"""Run directories and JSON results for experiments.

A run directory is ``<root>/<name>-<YYYYmmdd-HHMMSS>[-k]/``; :func:`write_json` writes any mix of
Python, numpy and torch values (arrays become nested lists, complex numbers become
``{"re": .., "im": ..}``, non-finite floats become ``null``) so results files are plain JSON.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from testbed.errors import ConfigError


def make_run_dir(root: str | os.PathLike = "runs", name: str = "run") -> Path:
    """Create and return a fresh run directory ``<root>/<name>-<timestamp>``.

    The timestamp is local time to the second; if that directory exists already (two runs in one
    second) a suffix ``-2``, ``-3``, ... is added. ``root`` is created if missing.
    """
    if not name or any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
        raise ConfigError(f"run name {name!r} must be a non-empty plain name without path separators")
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{name}-{stamp}"
    for k in range(1, 10_000):
        candidate = root_path / (base if k == 1 else f"{base}-{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"could not create a fresh run directory under {root_path}; clean it up")


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively to plain JSON types (dict/list/str/int/float/bool/None).

    Handles numpy scalars and arrays, torch tensors (moved to CPU), complex numbers
    (``{"re", "im"}``), dataclasses, pydantic models (``model_dump``), Paths, sets/tuples, and maps
    NaN/inf to None (JSON has no such numbers). Dict keys become strings.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, (complex, np.complexfloating)):
        return {"re": to_jsonable(obj.real), "im": to_jsonable(obj.imag)}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()] if obj.ndim else to_jsonable(obj.item())
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump") and callable(obj.model_dump):
        return to_jsonable(obj.model_dump())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON; convert it to a dict/list first")


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` (see :func:`to_jsonable`) to ``path`` as UTF-8 JSON, atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def environment_versions() -> dict[str, str]:
    """Versions of Python, the platform and the main libraries (those importable), for results files."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("numpy", "scipy", "torch", "transformers", "cvxpy", "testbed"):
        try:
            module = __import__(mod)
        except Exception:  # noqa: BLE001 - an optional library that does not import is just absent
            continue
        versions[mod] = str(getattr(module, "__version__", "unknown"))
    return versions
