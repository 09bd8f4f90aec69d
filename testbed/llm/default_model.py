"""The embedded default model: a tiny byte-level Llama trained locally on `pydoc_data` topics.

Nothing is downloaded. `ensure_default_model()` returns a cached Hugging Face checkpoint directory
(``save_pretrained`` safetensors + ``testbed_tokenizer.json`` + ``training_report.json``), training
it first if it is not there. The cache root is ``$TESTBED_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/aircomp-testbed``, else ``~/.cache/aircomp-testbed``; the checkpoint lives in a
sub-directory named after a hash of the `TrainingRecipe` and of the corpus, so a changed recipe (or
another Python version's docs) trains a new model. A file lock (fcntl) keeps two processes from
training at once; training writes into a temporary directory that is renamed into place at the end.

Architecture (default recipe): Llama, hidden 128, 4 layers, 8 query heads and 4 KV heads (GQA,
head_dim 16), SwiGLU intermediate 384, vocabulary 256 bytes, RoPE up to 512 positions, tied
embeddings, no special tokens (bos/eos/pad ids None). Training: AdamW, linear warm-up then cosine
decay, random windows drawn from a seeded generator, `torch.manual_seed(seed)` for the init.

Threads: training uses ONE torch thread. Measured on the 2-core CI machine while ~6 other
processes ran: 1 thread took 0.9-1.4 s per step, 2 threads 5.8-6.4 s per step (OpenMP threads
spinning against each other); on an idle machine 2 threads are only ~1.5x faster. One thread also
makes the weights independent of the core count. Measured for the default recipe on the busy
machine: ~150 s, held-out perplexity ~6.5 per byte (uniform: 256).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from testbed.errors import ConfigError, TestbedError
from testbed.llm.manifest import has_manifest, verify_checkpoint, write_manifest
from testbed.llm.perplexity import evaluate_perplexity, hf_logits_fn
from testbed.llm.textdata import corpus_fingerprint, heldout_tokens, random_batch, train_tokens
from testbed.llm.tokenizer import ByteTokenizer

REPORT_FILENAME = "training_report.json"
_RECIPE_FORMAT = 1  # bump when the training code changes in a way that changes the weights


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines the default model's weights. Sizes in tokens (= bytes)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 512
    tie_embeddings: bool = True
    seq_len: int = 128          #: training window, tokens
    batch_size: int = 16        #: windows per step
    steps: int = 300            #: optimizer steps
    lr: float = 3e-3            #: peak learning rate
    min_lr_ratio: float = 0.1   #: final LR = lr * min_lr_ratio (cosine)
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0      #: max global L2 norm of the gradient
    seed: int = 0               #: init, data order and split
    heldout_fraction: float = 0.1
    eval_window: int = 256      #: held-out perplexity window, tokens (non-overlapping)
    threads: int = 1            #: torch intra-op threads during training (see module doc)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} must be a multiple of "
                              f"num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads={self.num_heads} must be a multiple of "
                              f"num_kv_heads={self.num_kv_heads} (GQA groups)")
        if not 2 <= self.seq_len <= self.max_positions or self.eval_window > self.max_positions:
            raise ConfigError(f"seq_len={self.seq_len} and eval_window={self.eval_window} must be "
                              f"in 2..max_positions={self.max_positions}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")

    def llama_config(self):
        """The `transformers.LlamaConfig` of this recipe (vocabulary 256, no special tokens)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=ByteTokenizer.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_positions, tie_word_embeddings=self.tie_embeddings,
            bos_token_id=None, eos_token_id=None, pad_token_id=None, rms_norm_eps=1e-5,
            torch_dtype="float32")

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the recipe, the training-code format and the corpus."""
        payload = json.dumps({"recipe": dataclasses.asdict(self), "format": _RECIPE_FORMAT,
                              "corpus": corpus_fingerprint()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def lr_at(self, step: int) -> float:
        """Learning rate at optimizer step `step` (0-based): linear warm-up, cosine to the floor."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + 0.5 * (self.lr - floor) * (1.0 + math.cos(math.pi * progress))


DEFAULT_RECIPE = TrainingRecipe()


