"""Who holds what: the architecture facts a split needs, and the per-node shard plan.

A plan is pure bookkeeping (no weights): from a Hugging Face config and per-node ratios it
decides, per node, which whole KV groups (with their query heads) and which MLP columns the node
holds, and how many parameters/bytes that is. Both parts are rounded with the largest-remainder
(Hamilton) method, so every node's share is within one unit of ``ratio * total`` and the shares
sum exactly to the total; ties go to the lower node index. Each node's units are one contiguous
block (node 0 first), so a node reads its weights as a single slice of each checkpoint tensor.

Replicated on every node (not split): token embedding, RMSNorms, rotary embedding, LM head and
the biases of the row-parallel projections (o_proj, down_proj), which are added once after the
all-reduce. A vocab-parallel LM head would add a third split unit here (vocabulary rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

#: ``config.model_type`` -> the Hugging Face class this split supports.
SUPPORTED_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
}

RATIO_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ArchSpec:
    """Shapes and options of a supported decoder-only model, read from its HF config.

    Bias flags: ``qkv_bias`` (q/k/v projections), ``o_bias`` (attention output projection),
    ``mlp_bias`` (gate/up projections), ``down_bias`` (MLP down projection).
    ``sliding_windows[l]`` is layer l's attention window in tokens, or None for full attention.
    """

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    hidden_act: str
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    down_bias: bool
    tie_word_embeddings: bool
    sliding_windows: tuple[int | None, ...]

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 = plain multi-head attention)."""
        return self.num_heads // self.num_kv_heads

    @classmethod
    def from_config(cls, config) -> "ArchSpec":
        """Read an `ArchSpec` from a `LlamaConfig`, `Qwen2Config` or `MistralConfig`.

        Raises ValueError for any other architecture (the message names the supported ones)."""
        model_type = getattr(config, "model_type", None)
        if model_type not in SUPPORTED_ARCHITECTURES:
            supported = ", ".join(SUPPORTED_ARCHITECTURES.values())
            raise ValueError(f"unsupported architecture {model_type!r} "
                             f"({getattr(config, 'architectures', None)}); tensor-parallel sharding "
                             f"supports {supported}")
        n_heads = config.num_attention_heads
        n_kv = getattr(config, "num_key_value_heads", None) or n_heads
        if n_heads % n_kv:
            raise ValueError(f"num_attention_heads={n_heads} is not a multiple of "
                             f"num_key_value_heads={n_kv}; the config is inconsistent")
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
        n_layers = config.num_hidden_layers
        if model_type == "llama":
            qkv_bias = o_bias = bool(getattr(config, "attention_bias", False))
            mlp_bias = down_bias = bool(getattr(config, "mlp_bias", False))
            windows = (None,) * n_layers
        elif model_type == "qwen2":
            qkv_bias, o_bias, mlp_bias, down_bias = True, False, False, False
            layer_types = getattr(config, "layer_types", None) or ["full_attention"] * n_layers
            windows = tuple(config.sliding_window if t == "sliding_attention" else None
                            for t in layer_types[:n_layers])
        else:  # mistral
            qkv_bias = o_bias = mlp_bias = down_bias = False
            windows = (getattr(config, "sliding_window", None),) * n_layers
        return cls(model_type=model_type, hidden_size=config.hidden_size, num_layers=n_layers,
                   num_heads=n_heads, num_kv_heads=n_kv, head_dim=head_dim,
                   intermediate_size=config.intermediate_size, vocab_size=config.vocab_size,
                   rms_norm_eps=config.rms_norm_eps, hidden_act=config.hidden_act,
                   qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=mlp_bias, down_bias=down_bias,
                   tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
                   sliding_windows=windows)


