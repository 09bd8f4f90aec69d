"""PlutoRadio against the fake adi.Pluto / adi.ad9361: each hardware behaviour the fake
reproduces has a test here that fails if the driver ignores it."""
import numpy as np
import pytest

from fakes.fake_adi import STALE_CODE, FakeAd9361, FakePluto
from testbed.config.radio import PlutoConfig
from testbed.errors import ConfigError, RadioError, StreamError
from testbed.radio.base import RadioSettings
from testbed.radio.pluto import PlutoRadio
from testbed.radio.scaling import RX_FULL_SCALE_COUNTS, TX_FULL_SCALE_COUNTS

L = 1024


def make(fake=None, **cfg):
    base = dict(uri="ip:192.168.2.1", sample_rate_hz=1e6, rx_buffer_size=L, tx_buffer_size=L,
                rx_history_samples=1 << 16)
    base.update(cfg)
    fake = fake or FakePluto()
    radio = PlutoRadio(PlutoConfig(**base), node_id="n0", device=fake, timing_checks=False)
    return radio.open(), fake


def tone(n, amp=0.5, f=0.03):
    return (amp * np.exp(2j * np.pi * f * np.arange(n))).astype(np.complex64)


def test_tx_scaled_to_2_pow_14_and_rx_normalized_from_2_pow_11():
    radio, fake = make()
    at = radio.now() + 100
    radio.transmit(tone(400, amp=0.5), at)
    dac = np.concatenate([b for _, b in fake._dac], axis=1) if fake._dac else None
    # peak DAC code of a 0.5 tone is 0.5 * 2**14 (pyadi convention), not 0.5 or 0.5 * 2**15
    stream = np.concatenate([b for _, b in fake._dac], axis=1)
    assert np.max(np.abs(stream.real)) == pytest.approx(0.5 * TX_FULL_SCALE_COUNTS, abs=1)
    y = radio.receive(400, at)
    # digital loopback keeps the DAC's 12 MSBs: 0.5 * 2**14 / 16 = 0.25 * 2**11 counts
    assert np.abs(y[0]).mean() == pytest.approx(0.25, abs=2 / RX_FULL_SCALE_COUNTS)
    assert dac is not None


def test_over_full_scale_saturates_like_a_dac_instead_of_int16_wrap():
    radio, fake = make()
    at = radio.now() + 100
    radio.transmit(np.full(10, 1.5 - 2.0j), at)
    assert radio.tx_clipped_samples == 20                  # 10 I and 10 Q components
    radio.receive(20, at)
    stream = np.concatenate([b for _, b in fake._dac], axis=1)
    assert np.max(np.abs(stream.real)) == TX_FULL_SCALE_COUNTS
    assert np.min(stream.imag) == -TX_FULL_SCALE_COUNTS    # saturated, not wrapped


def test_burst_lands_at_its_sample_position_with_loopback_delay():
    radio, fake = make(FakePluto(loopback_delay=7))
    at = radio.now() + 3 * L + 123          # crosses buffer boundaries
    radio.transmit(tone(700), at)
    y = radio.receive(3000, at - 1000)[0]
    on = np.flatnonzero(np.abs(y) > 0.05)
    assert on[0] - 1000 == 7 and on[-1] - 1000 == 7 + 699


def test_tx_buffer_length_stays_fixed_for_any_burst_length():
    radio, fake = make()
    for n in (17, 300, 5 * L + 3, 1):
        radio.transmit(tone(n), radio.now() + 50)
    assert fake.tx_lengths == {L}   # the fake raises on any other length, like pyadi-iio


def test_reconfigure_destroys_tx_buffer_before_touching_cyclic_flag():
    radio, fake = make()
    radio.transmit(tone(100), radio.now())
    # fake raises "TX buffer already created..." if tx_cyclic_buffer is set with a live buffer
    radio.configure(RadioSettings(sample_rate_hz=2e6, center_freq_hz=433.92e6,
                                  tx_gain_db=-20, rx_gain_db=20))
    assert fake.tx_cyclic_buffer is False
    radio.transmit(tone(100), radio.now())
    assert radio.settings.sample_rate_hz == fake.sample_rate == 2_000_000


def test_gain_mode_set_to_manual_before_rx_gain():
    radio, fake = make(rx_gain_db=23)
    assert fake.gain_control_mode_chan0 == "manual"
    assert fake.rx_hardwaregain_chan0 == 23      # fake ignores the gain outside manual mode
    names = [n for n, _ in fake.writes]
    assert names.index("gain_control_mode_chan0") < names.index("rx_hardwaregain_chan0")


