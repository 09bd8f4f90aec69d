"""Calibration files checked where they enter (issue 16): every bad file gets a clear error
naming the file, the key and the fix -- wrong types, NaN/Infinity, inconsistent lengths, the
impairment preset or seed of other (simulated) hardware, an expired validity window."""
from __future__ import annotations

import dataclasses
import json
import time
import warnings

import pytest

from calibration.corrections import NodeCorrection
from calibration.persistence import (BenchKey, CalibrationFileError, CalibrationMismatchError,
                                     CalibrationRecord, StaleCalibrationError,
                                     StaleCalibrationWarning, load_calibration, save_calibration)
from testbed.commands.calibrate import bench_preset
from testbed.config.loader import find_config, load_bench
from testbed.net.roles.bench_calibration import bench_key, load_bench_calibration

KEY = BenchKey("b2", (("sim", "sim-node-0"), ("sim", "sim-node-1"), ("sim", "sim-rx")), 915e6,
               1e6, "uncalibrated-pluto", 7)


def _good(created=None, **extra) -> dict:
    rec = CalibrationRecord(KEY, time.time() if created is None else created, 1.0,
                            [NodeCorrection(3.0, 1.5, 200.0, 0.1, 0.2),
                             NodeCorrection(-2.0, -0.5, -90.0, -0.3, 0.0)],
                            {"timing_samples": [0.01, 0.02], "cfo_hz": [0.1, 0.2],
                             "phase_deg": [0.5, 0.4], "gain_db": [0.0, 0.01]},
                            extra={"valid_for_s": 30.0, **extra})
    return rec.to_dict()


def _write(tmp_path, data, name="cal.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(p)


def _set(data, path, value):
    obj = data
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value
    return data


@pytest.mark.parametrize("path, value, key", [
    (("corrections",), "abc", "'corrections'"),
    (("corrections",), {"cfo_hz": 1.0}, "'corrections'"),
    (("corrections", 1, "cfo_hz"), "12.5", "'corrections[1].cfo_hz'"),
    (("corrections", 1, "cfo_hz"), None, "'corrections[1].cfo_hz'"),
    (("corrections", 0, "phase_rad"), True, "'corrections[0].phase_rad'"),
    (("corrections", 0, "bogus"), 1.0, "'corrections[0].bogus'"),
    (("carrier_hz",), -915e6, "'carrier_hz'"),
    (("sample_rate_hz",), "1e6", "'sample_rate_hz'"),
    (("radios", 1), ["sim", "x"], "'radios[1]'"),
    (("residual", "cfo_hz"), [0.1, "x"], "'residual.cfo_hz[1]'"),
    (("created_unix_s",), "yesterday", "'created_unix_s'"),
    (("extra", "valid_for_s"), -1.0, "'extra.valid_for_s'"),
    (("extra", "seed"), "7", "'extra.seed'"),
])
def test_wrong_types_name_the_file_and_key(tmp_path, path, value, key):
    p = _write(tmp_path, _set(_good(), path, value))
    with pytest.raises(CalibrationFileError) as e:
        load_calibration(p, KEY)
    msg = str(e.value)
    assert p in msg and key in msg and "testbed calibrate" in msg


@pytest.mark.parametrize("literal, key", [
    ("NaN", "'corrections[1].cfo_hz'"), ("Infinity", "'corrections[1].cfo_hz'"),
    ("-Infinity", "'corrections[1].cfo_hz'"), ("1e999", "'corrections[1].cfo_hz'"),
])
def test_non_finite_corrections_are_refused_at_load(tmp_path, literal, key):
    text = json.dumps(_set(_good(), ("corrections", 1, "cfo_hz"), "@X@"))
    p = _write(tmp_path, text.replace('"@X@"', literal))
    with pytest.raises(CalibrationFileError, match="finite") as e:
        load_calibration(p, KEY)
    assert key in str(e.value) and p in str(e.value)


def test_non_finite_anywhere_in_extra_is_refused(tmp_path):
    text = json.dumps(_good(note={"drift": "@X@"}))
    p = _write(tmp_path, text.replace('"@X@"', "NaN"))
    with pytest.raises(CalibrationFileError, match=r"'extra.note.drift' is not a finite"):
        load_calibration(p, KEY)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("corrections"), ["'corrections'", "Field required"]),
    (lambda d: d["corrections"].pop(), ["3 radios for 1 corrections"]),
    (lambda d: d["residual"]["gain_db"].pop(), ["residual.gain_db has 1 values for 2 nodes"]),
    (lambda d: d.update(format_version=2), ["format_version 2"]),
])
def test_inconsistent_files_are_refused(tmp_path, mutate, words):
    d = _good()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(CalibrationFileError) as e:
        load_calibration(p, KEY)
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("text", ["[1, 2]", "", "{\"format_version\": 1", "\xff\xfe"])
def test_unreadable_files_are_refused(tmp_path, text):
    p = tmp_path / "cal.json"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(CalibrationFileError) as e:
        load_calibration(p, KEY)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("field, value, word", [
    ("preset", "none", "impairment preset 'uncalibrated-pluto' != this bench's 'none'"),
    ("preset", "usrp-shared-ref", "impairment preset"),
    ("seed", 8, "impairment seed 7 != this bench's 8"),
])
def test_file_for_other_simulated_hardware_is_refused(tmp_path, field, value, word):
    p = _write(tmp_path, _good())
    with pytest.raises(CalibrationMismatchError, match=word):
        load_calibration(p, dataclasses.replace(KEY, **{field: value}))


