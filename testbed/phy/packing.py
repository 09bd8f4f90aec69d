"""Real <-> complex packing and stream layout of the AirComp payload (pure numpy).

A real tensor of D values becomes ceil(D/2) complex symbols: s[k] = z[2k] + j z[2k+1] (the
last imaginary part is 0 when D is odd). L streams per channel use: the symbols are laid out
row-major into an ``(L, K)`` matrix, K = ceil(ceil(D/2) / L), zero-padded at the end.
"""
from __future__ import annotations

import math

import numpy as np


def n_complex(d: int) -> int:
    """Complex symbols needed for ``d`` reals: ceil(d / 2)."""
    return (int(d) + 1) // 2


def pack_reals(z: np.ndarray) -> np.ndarray:
    """Flatten real ``z`` (any shape, D values) to complex ``(ceil(D/2),)``: pairs -> re, im."""
    flat = np.asarray(z, dtype=np.float64).ravel()
    if flat.size % 2:
        flat = np.concatenate([flat, [0.0]])
    # (re, im) pairs are the memory layout of complex128: one copy, no arithmetic
    return np.ascontiguousarray(flat).view(np.complex128).copy()


def unpack_reals(s: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `pack_reals`: complex ``(>= ceil(D/2),)`` -> real array of ``shape`` (D values),
    float32 for complex64 symbols, else float64; extra trailing symbols (stream padding) are
    ignored."""
    d = math.prod(shape)
    s = np.asarray(s).ravel()
    need = n_complex(d)
    if s.size < need:
        raise ValueError(f"need {need} complex symbols for shape {shape}, got {s.size}")
    dtype = np.complex64 if s.dtype == np.complex64 else np.complex128
    out = np.ascontiguousarray(s[:need], dtype=dtype).view(np.float32 if dtype == np.complex64
                                                            else np.float64)
    return out[:d].reshape(shape).copy()


def pack_streams(z: np.ndarray, scale: float, n_streams: int) -> np.ndarray:
    """``to_streams(pack_reals(z_n / scale), L)`` for every row n of real ``z`` ``(N, ...)``
    (D values per row) at once: complex ``(N, L, K)``, K = ceil(ceil(D/2) / L), zero-padded;
    complex64 for float32 ``z`` (its precision), else complex128."""
    if n_streams < 1:
        raise ValueError(f"n_streams must be >= 1, got {n_streams}")
    z = np.asarray(z)
    real = np.float32 if z.dtype == np.float32 else np.float64
    n = z.shape[0]
    flat = z.reshape(n, -1)
    k = max(1, -(-n_complex(flat.shape[1]) // n_streams))
    out = np.zeros((n, 2 * n_streams * k), dtype=real)
    np.divide(flat, scale, out=out[:, :flat.shape[1]])
    return out.view(np.complex64 if real == np.float32 else np.complex128).reshape(n, n_streams, k)


def to_streams(s: np.ndarray, n_streams: int) -> np.ndarray:
    """Lay complex symbols ``(M,)`` out as ``(L, K)``, K = ceil(M / L), zero-padded row-major."""
    if n_streams < 1:
        raise ValueError(f"n_streams must be >= 1, got {n_streams}")
    s = np.asarray(s).ravel()
    k = max(1, -(-s.size // n_streams))
    out = np.zeros(n_streams * k, dtype=np.complex128)
    out[:s.size] = s
    return out.reshape(n_streams, k)


def from_streams(S: np.ndarray, n_symbols: int) -> np.ndarray:
    """Inverse of `to_streams`: ``(L, K)`` -> the first ``n_symbols`` symbols, ``(n_symbols,)``."""
    return np.asarray(S).reshape(-1)[:n_symbols]