def validate_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """Check per-node fractions: non-empty, finite, non-negative, summing to 1 (+-1e-6).

    Returns them as a tuple of floats; raises ValueError saying what to change."""
    ratios = tuple(float(r) for r in ratios)
    if not ratios:
        raise ValueError("ratios is empty; give one non-negative fraction per node, summing to 1 "
                         "(e.g. [0.5, 0.3, 0.2])")
    bad = [(i, r) for i, r in enumerate(ratios) if not math.isfinite(r) or r < 0]
    if bad:
        raise ValueError(f"ratios must be finite and non-negative; node(s) {bad} are not "
                         "(use 0 for a node that should hold nothing)")
    total = math.fsum(ratios)
    if abs(total - 1.0) > RATIO_TOLERANCE:
        raise ValueError(f"ratios must sum to 1 (tolerance {RATIO_TOLERANCE:g}), they sum to "
                         f"{total:.9g}; divide each by {total:.9g} to normalize")
    return ratios


def largest_remainder(ratios: Sequence[float], total: int) -> list[int]:
    """Split ``total`` integer units by ``ratios`` (summing to 1) with the largest-remainder method.

    Each node first gets ``floor(ratio * total)``; the units left over go one each to the nodes
    with the largest fractional parts (ties: lower index first). A zero ratio always gets 0.
    Returns a list of non-negative ints summing to ``total``."""
    quotas = [r * total for r in ratios]
    counts = [math.floor(q + 1e-9) for q in quotas]  # 1e-9 absorbs float noise like 2.9999999999
    counts = [min(c, total) for c in counts]
    left = total - sum(counts)
    order = sorted((i for i, r in enumerate(ratios) if r > 0),
                   key=lambda i: (-(quotas[i] - counts[i]), i))
    i = 0
    while left > 0:
        counts[order[i % len(order)]] += 1
        left -= 1
        i += 1
    while left < 0:  # only reachable through float noise: take from the largest overshoot
        j = max(range(len(counts)), key=lambda k: counts[k] - quotas[k])
        counts[j] -= 1
        left += 1
    return counts


def _blocks(counts: Sequence[int]) -> list[range]:
    """Consecutive ranges of the given lengths starting at 0."""
    out, start = [], 0
    for c in counts:
        out.append(range(start, start + c))
        start += c
    return out


@dataclass(frozen=True)
class NodePlan:
    """One node's shard: KV groups (with their query heads), MLP columns, its size.

    ``kv_groups`` and ``mlp_columns`` are contiguous index ranges (possibly empty);
    ``param_count`` / ``param_bytes`` count only this node's split weights (all layers)."""

    node: int
    ratio: float
    kv_groups: range
    mlp_columns: range
    group_size: int
    head_dim: int
    param_count: int
    param_bytes: int

    @property
    def query_heads(self) -> range:
        """Indices of the query heads of this node's KV groups."""
        return range(self.kv_groups.start * self.group_size, self.kv_groups.stop * self.group_size)

    @property
    def q_rows(self) -> range:
        """Rows of q_proj.weight (= columns of o_proj.weight) held by this node."""
        return range(self.query_heads.start * self.head_dim, self.query_heads.stop * self.head_dim)

    @property
    def kv_rows(self) -> range:
        """Rows of k_proj.weight / v_proj.weight held by this node."""
        return range(self.kv_groups.start * self.head_dim, self.kv_groups.stop * self.head_dim)


