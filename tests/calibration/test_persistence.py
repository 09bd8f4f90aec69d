"""Calibration files: round trip, refusal on another bench, staleness, run reference hash."""
import dataclasses
import json
import warnings

import pytest

from calibration.corrections import NodeCorrection
from calibration.persistence import (BenchKey, CalibrationMismatchError, CalibrationRecord,
                                     StaleCalibrationError, StaleCalibrationWarning,
                                     calibration_reference, load_calibration, save_calibration)
from testbed.errors import ConfigError

KEY = BenchKey("sim_4node", (("sim", "sim-node-0"), ("sim", "sim-node-1"), ("sim", "sim-rx")),
               915e6, 1e6)


def record(created=1_000_000.0):
    return CalibrationRecord(KEY, created, 2.5,
                             [NodeCorrection(33.9, 21.9, 20067.8, 1.0, -0.3),
                              NodeCorrection(117.5, -15.8, -14451.5, -2.0, 1.0)],
                             {"timing_samples": [0.001, -0.002], "cfo_hz": [0.1, -0.2],
                              "phase_deg": [1.0, -2.0], "gain_db": [0.01, -0.02]},
                             extra={"preset": "uncalibrated-pluto"})


def test_round_trip(tmp_path):
    p = save_calibration(record(), tmp_path / "cal.json")
    got = load_calibration(p, KEY)
    assert got.corrections == record().corrections
    assert got.residual == record().residual
    assert got.key == BenchKey(*dataclasses.astuple(KEY)[:4], preset="uncalibrated-pluto")
    data = json.loads(p.read_text())
    assert data["radios"][2] == {"kind": "sim", "serial": "sim-rx"}
    assert data["created_utc"].startswith("1970-01-12")


@pytest.mark.parametrize("other, word", [
    (BenchKey("bench_b", KEY.radios, 915e6, 1e6), "bench"),
    (BenchKey("sim_4node", (("sim", "sim-node-0"), ("sim", "sim-node-9"), ("sim", "sim-rx")),
              915e6, 1e6), "radios"),
    (BenchKey("sim_4node", KEY.radios, 2.4e9, 1e6), "carrier"),
    (BenchKey("sim_4node", KEY.radios, 915e6, 2e6), "sample rate"),
])
def test_mismatch_refused(tmp_path, other, word):
    p = save_calibration(record(), tmp_path / "cal.json")
    with pytest.raises(CalibrationMismatchError, match=word) as e:
        load_calibration(p, other)
    assert isinstance(e.value, ConfigError)


def test_stale_warns_or_refuses(tmp_path):
    p = save_calibration(record(created=1000.0), tmp_path / "cal.json")
    with pytest.warns(StaleCalibrationWarning, match="old"):
        load_calibration(p, KEY, max_age_s=60, now_unix_s=1100.0)
    with pytest.raises(StaleCalibrationError):
        load_calibration(p, KEY, max_age_s=60, on_stale="error", now_unix_s=1100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_calibration(p, KEY, max_age_s=600, now_unix_s=1100.0)


def test_reference_hash_changes_with_content(tmp_path):
    p = save_calibration(record(), tmp_path / "cal.json")
    a = calibration_reference(p)
    save_calibration(record(created=5.0), p)
    b = calibration_reference(p)
    assert a["path"] == b["path"] and a["sha256"] != b["sha256"] and len(a["sha256"]) == 64


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_calibration(tmp_path / "none.json", KEY)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_calibration(tmp_path / "bad.json", KEY)
    (tmp_path / "v.json").write_text('{"format_version": 99}')
    with pytest.raises(ConfigError, match="format_version"):
        load_calibration(tmp_path / "v.json", KEY)
