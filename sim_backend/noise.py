"""Circularly-symmetric complex Gaussian noise, fast (pure numpy).

``w = sqrt(noise_var E) exp(j 2 pi V)`` with E = -ln(1 - U) ~ Exp(1) and U, V uniform: the
polar (Box-Muller) form of CN(0, noise_var), whose |w|^2 is exponential with mean noise_var and
whose phase is uniform. U and V are float32 uniforms (multiples of 2^-24) and the log, sqrt,
cos and sin run in float32 (numpy's SIMD loops): ~4x faster than ``standard_normal`` in float64
for the air's windows. The float32 grid truncates |w|^2 at 16.6 noise_var (24 ln 2), where the
exact distribution has 6e-8 of its mass; values carry float32 resolution (~6e-8 relative).
Draw order: U for all samples, then V, from the given generator.
"""
from __future__ import annotations

import numpy as np


def add_complex_awgn(y: np.ndarray, rng: np.random.Generator, noise_var: float) -> None:
    """Add CN(0, ``noise_var``) noise (linear, per complex sample) to complex ``y`` in place."""
    n = y.size
    if n == 0 or noise_var <= 0:
        return
    uv = rng.random(2 * n, dtype=np.float32)
    u, v = uv[:n], uv[n:]
    np.negative(u, out=u)
    np.log1p(u, out=u)                                   # ln(1 - U) <= 0
    np.multiply(u, np.float32(-noise_var), out=u)
    np.sqrt(u, out=u)                                    # |w|
    np.multiply(v, np.float32(2.0 * np.pi), out=v)       # phase
    c = np.cos(v)
    np.sin(v, out=v)
    c *= u
    v *= u
    y.real += c.reshape(y.shape)
    y.imag += v.reshape(y.shape)


def complex_awgn(rng: np.random.Generator, shape: tuple[int, ...], noise_var: float,
                 dtype=np.complex64) -> np.ndarray:
    """CN(0, ``noise_var``) samples of ``shape`` (see the module docstring), complex ``dtype``."""
    w = np.zeros(shape, dtype=dtype)
    add_complex_awgn(w, rng, noise_var)
    return w
