"""CFO estimators against the known-pilot, unknown-phase CRB."""
import numpy as np
import pytest

from calibration.estimators.cfo import (estimate_cfo, estimate_cfo_pilot, estimate_cfo_repeated,
                                        remove_cfo)
from calibration.estimators.crb import crb_cfo_constant_modulus
from calibration.estimators.sequences import repeated_preamble, zadoff_chu

FS = 1.0e6
P = 31


def _received(pilot, cfo_hz, snr_db, rng):
    trials = cfo_hz.size
    n = np.arange(pilot.size)
    amp = np.exp(2j * np.pi * rng.uniform(size=trials))
    clean = amp[:, None] * pilot * np.exp(2j * np.pi * np.outer(cfo_hz, n) / FS)
    sd = np.sqrt(10 ** (-snr_db / 10) / 2)
    return clean + sd * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))


@pytest.mark.parametrize("snr_db", [5, 10, 15, 20, 25, 30])
def test_moose_two_periods_unbiased_within_2x_crb(snr_db):
    rng = np.random.default_rng(200 + snr_db)
    pilot = repeated_preamble(zadoff_chu(P), 2)
    cfo = rng.uniform(-0.8, 0.8, 400) * FS / (2 * P)
    err = estimate_cfo_repeated(_received(pilot, cfo, snr_db, rng), P, FS) - cfo
    crb_std = np.sqrt(crb_cfo_constant_modulus(snr_db, pilot.size, FS))
    assert abs(err.mean()) < 4 * 2 * crb_std / np.sqrt(err.size)
    ratio = err.std() / crb_std
    assert 0.9 < ratio < 2.0, ratio


@pytest.mark.parametrize("snr_db", [5, 10, 15, 20, 25, 30])
def test_refined_cfo_four_periods_attains_crb(snr_db):
    rng = np.random.default_rng(300 + snr_db)
    pilot = repeated_preamble(zadoff_chu(P), 4)
    cfo = rng.uniform(-0.8, 0.8, 400) * FS / (2 * P)
    err = estimate_cfo(_received(pilot, cfo, snr_db, rng), pilot, P, FS) - cfo
    crb_std = np.sqrt(crb_cfo_constant_modulus(snr_db, pilot.size, FS))
    assert abs(err.mean()) < 4 * 1.3 * crb_std / np.sqrt(err.size)
    ratio = err.std() / crb_std
    assert 0.85 < ratio < 1.3, ratio


def test_pilot_ml_without_coarse_covers_full_band():
    rng = np.random.default_rng(4)
    pilot = zadoff_chu(127)
    cfo = np.array([-0.45, -0.2, 0.013, 0.31, 0.49]) * FS
    est = estimate_cfo_pilot(_received(pilot, cfo, 40, rng), pilot, FS)
    np.testing.assert_allclose(est, cfo, atol=50.0)


def test_moose_range_and_aliasing():
    pilot = repeated_preamble(zadoff_chu(P), 2)
    n = np.arange(pilot.size)
    inside = 0.99 * FS / (2 * P)
    rx = pilot * np.exp(2j * np.pi * inside * n / FS)
    assert estimate_cfo_repeated(rx, P, FS) == pytest.approx(inside, rel=1e-9)
    outside = 1.2 * FS / (2 * P)          # wraps to outside - fs / P
    rx = pilot * np.exp(2j * np.pi * outside * n / FS)
    assert estimate_cfo_repeated(rx, P, FS) == pytest.approx(outside - FS / P, rel=1e-9)


def test_remove_cfo_undoes_rotation():
    n = np.arange(100)
    rx = np.exp(2j * np.pi * 1234.0 * (n + 500) / FS)
    np.testing.assert_allclose(remove_cfo(rx, 1234.0, FS, start_sample=500), 1.0, atol=1e-12)


def test_pilot_length_mismatch_is_explained():
    with pytest.raises(ValueError, match="pilot length"):
        estimate_cfo_pilot(np.ones(10, complex), np.ones(12, complex), FS)
