"""Exact band-limited resampler against Whittaker-Shannon (the untruncated sinc sum) and closed forms."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from testbed.phy.resample import bandlimited_resample


def _white(n_ch, k, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_ch, k)) + 1j * rng.standard_normal((n_ch, k))) / np.sqrt(2)


def _sinc_sum(x, pos):
    """Whittaker-Shannon: sum_k x[k] sinc(t - k) at positions pos, (C, K) -> (C, M)."""
    return (np.sinc(pos[:, None] - np.arange(x.shape[1])[None, :]) @ x.T).T


@pytest.mark.parametrize("first,step", [(-128.3, 1.0), (-130.77, 1 + 50e-6),
                                        (-100.5, 1 - 30e-6), (3.25, 1 + 1e-3), (-20.0, 0.5)])
def test_matches_the_untruncated_sinc_sum_on_a_full_band_burst(first, step):
    """A full-band white burst is where a finite-tap interpolator loses ~1e-3 at the band edge;
    the periodic kernel with its series correction is the sinc sum to rounding."""
    x = _white(2, 500)
    n_out = 756
    y = bandlimited_resample(x, first, step, n_out)
    ref = _sinc_sum(x, first + step * np.arange(n_out))
    assert y.shape == (2, n_out)
    assert np.mean(np.abs(y - ref) ** 2) / np.mean(np.abs(x) ** 2) < 1e-12


def test_integer_positions_return_the_samples_and_zeros_outside():
    x = _white(3, 200, seed=1)
    y = bandlimited_resample(x, -7.0, 1.0, 220)
    np.testing.assert_allclose(y[:, 7:207], x, atol=1e-9)
    np.testing.assert_allclose(y[:, :7], 0.0, atol=1e-9)
    np.testing.assert_allclose(y[:, 207:], 0.0, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(k0=st.integers(0, 63), first=st.floats(-40.0, 40.0), step=st.floats(0.9, 1.1))
def test_an_impulse_becomes_a_sinc(k0, first, step):
    """Closed form: the band-limited signal of a unit sample at k0 is sinc(t - k0)."""
    x = np.zeros((1, 64), complex)
    x[0, k0] = 1.0
    n_out = 100
    y = bandlimited_resample(x, first, step, n_out)[0]
    t = first + step * np.arange(n_out)
    assert np.max(np.abs(y - np.sinc(t - k0))) < 1e-6
    assert np.mean(np.abs(y - np.sinc(t - k0)) ** 2) < 1e-12


def test_band_limited_tone_is_delayed_exactly_inside_the_burst():
    """A tone well inside the band, far from the burst edges, is the closed-form tone delayed;
    scipy's FFT resampler (periodic, exact for a tone with a whole number of cycles) agrees."""
    from scipy.signal import resample
    k = 1024
    n = np.arange(k)
    f = 37 / k                                   # cycles per sample, whole number of periods
    x = np.exp(2j * np.pi * f * n)[None, :]
    y = bandlimited_resample(x, 400.5, 0.5, 400)[0]   # positions 400.5 .. 600: 2x upsampled
    want = np.exp(2j * np.pi * f * (400.5 + 0.5 * np.arange(400)))
    # the tail of the window (a tone cut to 1024 samples) costs ~1/(pi d) per edge distance d
    assert np.max(np.abs(y - want)) < 5e-3
    up = resample(x[0], 2 * k)                   # positions 0, 0.5, 1, ...
    np.testing.assert_allclose(up[801:1201], want, atol=1e-9)


def test_linear_and_channels_independent():
    x1, x2 = _white(1, 100, 2), _white(1, 100, 3)
    both = bandlimited_resample(np.vstack([x1, x2]), -5.3, 1.0001, 120)
    np.testing.assert_allclose(both[0], bandlimited_resample(x1, -5.3, 1.0001, 120)[0], atol=1e-12)
    s = bandlimited_resample(2 * x1 + 1j * x2, -5.3, 1.0001, 120)
    np.testing.assert_allclose(s[0], 2 * both[0] + 1j * both[1], atol=1e-10)


