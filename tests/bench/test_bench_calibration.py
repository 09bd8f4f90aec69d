"""A calibration file in the multi-process bench: `testbed run --bench B --up --calibration F`
on a broker with `channel.impairments: uncalibrated-pluto` (2 nodes, tiny default model).

The file comes from the in-process `testbed calibrate --bench B`; the broker draws the same
clock/CFO/gain impairments from the bench seed (only the LO phases differ, which `--csi
estimated` absorbs with per-frame pilots). Oracles: the design's own MSE prediction from the
estimated channels, and the raw (uncorrected) bench, whose frames the receiver cannot detect.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from calibration.persistence import CalibrationMismatchError, StaleCalibrationError
from testbed.cli import main
from testbed.config.loader import load_bench

pytestmark = pytest.mark.slow

RADIO = "{kind: sim, sample_rate_hz: 1.0e6, center_freq_hz: 915.0e6, n_tx_channels: 1, n_rx_channels: %d}"
BENCH = f"""name: simcal2
controller: {{host: 127.0.0.1, router_port: 5555, pub_port: 5556, heartbeat_s: 0.5, dead_after_s: 3.0}}
assignment: given
nodes:
  - {{id: node0, host: 127.0.0.1, radio: {RADIO % 1}, ratio: 0.5}}
  - {{id: node1, host: 127.0.0.1, radio: {RADIO % 1}, ratio: 0.5}}
receiver:
  id: receiver
  host: 127.0.0.1
  n_antennas: 2
  radio: {RADIO % 2}
channel: {{seed: 7, snr_db: 25.0, fading: rayleigh, k_factor_db: 0.0,
           path_loss_db: {{node0: 0.0, node1: 3.0}}, impairments: uncalibrated-pluto}}
"""
RUN = ["--up", "--method", "aircomp-zf-sdr", "--csi", "estimated", "--prompt-ids", "72,101,108",
       "--max-new-tokens", "1"]


@pytest.fixture(scope="module")
def bench_and_cal(tmp_path_factory):
    d = tmp_path_factory.mktemp("benchcal")
    yaml = d / "simcal2.yaml"
    yaml.write_text(BENCH)
    assert main(["calibrate", "--bench", str(yaml), "--out", str(d / "cal"), "--no-plots"]) == 0
    return yaml, d / "cal" / "calibration_simcal2.json"


def test_calibrated_aircomp_run_succeeds_and_records_the_file(bench_and_cal, tmp_path):
    yaml, cal = bench_and_cal
    code = main(["run", "--bench", str(yaml), *RUN, "--calibration", str(cal),
                 "--calibration-max-age", "3600", "--measure-error", "--run-dir", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and res["status"] == "ok", res.get("error")
    assert res["calibration"]["path"] == str(cal.resolve())
    import hashlib
    assert res["calibration"]["sha256"] == hashlib.sha256(cal.read_bytes()).hexdigest()
    assert res["calibration"]["warnings"] == []
    air, tap = res["allreduce"], res["measurement_tap"]
    assert air["rounds"] == 8 and tap["rounds_measured"] == 8
    # the corrected bench behaves as a calibrated one: the tap's measured MSE follows the
    # designs' prediction
    ratio = tap["mse_tensor_mean"] / air["mse_tensor_predicted_mean"]
    assert 0.5 < ratio < 2.0, ratio
    assert tap["mse_tensor_mean"] < 1e-2


def test_uncalibrated_impaired_bench_finds_no_frame(bench_and_cal, tmp_path, capsys):
    yaml, _ = bench_and_cal
    assert main(["run", "--bench", str(yaml), *RUN, "--run-dir", str(tmp_path)]) != 0
    assert "no preamble found" in capsys.readouterr().err
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["status"] == "failed" and res["calibration"] is None


def test_mismatching_or_stale_file_is_refused_before_any_process(bench_and_cal, tmp_path,
                                                                 capsys):
    yaml, cal = bench_and_cal
    data = json.loads(cal.read_text())
    data["radios"][1]["serial"] = "sim-node-9"
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(data))
    assert main(["run", "--bench", str(yaml), *RUN, "--calibration", str(bad),
                 "--run-dir", str(tmp_path / "r1")]) != 0
    err = capsys.readouterr().err
    assert "does not match this bench" in err and "sim-node-9" in err
    assert not (tmp_path / "r1").exists()  # refused before the bench came up
    data = json.loads(cal.read_text())
    data["created_unix_s"] -= 7200
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert main(["run", "--bench", str(yaml), *RUN, "--calibration", str(old),
                 "--calibration-max-age", "60", "--strict-calibration",
                 "--run-dir", str(tmp_path / "r2")]) != 0
    assert "more than max_age_s=60" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_bench_key_and_corrections_from_config(bench_and_cal):
    from testbed.net.roles.bench_calibration import bench_key, load_bench_calibration
    yaml, cal = bench_and_cal
    bench = load_bench(yaml)
    key = bench_key(bench)
    assert key.radios == (("sim", "sim-node-0"), ("sim", "sim-node-1"), ("sim", "sim-rx"))
    assert key.carrier_hz == 915e6 and key.sample_rate_hz == 1e6
    got = load_bench_calibration(cal, bench)
    bad = json.loads(cal.read_text())
    bad["radios"][0]["serial"] = "sim-node-5"
    (cal.parent / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CalibrationMismatchError, match="sim-node-5"):
        load_bench_calibration(cal.parent / "bad.json", bench)
    old = json.loads(cal.read_text())
    old["created_unix_s"] -= 100
    (cal.parent / "old.json").write_text(json.dumps(old))
    with pytest.raises(StaleCalibrationError):
        load_bench_calibration(cal.parent / "old.json", bench, max_age_s=10, strict=True)
    raw = json.loads(cal.read_text())["corrections"]
    assert got.corrections == {"node0": raw[0], "node1": raw[1]}
    with pytest.warns(UserWarning, match="old"):
        stale = load_bench_calibration(cal, bench, max_age_s=-1.0)
    assert stale.record["warnings"] and "old" in stale.record["warnings"][0]
