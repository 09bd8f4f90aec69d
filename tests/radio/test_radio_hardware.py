"""Tests on real radios (skipped unless `pytest --hardware`). Configure with env vars:
TESTBED_PLUTO_URI (default ip:192.168.2.1), TESTBED_USRP_ARGS (default type=b200).
Cable TX to RX through >= 30 dB of attenuation first."""
import os

import numpy as np
import pytest

from testbed.config.radio import PlutoConfig, UsrpConfig
from testbed.radio.factory import open_radio

pytestmark = pytest.mark.hardware


def _tone_snr_db(y: np.ndarray, f: float) -> float:
    spec = np.abs(np.fft.fft(y * np.hanning(len(y)))) ** 2
    k = int(round(f * len(y))) % len(y)
    sig = spec[max(k - 2, 0):k + 3].sum()
    return 10 * np.log10(sig / (spec.sum() - sig + 1e-30))


def test_pluto_loopback_tone():
    cfg = PlutoConfig(uri=os.environ.get("TESTBED_PLUTO_URI", "ip:192.168.2.1"),
                      tx_gain_db=-30, rx_gain_db=20, sample_rate_hz=1e6)
    with open_radio(cfg, node_id="hw-pluto") as radio:
        n, f = 8192, 0.05
        at = radio.now() + 100_000
        radio.transmit(0.5 * np.exp(2j * np.pi * f * np.arange(4 * n)), at)
        y = radio.receive(n, at + n)[0]
        assert _tone_snr_db(y, f) > 20
        assert radio.counters().total() == 0


def test_usrp_loopback_tone():
    cfg = UsrpConfig(args=os.environ.get("TESTBED_USRP_ARGS", "type=b200"), tx_gain_db=40,
                     rx_gain_db=30)
    with open_radio(cfg, node_id="hw-usrp") as radio:
        n, f = 8192, 0.05
        at = radio.now() + int(0.2 * cfg.sample_rate_hz)
        radio.transmit(0.5 * np.exp(2j * np.pi * f * np.arange(4 * n)), at)
        y = radio.receive(n, at + n)[0]
        assert _tone_snr_db(y, f) > 20
