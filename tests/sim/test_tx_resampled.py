"""A corrected burst resampled once on its way to the simulated air (`Radio.transmit_resampled`,
`TxImpairments.apply_tx_resampled`): the node's transmit correction and its clock composed.

Oracles: the direct Whittaker-Shannon sum (np.sinc) at the positions the clock model gives, an
exact correction giving back the burst, and the two-step path (resampled on the host, then by
the air) where the node grid's margin cuts nothing."""
import math

import numpy as np
import pytest

from calibration.corrections import CorrectedRadio, NodeCorrection, precorrect_map
from sim_backend.air import SimAir
from sim_backend.channel import ChannelModel
from sim_backend.impairments import TxImpairmentParams, TxImpairments
from sim_backend.sim_radio import SimRadio
from testbed.errors import StreamError
from testbed.phy.resample import GridMap
from testbed.radio.base import RadioSettings

FS = 1.0e6


def _noise_burst(rng, k):
    return rng.standard_normal((1, k)) + 1j * rng.standard_normal((1, k))


def _pulses(k, centres, width=6.0):
    """Gaussian pulses (width in samples) on a burst of k samples, zero to rounding at its
    edges: its band-limited tails beyond a margin of 128 samples are below 1e-12."""
    t = np.arange(k, dtype=float)
    out = np.zeros(k, complex)
    for i, c in enumerate(centres):
        out += np.exp(1j * 0.7 * i) * np.exp(-0.5 * ((t - c) / width) ** 2)
    return out[None, :]


@pytest.mark.parametrize("tau, ppm, start", [(137.3, -18.4, 10_000_000), (3.75, 41.0, 777),
                                             (-12.5, 0.0, 50_000)])
def test_composed_map_is_the_direct_sinc_sum_at_the_clock_models_positions(tau, ppm, start):
    rng = np.random.default_rng(7)
    k = 300
    u = _noise_burst(rng, k)
    hook = TxImpairments(TxImpairmentParams(timing_offset_samples=tau, sro_ppm=ppm,
                                            interp_half_taps=64))
    grid = GridMap(-40.3, 1.0 / (1.0 - 7.5e-6), k + 80, 40)   # a correction's kind of map
    got, m0 = hook.apply_tx_resampled(u, grid, start, FS)
    assert m0 == hook.air_start(start)
    # air sample m lands at node sample (m - tau)(1 + sro), which carries u at
    # grid.first_position + grid.step (node sample - start); written as (m - start - tau) +
    # (m - tau) sro so that m ~ 1e7 keeps its fraction
    m = m0 + np.arange(got.shape[1])
    node = (m - start - tau) + (m - tau) * (ppm * 1e-6)
    pos = grid.first_position + grid.step * node
    want = (u[0][None, :] * np.sinc(pos[:, None] - np.arange(k)[None, :])).sum(axis=1)
    assert np.max(np.abs(got[0] - want)) < 1e-9 * np.max(np.abs(want))


def test_exact_correction_gives_back_the_burst_to_rounding():
    """Correction == impairment (timing, SRO, CFO, phase, gain): one resampling of the
    composed (identity) map returns the burst at the target sample to ~1e-12, where two
    (node grid, then air grid, with the node's margin) leave ~1e-5 (test_procedures)."""
    p = TxImpairmentParams(timing_offset_samples=123.37, sro_ppm=-31.0, cfo_hz=-28e3,
                           phase_offset_rad=0.7, gain_error_db=1.3, interp_half_taps=128)
    corr = NodeCorrection(tau_samples=123.37, sro_ppm=-31.0, cfo_hz=-28e3, phase_rad=0.7,
                          gain_db=1.3)
    x = 0.25 * _noise_burst(np.random.default_rng(3), 900)
    T = 5_000
    u, grid, n0 = precorrect_map(x, T, corr, FS)
    z, m0 = TxImpairments(p).apply_tx_resampled(u, grid, n0, FS)
    got = z[0, T - m0:T - m0 + x.shape[1]]
    err = np.mean(np.abs(got - x[0]) ** 2) / np.mean(np.abs(x) ** 2)
    assert err < 1e-22


def test_plain_shift_is_exactly_the_two_step_path():
    rng = np.random.default_rng(4)
    u = _noise_burst(rng, 200)
    hook = TxImpairments(TxImpairmentParams(timing_offset_samples=17.0, cfo_hz=300.0))
    grid = GridMap(-10.25, 1.0, 220, 10)
    one, m_one = hook.apply_tx_resampled(u, grid, 1_000, FS)
    hook2 = TxImpairments(TxImpairmentParams(timing_offset_samples=17.0, cfo_hz=300.0))
    two, m_two = hook2.apply_tx(grid.apply(u), 1_000, FS)
    assert m_one == m_two
    np.testing.assert_array_equal(one, two)


