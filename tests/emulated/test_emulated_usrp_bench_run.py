"""The emulated USRP bench as a bench runs it: `testbed emulate --bench usrp_2node_emulated`
(three X310s on one OctoClock's 10 MHz/PPS), the receiver and both nodes each in its own
process, the controller here. Every process opens its radio whenever it starts (seconds apart:
``pps_align: unknown_pps`` would leave them whole seconds apart); at assignment the controller
agrees one PPS edge with all of them (`calibration.pps`), then AirComp rounds with estimated
CSI on the common device time. Slow: tens of seconds of emulated air."""
import numpy as np
import pytest
import torch
from emulated_support import (EmulatorProcess, RolesAsProcesses, emulated_usrp_bench_config,
                              realtime_retry)

from testbed.net.roles.common import node_ids
from testbed.net.roles.controller_job import BenchSession

pytestmark = pytest.mark.slow

TIME_SCALE = 2.0      # PPS edges 2 wall seconds apart
IDS = [72, 101, 108, 108, 111, 32, 119, 111]


@realtime_retry(attempts=2)
def test_aircomp_on_the_emulated_usrp_bench_one_process_per_role(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("usrp_bench")
    em = EmulatorProcess(emulated_usrp_bench_config(), tmp_path, TIME_SCALE)
    try:
        # each node opens its radio a PPS period and a half after the previous role
        with RolesAsProcesses(em.path, tmp_path / "run", stagger_s=1.5 * TIME_SCALE) as roles:
            bench = roles.bench
            ref = roles.reference(IDS, [0.5, 0.5])
            air = BenchSession(roles.ctl, bench, roles.fingerprint, "aircomp-zf-sdr",
                               csi="estimated", request_timeout_s=120.0)
            air.assign()                                 # ... and the agreed PPS edge
            sync = air.executor.syncs[0]
            assert sync["kind"] == "pps"
            assert set(sync["latched_host_s"]) == {*node_ids(bench), bench.receiver.id}
            latched = list(sync["latched_host_s"].values())
            assert max(latched) - min(latched) < 0.25 * sync["period_s"]     # one edge
            air.statistics_pass(torch.tensor(IDS * 8), window=16, n_windows=1, decode_steps=0)
            got = air.forward(torch.tensor([IDS]), reset=True, use_cache=False, last_only=True)
            summary = air.summary()
    finally:
        em.close()
    assert summary["rounds"] >= 8 and summary["simulator_truth_used"] == []
    assert summary["detected_offsets"] == [0] * len(summary["detected_offsets"])
    assert np.corrcoef(got[0], ref)[0, 1] > 0.8
