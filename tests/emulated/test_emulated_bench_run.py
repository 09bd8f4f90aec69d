"""The emulated Pluto bench as a bench runs it: `testbed emulate --bench` (the radios), the
receiver (both 2R2T Plutos: one 4-antenna array) and every node each in its own process, the
controller here: the time base is synced over the control plane (loopbacks, the receiver's
beacon, each node's capture) across the processes' stream-start offsets, and a short AirComp
generation runs with estimated CSI on the array. Slow: minutes of emulated air on the shared
machine."""
import json

import pytest

from testbed.config.loader import load_bench
from testbed.net.roles.bench_runner import JobSpec, loopback_addresses, run_on_bench
from testbed.net.roles.common import node_ids, resolve_model_dir
from testbed.net.supervisor import Supervisor
from syslibs import require_module

pytestmark = pytest.mark.slow
require_module("iio")
require_module("adi")

TIME_SCALE = 16.0     # the shared 2-core machine also runs other work


def test_aircomp_generation_on_the_emulated_bench_one_process_per_role(tmp_path):
    from emulated_support import EmulatorProcess, emulated_bench_config
    cfg = emulated_bench_config(n_nodes=2, n_rx_radios=2)
    em = EmulatorProcess(cfg, tmp_path, TIME_SCALE)      # writes the bench file it serves
    try:
        bench = load_bench(em.path)
        model = resolve_model_dir("default")
        addresses = loopback_addresses()
        common = ["--bench", str(em.path), *addresses.as_args(), "--model", str(model)]
        with Supervisor(tmp_path / "run") as sup:
            sup.start_python(bench.receiver.id, "testbed.cli", ["receiver", *common])
            for nid in node_ids(bench):
                sup.start_python(nid, "testbed.cli", ["node", "--id", nid, *common])
            code = run_on_bench(bench, addresses, model, "aircomp-zf-sdr",
                                JobSpec(kind="generate", prompt_ids=[72, 101, 108, 108, 111],
                                        max_new_tokens=2),
                                tmp_path / "run", supervisor=sup, register_timeout_s=300)
            for name in sup.alive():
                sup.wait(name, 5.0)
    finally:
        em.close()
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert code == 0, res.get("error")
    assert res["status"] == "ok" and len(res["generated_ids"]) == 2
    syncs = res["allreduce"]["timebase_syncs"]
    assert syncs, "the controller synced the time base"
    nodes = syncs[0]["nodes"]
    assert set(nodes) == set(node_ids(bench))
    for info in nodes.values():
        assert info["metric"] > 0.5
        assert abs(info["tau_samples"]) > 1_000      # separate processes: far-apart clocks
    rx = res["radios"][bench.receiver.id]
    assert rx["kind"] == "pluto" and rx["serial"].count("+") == 1    # the array of two
    assert res["registered"][bench.receiver.id]["n_antennas"] == 4
