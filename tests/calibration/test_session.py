"""CalibrationSession on the simulated uncalibrated-Pluto bench (full preset, phase noise on):
a fresh or loaded calibration, its validity on the receiver clock, and the three expiry
policies. The drift is physical: after calibration node 0's TCXO moves by 0.3 ppm (274.5 Hz
CFO and 0.3 ppm clock offset at 915 MHz, a warm-up drift), which per-frame pilots cannot absorb
(the phase turns 30 deg between pilot and payload frame); recalibration must restore the MSE."""
import dataclasses
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from calibration.persistence import (BenchKey, CalibrationRecord, calibration_reference,
                                     load_calibration, save_calibration)
from calibration.session import (CalibrationExpiredError, CalibrationExpiredWarning,
                                  CalibrationSession, per_frame_validity_s)
from sim_backend.sim_allreduce import build_sim_bench, impairment_preset
from testbed import errors
from testbed.errors import ConfigError
from testbed.phy.analog_allreduce import AnalogAllReduce
from testbed.phy.budget import LinkBudget
from testbed.radio.base import RadioSettings

CARRIER = 915e6
FS = 1e6
DRIFT_PPM = 0.3


def bench(seed: int = 2):
    imp = impairment_preset("uncalibrated-pluto", 4, CARRIER, 1)
    return build_sim_bench(4, 4, 1, 20.0, seed, impairments=imp,
                           settings=RadioSettings(sample_rate_hz=FS, center_freq_hz=CARRIER))


def drift(b, node: int = 0, ppm: float = DRIFT_PPM) -> None:
    """Node ``node``'s oscillator moves by ``ppm`` (CFO and sample clock, one TCXO)."""
    hook = b.air.tx_impairment(node)
    p = hook.params
    hook.params = dataclasses.replace(p, cfo_hz=p.cfo_hz + ppm * 1e-6 * CARRIER,
                                      sro_ppm=p.sro_ppm + ppm)


def mse(session, b, rounds: int = 6, seed: int = 0) -> float:
    """Mean AirComp MSE per channel use over ``rounds`` rounds (per-frame pilots, fixed channel
    block), session.check() before each round."""
    ar = AnalogAllReduce(session.radios, b.rx_radio, truth=b.truth, csi="estimated",
                         budget=LinkBudget(lead_samples=512), on_round=session.check)
    g = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        ar([torch.randn(4, 32, generator=g, dtype=torch.float64) for _ in range(4)],
           layer=0, site="attn")
    return ar.stats()[(0, "attn")]["mse_symbols"]


def expire(session, b) -> None:
    """Let the receiver clock run past the session's validity."""
    b.air.advance(int((session.guard.expires_at() - session.now_s()) * FS) + 1000)


@pytest.fixture(scope="module")
def baseline():
    """(MSE right after a fresh calibration, MSE after the drift without recalibration)."""
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=10.0,
                                 reference_channels=b.air.true_channels)
    good = mse(s, b)
    drift(b)
    return good, mse(s, b, seed=1)


def test_per_frame_validity_matches_the_sinc_closed_form_by_root_finding():
    """Oracle: one node, SRO = CFO / carrier, MSE excess 1 - sinc^2(sro fs t) (numpy sinc),
    root found by scipy; validity is half of it."""
    cfo = 0.8
    sro = cfo / CARRIER
    t2 = brentq(lambda t: 1 - np.sinc(sro * FS * t) ** 2 - 0.01, 1e-3, 1e9, xtol=1e-6)
    assert per_frame_validity_s([cfo], CARRIER, FS, mse0=0.01) == pytest.approx(0.5 * t2, rel=1e-6)
    assert per_frame_validity_s([0.0], CARRIER, FS) == pytest.approx(1e7)


def test_fresh_session_records_calibration_and_is_ok_until_its_validity(baseline):
    b = bench(seed=5)
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, reference_channels=b.air.true_channels)
    (ev,) = s.events
    assert ev.kind == "calibrated" and max(np.abs(ev.residual["timing_samples"])) < 0.05
    assert s.validity_source == "residual"
    assert s.valid_for_s == pytest.approx(per_frame_validity_s(ev.residual["cfo_hz"], CARRIER, FS))
    assert s.guard.created_s == pytest.approx(b.rx_radio.now() / FS)
    assert s.check() == "ok"
    d = s.to_dict()
    assert d["events"][0]["kind"] == "calibrated" and len(d["corrections"]) == 4
    good, drifted = baseline
    assert good < 0.03                      # ~0.01 per channel use at 20 dB, 4 nodes, N_r = 4
    assert drifted > 5 * good               # the drift is real and large


@pytest.mark.slow
def test_recalibrate_policy_restores_the_mse_after_drift(baseline):
    good, drifted = baseline
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=0.05,
                                 reference_channels=b.air.true_channels)
    radios = list(s.radios)
    drift(b)
    expire(s, b)
    after = mse(s, b, seed=1)               # the first round's check recalibrates
    kinds = [e.kind for e in s.events]
    assert kinds == ["calibrated", "recalibrated"] and "old on the receiver clock" in s.events[1].reason
    assert s.radios == radios               # same objects, corrections replaced in place
    assert after < 1.5 * good and after < drifted / 5
    assert s.check() == "ok"


