"""Packing and normalization round trips."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from testbed.phy.normalization import (SiteScale, common_scale, denormalize, normalize, symbol_power,
                                       symbol_powers)
from testbed.phy.packing import (from_streams, n_complex, pack_reals, pack_streams, to_streams,
                                  unpack_reals)

shapes = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, n_streams=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_pack_streams_round_trip(shape, n_streams, seed):
    z = np.random.default_rng(seed).standard_normal(shape)
    s = pack_reals(z)
    assert s.shape == (n_complex(z.size),)
    S = to_streams(s, n_streams)
    assert S.shape[0] == n_streams and S.size >= s.size and S.size - s.size < n_streams
    back = unpack_reals(from_streams(S, s.size), shape)
    np.testing.assert_array_equal(back, z)


def test_pairs_become_real_and_imaginary_parts_odd_length_zero_padded():
    s = pack_reals(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(s, [1 + 2j, 3 + 0j])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, n_nodes=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_common_scale_gives_unit_power_bound_and_sum_round_trip(shape, n_nodes, seed):
    rng = np.random.default_rng(seed)
    zs = [rng.standard_normal(shape) * rng.uniform(0.1, 10) for _ in range(n_nodes)]
    c = common_scale(zs)
    powers = [np.mean(np.abs(pack_reals(normalize(z, c))) ** 2) * n_complex(z.size) * 2 / z.size
              for z in zs]
    assert max(powers) == pytest.approx(1.0)  # the loudest node sits at unit power
    summed = sum(pack_reals(normalize(z, c)) for z in zs)
    np.testing.assert_allclose(unpack_reals(denormalize(summed, c), shape), sum(zs), atol=1e-9)


def test_site_scale_statistics():
    rng = np.random.default_rng(0)
    ss = SiteScale()
    rounds = [[rng.standard_normal(100) * a for a in (1.0, 2.0)] for _ in range(3)]
    for r in rounds:
        ss.update([symbol_power(z) for z in r])
    top = max(symbol_power(z) for r in rounds for z in r)
    assert ss.scale() == pytest.approx(np.sqrt(top))
    assert ss.scale(headroom_db=10.0) == pytest.approx(np.sqrt(10 * top))
    with pytest.raises(ValueError, match="statistics"):
        SiteScale().scale()


@pytest.mark.parametrize("d,n_streams", [(9, 1), (10, 2), (7, 3)])
def test_pack_streams_is_each_rows_packing(d, n_streams):
    """pack_streams(z, c, L)[n] == to_streams(pack_reals(z[n] / c), L); float32 rows give
    complex64 (and unpack back to float32), float64 rows complex128; symbol_powers per row."""
    rng = np.random.default_rng(d)
    z = rng.standard_normal((4, d))
    S = pack_streams(z, 0.7, n_streams)
    assert S.dtype == np.complex128
    for n in range(4):
        np.testing.assert_array_equal(S[n], to_streams(pack_reals(z[n] / 0.7), n_streams))
    S32 = pack_streams(z.astype(np.float32), 0.7, n_streams)
    assert S32.dtype == np.complex64
    np.testing.assert_allclose(S32, S, rtol=1e-6)
    back = unpack_reals(from_streams(S32[1], n_complex(d)), (d,))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, z[1] / 0.7, rtol=1e-6)
    np.testing.assert_allclose(symbol_powers(z), [symbol_power(r) for r in z], rtol=1e-12)
