"""`testbed calibrate` across processes, as a bench runs it: `testbed emulate` (the radios),
the receiver and two nodes without a checkpoint, each in its own process and opening only its
own emulated radio; `testbed calibrate` is the controller (its own process too): the time base
(Plutos: the beacon; USRPs: the agreed PPS edge), soundings through it, a file keyed to the
registered serials. Then the roles start again (new stream starts: a new time base) and a run
loads the file: each node transmits through the time base composed with its correction, and
AirComp rounds with estimated CSI follow the exact model. On pluto_4node_emulated (uncalibrated
Plutos, a receiver of two 2R2T Plutos: one 4-antenna array) and usrp_2node_emulated (the
shared-reference USRP preset). Slow: minutes of emulated air."""
import numpy as np
import pytest
import torch
from emulated_support import RolesAsProcesses, realtime_retry, start_roles
from syslibs import require_module

pytestmark = pytest.mark.slow
require_module("iio")
require_module("adi")

TIME_SCALE = {"pluto": 8.0, "usrp": 2.0}
IDS = [72, 101, 108, 108, 111, 32, 119, 111]


def _calibrate(em, cfg, tmp_path):
    """Roles + `testbed calibrate` as processes; the file's path (every process ended)."""
    from testbed.net.roles.bench_runner import loopback_addresses
    from testbed.net.supervisor import Supervisor
    addresses = loopback_addresses()
    out = tmp_path / "cal"
    with Supervisor(tmp_path / "cal-run") as sup:
        start_roles(sup, cfg, em.path, addresses)            # nodes bring no checkpoint
        sup.start_python("calibrate", "testbed.cli", [
            "calibrate", "--bench", str(em.path), "--router", addresses.router,
            "--pub", addresses.pub, "--out", str(out), "--no-plots",
            "--track-ms", "0,50", "--register-timeout", "300"])
        code = sup.wait("calibrate", 900)
        log = "\n".join(sup.log_tail("calibrate"))
        assert code == 0, log
        for name in sup.alive():                  # the roles stop with the calibration
            assert sup.wait(name, 15) is not None, f"{name} still runs after calibration"
    return out / f"calibration_{cfg.name}.json", log


def _bench(kind):
    from emulated_support import emulated_bench_config, emulated_usrp_bench_config
    if kind == "pluto":
        return emulated_bench_config(n_nodes=2, n_rx_radios=2)
    return emulated_usrp_bench_config()


@pytest.mark.parametrize("kind", ["pluto", "usrp"])
@realtime_retry(attempts=2)
def test_testbed_calibrate_over_the_control_plane_and_a_run_with_its_file(tmp_path_factory,
                                                                          kind):
    from calibration.persistence import BenchKey, load_calibration
    from emulated_support import EmulatorProcess
    from testbed.net.roles.bench_calibration import load_bench_calibration
    from testbed.net.roles.controller_job import BenchSession
    tmp_path = tmp_path_factory.mktemp(f"emulated_calibrate_{kind}")
    cfg = _bench(kind)
    em = EmulatorProcess(cfg, tmp_path, TIME_SCALE[kind])
    try:
        path, log = _calibrate(em, cfg, tmp_path)
        rx = cfg.receiver.primary_radio
        rec = load_calibration(path, BenchKey(cfg.name, None, rx.center_freq_hz,
                                              rx.sample_rate_hz))
        kinds = [k for k, _ in rec.key.radios]
        serials = [s for _, s in rec.key.radios]
        assert kinds == [kind] * 3 and len(set(serials)) == 3
        if kind == "pluto":
            assert serials[-1].count("+") == 1            # the receiver's array of two radios
            assert rec.extra["time_base"][0]["nodes"]     # the beacon's time base
        else:
            assert rec.extra["time_base"][0]["kind"] == "pps"     # the agreed PPS edge
        assert rec.extra["phase_reference"] == "receive antenna 0"
        r = rec.residual
        # docs/calibration.md's thresholds (timing 0.05 sample, phase 4 deg, CFO 1.5 Hz)
        assert max(abs(v) for v in r["timing_samples"]) < 0.05, log
        assert max(abs(v) for v in r["phase_deg"]) < 4.0, log
        assert max(abs(v) for v in r["cfo_hz"]) < 1.5, log
        # through the time base, the raw soundings were already within a few samples
        assert max(abs(v) for v in rec.before["timing_samples"]) < 4.0, log

        roles = RolesAsProcesses(em.path, tmp_path / "run")
        ref = roles.reference(IDS, [0.5, 0.5])          # before the roles need heartbeats
        with roles:
            bench, ctl = roles.bench, roles.ctl
            cal = load_bench_calibration(path, bench)
            cal.check_registered(ctl, bench)            # the same radios registered again
            air = BenchSession(ctl, bench, roles.fingerprint, "aircomp-zf-sdr",
                               csi="estimated", corrections=cal.corrections,
                               request_timeout_s=240.0)
            air.assign()
            air.statistics_pass(torch.tensor(IDS * 8), window=16, n_windows=1,
                                decode_steps=0)
            got = air.forward(torch.tensor([IDS]), reset=True, use_cache=False,
                              last_only=True)
            summary = air.summary()
    finally:
        em.close()
    assert summary["rounds"] >= 8 and summary["simulator_truth_used"] == []
    assert np.corrcoef(got[0], ref)[0, 1] > 0.8
