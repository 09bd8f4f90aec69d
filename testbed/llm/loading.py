"""Load a causal LM and its tokenizer from a spec: the embedded default model or a local
Hugging Face checkpoint directory. Nothing is ever downloaded (``local_files_only=True`` and
``HF_HUB_OFFLINE=1``).

Spec: ``None`` or ``"default"`` -> the default model (`testbed.llm.default_model`, trained once and
cached); anything else -> a path to a directory with ``config.json`` and weights. The tokenizer is
the testbed byte tokenizer if ``testbed_tokenizer.json`` is present, otherwise the directory's
Hugging Face tokenizer wrapped as `HFTokenizerAdapter`. The model is returned in float32, eval mode.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# Before transformers / huggingface_hub are imported anywhere through this module: never go online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from testbed.errors import ConfigError  # noqa: E402
from testbed.llm.manifest import verify_checkpoint  # noqa: E402
from testbed.llm.tokenizer import (TOKENIZER_FILENAME, ByteTokenizer,  # noqa: E402
                                   HFTokenizerAdapter, TextTokenizer)

#: ``config.json`` model types whose layers the tensor-parallel sharding understands.
SHARDABLE_MODEL_TYPES = ("llama", "qwen2", "mistral")


def checkpoint_model_type(path: str | Path) -> str:
    """Read ``model_type`` from ``path/config.json``. Raises ConfigError with the fix if the
    directory or the file is missing or malformed."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"model path {str(path)!r} does not exist; pass a local Hugging Face "
                          "checkpoint directory or 'default' (nothing is downloaded)")
    if not path.is_dir():
        raise ConfigError(f"model path {str(path)!r} is a file; pass the checkpoint directory "
                          "that contains config.json")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{str(path)!r} has no config.json; it is not a Hugging Face checkpoint "
                          "directory (save one with model.save_pretrained(dir))")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config_path} is not valid JSON: {exc}") from None
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise ConfigError(f"{config_path} has no 'model_type'; re-save the checkpoint with "
                          "transformers' save_pretrained")
    return model_type


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """The tokenizer of checkpoint directory `path`: byte tokenizer if ``testbed_tokenizer.json``
    is there, else its Hugging Face tokenizer (local files only). Raises ConfigError if neither."""
    path = Path(path).expanduser()
    if (path / TOKENIZER_FILENAME).is_file():
        return ByteTokenizer.load(path)
    from transformers import AutoTokenizer

    try:
        hf_tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no tokenizer in {str(path)!r} (neither {TOKENIZER_FILENAME} nor Hugging "
                          f"Face tokenizer files): {exc}") from None
    if len(hf_tok) <= 1:
        # transformers 5 builds an empty tokenizer from a directory without tokenizer files
        raise ConfigError(f"no tokenizer in {str(path)!r}: add {TOKENIZER_FILENAME} or the Hugging "
                          "Face tokenizer files (tokenizer.json / tokenizer_config.json)")
    return HFTokenizerAdapter(hf_tok)


def load_model_and_tokenizer(spec: str | Path | None = None, *, require_shardable: bool = True,
                             progress: bool = True) -> tuple[torch.nn.Module, TextTokenizer]:
    """Load (model, tokenizer) from `spec` (see module docstring); float32, eval mode.

    `require_shardable` rejects model types other than `SHARDABLE_MODEL_TYPES` with a
    ConfigError; `progress` shows progress bars (training the default model if it must be
    trained first, loading weights). Raises ConfigError for a missing path, no config.json, an unsupported
    architecture or unloadable weights, and `testbed.llm.manifest.WeightsIntegrityError` (a
    ConfigError) for truncated or altered weights, before any of them is loaded."""
    if spec is None or (isinstance(spec, str) and spec == "default"):
        from testbed.llm.default_model import ensure_default_model

        path = ensure_default_model(progress=progress)
    else:
        path = Path(spec).expanduser()
    model_type = checkpoint_model_type(path)
    if spec is not None and spec != "default":
        from testbed.llm.default_model import rebuild_hint
        verify_checkpoint(path, rebuild_hint(path))
    if require_shardable and model_type not in SHARDABLE_MODEL_TYPES:
        raise ConfigError(f"{str(path)!r} is a {model_type!r} model; tensor-parallel sharding "
                          f"supports {', '.join(SHARDABLE_MODEL_TYPES)} (Llama/Qwen2/Mistral)")
    from transformers import AutoModelForCausalLM

    from testbed.llm.default_model import hf_progress_bars

    try:
        with hf_progress_bars(progress):
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                         dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load a causal LM from {str(path)!r}: {exc}") from None
    model.eval()
    return model, load_tokenizer(path)
