"""Channel models: statistics, Rician limit, path loss, SNR definition."""
import numpy as np
import pytest

from sim_backend.channel import (ChannelModel, noise_var_from_snr_db, path_gain, path_loss_db, rayleigh,
                                 rician, snr_db_from_noise_var, ula_steering)
from testbed.errors import ConfigError


def test_rayleigh_unit_power_and_circular():
    h = rayleigh(np.random.default_rng(0), 500, 4, 2)
    assert h.shape == (500, 4, 2)
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, rel=0.03)
    assert abs(np.mean(h ** 2)) < 0.03  # circular: E[h^2] = 0


def test_rician_k_infinite_is_los_and_finite_k_has_unit_power():
    rng = np.random.default_rng(1)
    aoa, aod = np.array([0.3, -0.7]), np.array([0.1, 1.0])
    h = rician(rng, 2, 4, 3, np.inf, aoa, aod)
    for n in range(2):
        los = np.outer(ula_steering(4, aoa[n]), ula_steering(3, aod[n]).conj())
        np.testing.assert_allclose(h[n], los, atol=1e-12)
    h = rician(np.random.default_rng(2), 2000, 2, 2, 6.0)
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, rel=0.03)
    # K-factor: power of the mean (LoS) part over the scattered part, with fixed angles
    h = rician(np.random.default_rng(3), 4000, 1, 1, 10.0, 0.2, 0.4)
    k_hat = np.abs(np.mean(h)) ** 2 / np.var(h)
    assert 10 * np.log10(k_hat) == pytest.approx(10.0, abs=0.5)


def test_ula_steering_unit_modulus_broadside_all_ones():
    assert np.allclose(np.abs(ula_steering(8, 0.9)), 1.0)
    assert np.allclose(ula_steering(5, 0.0), 1.0)


def test_path_loss_scales_received_power():
    model = ChannelModel(3, 2, 1, path_loss_db=(0.0, 10.0, 20.0))
    H = np.stack([model.draw(np.random.default_rng(s)) for s in range(1500)])
    p = np.mean(np.abs(H) ** 2, axis=(0, 2, 3))
    np.testing.assert_allclose(p, [1.0, 0.1, 0.01], rtol=0.06)
    assert path_loss_db(10.0, exponent=3.0) == pytest.approx(30.0)
    assert path_gain(30.0) == pytest.approx(1e-3)


def test_channel_model_is_deterministic_under_seed():
    m = ChannelModel(2, 3, 2, fading="rician", k_factor_db=3.0)
    a = m.draw(np.random.default_rng(7))
    b = m.draw(np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_snr_definition_round_trip():
    nv = noise_var_from_snr_db(20.0, ref_power=0.5, path_gain=0.1)
    assert nv == pytest.approx(0.5 * 0.1 / 100.0)
    assert snr_db_from_noise_var(nv, ref_power=0.5, path_gain=0.1) == pytest.approx(20.0)


def test_bad_configuration_is_rejected():
    with pytest.raises(ConfigError, match="fading"):
        ChannelModel(2, 2, fading="nakagami")
    with pytest.raises(ConfigError):
        noise_var_from_snr_db(10.0, ref_power=0.0)


def test_a_static_simulated_bench_has_the_emulated_air_s_one_block():
    """``channel.realization: fixed``: the simulated bench's air starts on the block the
    emulated twin's air is wired with (the first draw of `static_channel_rng`), so the two
    benches can be compared on the same channels; the default draws a new block per round."""
    from sim_backend.broker import air_from_bench
    from sim_backend.channel import fixed_bench_channels
    from testbed.config.bench import BenchConfig
    from testbed.config.loader import find_config, load_bench
    emulated = load_bench(find_config("pluto_4node_emulated", "benches"))
    data = emulated.model_dump(mode="json", exclude_none=True)
    sim = {"kind": "sim", "sample_rate_hz": 1e6, "center_freq_hz": 915e6, "n_tx_channels": 1}
    for n in data["nodes"]:
        n["radio"] = dict(sim, n_rx_channels=1)
    data["receiver"]["radio"] = dict(sim, n_rx_channels=4)
    data["channel"].update(impairments=None, time_scale=1.0, realization="fixed")
    static = BenchConfig.model_validate(data)
    H = fixed_bench_channels(emulated, 4)
    assert H.shape == (4, 4, 1)
    np.testing.assert_array_equal(air_from_bench(static).true_channels(), H)
    data["channel"]["realization"] = "per_round"
    fading = air_from_bench(BenchConfig.model_validate(data)).true_channels()
    assert not np.allclose(fading, H)
