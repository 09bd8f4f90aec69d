"""CorrectedRadio puts a node's large CFO on its transmit LO (`Radio.set_tx_lo_offset`) and
rotates only the few-Hz residual in baseband, so a full-band burst keeps its band edges (a
baseband rotation by tens of kHz moves |cfo| / fs of the spectrum across Nyquist); a refined
CFO within CARRIER_RETUNE_HZ does not re-tune (a re-tune gives the LO a new phase); a radio
without a separately tunable TX LO gets the whole CFO in baseband, as before."""
from dataclasses import replace

import numpy as np
import pytest

from calibration.corrections import (CARRIER_RETUNE_HZ, CorrectedRadio, NodeCorrection,
                                     precorrect)
from testbed.radio.base import Radio, RadioSettings, StreamCounters

STEP_HZ = 0.6          # a fractional-N synthesizer's step at 915 MHz (AD9361: ~0.6 Hz)


class _Radio(Radio):
    """Records bursts; ``lo=True``: a TX LO movable in STEP_HZ steps."""

    def __init__(self, lo=True):
        self._settings = RadioSettings(sample_rate_hz=1e6, center_freq_hz=915e6)
        self.lo, self.offset, self.requests, self.bursts = lo, 0.0, [], []

    def configure(self, settings):
        self._settings, self.offset = settings, 0.0

    @property
    def settings(self):
        return self._settings

    def now(self):
        return 1000

    def transmit(self, samples, at_sample):
        self.bursts.append((np.asarray(samples), at_sample))

    def receive(self, n_samples, at_sample):
        raise NotImplementedError

    def counters(self):
        return StreamCounters()

    @property
    def tx_lo_offset_hz(self):
        return self.offset

    def set_tx_lo_offset(self, offset_hz):
        if not self.lo:
            return super().set_tx_lo_offset(offset_hz)
        self.requests.append(offset_hz)
        self.offset = round(offset_hz / STEP_HZ) * STEP_HZ
        return self.offset


CORR = NodeCorrection(tau_samples=1234.37, sro_ppm=-29.8245, cfo_hz=-27289.44, phase_rad=0.3)


def test_the_cfo_goes_to_the_tx_lo_and_only_the_residual_is_rotated_in_baseband():
    radio = _Radio()
    cr = CorrectedRadio(radio, CORR, half_taps=16)
    assert radio.requests == [pytest.approx(-CORR.cfo_hz / (1 + CORR.sro))]
    resid = cr.baseband_cfo_hz()
    # the node's carrier (f + offset)(1 + sro) sits cfo + offset (1 + sro) from the receiver's
    assert resid == pytest.approx(CORR.cfo_hz + radio.offset * (1 + CORR.sro))
    assert abs(resid) <= STEP_HZ
    assert cr.correction == CORR                      # what calibration measured, unchanged
    x = np.exp(2j * np.pi * np.random.default_rng(1).random((1, 300)))
    cr.transmit(x, 50_000)
    want, n0 = precorrect(x, 50_000, replace(CORR, cfo_hz=resid), 1e6, 16)
    got, at = radio.bursts[-1]
    assert at == n0 and np.allclose(got, want, atol=1e-6)


def test_a_refined_cfo_keeps_the_lo_and_a_new_time_base_far_off_re_tunes_it():
    radio = _Radio()
    cr = CorrectedRadio(radio, CORR)
    cr.correction = replace(CORR, cfo_hz=CORR.cfo_hz + 0.8)     # a refinement: no new phase
    assert len(radio.requests) == 1
    assert cr.baseband_cfo_hz() == pytest.approx(CORR.cfo_hz + 0.8 + radio.offset * (1 + CORR.sro))
    # refine_cfo's first gap (2000 samples) resolves up to 250 Hz: still the same LO
    cr.correction = replace(CORR, cfo_hz=CORR.cfo_hz + 240.0)
    assert len(radio.requests) == 1
    far = replace(CORR, cfo_hz=CORR.cfo_hz + 3 * CARRIER_RETUNE_HZ)
    cr.correction = far
    assert len(radio.requests) == 2 and abs(cr.baseband_cfo_hz()) <= STEP_HZ


def test_configure_puts_the_lo_back_and_the_split_is_made_again():
    radio = _Radio()
    cr = CorrectedRadio(radio, CORR)
    cr.configure(RadioSettings(sample_rate_hz=1e6, center_freq_hz=915e6))
    assert len(radio.requests) == 2 and abs(cr.baseband_cfo_hz()) <= STEP_HZ


def test_a_radio_without_a_movable_tx_lo_rotates_the_whole_cfo_in_baseband():
    radio = _Radio(lo=False)
    cr = CorrectedRadio(radio, CORR, half_taps=16)
    assert cr.baseband_cfo_hz() == CORR.cfo_hz
    x = np.ones((1, 64), complex)
    cr.transmit(x, 9_000)
    want, _ = precorrect(x, 9_000, CORR, 1e6, 16)
    assert np.allclose(radio.bursts[-1][0], want, atol=1e-6)
