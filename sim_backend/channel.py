"""Fading, path loss and the SNR definition of the simulated air (pure functions, seeded).

Shapes: a channel set is ``H`` complex ``(N, N_r, N_t)``: ``H[n]`` maps node n's ``N_t``
transmit samples to the receiver's ``N_r`` antennas (block fading: constant over one block).

Small-scale fading is normalized to ``E|h_ij|^2 = 1``; the large-scale path-loss *gain*
``beta_n = 10**(-path_loss_db_n / 10)`` (linear, <= 1 for a loss) multiplies the power, i.e.
``H[n] = sqrt(beta_n) * G[n]``.

SNR definition ("per node, received, per antenna")::

    SNR_n = P_ref * beta_n * E|h|^2 / noise_var

``P_ref`` is the total transmitted sample power (summed over the node's antennas, full-scale
units, |x|^2 = 1 is 0 dBFS) of a unit-power symbol stream sent at full precoder power
``tr(B B^H) = P = 1``. Every round sends P = 1 at ``LinkBudget.ref_power``
(`testbed.phy.budget`, -12 dBFS by default); pass that as ``ref_power`` so that ``snr_db``
is the SNR of the signal model (``sigma^2 = LinkBudget.signal_noise_var(noise_var)``). ``noise_var`` is the
complex AWGN variance per receive antenna per sample. ``snr_db`` set by the user is the SNR
of a node with ``beta = path_gain`` (default 1, i.e. a 0 dB path loss); a node with extra path
loss sees ``SNR_n = snr_db - path_loss_db_n`` in dB.
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from testbed.errors import ConfigError


def noise_var_from_snr_db(snr_db: float, ref_power: float = 1.0, path_gain: float = 1.0,
                          mean_channel_gain: float = 1.0) -> float:
    """Complex AWGN variance per receive antenna that gives ``snr_db`` (see module docstring).

    noise_var = ref_power * path_gain * mean_channel_gain / 10**(snr_db / 10); all linear.
    """
    if ref_power <= 0 or path_gain <= 0 or mean_channel_gain <= 0:
        raise ConfigError("ref_power, path_gain and mean_channel_gain must be > 0 (linear)")
    return float(ref_power * path_gain * mean_channel_gain / 10.0 ** (snr_db / 10.0))


def snr_db_from_noise_var(noise_var: float, ref_power: float = 1.0, path_gain: float = 1.0,
                          mean_channel_gain: float = 1.0) -> float:
    """Inverse of `noise_var_from_snr_db` (dB)."""
    if noise_var <= 0:
        raise ConfigError(f"noise_var must be > 0, got {noise_var}")
    return float(10.0 * np.log10(ref_power * path_gain * mean_channel_gain / noise_var))


def path_loss_db(distance_m: np.ndarray | float, exponent: float = 3.0, ref_distance_m: float = 1.0,
                 ref_loss_db: float = 0.0) -> np.ndarray:
    """Log-distance path loss in dB: ref_loss_db + 10 * exponent * log10(d / ref_distance_m)."""
    d = np.asarray(distance_m, dtype=float)
    if np.any(d <= 0) or ref_distance_m <= 0:
        raise ConfigError("distances must be > 0 m")
    return ref_loss_db + 10.0 * exponent * np.log10(d / ref_distance_m)


def path_gain(path_loss_db_values: np.ndarray | float) -> np.ndarray:
    """Linear power gain beta = 10**(-PL_dB / 10) of a path loss in dB."""
    return 10.0 ** (-np.asarray(path_loss_db_values, dtype=float) / 10.0)


def ula_steering(n_antennas: int, angle_rad: float, spacing_wavelengths: float = 0.5) -> np.ndarray:
    """Steering vector of a uniform linear array, shape ``(n_antennas,)``, unit-modulus entries:
    a_k = exp(j 2 pi spacing k sin(angle)), angle from broadside in radians."""
    k = np.arange(n_antennas)
    return np.exp(2j * np.pi * spacing_wavelengths * k * np.sin(angle_rad))


def rayleigh(rng: np.random.Generator, n_nodes: int, n_rx: int, n_tx: int) -> np.ndarray:
    """i.i.d. CN(0, 1) MIMO channels, shape ``(n_nodes, n_rx, n_tx)``."""
    shape = (n_nodes, n_rx, n_tx)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)


def rician(rng: np.random.Generator, n_nodes: int, n_rx: int, n_tx: int, k_factor_db: float,
           aoa_rad: np.ndarray | None = None, aod_rad: np.ndarray | None = None,
           spacing_wavelengths: float = 0.5) -> np.ndarray:
    """Rician MIMO channels ``(n_nodes, n_rx, n_tx)`` with E|h|^2 = 1:
    H_n = sqrt(K/(K+1)) a_r(aoa_n) a_t(aod_n)^H + sqrt(1/(K+1)) G_n, G_n i.i.d. CN(0, 1).

    k_factor_db: K in dB (``np.inf`` gives the pure LoS channel). aoa_rad / aod_rad: per-node
    angles of arrival / departure (radians, ULA broadside); drawn uniform in [-pi/2, pi/2) when
    None (drawn before the scattered part, so the LoS geometry does not depend on K).
    """
    if aoa_rad is None:
        aoa_rad = rng.uniform(-np.pi / 2, np.pi / 2, n_nodes)
    if aod_rad is None:
        aod_rad = rng.uniform(-np.pi / 2, np.pi / 2, n_nodes)
    aoa = np.broadcast_to(np.asarray(aoa_rad, float), (n_nodes,))
    aod = np.broadcast_to(np.asarray(aod_rad, float), (n_nodes,))
    los = np.stack([np.outer(ula_steering(n_rx, aoa[n], spacing_wavelengths),
                             ula_steering(n_tx, aod[n], spacing_wavelengths).conj())
                    for n in range(n_nodes)])
    scattered = rayleigh(rng, n_nodes, n_rx, n_tx)
    if np.isinf(k_factor_db):
        return los
    k = 10.0 ** (k_factor_db / 10.0)
    return np.sqrt(k / (k + 1.0)) * los + np.sqrt(1.0 / (k + 1.0)) * scattered


@dataclass
class ChannelModel:
    """Block-fading MIMO channel model of N transmitting nodes to one receiver.

    fading: "rayleigh" or "rician" (then ``k_factor_db``; LoS angles fixed per model when
    ``aoa_rad``/``aod_rad`` are given, else drawn per realization).
    path_loss_db: per-node path loss in dB (scalar or (N,)); 0 dB means beta = 1.
    `draw(rng)` returns ``sqrt(beta_n) * G_n`` stacked, complex ``(N, N_r, N_t)``.
    """

    n_nodes: int
    n_rx: int
    n_tx: int = 1
    fading: str = "rayleigh"
    k_factor_db: float = 0.0
    path_loss_db: float | tuple | np.ndarray = 0.0
    aoa_rad: np.ndarray | None = None
    aod_rad: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.fading not in ("rayleigh", "rician"):
            raise ConfigError(f"fading must be 'rayleigh' or 'rician', got {self.fading!r}")
        if min(self.n_nodes, self.n_rx, self.n_tx) < 1:
            raise ConfigError("n_nodes, n_rx and n_tx must be >= 1")
        pl = np.broadcast_to(np.asarray(self.path_loss_db, float), (self.n_nodes,))
        self._beta = path_gain(pl)

    @property
    def path_gains(self) -> np.ndarray:
        """Linear path-loss gains beta_n, shape (N,)."""
        return self._beta.copy()

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One block-fading realization, complex ``(N, N_r, N_t)``, path loss included."""
        if self.fading == "rayleigh":
            g = rayleigh(rng, self.n_nodes, self.n_rx, self.n_tx)
        else:
            g = rician(rng, self.n_nodes, self.n_rx, self.n_tx, self.k_factor_db,
                       self.aoa_rad, self.aod_rad)
        return np.sqrt(self._beta)[:, None, None] * g


