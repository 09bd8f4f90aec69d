"""SimAir and SimRadio: superposition, determinism, SNR, hooks, timing and counters."""
import numpy as np
import pytest

from sim_backend.air import SimAir
from sim_backend.channel import ChannelModel, noise_var_from_snr_db
from sim_backend.impairments import TxImpairmentParams, TxImpairments
from sim_backend.sim_radio import SimRadio
from testbed.errors import ConfigError, StreamError
from testbed.radio.base import Radio, RadioSettings


def _air(noise_var=0.0, seed=0, n_nodes=2, n_rx=3, n_tx=2):
    air = SimAir(n_rx, noise_var, channel_model=ChannelModel(n_nodes, n_rx, n_tx), seed=seed)
    txs = [SimRadio(air, n, n_tx=n_tx) for n in range(n_nodes)]
    rx = SimRadio(air, receiver=True)
    air.new_realization()
    return air, txs, rx


def _burst(rng, n_tx, k):
    return 0.3 * (rng.standard_normal((n_tx, k)) + 1j * rng.standard_normal((n_tx, k)))


def test_sim_radio_is_a_radio():
    air, txs, rx = _air()
    assert isinstance(rx, Radio)
    assert txs[1].identity().kind == "sim" and txs[1].identity().serial == "sim-node-1"


def test_burst_lands_through_its_channel_at_its_time():
    air, txs, rx = _air()
    x = _burst(np.random.default_rng(0), 2, 50)
    txs[0].transmit(x, 20)
    y = rx.receive(100, 0)
    H = air.true_channels()
    np.testing.assert_allclose(y[:, 20:70], H[0] @ x, atol=1e-6)
    assert np.all(y[:, :20] == 0) and np.all(y[:, 70:] == 0)
    assert air.pending_bursts() == 0  # consumed


def test_superposition_is_linear_noise_off():
    rng = np.random.default_rng(1)
    x0, x1 = _burst(rng, 2, 40), _burst(rng, 2, 40)
    outs = []
    for sends in ([(0, x0)], [(1, x1)], [(0, x0), (1, x1)]):
        air, txs, rx = _air(seed=3)
        for n, x in sends:
            txs[n].transmit(x, 10 + 5 * n)
        outs.append(rx.receive(80, 0))
    np.testing.assert_allclose(outs[2], outs[0] + outs[1], atol=1e-6)


def test_partial_window_keeps_rest_of_burst():
    air, txs, rx = _air()
    x = _burst(np.random.default_rng(2), 2, 60)
    txs[1].transmit(x, 30)
    a = rx.receive(50, 0)
    assert air.pending_bursts() == 1
    b = rx.receive(50, 50)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1)[:, 30:90], air.true_channels()[1] @ x,
                               atol=1e-6)


def test_determinism_under_seed():
    def run(seed):
        air, txs, rx = _air(noise_var=0.01, seed=seed)
        txs[0].transmit(_burst(np.random.default_rng(0), 2, 30), 5)
        return air.true_channels(), rx.receive(40, 0)
    (h1, y1), (h2, y2), (h3, y3) = run(5), run(5), run(6)
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y3)


def test_received_snr_matches_definition():
    ref_power, snr_db = 0.1, 10.0
    air = SimAir(2, noise_var_from_snr_db(snr_db, ref_power), channel_model=ChannelModel(1, 2, 2), seed=4)
    tx, rx = SimRadio(air, 0, n_tx=2), SimRadio(air, receiver=True)
    rng = np.random.default_rng(4)
    sig, noise = [], []
    for _ in range(300):
        air.new_realization()
        k = 64
        x = np.sqrt(ref_power / 4) * (rng.standard_normal((2, k)) + 1j * rng.standard_normal((2, k)))
        start = rx.now()
        tx.transmit(x, start)
        y = rx.receive(2 * k, start)
        sig.append(np.mean(np.abs(y[:, :k]) ** 2))
        noise.append(np.mean(np.abs(y[:, k:]) ** 2))
    p_sig = np.mean(sig) - np.mean(noise)
    assert 10 * np.log10(p_sig / np.mean(noise)) == pytest.approx(snr_db, abs=0.4)


