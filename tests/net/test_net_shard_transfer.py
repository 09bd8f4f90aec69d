"""Shards from the controller, message level: SHARD_OFFER / SHARD_CHUNK through the codec, the
node's receiver assembling, storing and caching the slice, refusing chunks out of order,
slices for another assignment and a tampered cache (fetched again)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed import errors
from testbed.llm.default_model import ensure_default_model
from testbed.net.codec import decode, encode
from testbed.net.errors import MessageError
from testbed.net.roles.slices import SliceReceiver, SliceServer, slice_digest
from testbed.net.schema import ShardChunk

RATIOS = [0.6, 0.4]


@pytest.fixture(scope="module")
def server():
    d = ensure_default_model(progress=False)
    return SliceServer(d, "sha256:test", chunk_bytes=256 * 1024)


def _wire(msg):
    return decode(encode(msg))


def _receive(receiver, server, index):
    ack = receiver.on_offer(_wire(server.offer(RATIOS, index)))
    if not ack["need"]:
        return ack, 0
    chunks = list(server.chunks(RATIOS, index))
    for c in chunks[:-1]:
        assert receiver.on_chunk(_wire(c)) == {"stored": False}
    last = receiver.on_chunk(_wire(chunks[-1]))
    assert last["stored"]
    return last, len(chunks)


def test_slice_travels_in_chunks_and_is_cached(server, tmp_path):
    rx = SliceReceiver("node1", tmp_path)
    ack, n_chunks = _receive(rx, server, 1)
    size = sum(len(b) for b in server.files(RATIOS, 1).values())
    assert n_chunks == sum(-(-len(b) // server.chunk_bytes)
                           for b in server.files(RATIOS, 1).values())
    assert n_chunks > 2 and rx.stats == {"source": "controller", "bytes_received": size,
                                         "cache_rejected": None}
    d = rx.slice_for("sha256:test", RATIOS, 1)
    assert rx.stats["sha256"] == slice_digest(server.offer(RATIOS, 1))
    assert {p.name for p in d.iterdir()} == {"config.json", "model.safetensors",
                                             "weights_manifest.json"}
    assert (d / "model.safetensors").read_bytes() == server.files(RATIOS, 1)["model.safetensors"]
    # a second node process with the same cache: offered again, it needs nothing
    rx2 = SliceReceiver("node1", tmp_path)
    ack2, n2 = _receive(rx2, server, 1)
    assert n2 == 0 and ack2["path"] == str(d) and rx2.stats["source"] == "cache"
    # a slice for another split, index or checkpoint is not this one
    for fp, ratios, index in (("sha256:other", RATIOS, 1), ("sha256:test", [0.5, 0.5], 1),
                              ("sha256:test", RATIOS, 0)):
        with pytest.raises(RuntimeError, match="no slice for this assignment"):
            rx2.slice_for(fp, ratios, index)


def test_tampered_cache_is_refused_and_fetched_again(server, tmp_path):
    rx = SliceReceiver("node0", tmp_path)
    _receive(rx, server, 0)
    w = rx.slice_for("sha256:test", RATIOS, 0) / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    w.write_bytes(bytes(raw))
    rx2 = SliceReceiver("node0", tmp_path)
    ack = rx2.on_offer(_wire(server.offer(RATIOS, 0)))
    assert ack["need"] and "SHA-256" in ack["cache_rejected"]
    assert not w.exists()                           # discarded before anything read it
    for c in server.chunks(RATIOS, 0):
        rx2.on_chunk(_wire(c))
    assert w.read_bytes() == server.files(RATIOS, 0)["model.safetensors"]
    # tampering after the offer, before the assignment: caught by the check before use
    w.write_bytes(bytes(raw))
    from testbed.llm.manifest import WeightsIntegrityError
    with pytest.raises(WeightsIntegrityError):
        rx2.slice_for("sha256:test", RATIOS, 0)


def test_chunks_out_of_order_or_unoffered_are_refused(server, tmp_path):
    rx = SliceReceiver("node1", tmp_path)
    chunks = list(server.chunks(RATIOS, 1))
    with pytest.raises(ValueError, match="without a matching SHARD_OFFER"):
        rx.on_chunk(chunks[0])
    rx.on_offer(server.offer(RATIOS, 1))
    rx.on_chunk(chunks[0])
    with pytest.raises(ValueError, match="out of order"):
        rx.on_chunk(chunks[2])
    with pytest.raises(ValueError, match="out of order"):
        rx.on_chunk(chunks[0])


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4096), name=st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}\Z"))
def test_chunk_roundtrip(data, name):
    msg = ShardChunk(file=name, offset=7, data=np.frombuffer(data, np.uint8).copy())
    got = _wire(msg)
    assert got.data.tobytes() == data and got.file == name and got.offset == 7


@pytest.mark.parametrize("name", ["../x", ".hidden", "a/b", "", "x" * 200])
def test_chunk_file_names_are_plain(name):
    with pytest.raises(ValueError):
        ShardChunk(file=name, offset=0, data=np.zeros(1, np.uint8))


def test_chunk_data_must_be_bytes():
    good = encode(ShardChunk(file="f", offset=0, data=np.zeros(8, np.uint8)))
    bad = encode(ShardChunk(file="f", offset=0, data=np.zeros(8, np.uint8)))
    bad[0] = bad[0].replace(b'"uint8","shape":[8]', b'"int64","shape":[1]')
    decode(good)
    with pytest.raises(MessageError):
        decode(bad)


def test_unwritable_cache_is_named(server, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rx = SliceReceiver("node1", blocker)            # the cache root is a file
    rx.on_offer(server.offer(RATIOS, 1))
    chunks = list(server.chunks(RATIOS, 1))
    for c in chunks[:-1]:
        rx.on_chunk(c)
    with pytest.raises(errors.TestbedError, match="TESTBED_CACHE_DIR"):
        rx.on_chunk(chunks[-1])