def test_recalibrate_updates_corrections_by_the_drift():
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=0.05)
    before = [c.cfo_hz for c in s.corrections]
    drift(b)
    s.recalibrate("test")
    moved = np.array([c.cfo_hz for c in s.corrections]) - before
    assert moved[0] == pytest.approx(DRIFT_PPM * 1e-6 * CARRIER, abs=2.0)
    assert np.all(np.abs(moved[1:]) < 2.0)
    assert s.corrections[0].sro_ppm - s.corrections[1].sro_ppm != 0


@pytest.mark.slow
def test_warn_policy_warns_once_per_expiry_and_keeps_the_old_corrections(baseline):
    good, drifted = baseline
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=0.05, on_expiry="warn",
                                 reference_channels=b.air.true_channels)
    old = s.corrections
    drift(b)
    expire(s, b)
    with pytest.warns(CalibrationExpiredWarning, match="valid for 0.05 s") as rec:
        degraded = mse(s, b, seed=1)
    assert len(rec) == 1                       # 6 rounds, one warning
    assert s.corrections == old and degraded > 5 * good
    assert [e.kind for e in s.events] == ["calibrated", "expired"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert s.check() == "expired"          # no second warning
    s.radios[2].configure(dataclasses.replace(s.radios[2].settings, center_freq_hz=2.4e9))
    with pytest.warns(CalibrationExpiredWarning, match=r"re-tuned"):
        s.check()                              # a new cause warns again


def test_error_policy_raises_a_testbed_error_naming_the_fix():
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=0.01, on_expiry="error")
    assert s.check() == "ok"
    expire(s, b)
    with pytest.raises(CalibrationExpiredError, match="recalibrate") as exc:
        s.check()
    assert isinstance(exc.value, errors.TestbedError)


def test_retune_triggers_recalibration_and_clears_the_flag():
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=100.0)
    settings = s.radios[1].settings
    s.radios[1].configure(dataclasses.replace(settings, center_freq_hz=915.1e6))
    s.radios[1].configure(settings)            # and back: the LO phase is new all the same
    assert s.radios[1].needs_recalibration
    assert s.check() == "recalibrated"
    assert not any(r.needs_recalibration for r in s.radios)
    assert "re-tuned" in s.events[-1].reason


def test_loaded_record_validity_age_and_reference(tmp_path):
    b = bench()
    s = CalibrationSession.fresh(b.tx_radios, b.rx_radio, valid_for_s=0.2)
    path = save_calibration(s.to_record("sim_4node", {"preset": "uncalibrated-pluto"}),
                            tmp_path / "cal.json")
    b2 = bench(seed=9)
    key = BenchKey.from_radios("sim_4node", b2.tx_radios, b2.rx_radio)
    rec = load_calibration(path, key)
    ref = calibration_reference(path)
    s2 = CalibrationSession.from_record(b2.tx_radios, b2.rx_radio, rec, reference=ref, age_s=0.15)
    assert s2.validity_source == "record" and s2.valid_for_s == pytest.approx(0.2)
    assert s2.guard.age(s2.now_s()) == pytest.approx(0.15)
    assert s2.corrections == s.corrections
    ev = s2.to_dict()["events"][0]
    assert ev["kind"] == "loaded" and ev["reference"]["sha256"] == ref["sha256"]
    assert s2.check() == "ok"
    b2.air.advance(int(0.06 * FS))
    assert s2.check() == "recalibrated"
    # without a validity in the record: the explicit argument, else the residual CFO
    bare = CalibrationRecord(rec.key, rec.created_unix_s, 0.0, rec.corrections, rec.residual)
    assert CalibrationSession.from_record(b2.tx_radios, b2.rx_radio, bare,
                                          valid_for_s=3.0).validity_source == "argument"
    assert CalibrationSession.from_record(b2.tx_radios, b2.rx_radio, bare).valid_for_s == \
        pytest.approx(per_frame_validity_s(rec.residual["cfo_hz"], CARRIER, FS))
    with pytest.raises(ConfigError, match="valid_for_s"):
        CalibrationSession.from_record(b2.tx_radios, b2.rx_radio,
                                       dataclasses.replace(bare, residual={}))


def test_bad_policy_and_node_count_fail_clearly():
    b = bench()
    with pytest.raises(ConfigError, match="on_expiry must be one of recalibrate, warn, error"):
        CalibrationSession.fresh(b.tx_radios, b.rx_radio, on_expiry="ignore")
    rec = CalibrationRecord(BenchKey("x", (), CARRIER, FS), 0.0, 0.0, [], {}, extra={"valid_for_s": 1})
    with pytest.raises(ConfigError, match="0 corrections for 4 node radios"):
        CalibrationSession.from_record(b.tx_radios, b.rx_radio, rec)
