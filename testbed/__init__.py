"""AirComp tensor-parallel LLM testbed: split a causal LM over edge nodes and replace each
all-reduce by over-the-air computation on software-defined radios (or their simulation)."""

__version__ = "0.1.0"