def test_composed_equals_two_step_where_the_node_margin_cuts_nothing():
    """Pulses that vanish at the burst's edges: resampling on the host then in the air, and
    once, put the same samples on the air (same start, same length) to ~1e-10."""
    p = TxImpairmentParams(timing_offset_samples=251.61, sro_ppm=22.0, interp_half_taps=128)
    corr = NodeCorrection(tau_samples=251.2, sro_ppm=21.3)
    x = _pulses(700, [200, 350, 480])
    u, grid, n0 = precorrect_map(x, 2_000_000, corr, FS)
    one, m_one = TxImpairments(p).apply_tx_resampled(u, grid, n0, FS)
    two, m_two = TxImpairments(p).apply_tx(grid.apply(u), n0, FS)
    assert (m_one, one.shape) == (m_two, two.shape)
    assert np.max(np.abs(one - two)) < 1e-10


def test_dac_rounding_on_the_composed_burst_has_the_converters_error_power():
    bits = 8
    hook_q = TxImpairments(TxImpairmentParams(timing_offset_samples=5.4, sro_ppm=12.0,
                                              dac_bits=bits))
    hook = TxImpairments(TxImpairmentParams(timing_offset_samples=5.4, sro_ppm=12.0))
    u = 0.2 * _noise_burst(np.random.default_rng(5), 20_000)
    grid = GridMap(-16.6, 1.0 / (1.0 + 11.0e-6), 20_032, 16)
    q, _ = hook_q.apply_tx_resampled(u, grid, 0, FS)
    ref, _ = hook.apply_tx_resampled(u, grid, 0, FS)
    step = 2.0 ** (1 - bits)
    err = np.mean(np.abs(q - ref) ** 2) / 2                     # per I/Q component
    assert err == pytest.approx(step ** 2 / 12, rel=0.05)


def _bench(params, seed=0):
    air = SimAir(1, 0.0, channel_model=ChannelModel(1, 1, 1), seed=seed)
    tx = SimRadio(air, 0, tx_impairment=TxImpairments(params))
    rx = SimRadio(air, receiver=True)
    settings = RadioSettings(sample_rate_hz=FS, center_freq_hz=2.4e9, n_tx_channels=1,
                             n_rx_channels=1)
    tx.configure(settings)
    rx.configure(settings)
    air.set_channels(np.ones((1, 1, 1), complex))
    return air, tx, rx


class _HostResampled(CorrectedRadio):
    """A CorrectedRadio whose wrapped radio is driven through the base class's
    `transmit_resampled` (resampled on the host, then `transmit`): the two-step path."""

    def transmit(self, samples, at_sample):
        from dataclasses import replace

        from calibration.corrections import precorrect
        corr = replace(self.correction, cfo_hz=self.baseband_cfo_hz())
        y, n0 = precorrect(samples, int(at_sample), corr, FS, self.half_taps)
        self.radio.transmit(y.astype(np.complex64), n0)


def test_corrected_sim_radio_puts_the_burst_where_host_resampling_does():
    params = TxImpairmentParams(timing_offset_samples=60.3, sro_ppm=-14.0, cfo_hz=1_500.0,
                                phase_offset_rad=0.3, interp_half_taps=128)
    corr = NodeCorrection(tau_samples=60.31, sro_ppm=-14.02, cfo_hz=1_499.9, phase_rad=0.31)
    x = 0.5 * _pulses(1_200, [300, 600, 900])
    windows, sent = [], []
    for cls in (CorrectedRadio, _HostResampled):
        air, tx, rx = _bench(params)
        radio = cls(tx, corr)
        at = radio.now() + 500
        radio.transmit(x, at)
        y = rx.receive(at + 3_000, 0)
        windows.append(y[0, at:at + x.shape[1]])
        sent.append(tx.counters().samples_sent)
    # complex64 bursts: both within single-precision rounding of each other
    assert np.max(np.abs(windows[0] - windows[1])) < 2e-6
    assert sent[0] == sent[1]
    # and the burst is back where it was meant to land, to the correction's residual
    assert np.max(np.abs(windows[0] - x[0])) < 1e-2          # 0.01 rad of phase on 0.5


def test_late_resampled_burst_is_refused_and_counted():
    air, tx, rx = _bench(TxImpairmentParams(timing_offset_samples=3.5, sro_ppm=5.0))
    rx.receive(1_000, 0)
    u = _noise_burst(np.random.default_rng(6), 50).astype(np.complex64)
    with pytest.raises(StreamError, match="late"):
        tx.transmit_resampled(u, GridMap(0.0, 1.0, 60, 4), tx.node_now() - 1)
    assert tx.counters().late == 1


def test_hook_without_the_composed_path_gets_the_burst_resampled_first():
    air = SimAir(1, 0.0, channel_model=ChannelModel(1, 1, 1), seed=0)
    tx = SimRadio(air, 0)                                       # ideal transmitter
    rx = SimRadio(air, receiver=True)
    air.set_channels(np.ones((1, 1, 1), complex))
    u = _noise_burst(np.random.default_rng(8), 80).astype(np.complex64)
    grid = GridMap(-3.5, 1.0 + 2e-6, 90, 4)
    tx.transmit_resampled(u, grid, 10)
    y = rx.receive(120, 0)
    np.testing.assert_allclose(y[0, 10:100], grid.apply(u)[0], atol=1e-6)
    assert math.isclose(tx.counters().samples_sent, 90)