def test_expired_file_warns_by_default_and_is_refused_when_strict(tmp_path):
    p = _write(tmp_path, _good(created=time.time() - 120))  # valid_for_s = 30
    with pytest.warns(StaleCalibrationWarning, match="validity valid_for_s=30"):
        load_calibration(p, KEY)
    with pytest.raises(StaleCalibrationError, match="re-run `testbed calibrate --bench b2`"):
        load_calibration(p, KEY, on_stale="error")
    with warnings.catch_warnings():  # an explicit max age overrides the file's validity
        warnings.simplefilter("error")
        load_calibration(p, KEY, max_age_s=3600, on_stale="error")


def _sim_bench(tmp_path, impairments: str | None):
    text = find_config("sim_4node", "benches").read_text()
    if impairments:
        text = text.replace("channel:\n", f"channel:\n  impairments: {impairments}\n")
    (tmp_path / "radios").mkdir(parents=True, exist_ok=True)
    import shutil
    shutil.copy(find_config("sim_4node", "benches").parent.parent / "radios" / "sim.yaml",
                tmp_path / "radios" / "sim.yaml")
    (tmp_path / "benches").mkdir(exist_ok=True)
    path = tmp_path / "benches" / "sim_4node.yaml"
    path.write_text(text)
    return load_bench(path)


def test_bench_refuses_a_file_made_for_an_impaired_bench(tmp_path):
    ideal = _sim_bench(tmp_path, None)
    key = bench_key(ideal)
    assert (key.preset, key.seed) == ("none", None)  # no impairments: the seed is irrelevant
    impaired_key = dataclasses.replace(key, preset="uncalibrated-pluto")
    rec = CalibrationRecord(impaired_key, time.time(), 1.0, [NodeCorrection()] * 4,
                            {"cfo_hz": [0.0] * 4})
    p = save_calibration(rec, tmp_path / "cal.json")
    with pytest.raises(CalibrationMismatchError, match="impairment preset 'uncalibrated-pluto'"):
        load_bench_calibration(p, ideal)
    ok = save_calibration(dataclasses.replace(rec, key=key), tmp_path / "ok.json")
    assert set(load_bench_calibration(ok, ideal).corrections) == {f"node{i}" for i in range(4)}


def test_calibrate_never_picks_a_preset_the_bench_did_not_ask_for(tmp_path, capsys):
    ideal = _sim_bench(tmp_path, None)
    assert bench_preset(ideal, None) == "none"
    impaired = _sim_bench(tmp_path / "i", "usrp-shared-ref")
    assert bench_preset(impaired, None) == "usrp-shared-ref"
    assert bench_preset(ideal, "uncalibrated-pluto") == "uncalibrated-pluto"
    assert "runs on 'sim_4node' itself will refuse it" in capsys.readouterr().out


def test_a_bench_of_radios_checks_the_file_against_the_serials_its_roles_register(tmp_path):
    """On a bench of radios the file's radios are checked once the roles registered
    (`BenchCalibration.check_registered`): the same serials pass, a swapped radio is named."""
    from types import SimpleNamespace

    from testbed.net.schema import Capabilities
    bench = load_bench(find_config("pluto_4node", "benches"))
    key = bench_key(bench)
    assert key.radios is None and key.preset is None      # known at registration only
    ids = [n.id for n in bench.nodes] + [bench.receiver.id]
    radios = tuple(("pluto", f"1044730a19970{i}") for i in range(len(ids) - 1)) + \
        (("pluto", "rx-a+rx-b"),)
    rec = CalibrationRecord(dataclasses.replace(key, radios=radios), time.time(), 1.0,
                            [NodeCorrection()] * (len(ids) - 1), {"cfo_hz": [0.0] * 4})
    p = save_calibration(rec, tmp_path / "cal.json")
    cal = load_bench_calibration(p, bench)

    def ctl(serials):
        return SimpleNamespace(peers={i: SimpleNamespace(capabilities=Capabilities(
            radio_kind="pluto", radio_serial=s)) for i, s in zip(ids, serials)})
    cal.check_registered(ctl([s for _, s in radios]), bench)
    swapped = [s for _, s in radios]
    swapped[1] = "104473other"
    with pytest.raises(CalibrationMismatchError, match=f"{ids[1]}: file pluto "
                       f"'{radios[1][1]}', registered pluto '104473other'"):
        cal.check_registered(ctl(swapped), bench)
    other = dataclasses.replace(key, carrier_hz=2.4e9, radios=radios)
    q = save_calibration(dataclasses.replace(rec, key=other), tmp_path / "other.json")
    with pytest.raises(CalibrationMismatchError, match="carrier"):
        load_bench_calibration(q, bench)           # refused before any role registers