def test_stale_rx_buffers_after_a_change_are_flushed():
    radio, fake = make()
    y = radio.receive(4 * L, radio.now())
    assert not np.any(np.isclose(y.real * RX_FULL_SCALE_COUNTS, STALE_CODE))
    radio.configure(RadioSettings(sample_rate_hz=1e6, center_freq_hz=868e6,
                                  tx_gain_db=-10, rx_gain_db=30))
    y = radio.receive(4 * L, radio.now())
    assert not np.any(np.isclose(y.real * RX_FULL_SCALE_COUNTS, STALE_CODE))


def test_unsupported_rate_or_gain_rejected_before_the_device_is_touched():
    radio, fake = make()
    n_writes = len(fake.writes)
    with pytest.raises(ConfigError, match="521000"):
        radio.configure(RadioSettings(sample_rate_hz=200e3))
    with pytest.raises(ConfigError, match="tx_gain_db"):
        radio.configure(RadioSettings(sample_rate_hz=1e6, tx_gain_db=5.0))
    assert len(fake.writes) == n_writes


def test_late_burst_counted_and_raised():
    radio, _ = make()
    radio.receive(10, radio.now() + 2 * L)
    with pytest.raises(StreamError, match="late"):
        radio.transmit(tone(10), 0)
    assert radio.counters().late == 1


def test_host_stall_counted_as_overflow_and_underflow_and_window_refused():
    radio, fake = make()
    start = radio.now()
    radio.receive(L, start)
    fake.stall(20 * L)
    with pytest.raises(StreamError, match="overflow"):
        radio.receive(8 * L, start + L)
    c = radio.counters()
    assert c.overflows >= 1 and c.underflows >= 1
    assert radio.discontinuities


def test_refill_gap_detected_by_timing_when_registers_are_unreadable():
    t = [0.0]
    fake = FakePluto()
    fake._rxadc.reg_access = fake._txdac.reg_access = False
    cfg = PlutoConfig(uri="ip:pluto.local", sample_rate_hz=1e6, rx_buffer_size=L,
                      tx_buffer_size=L)
    radio = PlutoRadio(cfg, device=fake, clock=lambda: t[0]).open()
    radio.receive(2 * L, radio.now())
    assert radio.counters().overflows == 0
    t[0] += 1.0                      # 1 s without a refill >> 4 buffers of 1 ms
    radio.receive(L, radio.now())
    assert radio.counters().overflows == 1


def test_2r2t_two_channels_map_to_two_streams():
    fake = FakeAd9361()
    radio, _ = make(fake, mode="2r2t", compatible="ad9361", n_tx_channels=2, n_rx_channels=2)
    at = radio.now() + 10
    x = np.stack([tone(200, 0.5), tone(200, 0.25)])
    radio.transmit(x, at)
    y = radio.receive(200, at)
    assert y.shape == (2, 200)
    assert np.abs(y[0]).mean() == pytest.approx(0.25, abs=0.002)
    assert np.abs(y[1]).mean() == pytest.approx(0.125, abs=0.002)


def test_2r2t_config_on_1r1t_firmware_names_the_fw_setenv_fix():
    fake = FakeAd9361(firmware_2r2t=False)
    with pytest.raises(ConfigError, match="fw_setenv mode 2r2t"):
        make(fake, mode="2r2t", compatible="ad9361", n_tx_channels=2, n_rx_channels=2)


def test_background_stream_keeps_running_and_serves_windows():
    fake = FakePluto(pace_s_per_sample=1e-6)        # 1 MS/s: one buffer per ~1 ms
    cfg = PlutoConfig(uri="ip:192.168.2.1", sample_rate_hz=1e6, rx_buffer_size=L,
                      tx_buffer_size=L, rx_history_samples=1 << 15)
    with PlutoRadio(cfg, device=fake, background=True, timing_checks=False).open() as radio:
        at = radio.now() + 200 * L                 # ~0.2 s lead against thread jitter
        radio.transmit(tone(300), at)
        y = radio.receive(600, at - 100)[0]
        on = np.flatnonzero(np.abs(y) > 0.05)
        assert on[0] == 100 and len(on) == 300
        assert radio.now() > at


def test_identity_from_context_attributes():
    radio, fake = make()
    ident = radio.identity()
    assert ident.kind == "pluto" and ident.firmware == "v0.38"
    assert ident.serial == fake.ctx.attrs["hw_serial"] and ident.address == "ip:192.168.2.1"


def test_no_tx_channel_is_an_error_not_a_silent_drop():
    radio, _ = make(n_tx_channels=0)
    with pytest.raises(RadioError, match="no TX"):
        radio.transmit(tone(10), radio.now())
