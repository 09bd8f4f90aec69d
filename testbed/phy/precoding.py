"""Transmit precoding X_n = B_n S_n and receive aggregation S_hat = A^H Y (pure numpy).

S_n: complex ``(L, K)`` symbols (unit power), B_n: ``(N_t, L)`` with tr(B_n B_n^H) = power per
channel use (linear), A: ``(N_r, L)``, Y: ``(N_r, K)``.
"""
from __future__ import annotations

import numpy as np


def precode(B_n: np.ndarray, S_n: np.ndarray) -> np.ndarray:
    """X_n = B_n S_n, complex ``(N_t, K)``."""
    return np.ascontiguousarray(B_n) @ np.ascontiguousarray(S_n)


def precode_all(B: np.ndarray, S: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """X_n = B_n S_n for all nodes at once: B ``(N, N_t, L)``, S ``(N, L, K)`` -> ``(N, N_t, K)``
    in S's dtype (B is cast to it); written into ``out`` (S's dtype, any strides) when given."""
    B = np.asarray(B).astype(S.dtype, copy=False)
    if B.shape[-1] == 1:                        # one stream: a broadcast product
        return np.multiply(B, S, out=out)
    if out is None:
        return np.matmul(B, S)
    out[...] = np.matmul(B, S)                  # the same product as without out, then copied
    return out


def precoder_power(B_n: np.ndarray) -> float:
    """tr(B_n B_n^H): transmit power per channel use for unit-power symbols (linear)."""
    B_n = np.asarray(B_n)
    return float(np.vdot(B_n, B_n).real)


def aggregate(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """S_hat = A^H Y, complex ``(L, K)``; complex64 when Y is (its precision: A is cast)."""
    AH = np.asarray(A).conj().T
    if np.asarray(Y).dtype == np.complex64:
        AH = AH.astype(np.complex64)
    return np.ascontiguousarray(AH) @ Y

