"""The pluggable all-reduce: the one place where the sharded model communicates.

The sharded model (in-process simulation of N nodes) calls an `AllReduce` at each of the two
sync points per transformer layer — after the attention output projection (site ``"attn"``)
and after the MLP down projection (site ``"mlp"``) — with every node's partial sum, and uses
what each node receives. Implementations: `ExactAllReduce` here; over-the-air (AirComp),
digital (OFDMA, quantized) and uncoded FDMA elsewhere, all with this interface.
"""
from __future__ import annotations

import abc
from typing import Sequence

import torch

SITES = ("attn", "mlp")


class AllReduce(abc.ABC):
    """Sum partial tensors across nodes.

    ``partials[n]`` is node n's partial sum, shape ``(batch, tokens, hidden)`` (all the same);
    a node holding no share of a part contributes a zero tensor. Returns one tensor per node:
    what that node receives (with a shared receiver broadcasting, these are the same object).
    """

    name: str = "abstract"

    @abc.abstractmethod
    def reduce(self, partials: Sequence[torch.Tensor], *, layer: int, site: str) -> list[torch.Tensor]:
        """Combine ``partials`` for transformer layer ``layer`` (0-based) at ``site``."""

    def __call__(self, partials: Sequence[torch.Tensor], *, layer: int, site: str) -> list[torch.Tensor]:
        if site not in SITES:
            raise ValueError(f"site must be one of {SITES}, got {site!r}")
        if len(partials) == 0:
            raise ValueError("all-reduce needs at least one partial sum")
        return self.reduce(partials, layer=layer, site=site)

    def reset_stats(self) -> None:
        """Forget per-site statistics (implementations that keep some override this)."""

    def stats(self) -> dict:
        """Per-(layer, site) statistics gathered so far; empty for the exact sum."""
        return {}


class ExactAllReduce(AllReduce):
    """The plain sum, as a perfect digital network would deliver it."""

    name = "exact"

    def reduce(self, partials, *, layer, site):
        total = partials[0].clone()
        for p in partials[1:]:
            total = total + p
        return [total] * len(partials)


_REGISTRY: dict[str, type[AllReduce]] = {"exact": ExactAllReduce}


def register_allreduce(name: str, cls: type[AllReduce]) -> None:
    """Make ``make_allreduce(name)`` build ``cls()`` (for implementations with defaults)."""
    _REGISTRY[name] = cls


def make_allreduce(spec: str | AllReduce) -> AllReduce:
    """Return ``spec`` if it is already an `AllReduce`, else build the registered one by name."""
    if isinstance(spec, AllReduce):
        return spec
    if spec not in _REGISTRY:
        raise ValueError(f"unknown all-reduce {spec!r}; choose one of {sorted(_REGISTRY)} "
                         "or pass an AllReduce instance")
    return _REGISTRY[spec]()
