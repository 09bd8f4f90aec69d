"""Save step results as they come: a `Controller.run` ``on_partial`` callback writing JSON lines.

Each step is appended and flushed at once, so a run aborted by `PeerLostError` (or Ctrl-C)
keeps every step completed before the failure. numpy arrays/scalars become lists/numbers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            return {"real": value.real.tolist(), "imag": value.imag.tolist()}
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="python")
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class JsonlRecorder:
    """Callable ``recorder(item)`` appending ``item`` as one JSON line to ``path`` (fsynced
    when ``fsync`` is true). ``n_written`` counts lines written by this object."""

    def __init__(self, path: str | Path, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.n_written = 0

    def __call__(self, item: Any) -> None:
        """Append one step result."""
        line = json.dumps(item, default=_jsonable, allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        self.n_written += 1

    def read(self) -> list[Any]:
        """All lines written to ``path`` so far, parsed."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
