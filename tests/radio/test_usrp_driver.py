"""UsrpRadio against the fake uhd module: timed bursts, PPS alignment, async/RX errors."""
import numpy as np
import pytest

from fakes.fake_uhd import FakeDevice, make_fake_uhd
from testbed.config.radio import UsrpConfig
from testbed.errors import RadioError, RadioNotFoundError, StreamError
from testbed.radio.base import RadioSettings
from testbed.radio.usrp import UsrpRadio

FS = 1e6


def make(dev=None, **cfg):
    dev = dev or FakeDevice()
    base = dict(args="type=b200", sample_rate_hz=FS)
    base.update(cfg)
    sleep = dev.advance
    radio = UsrpRadio(UsrpConfig(**base), node_id="u0", uhd_module=make_fake_uhd(dev),
                      sleep=sleep)
    return radio.open(), dev


def tone(n, amp=0.5):
    return (amp * np.exp(2j * np.pi * 0.02 * np.arange(n))).astype(np.complex64)


def test_every_burst_is_timed_and_lands_at_its_sample():
    radio, dev = make()
    at = radio.now() + 5000
    radio.transmit(tone(400), at)
    start_s, _, timed = dev.bursts[-1]
    assert timed and start_s == pytest.approx(at / FS, abs=1e-12)
    y = radio.receive(1000, at - 300)[0]
    on = np.flatnonzero(np.abs(y) > 0.1)
    assert on[0] == 300 and on[-1] == 699


def test_unknown_pps_zeroes_device_time_on_an_edge():
    dev = FakeDevice()
    assert dev.time_s > 10
    radio, _ = make(dev, clock_source="external", time_source="external",
                    pps_align="unknown_pps")
    assert 0 <= radio.now() < FS * 1e-3


def test_next_pps_latches_after_the_edge():
    radio, dev = make(clock_source="external", time_source="external", pps_align="next_pps")
    # 1.1 s waited; time was set to 0 at the edge, so now is well under a second
    assert 0 <= radio.now() < 1.1 * FS


def test_external_clock_without_reference_is_refused():
    with pytest.raises(RadioError, match="ref_locked"):
        make(FakeDevice(ref_present=False), clock_source="external", time_source="external",
             pps_align="unknown_pps")


def test_late_burst_reported_by_async_message_is_counted():
    radio, dev = make()
    dev.send_latency_s = 0.5           # the burst reaches the device after its time
    with pytest.raises(StreamError, match="late"):
        radio.transmit(tone(100), radio.now() + 1000)
    assert radio.counters().late == 1


def test_underflow_async_message_is_counted_and_raised():
    radio, dev = make()
    dev.underflow_next = True
    with pytest.raises(StreamError, match="underflow"):
        radio.transmit(tone(100), radio.now() + 1000)
    assert radio.counters().underflows == 1


def test_rx_overflow_metadata_counted_and_raised():
    radio, dev = make()
    dev.overflow_next = True
    with pytest.raises(StreamError, match="overflow"):
        radio.receive(100, radio.now() + 100)
    assert radio.counters().overflows == 1


def test_receive_in_the_past_is_late():
    radio, _ = make()
    radio.receive(1000, radio.now() + 10)
    with pytest.raises(StreamError, match="past"):
        radio.receive(10, 0)
    assert radio.counters().late == 1


def test_retune_gives_new_phase_that_the_caller_must_retrain():
    radio, dev = make()
    at = radio.now() + 100
    radio.transmit(tone(200), at)
    p1 = np.angle(radio.receive(1, at)[0, 0])
    tunes = dev.tunes
    radio.configure(RadioSettings(sample_rate_hz=FS, center_freq_hz=916e6, tx_gain_db=20,
                                  rx_gain_db=30))
    assert dev.tunes > tunes
    at = radio.now() + 100
    radio.transmit(tone(200), at)
    p2 = np.angle(radio.receive(1, at)[0, 0])
    assert not np.isclose(p1, p2)


def test_missing_device_names_node_and_check():
    with pytest.raises(RadioNotFoundError, match="uhd_find_devices") as err:
        UsrpRadio(UsrpConfig(args="serial=NOPE"), node_id="x310-b",
                  uhd_module=make_fake_uhd()).open()
    assert "x310-b" in str(err.value)


def test_identity_has_serial():
    radio, dev = make()
    assert radio.identity().serial == dev.serial and radio.has_hardware_timestamps