def bench_channel_model(bench, n_rx: int, n_tx: int = 1) -> ChannelModel:
    """The `ChannelModel` of a bench's ``channel`` section (fading, K factor, path loss per node
    id; Rician with 0 dB K and no path loss without one) for ``n_rx`` receive antennas."""
    ch = bench.channel
    pl = [(ch.path_loss_db.get(n.id, 0.0) if ch else 0.0) for n in bench.nodes]
    return ChannelModel(len(bench.nodes), n_rx, n_tx, fading=ch.fading if ch else "rician",
                        k_factor_db=ch.k_factor_db if ch else math.inf,
                        path_loss_db=np.asarray(pl))


def static_channel_rng(bench) -> np.random.Generator:
    """The generator of a static bench's one fading block: ``default_rng([channel.seed, 99])``."""
    return np.random.default_rng([bench.channel.seed if bench.channel else 0, 99])


def fixed_bench_channels(bench, n_rx: int, n_tx: int = 1,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """The one fading block of a static bench ``(N, n_rx, n_tx)``, the first draw of
    `static_channel_rng` (``rng``: that generator, to go on drawing from it) -- the emulated
    air's channels (`sim_backend.emulated_bench`) and a simulated bench's with
    ``realization: fixed``."""
    rng = static_channel_rng(bench) if rng is None else rng
    return bench_channel_model(bench, n_rx, n_tx).draw(rng)
