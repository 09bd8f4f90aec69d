"""Write the default model's training corpus, CPython's ``pydoc_data.topics`` of the running
interpreter, to ``testbed/llm/data/pydoc_topics.json.gz`` (sorted keys, gzip level 9, no
timestamp), with the Python version it came from. Run once per deliberate corpus change: the
vendored copy keeps the default model the same on every Python (3.11.2's topics train a
different model, held-out perplexity 4.92 instead of 6.38).

Usage: python tools/vendor_corpus.py
"""
from __future__ import annotations

import gzip
import json
import platform
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "testbed" / "llm" / "data" / "pydoc_topics.json.gz"


def main() -> None:
    from pydoc_data.topics import topics
    doc = {"source": f"CPython {platform.python_version()} pydoc_data.topics "
                     "(Python Software Foundation License)",
           "topics": dict(sorted(topics.items()))}
    raw = json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=0).encode("utf-8")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9,
                                             mtime=0, filename="") as gz:
        gz.write(raw)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(topics)} topics, {doc['source']})")


if __name__ == "__main__":
    main()
