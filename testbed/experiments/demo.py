"""The demo: a trained LLM split over N simulated nodes, all-reduced over the simulated air.

For every method (exact sum, 8-bit digital, uncoded analog FDMA, AirComp with the paper's ZF+SDR
design, AirComp with the MMSE design) it measures held-out perplexity over a bounded number of
windows, the greedy-token agreement with the exact split model on the same positions (teacher
forced), greedy generation from a prompt (KV cache), the all-reduce MSE per (layer, site) measured
vs predicted, and the wall time. An SNR sweep gives MSE and perplexity vs SNR.

Realistic normalization: the analog methods use ``scale_policy="calibrated"``: before measuring,
a statistics pass over TRAINING text (never the held-out windows) runs real rounds with a
per-round scale from the nodes' symbol powers and records each (layer, site)'s largest power,
so no per-round digital side information is exchanged afterwards (as on a bench).

SNR is the signal-model SNR of `sim_backend.sim_allreduce` (sigma^2 = 10**(-snr_db/10) at
precoder power P_n = 1 per channel use). A new Rayleigh block is drawn per all-reduce.

Impaired benches (``impairments`` = "uncalibrated-pluto" or "usrp-shared-ref", issue 6): every
analog method's bench carries the same preset draw (the same "hardware", seed
``impairments_seed``) and is tuned to 915 MHz at 1 MS/s (the simulated bench
``firmware_configs/benches/sim_4node.yaml``). The air's true channels then no longer describe
what the receiver sees (LO phases, gain errors), so the channel is estimated from per-frame
pilots (``csi="estimated"``). The radios are calibrated (`calibration.session`): a fresh
calibration per bench, or a calibration file checked against the bench (name, radios, carrier,
rate; on the simulator also the preset and its seed, since those are the hardware), and
``on_expiry`` says what a run does when it expires. ``calibration="none"`` runs the raw radios:
no frame is detected, and the method is reported as failed (not a crash). With non-default
benches the fading blocks come from their own generator (`block_source`), so an impaired and an
impairment-free run with the same seed see the same blocks.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from testbed.errors import ConfigError, TestbedError
from testbed.llm.allreduce import AllReduce, ExactAllReduce
from testbed.llm.perplexity import evaluate_perplexity
from testbed.methods import ANALOG_METHODS as REGISTRY_ANALOG_METHODS
from testbed.methods import METHOD_NAMES, get_method

#: Method names accepted by the demo (the registry's, in display order) and the analog ones.
METHODS, ANALOG_METHODS = METHOD_NAMES, REGISTRY_ANALOG_METHODS
DEFAULT_PROMPT = "Return the value of the expres"
#: Carrier and sample rate of the simulated bench (as firmware_configs/benches/sim_4node.yaml).
SIM_CARRIER_HZ = 915.0e6
SIM_SAMPLE_RATE_HZ = 1.0e6
#: Link lead (samples) on impaired benches: room for the corrections' interpolator (256 taps
#: per side) and for the raw radios' start offsets (up to 400 samples).
IMPAIRED_LEAD_SAMPLES = 1024
CALIBRATION_MODES = ("fresh", "none")


@dataclass
class DemoConfig:
    """Settings of one demo run (units in the names or comments).

    ratios: model fraction per node (sum 1); n_rx / n_tx: receive / per-node transmit antennas;
    snr_db: SNR of the per-method table (dB); snr_sweep_db: SNRs of the sweep (dB); window:
    perplexity window (tokens = bytes); eval_windows / sweep_windows / calib_windows: numbers of
    windows for the table, the sweep and the calibration pass; max_new_tokens: greedy generation
    length (tokens); digital_bits: quantizer bits of the digital baseline; model: None for the
    default trained model, or a local HF checkpoint directory.

    Bench: impairments: preset name (`sim_backend.sim_allreduce.IMPAIRMENT_PRESETS`);
    impairments_seed: seed of its draw (1234 = the channel seed of sim_4node.yaml, the default
    of ``testbed calibrate`` on it); csi: "perfect" / "estimated" or None (perfect without
    impairments, estimated with); calibration: "fresh" (per bench), "none" (raw radios) or a
    calibration file; calibration_max_age_s: file age (s) above which it warns, or with
    strict_calibration refuses; on_expiry: "recalibrate" / "warn" / "error"; valid_for_s:
    validity (s) when the calibration does not carry one (default from its residual CFO).
    """

    ratios: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    n_rx: int = 4
    n_tx: int = 1
    snr_db: float = 20.0
    methods: tuple[str, ...] = METHODS
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 32
    window: int = 128
    eval_windows: int = 8
    sweep_windows: int = 4
    calib_windows: int = 4
    snr_sweep_db: tuple[float, ...] = (0.0, 10.0, 20.0, 30.0)
    seed: int = 0
    digital_bits: int = 8
    model: str | None = None
    progress: bool = True
    impairments: str = "none"
    impairments_seed: int = 1234
    csi: str | None = None
    calibration: str = "fresh"
    calibration_max_age_s: float | None = None
    strict_calibration: bool = False
    on_expiry: str = "recalibrate"
    valid_for_s: float | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.ratios)

    @property
    def csi_mode(self) -> str:
        """The CSI mode the analog methods use: ``csi``, by default "estimated" (per-frame
        pilots and the receiver's noise estimate, as on a bench); "perfect" reads the
        simulator's truth and is recorded as such."""
        return self.csi if self.csi is not None else "estimated"


def validate_config(cfg: DemoConfig) -> DemoConfig:
    """Check a `DemoConfig`; raises ConfigError saying what to change. Returns it unchanged."""
    from testbed.llm.plan import validate_ratios

    try:
        validate_ratios(cfg.ratios)
    except ValueError as exc:
        raise ConfigError(f"--ratios: {exc}") from None
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; valid methods: {', '.join(METHODS)}")
    if not cfg.methods:
        raise ConfigError(f"no methods given; choose from {', '.join(METHODS)}")
    if cfg.n_rx < 1 or cfg.n_tx < 1:
        raise ConfigError(f"antenna counts must be >= 1, got rx={cfg.n_rx}, tx={cfg.n_tx}")
    if cfg.n_rx < cfg.n_tx:
        raise ConfigError(f"--rx-antennas ({cfg.n_rx}) must be >= --tx-antennas ({cfg.n_tx}): the "
                          "receiver separates min(N_t, N_r) streams")
    for name in ("window", "eval_windows", "sweep_windows", "calib_windows"):
        if getattr(cfg, name) < (2 if name == "window" else 1):
            raise ConfigError(f"{name} must be >= {2 if name == 'window' else 1}, got {getattr(cfg, name)}")
    if cfg.max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {cfg.max_new_tokens}")
    if not all(math.isfinite(s) for s in (cfg.snr_db, *cfg.snr_sweep_db)):
        raise ConfigError("SNRs must be finite numbers in dB")
    if cfg.digital_bits < 2:
        raise ConfigError(f"digital_bits must be >= 2, got {cfg.digital_bits}")
    validate_bench_options(cfg)
    return cfg


def validate_bench_options(cfg: DemoConfig) -> None:
    """Check the impaired-bench options of a `DemoConfig`; ConfigError saying what to change."""
    from calibration.session import EXPIRY_POLICIES
    from sim_backend.sim_allreduce import IMPAIRMENT_PRESETS
    from testbed.phy.analog_allreduce import CSI_MODES

    if cfg.impairments not in IMPAIRMENT_PRESETS:
        raise ConfigError(f"--impairments {cfg.impairments!r}: choose one of {', '.join(IMPAIRMENT_PRESETS)}")
    if cfg.csi is not None and cfg.csi not in CSI_MODES:
        raise ConfigError(f"--csi {cfg.csi!r}: choose one of {', '.join(CSI_MODES)}")
    if cfg.impairments != "none" and cfg.csi_mode == "perfect":
        raise ConfigError("--csi perfect with --impairments: the air's true channels do not include "
                          "the radios' LO phases and gain errors, so they do not describe what the "
                          "receiver sees; use --csi estimated (per-frame pilots)")
    if cfg.on_expiry not in EXPIRY_POLICIES:
        raise ConfigError(f"--on-expiry {cfg.on_expiry!r}: choose one of {', '.join(EXPIRY_POLICIES)}")
    if cfg.calibration not in CALIBRATION_MODES and cfg.impairments == "none":
        raise ConfigError(f"--calibration {cfg.calibration}: a calibration file needs an impaired bench "
                          "(--impairments uncalibrated-pluto or usrp-shared-ref)")
    for name in ("calibration_max_age_s", "valid_for_s"):
        v = getattr(cfg, name)
        if v is not None and not v > 0:
            raise ConfigError(f"{name} must be > 0 s, got {v}")


@dataclass
class BenchSetup:
    """How the analog methods' simulated benches are built, shared by every bench of a run.

    preset / preset_seed / impairments: the preset name, its seed and its draw (None: ideal);
    csi: the all-reduces' CSI mode; calibration: "fresh", "file" or "none"; record / reference:
    the loaded `CalibrationRecord` and its {path, sha256}; on_expiry, valid_for_s: see
    `DemoConfig`.
    """

    preset: str = "none"
    preset_seed: int = 1234
    impairments: object | None = None
    csi: str = "perfect"
    calibration: str = "none"
    record: object | None = None
    reference: dict | None = None
    on_expiry: str = "recalibrate"
    valid_for_s: float | None = None

    @property
    def default(self) -> bool:
        """True for today's ideal bench with perfect CSI (the air's generator draws the blocks)."""
        return self.preset == "none" and self.csi == "perfect"

    def describe(self) -> dict:
        """JSON-ready: preset, seed, its parameters, CSI mode and the calibration used."""
        cal: dict = {"mode": self.calibration if self.impairments is not None
                     else "not needed (ideal bench)"}
        if self.calibration != "none":
            cal["on_expiry"] = self.on_expiry
        if self.record is not None:
            rec = self.record
            cal.update(reference=self.reference, created_unix_s=rec.created_unix_s,
                       residual=rec.residual, valid_for_s=rec.extra.get("valid_for_s"),
                       corrections=[c.to_dict() for c in rec.corrections])
        return {"name": sim_bench_name_hint(self), "carrier_hz": SIM_CARRIER_HZ,
                "sample_rate_hz": SIM_SAMPLE_RATE_HZ,
                "impairments": {"preset": self.preset,
                                "seed": None if self.preset == "none" else self.preset_seed,
                                "params": None if self.impairments is None
                                else self.impairments.to_dict()},
                "csi": self.csi, "calibration": cal}


def sim_bench_name(n_nodes: int) -> str:
    """Name of the demo's simulated bench of ``n_nodes`` nodes, as a calibration file records it
    ("sim_4node" for 4 nodes: firmware_configs/benches/sim_4node.yaml)."""
    return f"sim_{n_nodes}node"


def sim_bench_name_hint(setup: BenchSetup) -> str | None:
    return None if setup.impairments is None else sim_bench_name(len(setup.impairments.tx))


def sim_settings():
    """`RadioSettings` of the demo's simulated bench (915 MHz, 1 MS/s)."""
    from testbed.radio.base import RadioSettings
    return RadioSettings(sample_rate_hz=SIM_SAMPLE_RATE_HZ, center_freq_hz=SIM_CARRIER_HZ)


def bench_setup(cfg: DemoConfig) -> BenchSetup:
    """The run's `BenchSetup` from ``cfg``: draws the preset and, for a calibration file, loads
    and checks it (`calibration.persistence.load_calibration`: bench name, radios, carrier and
    rate must match, older than ``calibration_max_age_s`` warns or with ``strict_calibration``
    raises; on the simulator the file's preset and seed must also be this bench's)."""
    from sim_backend.sim_allreduce import impairment_preset

    imp = impairment_preset(cfg.impairments, cfg.n_nodes, SIM_CARRIER_HZ, cfg.impairments_seed)
    setup = BenchSetup(cfg.impairments, cfg.impairments_seed, imp, cfg.csi_mode,
                       on_expiry=cfg.on_expiry, valid_for_s=cfg.valid_for_s)
    if imp is None:
        return setup
    if cfg.calibration in CALIBRATION_MODES:
        setup.calibration = cfg.calibration
        return setup
    from calibration.persistence import (BenchKey, CalibrationMismatchError, calibration_reference,
                                         load_calibration)
    from sim_backend.sim_allreduce import build_sim_bench

    probe = build_sim_bench(cfg.n_nodes, cfg.n_rx, cfg.n_tx, cfg.snr_db, 0, settings=sim_settings())
    key = BenchKey.from_radios(sim_bench_name(cfg.n_nodes), probe.tx_radios, probe.rx_radio)
    rec = load_calibration(cfg.calibration, key, cfg.calibration_max_age_s,
                           "error" if cfg.strict_calibration else "warn")
    have = (rec.extra.get("preset"), rec.extra.get("seed"))
    if have != (cfg.impairments, cfg.impairments_seed):
        raise CalibrationMismatchError(
            f"calibration {cfg.calibration} was made on the simulated bench with preset "
            f"{have[0]!r}, seed {have[1]!r}; this run simulates preset {cfg.impairments!r}, seed "
            f"{cfg.impairments_seed} (other hardware). Pass --impairments {have[0]} "
            f"--impairments-seed {have[1]}, or re-run `testbed calibrate --impairments "
            f"{cfg.impairments} --seed {cfg.impairments_seed}`.")
    setup.calibration, setup.record = "file", rec
    setup.reference = calibration_reference(cfg.calibration)
    return setup


def build_allreduce(method: str, *, n_nodes: int, n_rx: int, n_tx: int, snr_db: float, seed: int,
                    digital_bits: int = 8, setup: BenchSetup | None = None):
    """(all-reduce of ``method`` (see `METHODS`), calibration session or None). Analog methods
    run on a fresh simulated bench (Rayleigh, new block per call, calibrated scale policy) at
    ``snr_db`` (dB): by default ideal with perfect CSI; with ``setup`` impaired, calibrated and
    with its CSI mode (see the module docstring)."""
    from sim_backend.sim_allreduce import build_sim_allreduce

    try:
        m = get_method(method)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if m.transport == "exact":
        return ExactAllReduce(), None
    if m.transport == "quantized":
        from testbed.phy.allreduce_digital import DigitalAllReduce
        return DigitalAllReduce(bits=digital_bits), None
    setup = setup or BenchSetup()
    common = dict(n_nodes=n_nodes, n_rx=n_rx, n_tx=n_tx, snr_db=snr_db, seed=seed,
                  scale_policy=m.scale_policy)
    if m.design is not None:
        common.update(design_method=m.design, design_options=m.design_options)
    sessions: list = []
    if not setup.default:
        from testbed.phy.budget import LinkBudget
        common.update(csi=setup.csi, impairments=setup.impairments, settings=sim_settings(),
                      block_seed=[seed, 1], budget=LinkBudget(lead_samples=IMPAIRED_LEAD_SAMPLES))
        if setup.calibration != "none" and setup.impairments is not None:
            common["prepare"] = lambda bench: _calibrated_radios(bench, setup, sessions)
    ar = build_sim_allreduce(m.transport, **common)[0]
    return ar, (sessions[0] if sessions else None)


def _calibrated_radios(bench, setup: BenchSetup, sessions: list):
    """`prepare` hook: a `CalibrationSession` on the bench's radios (fresh, or from the loaded
    record; the simulated bench's clock starts now, so the record's age on it is 0). Returns
    (corrected radios, the session's per-round check) and appends the session to ``sessions``."""
    from calibration.session import CalibrationSession

    kw = dict(on_expiry=setup.on_expiry, valid_for_s=setup.valid_for_s,
              reference_channels=bench.air.true_channels)
    if setup.calibration == "fresh":
        s = CalibrationSession.fresh(bench.tx_radios, bench.rx_radio, **kw)
    else:
        s = CalibrationSession.from_record(bench.tx_radios, bench.rx_radio, setup.record,
                                           reference=setup.reference, age_s=0.0, **kw)
    sessions.append(s)
    return s.radios, s.check


def calibrate(sharded, allreduce: AllReduce, train_ids: torch.Tensor, *, window: int, n_windows: int,
              decode_steps: int = 8) -> None:
    """Calibration pass of a calibrated-scale all-reduce on TRAINING tokens (1-D): forwards
    ``n_windows`` windows of ``window`` tokens plus ``decode_steps`` single-token KV-cache steps,
    over the air with a per-round scale from the nodes' symbol powers, recording per-(layer,
    site) statistics (`testbed.phy.scale_policy`). No-op for all-reduces without one."""
    target = allreduce
    if not hasattr(target, "calibrating"):
        return
    previous = sharded.allreduce
    sharded.allreduce = allreduce
    target.calibrating = True
    try:
        n = min(n_windows, train_ids.numel() // window)
        # spread the calibration windows over the training text
        starts = np.linspace(0, train_ids.numel() - window, n).astype(int)
        for s in starts:
            sharded(train_ids[s:s + window].unsqueeze(0))
        if decode_steps:
            sharded.generate(train_ids[:16].unsqueeze(0), decode_steps)
    finally:
        target.calibrating = False
        sharded.allreduce = previous
        sharded.reset_cache()


def site_stats(allreduce: AllReduce) -> list[dict]:
    """``allreduce.stats()`` as a list of {layer, site, ...} records sorted by (layer, site)."""
    return [{"layer": k[0], "site": k[1], **v} for k, v in sorted(allreduce.stats().items())]


def summarize_stats(records: Sequence[dict]) -> dict:
    """Means over sites of the MSE fields (tensor domain per real value; symbol domain per
    channel use) and the largest clipped fraction; None for fields a method does not report."""
    def mean(key):
        vals = [r[key] for r in records if key in r]
        return float(np.mean(vals)) if vals else None
    clip = [r["clipped_fraction"] for r in records if "clipped_fraction" in r]
    return {"mse_tensor": mean("mse_tensor"), "mse_tensor_predicted": mean("mse_tensor_predicted"),
            "mse_symbols": mean("mse_symbols"), "mse_symbols_predicted": mean("mse_predicted"),
            "clipped_fraction_max": max(clip) if clip else None}


def perplexity_with_argmax(sharded, heldout: torch.Tensor, *, window: int, n_windows: int,
                           progress: bool, desc: str = "") -> tuple[float, float, torch.Tensor]:
    """(perplexity, NLL per token in nats, greedy argmax ids of every fed position concatenated)
    of ``sharded`` over the first ``n_windows`` windows of the 1-D held-out stream."""
    argmax: list[torch.Tensor] = []

    def logits_fn(ids):
        logits = sharded(ids)
        argmax.append(logits[0].argmax(-1))
        return logits

    res = evaluate_perplexity(logits_fn, heldout, window=window, max_windows=n_windows,
                              progress=progress)
    return res.ppl, res.nll_per_token, torch.cat(argmax)


def evaluate_method(sharded, method: str, cfg: DemoConfig, *, snr_db: float, heldout: torch.Tensor,
                    train: torch.Tensor, n_windows: int, reference_argmax: torch.Tensor | None = None,
                    prompt_ids: torch.Tensor | None = None, seed_offset: int = 0,
                    setup: BenchSetup | None = None) -> dict:
    """Run one method at ``snr_db`` (dB) on a bench built per ``setup`` (default: ideal, perfect
    CSI): calibrate (analog methods), perplexity over ``n_windows`` held-out windows with
    per-site all-reduce stats, optionally greedy generation from ``prompt_ids`` (1, T).
    Returns a JSON-ready dict; the model's all-reduce is restored. A method whose radios or
    rounds fail (no frame detected, a calibration that cannot be made or expired under
    on_expiry="error": a `TestbedError` other than `ConfigError`) is reported, not raised:
    ``failed`` True, ``error`` the reason, perplexity None (see `failed_result`)."""
    t0 = time.perf_counter()
    session = None
    previous = sharded.allreduce
    try:
        ar, session = build_allreduce(method, n_nodes=cfg.n_nodes, n_rx=cfg.n_rx, n_tx=cfg.n_tx,
                                      snr_db=snr_db, seed=cfg.seed + seed_offset,
                                      digital_bits=cfg.digital_bits, setup=setup)
        calibrate(sharded, ar, train, window=cfg.window, n_windows=cfg.calib_windows)
        sharded.allreduce = ar
        ar.reset_stats()
        ppl, nll, argmax = perplexity_with_argmax(sharded, heldout, window=cfg.window, n_windows=n_windows,
                                                  progress=cfg.progress, desc=method)
        stats = site_stats(ar)
        out = {"method": method, "snr_db": snr_db if method in ANALOG_METHODS else None,
               "failed": False, "perplexity": ppl, "nll_per_token": nll, "n_windows": n_windows,
               "scored_positions": int(argmax.numel()),
               "site_stats": stats, **summarize_stats(stats)}
        if hasattr(ar, "truth_used"):   # which simulator truths the method's rounds read
            out["simulator_truth_used"] = sorted(ar.truth_used)
        if reference_argmax is not None:
            out["argmax_agreement"] = float((argmax == reference_argmax).double().mean())
        out["_argmax"] = argmax
        if prompt_ids is not None:
            gen = sharded.generate(prompt_ids, cfg.max_new_tokens)
            out["generated_ids"] = gen[0, prompt_ids.shape[1]:].tolist()
            out["decode_step_s"] = float(np.mean(sharded.step_seconds)) if sharded.step_seconds else None
    except ConfigError:
        raise
    except TestbedError as exc:
        out = failed_result(method, snr_db, n_windows, exc)
    finally:
        sharded.allreduce = previous
        sharded.reset_cache()
    if method in ANALOG_METHODS and setup is not None and not setup.default:
        out["calibration"] = None if session is None else session.to_dict()
    out["wall_s"] = time.perf_counter() - t0
    return out


def failed_result(method: str, snr_db: float, n_windows: int, exc: Exception) -> dict:
    """The record of a method whose rounds failed: ``failed`` True, ``error`` "Type: message",
    perplexity, agreement and MSEs None (the run is useless, not a number)."""
    return {"method": method, "snr_db": snr_db if method in ANALOG_METHODS else None,
            "failed": True, "error": f"{type(exc).__name__}: {exc}", "perplexity": None,
            "nll_per_token": None, "n_windows": n_windows, "scored_positions": 0,
            "site_stats": [], **summarize_stats([]), "argmax_agreement": None,
            "_argmax": None, "generated_ids": []}


def prefix_match(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of positions (of len(b)) where generated sequences a and b agree, up to the first
    difference (after it, greedy decoding follows a different context)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n / len(b) if len(b) else 1.0


def plan_record(plan) -> dict:
    """The shard plan as plain JSON (node ranges as [start, stop))."""
    return {"ratios": list(plan.ratios), "dtype": str(plan.dtype),
            "replicated_params": plan.replicated_count,
            "nodes": [{"node": p.node, "ratio": p.ratio, "kv_groups": [p.kv_groups.start, p.kv_groups.stop],
                       "mlp_columns": [p.mlp_columns.start, p.mlp_columns.stop],
                       "params": p.param_count, "bytes": p.param_bytes} for p in plan.nodes]}


class _Recorder(ExactAllReduce):
    """Exact sum that keeps the partials of one (layer, site) (numpy float64 copies)."""

    def __init__(self, layer: int, site: str):
        self.layer, self.site, self.partials = layer, site, None

    def reduce(self, partials, *, layer, site):
        if (layer, site) == (self.layer, self.site) and self.partials is None:
            self.partials = [p.detach().to(torch.float64).numpy().copy() for p in partials]
        return super().reduce(partials, layer=layer, site=site)


def constellation_round(sharded, cfg: DemoConfig, heldout: torch.Tensor, *, layer: int = 0,
                        site: str = "mlp", method: str = "aircomp-zf-sdr") -> dict:
    """One AirComp round of the shared round code (`testbed.phy.round` through a
    `LocalExecutor`) on real partials: the node partials of (layer, site) for the first held-out
    window, normalized by their common scale (unit mean symbol power per node at most), sent
    over a fresh ideal simulated bench at ``cfg.snr_db`` with a design on the true channels (a
    simulator truth). Returns {"ideal": sum_n S_n, "received": S_hat} (complex (L, K)), design
    MSE and measured MSE (per channel use, normalized units)."""
    from sim_backend.sim_allreduce import build_sim_bench
    from testbed.phy.analog_allreduce import LocalExecutor, design_round
    from testbed.phy.normalization import common_scale
    from testbed.phy.round import RoundPlan, normalized_symbols

    m = get_method(method)
    rec = _Recorder(layer, site)
    previous = sharded.allreduce
    sharded.allreduce = rec
    try:
        sharded(heldout[:cfg.window].unsqueeze(0))
    finally:
        sharded.allreduce = previous
    c = common_scale(rec.partials)
    bench = build_sim_bench(cfg.n_nodes, cfg.n_rx, cfg.n_tx, cfg.snr_db, cfg.seed + 7)
    truth = bench.truth
    d = design_round("aircomp", truth.channels(), np.ones(cfg.n_nodes),
                     bench.budget.signal_noise_var(truth.air_noise_var()), method=m.design,
                     options=m.design_options)
    ex = LocalExecutor(bench.tx_radios, bench.rx_radio, bench.budget)
    ex.stage(rec.partials)
    shape = rec.partials[0].shape
    plan = RoundPlan("aircomp", cfg.n_nodes, cfg.n_tx, d.n_streams, int(np.prod(shape)),
                     ex.next_start(bench.budget))
    s_hat = ex.payload(plan, d, c, shape).S_hat
    ideal = np.sum([normalized_symbols(z, c, d.n_streams) for z in rec.partials], axis=0)
    k = ideal.shape[1]
    return {"ideal": ideal, "received": s_hat, "layer": layer, "site": site, "method": m.design,
            "snr_db": cfg.snr_db, "mse_predicted": float(d.mse),
            "mse_measured": float(np.sum(np.abs(s_hat - ideal) ** 2) / k), "channel_uses": k}


def run_demo(cfg: DemoConfig, model=None, tokenizer=None, log=print) -> dict:
    """Run the whole demo (no files written; see `write_demo_outputs`). ``model``/``tokenizer``
    may be passed in (else loaded from ``cfg.model``). ``log`` prints progress lines.
    Returns the results dict (JSON-ready apart from the constellation arrays)."""
    from testbed.llm.loading import load_model_and_tokenizer
    from testbed.llm.sharding import shard_model
    from testbed.llm.textdata import heldout_tokens, train_tokens

    validate_config(cfg)
    t_start = time.perf_counter()
    setup = bench_setup(cfg)          # a calibration file is checked before anything runs
    torch.manual_seed(cfg.seed)
    if model is None:
        model, tokenizer = load_model_and_tokenizer(cfg.model, progress=cfg.progress)
    sharded = shard_model(model, cfg.ratios, "exact")
    log(sharded.format_plan())
    heldout, train = heldout_tokens(), train_tokens()
    prompt_ids = torch.tensor([tokenizer.encode(cfg.prompt)], dtype=torch.int64)

    # the exact split model is the reference for token agreement
    ref = evaluate_method(sharded, "exact", cfg, snr_db=cfg.snr_db, heldout=heldout, train=train,
                          n_windows=cfg.eval_windows, prompt_ids=prompt_ids)
    ref_argmax, ref_gen = ref["_argmax"], ref["generated_ids"]
    per_method = []
    for method in cfg.methods:
        log(f"-- {method}" + (f" at {cfg.snr_db:g} dB" if method in ANALOG_METHODS else ""))
        r = ref if method == "exact" else evaluate_method(
            sharded, method, cfg, snr_db=cfg.snr_db, heldout=heldout, train=train,
            n_windows=cfg.eval_windows, reference_argmax=ref_argmax, prompt_ids=prompt_ids,
            setup=setup)
        r = dict(r)
        if r.get("failed"):
            log(f"   {method} failed: {r['error']}")
            r["generation_prefix_match"], r["generated_text"] = None, None
        else:
            r["argmax_agreement"] = r.get("argmax_agreement", 1.0)
            r["generation_prefix_match"] = prefix_match(r["generated_ids"], ref_gen)
            r["generated_text"] = tokenizer.decode(r["generated_ids"])
        r.pop("_argmax")
        per_method.append(r)

    sweep = []
    sweep_methods = [m for m in cfg.methods if m in ANALOG_METHODS]
    fixed = {}
    for m in (m for m in cfg.methods if m not in ANALOG_METHODS):
        fixed[m] = evaluate_method(sharded, m, cfg, snr_db=cfg.snr_db, heldout=heldout, train=train,
                                   n_windows=cfg.sweep_windows)
        fixed[m].pop("_argmax")
    jobs = [(s, m) for s in cfg.snr_sweep_db for m in sweep_methods]
    for snr, m in tqdm(jobs, desc="SNR sweep", unit="run", disable=not cfg.progress):
        r = evaluate_method(sharded, m, cfg, snr_db=snr, heldout=heldout, train=train,
                            n_windows=cfg.sweep_windows, seed_offset=1000, setup=setup)
        r.pop("_argmax")
        sweep.append(r)

    constellation = None
    if any(m.startswith("aircomp") for m in cfg.methods):
        constellation = constellation_round(sharded, cfg, heldout)    # ideal bench, perfect CSI

    return {
        "settings": {**asdict(cfg), "n_nodes": cfg.n_nodes},
        "seed": cfg.seed,
        "snr_definition": "signal-model SNR = P/sigma^2 at precoder power P_n = 1 per channel use, "
                          "0 dB path loss, Rayleigh block fading with a new block per all-reduce",
        "bench": setup.describe(),
        "csi": {"perfect": "the air's true channels (ideal bench only)",
                "estimated": "LS estimate from a pilot frame before every payload frame (per-frame "
                             "pilots): needed on an impaired bench, whose LO phases and gain "
                             "errors are not in the air's true channels"}[setup.csi],
        "scale_policy": "calibrated (statistics pass over training text, per-round scale from the nodes' symbol powers; "
                        "no per-round digital exchange)",
        "heldout": {"window_tokens": cfg.window, "windows": cfg.eval_windows,
                    "sweep_windows": cfg.sweep_windows},
        "plan": plan_record(sharded.plan), "plan_text": sharded.format_plan(),
        "model": {"spec": cfg.model or "default", "config": model.config.to_dict()},
        "methods": per_method,
        "snr_sweep": {"snr_db": list(cfg.snr_sweep_db), "runs": sweep,
                      "snr_independent": {m: {k: v for k, v in r.items() if k != "site_stats"}
                                          for m, r in fixed.items()}},
        "constellation": constellation,
        "wall_s": time.perf_counter() - t_start,
    }


def _fmt(x, spec: str) -> str:
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    return f"{'-':>{width}}" if x is None else format(x, spec)


def format_table(methods: Sequence[dict]) -> str:
    """The per-method results as a text table (MSEs are means over (layer, site): tensor domain
    per real value; symbol domain per channel use in normalized units). A failed method shows
    FAILED and its error on the next line."""
    head = (f"{'method':<15} {'ppl':>8} {'agree %':>8} {'gen %':>6} {'MSE tensor':>11} {'pred':>10} "
            f"{'MSE sym':>10} {'pred':>10} {'clip %':>7} {'wall s':>7}")
    lines = [head, "-" * len(head)]
    for r in methods:
        if r.get("failed"):
            lines.append(f"{r['method']:<15} {'FAILED':>8}  (useless: {r['error'][:120]})")
            continue
        clip = None if r.get("clipped_fraction_max") is None else 100 * r["clipped_fraction_max"]
        lines.append(
            f"{r['method']:<15} {r['perplexity']:>8.4f} {100 * r['argmax_agreement']:>8.2f} "
            f"{100 * r['generation_prefix_match']:>6.1f} {_fmt(r.get('mse_tensor'), '11.3e')} "
            f"{_fmt(r.get('mse_tensor_predicted'), '10.3e')} {_fmt(r.get('mse_symbols'), '10.3e')} "
            f"{_fmt(r.get('mse_symbols_predicted'), '10.3e')} {_fmt(clip, '7.3f')} {r['wall_s']:>7.1f}")
    return "\n".join(lines)


def format_bench(results: dict) -> str:
    """One or two lines on the bench: impairments (preset, seed), CSI mode, the calibration used
    (fresh: worst residuals; file: path and SHA-256) and recalibrations during the run."""
    b = results.get("bench") or {}
    imp = (b.get("impairments") or {}).get("preset", "none")
    if imp == "none":
        return f"bench: ideal (no impairments), CSI {b.get('csi', 'perfect')}"
    cal = b["calibration"]
    line = (f"bench: impairments {imp} (seed {b['impairments']['seed']}), CSI {b['csi']} "
            "(per-frame pilots: the true channels lack the LO phases and gains)")
    runs = [r for r in [*results.get("methods", []), *results.get("snr_sweep", {}).get("runs", [])]
            if r.get("calibration")]
    if cal["mode"] == "none":
        return line + "\ncalibration: none (raw radios)"
    if cal["mode"] == "file":
        ref = cal["reference"]
        text = f"calibration: file {ref['path']} (sha256 {ref['sha256'][:12]}...)"
    else:
        res = [e["residual"] for r in results.get("methods", []) if r.get("calibration")
               for e in r["calibration"]["events"] if e["kind"] == "calibrated"]
        worst = lambda k: max((abs(v) for x in res for v in x[k]), default=float("nan"))
        text = (f"calibration: fresh per bench ({len(runs)} benches; worst residual at the "
                f"table's SNR: timing "
                f"{worst('timing_samples'):.3f} samples, CFO {worst('cfo_hz'):.2f} Hz, phase "
                f"{worst('phase_deg'):.2f} deg, gain {worst('gain_db'):.2f} dB)")
    n_re = sum(r["calibration"]["recalibrations"] for r in runs)
    n_exp = sum(e["kind"] == "expired" for r in runs for e in r["calibration"]["events"])
    return (line + "\n" + text + f"; on expiry: {cal['on_expiry']}; recalibrations {n_re}, "
            f"expiry warnings {n_exp}")


def format_sweep(results: dict) -> str:
    """Perplexity (and tensor-domain MSE) vs SNR as a text table (FAILED for failed runs)."""
    sw = results["snr_sweep"]
    methods = sorted({r["method"] for r in sw["runs"]}, key=METHODS.index)
    lines = ["perplexity vs SNR (" + f"{results['heldout']['sweep_windows']} windows)",
             f"{'SNR dB':>7} " + " ".join(f"{m:>15}" for m in methods)]
    for s in sw["snr_db"]:
        row = {r["method"]: r for r in sw["runs"] if r["snr_db"] == s}
        lines.append(f"{s:>7g} " + " ".join(
            f"{'FAILED':>15}" if row[m].get("failed") else f"{row[m]['perplexity']:>15.4f}"
            for m in methods))
    for m, r in sw["snr_independent"].items():
        lines.append(f"{m}: {r['perplexity']:.4f} (SNR-independent)")
    return "\n".join(lines)


def write_demo_outputs(results: dict, run_dir, plots: bool = True) -> dict:
    """Write ``results.json`` (with environment versions) and, if ``plots``, the PNG figures into
    ``run_dir``; returns {name: path}."""
    from pathlib import Path

    from testbed.experiments.runs import environment_versions, write_json

    run_dir = Path(run_dir)
    files = {}
    out = dict(results, versions=environment_versions())
    if plots:
        files.update(make_plots(results, run_dir))
    out["files"] = {k: str(Path(v).name) for k, v in files.items()}
    files["results"] = write_json(run_dir / "results.json", out)
    return files


def make_plots(results: dict, run_dir) -> dict:
    """MSE vs SNR, perplexity vs SNR and the constellation PNGs in ``run_dir``; returns paths."""
    from pathlib import Path

    from testbed.experiments.plots import constellation_plot, line_plot

    run_dir = Path(run_dir)
    sw = results["snr_sweep"]
    snrs = sw["snr_db"]
    methods = sorted({r["method"] for r in sw["runs"]}, key=METHODS.index)

    def series(key):
        out = {}
        for m in methods:
            by_snr = {r["snr_db"]: r.get(key) for r in sw["runs"] if r["method"] == m}
            out[m] = [by_snr.get(s) for s in snrs]
        return out

    files = {}
    fixed = sw["snr_independent"]
    files["mse_vs_snr"] = line_plot(
        run_dir / "mse_vs_snr.png", snrs, series("mse_tensor"), dashed=series("mse_tensor_predicted"),
        hlines={m: r.get("mse_tensor") for m, r in fixed.items() if r.get("mse_tensor")},
        xlabel="SNR (dB)", ylabel="all-reduce MSE per real value (tensor domain, linear)",
        title="Measured all-reduce MSE vs SNR (mean over layers and sites)", logy=True)
    files["perplexity_vs_snr"] = line_plot(
        run_dir / "perplexity_vs_snr.png", snrs, series("perplexity"),
        hlines={m: r["perplexity"] for m, r in fixed.items()},
        xlabel="SNR (dB)", ylabel="held-out perplexity per byte (linear)",
        title=f"Perplexity vs SNR ({results['heldout']['sweep_windows']} windows of "
              f"{results['heldout']['window_tokens']} tokens)", plain_logy=True)
    c = results.get("constellation")
    if c is not None:
        files["constellation"] = constellation_plot(
            run_dir / "constellation.png", c["ideal"], c["received"],
            title=f"AirComp {c['method']} at {c['snr_db']:g} dB, layer {c['layer']} {c['site']}: "
                  f"MSE {c['mse_measured']:.3g} (predicted {c['mse_predicted']:.3g}) per channel use")
    return files


def fdma_vs_aircomp_nodes(model, node_counts: Sequence[int] = (2, 4, 8), *, snr_db: float = 10.0,
                          n_rx: int = 4, window: int = 128, n_windows: int = 2, seed: int = 0,
                          methods: Sequence[str] = ("fdma", "aircomp-mmse"), progress: bool = False) -> list[dict]:
    """Perplexity and all-reduce MSE of each method for N nodes with equal ratios 1/N, at a fixed
    ``snr_db`` (dB). Returns [{n_nodes, method, perplexity, mse_tensor, mse_symbols, ...}]."""
    from testbed.llm.sharding import shard_model
    from testbed.llm.textdata import heldout_tokens, train_tokens

    heldout, train = heldout_tokens(), train_tokens()
    rows = []
    for n in node_counts:
        cfg = DemoConfig(ratios=tuple([1.0 / n] * n), n_rx=n_rx, snr_db=snr_db, window=window,
                         sweep_windows=n_windows, seed=seed, progress=progress)
        sharded = shard_model(model, cfg.ratios, "exact")
        for m in ("exact", *methods):
            r = evaluate_method(sharded, m, cfg, snr_db=snr_db, heldout=heldout, train=train,
                                n_windows=n_windows)
            rows.append({"n_nodes": n, "method": m, "perplexity": r["perplexity"],
                         "mse_tensor": r["mse_tensor"], "mse_symbols": r["mse_symbols"],
                         "mse_symbols_predicted": r["mse_symbols_predicted"], "wall_s": r["wall_s"]})
    return rows
