"""Tensor-parallel sharding of Hugging Face causal LMs, the pluggable all-reduce, the embedded
default model, text data and perplexity.

Main entry points: `shard_model`, `shard_checkpoint`, `load_model_and_tokenizer`,
`evaluate_perplexity`, `AllReduce` / `make_allreduce`.
"""
from testbed.llm.allreduce import AllReduce, ExactAllReduce, make_allreduce, register_allreduce
from testbed.llm.sharding import ShardedModel, shard_checkpoint, shard_model

__all__ = ["AllReduce", "ExactAllReduce", "make_allreduce", "register_allreduce",
           "ShardedModel", "shard_checkpoint", "shard_model"]