def test_tx_hook_is_applied_timing_offset_shifts_burst():
    air = SimAir(1, 0.0, seed=0)
    imp = TxImpairments(TxImpairmentParams(timing_offset_samples=7.0))
    tx = SimRadio(air, 0, n_tx=1, tx_impairment=imp)
    rx = SimRadio(air, receiver=True)
    air.set_channel(0, np.array([[1.0 + 0j]]))
    x = np.exp(1j * np.arange(10))[None]
    tx.transmit(x, 10)
    y = rx.receive(40, 0)
    np.testing.assert_allclose(y[0, 17:27], x[0], atol=1e-6)


class _CountingTune:
    """Identity hook that records on_tune calls (tests the call contract of the air)."""

    def __init__(self):
        self.tunes = 0

    def apply_tx(self, samples, start_sample, sample_rate_hz):
        return samples, start_sample

    def on_tune(self, rng):
        self.tunes += 1


def test_configure_calls_on_tune_only_when_carrier_changes():
    air = SimAir(2, 0.0, seed=0)
    hook = _CountingTune()
    tx = SimRadio(air, 0, n_tx=1, tx_impairment=hook)
    s = RadioSettings(n_tx_channels=1, n_rx_channels=0)
    tx.configure(s)
    tx.configure(s)
    assert hook.tunes == 1
    tx.configure(RadioSettings(n_tx_channels=1, n_rx_channels=0, center_freq_hz=2.4e9))
    assert hook.tunes == 2
    with pytest.raises(ConfigError, match="TX antennas"):
        tx.configure(RadioSettings(n_tx_channels=2))


def test_late_burst_and_window_are_counted_and_raise():
    air, txs, rx = _air()
    rx.receive(100, 0)
    assert rx.now() == 100
    with pytest.raises(StreamError, match="late"):
        txs[0].transmit(np.zeros((2, 4)), 50)
    with pytest.raises(StreamError, match="past"):
        rx.receive(10, 20)
    assert txs[0].counters().late == 1 and rx.counters().late == 1


def test_clipped_components_are_counted():
    air, txs, rx = _air()
    x = np.array([[1.5 + 0.2j, 0.1 - 1.2j], [0.5, 0.5]])
    txs[0].transmit(x, 0)
    assert txs[0].clipped_samples == 2


def test_expire_drops_unreceived_bursts():
    air, txs, rx = _air()
    txs[0].transmit(np.ones((2, 10)), 0)
    txs[1].transmit(np.ones((2, 10)), 100)
    assert air.expire_before(50) == 1 and air.pending_bursts() == 1


def test_complex_awgn_is_circular_gaussian_of_the_given_variance():
    """sim_backend.noise: mean |w|^2 = noise_var, real and imaginary parts independent
    N(0, noise_var / 2), the exponential |w|^2 of a circular complex Gaussian."""
    from sim_backend.noise import complex_awgn
    w = complex_awgn(np.random.default_rng(0), (4, 50_000), 0.3, np.complex128)
    assert np.mean(np.abs(w) ** 2) == pytest.approx(0.3, rel=0.02)
    assert np.mean(w.real ** 2) == pytest.approx(0.15, rel=0.02)
    assert np.mean(w.imag ** 2) == pytest.approx(0.15, rel=0.02)
    assert abs(np.mean(w.real * w.imag)) < 0.005 and abs(np.mean(w)) < 0.005
    e = np.abs(w) ** 2 / 0.3                          # Exp(1): P(e > 3) = exp(-3)
    assert np.mean(e > 3) == pytest.approx(np.exp(-3), rel=0.05)
    assert np.mean(w.real ** 4) / np.mean(w.real ** 2) ** 2 == pytest.approx(3.0, rel=0.05)
    assert complex_awgn(np.random.default_rng(0), (3,), 0.3).dtype == np.complex64
