"""Gain-sweep fit: recovers a known line, flags a compressing (Rapp) amplifier at its P1dB."""
import numpy as np
import pytest

from calibration.estimators.gain import compression_point_1db, fit_gain_sweep, power_db


def _rapp_out_db(in_db, gain_db, sat_db, p):
    """Rapp solid-state PA: A_out = G A / (1 + (A / A_sat)^(2p))^(1 / 2p), levels in dB."""
    a = 10 ** (np.asarray(in_db) / 20)
    a_sat = 10 ** (sat_db / 20)
    out = 10 ** (gain_db / 20) * a / (1 + (a / a_sat) ** (2 * p)) ** (1 / (2 * p))
    return 20 * np.log10(out)


def test_linear_sweep_recovers_slope_and_offset():
    rng = np.random.default_rng(1)
    tx = np.arange(-40.0, 0.1, 2.0)
    rx = tx - 23.5 + rng.normal(0, 0.05, tx.size)
    fit = fit_gain_sweep(tx, rx)
    assert fit.slope_db_per_db == pytest.approx(1.0, abs=0.01)
    assert fit.offset_db == pytest.approx(-23.5, abs=0.1)
    assert fit.residual_rms_db == pytest.approx(0.05, rel=0.5)
    assert fit.is_linear
    assert compression_point_1db(tx, rx) is None


def test_compressing_amplifier_is_flagged_at_closed_form_p1db():
    tx = np.arange(-30.0, 10.01, 0.25)
    gain_db, sat_db, p = 15.0, 0.0, 2.0
    rx = _rapp_out_db(tx, gain_db, sat_db, p)
    fit = fit_gain_sweep(tx, rx)
    assert not fit.is_linear
    assert fit.slope_db_per_db < 0.95
    # closed form: (1 + x^(2p))^(-1/2p) = -1 dB  =>  x = (10^(p/10) - 1)^(1/2p)
    p1db = sat_db + 20 * np.log10((10 ** (p / 10) - 1) ** (1 / (2 * p)))
    assert compression_point_1db(tx, rx) == pytest.approx(p1db, abs=0.02)


def test_power_db_of_known_tone():
    x = 0.1 * np.exp(2j * np.pi * 0.01 * np.arange(1000))
    assert power_db(x) == pytest.approx(-20.0, abs=1e-9)
    with pytest.raises(ValueError, match="zero power"):
        power_db(np.zeros(4))


def test_bad_sweep_shapes_are_explained():
    with pytest.raises(ValueError, match="matching"):
        fit_gain_sweep([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="sweep the transmit gain"):
        fit_gain_sweep([1, 1, 1], [0, 1, 2])
