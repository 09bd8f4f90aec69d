"""Run directories and JSON writing."""
import json

import numpy as np
import pytest
import torch

from testbed.errors import ConfigError
from testbed.experiments.runs import environment_versions, make_run_dir, read_json, to_jsonable, write_json


def test_make_run_dir_is_fresh_and_named(tmp_path):
    a = make_run_dir(tmp_path / "runs", "demo")
    b = make_run_dir(tmp_path / "runs", "demo")
    assert a.is_dir() and b.is_dir() and a != b
    assert a.name.startswith("demo-") and a.parent == tmp_path / "runs"


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_make_run_dir_rejects_bad_names(tmp_path, bad):
    with pytest.raises(ConfigError):
        make_run_dir(tmp_path, bad)


def test_write_json_roundtrips_numpy_torch_complex(tmp_path):
    obj = {
        "i": np.int64(3), "f": np.float32(0.5), "nan": float("nan"), "b": np.bool_(True),
        "arr": np.arange(4).reshape(2, 2), "t": torch.tensor([1.5, 2.5]), "c": 1 + 2j,
        "carr": np.array([1j]), 7: (1, 2), "p": tmp_path,
    }
    path = write_json(tmp_path / "x" / "r.json", obj)
    back = read_json(path)
    assert back == {
        "i": 3, "f": 0.5, "nan": None, "b": True, "arr": [[0, 1], [2, 3]], "t": [1.5, 2.5],
        "c": {"re": 1.0, "im": 2.0}, "carr": [{"re": 0.0, "im": 1.0}], "7": [1, 2], "p": str(tmp_path),
    }
    json.loads(path.read_text())  # strict JSON
    assert not (tmp_path / "x" / "r.json.tmp").exists()


def test_to_jsonable_rejects_unknown():
    with pytest.raises(TypeError):
        to_jsonable(object())


def test_versions_has_numpy():
    v = environment_versions()
    assert v["numpy"] == np.__version__ and "python" in v
