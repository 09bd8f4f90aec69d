"""Model weights verified by hash before use (issue 16): a manifest with SHA-256 per file is
written when the default model is trained; flipped bytes or a truncated file in the cache or in a
user checkpoint are caught before any weight reaches a model, naming the file and the fix."""
from __future__ import annotations

import json
import shutil

import pytest

from testbed.llm.default_model import (TrainingRecipe, default_model_dir, ensure_default_model)
from testbed.llm.loading import load_model_and_tokenizer
from testbed.llm.manifest import (MANIFEST_FILENAME, WeightsIntegrityError, safetensors_problem,
                                  verify_checkpoint)
from testbed.net.roles.common import resolve_model_dir


@pytest.fixture(scope="module")
def cached():
    return ensure_default_model(progress=False)


@pytest.fixture()
def cache_copy(cached, tmp_path):
    """A private copy of the default model's cache (same recipe directory name)."""
    dest = default_model_dir(cache_root=tmp_path)
    shutil.copytree(cached, dest)
    return tmp_path, dest


def _flip(path, n=2000, offset=None):
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if offset is None else offset
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_cache_has_a_manifest_that_verifies(cache_copy):
    root, d = cache_copy
    assert ensure_default_model(progress=False, cache_root=root) == d
    manifest = json.loads((d / MANIFEST_FILENAME).read_text())
    assert {"config.json", "model.safetensors"} <= set(manifest["files"])
    verify_checkpoint(d, "x")


def test_flipped_bytes_in_the_cache_are_caught_before_use(cache_copy):
    root, d = cache_copy
    ensure_default_model(progress=False, cache_root=root)
    _flip(d / "model.safetensors")
    assert safetensors_problem(d / "model.safetensors") is None  # the file still parses ...
    with pytest.raises(WeightsIntegrityError) as e:            # ... but its hash is wrong
        ensure_default_model(progress=False, cache_root=root)
    msg = str(e.value)
    assert str(d / "model.safetensors") in msg and "testbed train-default --force" in msg
    with pytest.raises(WeightsIntegrityError, match="SHA-256"):
        resolve_model_dir(str(d))  # what every bench role runs at start
    with pytest.raises(WeightsIntegrityError, match="train-default --force"):
        load_model_and_tokenizer(str(d), progress=False)


def test_truncated_weights_are_caught_with_or_without_a_manifest(cache_copy):
    root, d = cache_copy
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(WeightsIntegrityError, match="truncated or padded") as e:
        ensure_default_model(progress=False, cache_root=root)
    assert str(f) in str(e.value)
    (d / MANIFEST_FILENAME).unlink(missing_ok=True)
    with pytest.raises(WeightsIntegrityError, match="truncated"):
        load_model_and_tokenizer(str(d), progress=False)


def test_user_checkpoint_with_an_edited_config_is_refused(cache_copy, tmp_path):
    _, d = cache_copy
    user = tmp_path / "user_ckpt"
    shutil.copytree(d, user)
    (user / "training_report.json").unlink()
    verify_checkpoint(user, "x")
    cfg = json.loads((user / "config.json").read_text())
    cfg["rms_norm_eps"] = 0.5
    (user / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsIntegrityError, match="restore the checkpoint directory"):
        load_model_and_tokenizer(str(user), progress=False)
    (user / "extra.safetensors").write_bytes((user / "model.safetensors").read_bytes())
    with pytest.raises(WeightsIntegrityError):
        verify_checkpoint(user, "x")


@pytest.mark.slow
def test_training_writes_the_manifest(tmp_path):
    tiny = TrainingRecipe(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                          intermediate_size=32, max_positions=64, seq_len=16, batch_size=2,
                          steps=2, warmup_steps=1, eval_window=32)
    d = ensure_default_model(progress=False, recipe=tiny, cache_root=tmp_path)
    files = json.loads((d / MANIFEST_FILENAME).read_text())["files"]
    assert files["model.safetensors"]["bytes"] == (d / "model.safetensors").stat().st_size
    verify_checkpoint(d, "x")
