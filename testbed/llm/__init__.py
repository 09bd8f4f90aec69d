"""Tensor-parallel sharding of Hugging Face causal LMs, the pluggable all-reduce, the embedded
default model, text data and perplexity.

Main entry points: `shard_model`, `shard_checkpoint`, `load_model_and_tokenizer`,
`evaluate_perplexity`, `AllReduce` / `make_allreduce`.
"""
from testbed.llm.allreduce import AllReduce, ExactAllReduce, make_allreduce, register_allreduce

#: imported on first use (PEP 562): the sharding code loads transformers (~2-4 s), which a
#: process that only needs the all-reduce interface (a bench node before its ASSIGNMENT) skips
_LAZY = {"ShardedModel": "testbed.llm.sharding", "shard_checkpoint": "testbed.llm.sharding",
         "shard_model": "testbed.llm.sharding"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'testbed.llm' has no attribute {name!r}")

__all__ = ["AllReduce", "ExactAllReduce", "make_allreduce", "register_allreduce",
           "ShardedModel", "shard_checkpoint", "shard_model"]
