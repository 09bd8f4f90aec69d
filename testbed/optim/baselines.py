"""Baseline transceivers: channel inversion to the weakest node, and a random receiver.

Both fix a receive direction G (N_r, L) without optimizing it, then let every node zero-force
it (B_n = minimum-power ZF precoder) with the common scale set by the node that needs the most
power relative to its budget, so all nodes meet tr(B_n B_n^H) <= P_n and the weakest spends all.
"""
from __future__ import annotations

import numpy as np

from testbed.optim.mse import zf_design_from_direction


def channel_inversion_direction(H: np.ndarray, P: np.ndarray, L: int) -> np.ndarray:
    """MRC-style receive direction: the top-L eigenvectors of sum_n P_n H_n H_n^H / ||H_n||_F^2.

    ``H`` (N, N_r, N_t), ``P`` (N,). Each node's channel is normalized so that no single strong
    node dominates the direction; the result (N_r, L) has orthonormal columns / sqrt(L). For
    N_t = L = 1 this is the principal direction of the normalized channel vectors.
    """
    norms = np.sum(np.abs(H) ** 2, axis=(1, 2))
    w = P / np.where(norms > 0, norms, 1.0)
    N, N_r, N_t = H.shape
    Hm = np.transpose(H, (1, 0, 2)).reshape(N_r, N * N_t)    # [H_1 .. H_N]
    R = (Hm * np.repeat(w, N_t)) @ Hm.conj().T              # sum_n w_n H_n H_n^H
    _, vecs = np.linalg.eigh(R)
    return vecs[:, ::-1][:, :L] / np.sqrt(L)


def solve_channel_inversion(H: np.ndarray, P: np.ndarray, noise_var: float, L: int, rng, **options):
    """Channel inversion to the weakest node along the MRC-style direction. Returns (A, B, None, info)."""
    if options:
        raise ValueError(f"method 'channel-inversion' takes no options, got {sorted(options)}")
    G = channel_inversion_direction(H, P, L)
    A, B, alpha = zf_design_from_direction(H, P, G)
    return A, B, None, {"alpha": alpha}


def solve_random(H: np.ndarray, P: np.ndarray, noise_var: float, L: int, rng, **options):
    """Random receive direction (iid CN(0, 1) entries, seeded by ``rng``), then ZF precoders.

    Returns (A, B, None, info). Redraws (up to 10 times) in the measure-zero case where some node
    cannot zero-force the drawn direction.
    """
    if options:
        raise ValueError(f"method 'random' takes no options, got {sorted(options)}")
    N_r = H.shape[1]
    last = None
    for _ in range(10):
        G = rng.standard_normal((N_r, L)) + 1j * rng.standard_normal((N_r, L))
        try:
            A, B, alpha = zf_design_from_direction(H, P, G)
        except ValueError as exc:
            last = exc
            continue
        return A, B, None, {"alpha": alpha}
    raise ValueError(f"no random receive direction admits zero forcing: {last}")