def default_cache_root() -> Path:
    """``$TESTBED_CACHE_DIR``, else ``$XDG_CACHE_HOME/aircomp-testbed``, else
    ``~/.cache/aircomp-testbed`` (not created here)."""
    if os.environ.get("TESTBED_CACHE_DIR"):
        return Path(os.environ["TESTBED_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "aircomp-testbed"
    return Path.home() / ".cache" / "aircomp-testbed"


def default_model_dir(recipe: TrainingRecipe = DEFAULT_RECIPE,
                      cache_root: str | Path | None = None) -> Path:
    """Where the checkpoint of `recipe` lives (whether or not it exists yet)."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    return root / f"default-llama-{recipe.fingerprint()[:16]}"


def is_complete(directory: str | Path) -> bool:
    """True if `directory` holds a finished checkpoint (the report is written last)."""
    directory = Path(directory)
    return (directory / REPORT_FILENAME).is_file() and (directory / "config.json").is_file()


def read_training_report(directory: str | Path) -> dict:
    """The ``training_report.json`` of a default-model checkpoint as a dict."""
    path = Path(directory) / REPORT_FILENAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; run `testbed train-default` to (re)build it") from None


@contextlib.contextmanager
def _num_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_default_model(recipe: TrainingRecipe, out_dir: str | Path, *,
                        progress: bool = True) -> dict:
    """Train a model per `recipe` and save the checkpoint into `out_dir` (created).

    Deterministic for a given recipe, torch build and thread count. Returns the training report
    (also written to `out_dir/training_report.json`): held-out perplexity, final train loss (nats
    per byte, mean of the last 10 % of steps), steps, tokens seen, seconds, seed, recipe hash."""
    from transformers import LlamaForCausalLM

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    train = train_tokens(recipe.seed, recipe.heldout_fraction)
    held = heldout_tokens(recipe.seed, recipe.heldout_fraction)
    with _num_threads(recipe.threads):
        torch.manual_seed(recipe.seed)
        model = LlamaForCausalLM(recipe.llama_config())
        model.train()
        gen = torch.Generator().manual_seed(recipe.seed + 1)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=recipe.lr, betas=(0.9, 0.95))
        losses = []
        bar = tqdm(range(recipe.steps), desc="training default model", unit="step",
                   disable=not progress)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = recipe.lr_at(step)
            batch = random_batch(train, recipe.batch_size, recipe.seq_len, gen)
            logits = model(input_ids=batch, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            losses.append(loss.detach().item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        train_seconds = time.perf_counter() - t0
        model.eval()
        result = evaluate_perplexity(hf_logits_fn(model), held, window=recipe.eval_window,
                                     progress=progress)
    tail = losses[-max(1, len(losses) // 10):]
    report = {
        "heldout_perplexity": result.ppl,
        "heldout_nll_per_byte": result.nll_per_token,
        "heldout_tokens_scored": result.n_tokens,
        "train_loss_final": sum(tail) / len(tail),
        "train_loss_first": losses[0],
        "steps": recipe.steps,
        "tokens_seen": recipe.steps * recipe.batch_size * recipe.seq_len,
        "train_tokens": int(train.numel()),
        "heldout_tokens": int(held.numel()),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t0,
        "seed": recipe.seed,
        "threads": recipe.threads,
        "recipe_hash": recipe.fingerprint(),
        "recipe": dataclasses.asdict(recipe),
        "torch_version": torch.__version__,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with hf_progress_bars(progress):
        model.save_pretrained(out_dir, safe_serialization=True)
    ByteTokenizer().save(out_dir)
    write_manifest(out_dir)
    (out_dir / REPORT_FILENAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


@contextlib.contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Context: show (True) or hide (False) transformers' own progress bars, then restore."""
    from transformers.utils import logging as hf_logging

    was_disabled = not hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_default_model(progress: bool = True, *, recipe: TrainingRecipe = DEFAULT_RECIPE,
                         cache_root: str | Path | None = None, force: bool = False) -> Path:
    """Return the checkpoint directory of the default model, training it first if it is missing
    (or if `force`). Safe under concurrency: one process trains, the others wait and reuse.

    A cached checkpoint is verified against the SHA-256 manifest written at training time
    before it is returned (`testbed.llm.manifest`): a truncated or altered file raises
    `WeightsIntegrityError` naming it and ``testbed train-default --force``. A cache trained
    before manifests existed gets one recorded on first use.

    Raises TestbedError if the cache directory cannot be written (set ``TESTBED_CACHE_DIR``)."""
    final = default_model_dir(recipe, cache_root)
    if not force and is_complete(final):
        return _verified(final)
    try:
        with _file_lock(final.parent / f"{final.name}.lock"):
            if is_complete(final) and not force:
                return _verified(final)  # another process trained it while we waited
            tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent))
            try:
                train_default_model(recipe, tmp, progress=progress)
                if final.exists():
                    trash = Path(tempfile.mkdtemp(prefix=f"{final.name}.old-", dir=final.parent))
                    os.replace(final, trash / "old")
                    shutil.rmtree(trash, ignore_errors=True)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except PermissionError as exc:
        raise TestbedError(f"cannot write the model cache at {final.parent} ({exc}); "
                           "set TESTBED_CACHE_DIR to a writable directory") from None
    return _verified(final)


#: how to rebuild the default model when its cached files are damaged
REBUILD_DEFAULT = "testbed train-default --force"


def rebuild_hint(directory: str | Path) -> str:
    """What rebuilds checkpoint ``directory``: ``testbed train-default --force`` for a default
    model checkpoint (it has a training report), else restoring a user's checkpoint."""
    if (Path(directory) / REPORT_FILENAME).is_file():
        return REBUILD_DEFAULT
    return ("restore the checkpoint directory from its source (or save it again with "
            "save_pretrained)")


def _verified(directory: Path) -> Path:
    """``directory`` after `verify_checkpoint` (manifest recorded first for an older cache)."""
    if not has_manifest(directory):
        verify_checkpoint(directory, REBUILD_DEFAULT)  # at least whole safetensors files
        try:
            write_manifest(directory)
        except OSError:  # a read-only cache: the size checks above are all we can do
            return directory
    verify_checkpoint(directory, REBUILD_DEFAULT)
    return directory
