"""`testbed calibrate` on the simulated 4-node bench: table, JSON file, plots."""
import json

import pytest

from calibration.persistence import BenchKey, load_calibration
from testbed.cli import main


@pytest.mark.slow
def test_calibrate_command_writes_a_matching_file(tmp_path, capsys):
    rc = main(["calibrate", "--bench", "firmware_configs/benches/sim_4node.yaml",
               "--impairments", "uncalibrated-pluto", "--out", str(tmp_path), "--seed", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "after: timing" in out and out.count("\n   ") >= 4
    path = tmp_path / "calibration_sim_4node.json"
    data = json.loads(path.read_text())
    assert len(data["corrections"]) == 4 and data["extra"]["preset"] == "uncalibrated-pluto"
    assert all(abs(t) < 0.05 for t in data["residual"]["timing_samples"])
    radios = tuple((r["kind"], r["serial"]) for r in data["radios"])
    load_calibration(path, BenchKey("sim_4node", radios, 915e6, 1e6, "uncalibrated-pluto", 3))
    assert "note: calibrating with --impairments uncalibrated-pluto" in out
    assert (tmp_path / "correlation_peaks.png").stat().st_size > 1000
    assert (tmp_path / "residual_phase.png").stat().st_size > 1000
    assert "MSE doubles after" in out
    extra = data["extra"]
    track = extra["residual_phase_track"]
    assert len(track["t_ms"]) == 6 and track["t_ms"][-1] >= 50.0
    assert all(len(row) == 4 and max(abs(v) for v in row) < 10.0 for row in track["phase_deg"])
    assert 0 < extra["doubling_calibration_csi_s"] <= extra["doubling_per_round_csi_s"]
    assert extra["valid_for_s"] == pytest.approx(0.5 * extra["doubling_per_round_csi_s"])
    assert extra["phase_noise"]["pll_rms_deg"] > 0
