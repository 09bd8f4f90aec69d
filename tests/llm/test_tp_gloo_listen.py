"""The gloo rendezvous listens only where it is told (issue 16): during a 2-rank gloo
all-reduce no process of the group has a listener on 0.0.0.0 or [::] (torch's TCPStore alone
would listen on every interface, IPv4 and IPv6)."""
from __future__ import annotations

import psutil
import pytest
import torch.multiprocessing as mp

from testbed.llm.tp_gloo import free_port, init_gloo, interface_toward

WILDCARDS = {"0.0.0.0", "::", "::ffff:0.0.0.0"}


def _rank(rank, port, out, go):
    import torch
    import torch.distributed as dist
    init_gloo(rank, 2, port, timeout_s=60, host="127.0.0.1")
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    out.put((rank, float(t)))
    go.wait(60)
    dist.destroy_process_group()


def _listeners(pid):
    return [c.laddr for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]


@pytest.mark.slow
def test_gloo_group_listens_on_the_configured_host_only():
    assert interface_toward("127.0.0.1") == "lo"
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, out, go), daemon=True) for r in (0, 1)]
    for p in procs:
        p.start()
    try:
        sums = dict(out.get(timeout=120) for _ in procs)
        assert sums == {0: 3.0, 1: 3.0}
        listening = {p.pid: _listeners(p.pid) for p in procs}
    finally:
        go.set()
        for p in procs:
            p.join(20)
            if p.is_alive():
                p.kill()
                p.join()
    every = [a for addrs in listening.values() for a in addrs]
    assert ("127.0.0.1", port) in [(a.ip, a.port) for a in listening[procs[0].pid]]
    assert not [a for a in every if a.ip in WILDCARDS], every