def test_bad_arguments_say_what_to_change():
    x = np.ones((1, 10), complex)
    with pytest.raises(ValueError, match="channels, samples"):
        bandlimited_resample(np.ones(10), 0.0, 1.0, 5)
    with pytest.raises(ValueError, match="step"):
        bandlimited_resample(x, 0.0, 0.0, 5)
    with pytest.raises(ValueError, match="n_out"):
        bandlimited_resample(x, 0.0, 1.0, -1)
    assert bandlimited_resample(x, 0.0, 1.0, 0).shape == (1, 0)


def test_single_precision_bursts_stay_single_and_close_to_the_sinc_sum():
    """complex64 in, complex64 out (what radios carry), within float32 rounding of the sum."""
    x = _white(1, 700, seed=4)
    pos = -16.3 + (1 + 2.3e-5) * np.arange(732)
    y = bandlimited_resample(x.astype(np.complex64), -16.3, 1 + 2.3e-5, 732)
    assert y.dtype == np.complex64
    ref = _sinc_sum(x.astype(np.complex64).astype(complex), pos)
    assert np.mean(np.abs(y - ref) ** 2) / np.mean(np.abs(x) ** 2) < 1e-12


@settings(max_examples=60, deadline=None)
@given(cols=st.lists(st.booleans(), min_size=1, max_size=80), min_gap=st.integers(1, 12))
def test_nonzero_runs_cover_every_nonzero_column_and_split_only_at_long_silences(cols, min_gap):
    from testbed.phy.resample import nonzero_runs
    x = np.array(cols, float)[None, :]
    runs = nonzero_runs(x, min_gap)
    covered = np.zeros(x.shape[1], bool)
    for lo, hi in runs:
        assert 0 <= lo < hi <= x.shape[1]
        covered[lo:hi] = True
    assert np.all(covered[x[0] != 0])                          # every non-zero column is in a run
    for (_, hi), (lo, _) in zip(runs, runs[1:]):
        assert lo - hi >= min_gap and not x[0, hi:lo].any()    # split only at long silences
    if not x.any():
        assert runs == []
    elif runs:
        assert runs[0][0] == 0 or runs[0][0] >= min_gap        # short zero edges stay in
        assert runs[-1][1] == x.shape[1] or x.shape[1] - runs[-1][1] >= min_gap


def test_runs_apart_equal_the_sinc_sum_within_their_tails():
    """Two runs 5000 zeros apart (an FDMA node's preamble and its slot): the sinc sum near each
    run, zero beyond ``tail`` of both; a burst without long silences is untouched."""
    from testbed.phy.resample import resample_runs
    x = np.zeros((1, 6000), complex)
    x[:, 100:163] = _white(1, 63, seed=5)
    x[:, 5200:5800] = _white(1, 600, seed=6)
    first, step, n_out, tail = -40.25, 1 + 3e-5, 6100, 64
    y = resample_runs(x, first, step, n_out, tail)
    pos = first + step * np.arange(n_out)
    ref, near = np.zeros_like(y), np.zeros(n_out, bool)
    # the runs, short zero edges included (100 and 200 zeros < 2 tail + SPLIT_SAVING)
    for lo, hi in [(0, 163), (5200, 6000)]:       # each run's own sinc sum, within its tails
        mask = (pos >= lo - tail) & (pos <= hi - 1 + tail)
        part = np.zeros_like(x)
        part[:, lo:hi] = x[:, lo:hi]
        ref[:, mask] += _sinc_sum(part, pos[mask])
        near |= mask
    assert np.mean(np.abs(y - ref) ** 2) / np.mean(np.abs(x[x != 0]) ** 2) < 1e-12
    assert near.sum() > 600 + 63 and not y[:, ~near].any()
    dense = _white(1, 3000, seed=7)
    np.testing.assert_array_equal(resample_runs(dense, first, step, 3100, tail),
                                  bandlimited_resample(dense, first, step, 3100))
