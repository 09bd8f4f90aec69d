"""The digital baseline across real processes: one process per node, gloo all-reduce over TCP.

Each rank reads only its own slices (plus the replicated part) from a safetensors checkpoint,
runs the very same `ShardedModel` code with itself as the only local node, and sums partial
sums with ``torch.distributed.all_reduce`` (gloo backend, TCP on 127.0.0.1). `run_tp_gloo`
spawns the ranks, waits for them, and returns what each measured.

Listening sockets stay on the configured host: rank 0's rendezvous store (torch's TCPStore,
which on its own listens on every interface, IPv4 and IPv6) is handed a socket already bound to
``host:port``, and gloo's own connections use the interface that carries ``host``
(``GLOO_SOCKET_IFNAME``, ``lo`` for 127.0.0.1) unless the environment names one.
"""
from __future__ import annotations

import os
import queue as queue_mod
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from testbed.errors import TestbedError
from testbed.llm.allreduce import AllReduce


class GlooAllReduce(AllReduce):
    """Sum this process's single partial with the other ranks' via ``dist.all_reduce`` (gloo).

    Counts calls and the wall time spent in them (seconds)."""

    name = "gloo"

    def __init__(self, group=None):
        self.group = group
        self.calls = 0
        self.seconds = 0.0

    def reduce(self, partials, *, layer, site):
        if len(partials) != 1:
            raise ValueError(f"GlooAllReduce runs one node per process, got {len(partials)} partials")
        total = partials[0].contiguous().clone()
        start = time.perf_counter()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.group)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return [total]


class QuantizedGlooAllReduce(GlooAllReduce):
    """The ``digital`` method between node processes: quantize this node's partial with
    ``bits`` bits (`testbed.phy.allreduce_digital.quantize_uniform`, as in-process), then
    gloo-sum the dequantized values, so every node gets what the in-process digital all-reduce
    gives. The OFDMA airtime of the quantized bits is modelled, not simulated
    (`testbed.optim.latency`)."""

    name = "digital-gloo"

    def __init__(self, bits: int = 8, group=None):
        super().__init__(group)
        self.bits = int(bits)

    def reduce(self, partials, *, layer, site):
        from testbed.phy.allreduce_digital import quantize_uniform
        if len(partials) != 1:
            raise ValueError(f"QuantizedGlooAllReduce runs one node per process, got {len(partials)}")
        zq, _ = quantize_uniform(partials[0].detach().double().numpy(), self.bits)
        q = torch.as_tensor(zq, dtype=partials[0].dtype)
        return super().reduce([q], layer=layer, site=site)


@dataclass
class RankResult:
    """What one rank measured. Bytes are of tensors actually held; RSS from the OS."""

    rank: int
    shard_param_count: int
    shard_param_bytes: int
    replicated_param_bytes: int
    rss_after_load_bytes: int
    rss_end_bytes: int
    tokens: list[list[int]]
    step_ms: list[float] = field(default_factory=list)  #: per generate step, prefill first
    allreduce_calls: int = 0
    allreduce_ms: float = 0.0
    prefill_logits: object = None  #: numpy (batch, tokens, vocab) fp32 if asked for


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def interface_toward(host: str) -> str:
    """Name of the local network interface whose address this machine uses to reach
    ``host`` (``lo`` for 127.0.0.1). Raises TestbedError when none holds that address."""
    import psutil
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:  # no packet is sent
        probe.connect((host, 9))
        local = probe.getsockname()[0]
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address.split("%")[0] == local for a in addrs):
            return name
    raise TestbedError(f"no network interface holds {local}, the address used to reach the "
                       f"gloo host {host}; set GLOO_SOCKET_IFNAME to the interface to use")


def _listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise TestbedError(f"gloo rendezvous cannot listen on {host}:{port}: {exc}; pick "
                           "another port or host") from None
    return sock


def init_gloo(rank: int, world: int, port: int, timeout_s: float = 120.0,
              host: str = "127.0.0.1") -> None:
    """Join a gloo process group rendezvousing at ``host:port`` (rank 0 listens there, on that
    address only; the others connect). ``timeout_s``: rendezvous and collective timeout, s."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", interface_toward(host))
    timeout = timedelta(seconds=timeout_s)
    if rank == 0:
        fd = _listener(host, port).detach()  # the store owns (and closes) the socket
        store = dist.TCPStore(host, port, world, True, timeout, master_listen_fd=fd)
    else:
        store = dist.TCPStore(host, port, world, False, timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _rank_main(rank, world, model_dir, ratios, port, input_ids, max_new_tokens, want_logits, results):
    try:
        from testbed.llm.sharding import shard_checkpoint

        torch.set_num_threads(1)
        init_gloo(rank, world, port)
        allreduce = GlooAllReduce()
        model = shard_checkpoint(model_dir, ratios, allreduce, nodes=[rank])
        rss_loaded = _rss()
        # every rank must make the same all-reduce calls, so all run the extra forward
        logits = model(input_ids).numpy() if want_logits else None
        tokens = model.generate(input_ids, max_new_tokens)
        node = model.nodes[0]
        results.put(("ok", RankResult(
            rank=rank, shard_param_count=node.param_count(), shard_param_bytes=node.param_bytes(),
            replicated_param_bytes=model.replicated.param_bytes(), rss_after_load_bytes=rss_loaded,
            rss_end_bytes=_rss(), tokens=tokens.tolist(),
            step_ms=[1e3 * s for s in model.step_seconds], allreduce_calls=allreduce.calls,
            allreduce_ms=1e3 * allreduce.seconds, prefill_logits=logits if rank == 0 else None)))
    except BaseException:  # report anything to the parent, which raises it
        results.put(("error", rank, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_tp_gloo(model_dir, ratios: Sequence[float], input_ids: torch.Tensor, max_new_tokens: int,
                *, want_logits: bool = False, timeout_s: float = 300.0) -> list[RankResult]:
    """Run greedy generation split over ``len(ratios)`` spawned processes; results by rank.

    ``input_ids``: ``(batch, tokens)`` token ids. Raises TestbedError if a rank fails or the
    run exceeds ``timeout_s`` seconds (the message carries the rank's traceback)."""
    from testbed.llm.checkpoint_slices import load_config
    from testbed.llm.plan import ArchSpec, make_plan

    make_plan(ArchSpec.from_config(load_config(model_dir)), ratios)  # refuse bad ratios/architectures before spawning anything
    world = len(ratios)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, daemon=True,
                         args=(r, world, str(model_dir), tuple(ratios), port, input_ids,
                               max_new_tokens, want_logits, results))
             for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    collected: dict[int, RankResult] = {}
    try:
        while len(collected) < world:
            try:
                msg = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue_mod.Empty:
                raise TestbedError(f"gloo run timed out after {timeout_s:.0f} s with ranks "
                                   f"{sorted(collected)} done; rerun with a larger timeout") from None
            if msg[0] == "error":
                raise TestbedError(f"rank {msg[1]} failed:\n{msg[2]}")
            collected[msg[1].rank] = msg[1]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    return [collected[r] for r in range(world)]