@dataclass(frozen=True)
class ShardPlan:
    """The whole split: one `NodePlan` per node plus the replicated part's size.

    ``replicated_count`` / ``replicated_bytes`` are what every node holds in addition to its
    shard (embedding, norms, LM head if untied, row-parallel biases)."""

    arch: ArchSpec
    ratios: tuple[float, ...]
    nodes: tuple[NodePlan, ...]
    replicated_count: int
    replicated_bytes: int
    dtype: torch.dtype

    @property
    def world_size(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def total_count(self) -> int:
        """Parameters of the unsplit model (tied embeddings counted once)."""
        return self.replicated_count + sum(n.param_count for n in self.nodes)

    def format_plan(self) -> str:
        """A fixed-width table: per node ratio, KV groups, query heads, MLP columns, params, MiB."""
        a = self.arch
        lines = [f"{a.model_type}: {a.num_layers} layers, {a.num_heads} query heads in "
                 f"{a.num_kv_heads} KV groups of {a.group_size}, MLP {a.intermediate_size} "
                 f"columns, {self.world_size} nodes, {self.dtype}".replace("torch.", ""),
                 f"{'node':>4} {'ratio':>7} {'kv groups':>11} {'q heads':>9} {'mlp columns':>13} "
                 f"{'params':>11} {'MiB':>8}"]
        for n in self.nodes:
            lines.append(f"{n.node:>4} {n.ratio:>7.4f} {_fmt_range(n.kv_groups):>11} "
                         f"{_fmt_range(n.query_heads):>9} {_fmt_range(n.mlp_columns):>13} "
                         f"{n.param_count:>11,} {n.param_bytes / 2**20:>8.3f}")
        lines.append(f"{'repl':>4} {'':>7} {'(embedding, norms, LM head, row biases) on every node':>34}"
                     f" {self.replicated_count:>11,} {self.replicated_bytes / 2**20:>8.3f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_plan()


def _fmt_range(r: range) -> str:
    if len(r) == 0:
        return "-"
    return f"{r.start}" if len(r) == 1 else f"{r.start}-{r.stop - 1}"


def _node_param_count(a: ArchSpec, n_groups: int, n_cols: int) -> int:
    q_out = n_groups * a.group_size * a.head_dim
    kv_out = n_groups * a.head_dim
    per_layer = (a.hidden_size * q_out + a.qkv_bias * q_out
                 + 2 * (a.hidden_size * kv_out + a.qkv_bias * kv_out)
                 + q_out * a.hidden_size
                 + 2 * (a.hidden_size * n_cols + a.mlp_bias * n_cols)
                 + n_cols * a.hidden_size)
    return a.num_layers * per_layer


def _replicated_param_count(a: ArchSpec) -> int:
    embed = a.vocab_size * a.hidden_size
    head = 0 if a.tie_word_embeddings else a.vocab_size * a.hidden_size
    norms = (2 * a.num_layers + 1) * a.hidden_size
    row_biases = a.num_layers * a.hidden_size * (a.o_bias + a.down_bias)
    return embed + head + norms + row_biases


def make_plan(arch: ArchSpec, ratios: Sequence[float], dtype: torch.dtype = torch.float32) -> ShardPlan:
    """Plan a split of ``arch`` over ``len(ratios)`` nodes (see module docstring for rounding).

    ``dtype`` only sets the byte counts. Raises ValueError for bad ratios or more nodes than MLP
    columns (the finest split unit)."""
    ratios = validate_ratios(ratios)
    if len(ratios) > arch.intermediate_size:
        raise ValueError(f"{len(ratios)} nodes but the model can be split over at most "
                         f"{arch.intermediate_size} nodes (its MLP intermediate size); use fewer nodes")
    groups = _blocks(largest_remainder(ratios, arch.num_kv_heads))
    columns = _blocks(largest_remainder(ratios, arch.intermediate_size))
    itemsize = torch.empty((), dtype=dtype).element_size()
    nodes = []
    for i, (r, g, c) in enumerate(zip(ratios, groups, columns)):
        count = _node_param_count(arch, len(g), len(c))
        nodes.append(NodePlan(node=i, ratio=r, kv_groups=g, mlp_columns=c,
                              group_size=arch.group_size, head_dim=arch.head_dim,
                              param_count=count, param_bytes=count * itemsize))
    rep = _replicated_param_count(arch)
    return ShardPlan(arch=arch, ratios=ratios, nodes=tuple(nodes), replicated_count=rep,
                     replicated_bytes=rep * itemsize, dtype=dtype)
