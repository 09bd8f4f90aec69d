"""The controller's side of a calibrated multi-process bench run: build the `BenchKey` of a
bench from its config, load and check a calibration file against it, and hand out each node's
`NodeCorrection` (as a dict for the node's ASSIGNMENT) plus what the run records.

Simulated benches only: their radios' identities follow from the config
(`sim_backend.remote_radio.RemoteSimRadio.identity`: ``sim-node-<index>`` and ``sim-rx``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from calibration.persistence import BenchKey, calibration_reference, load_calibration
from testbed.errors import ConfigError


def bench_key(bench) -> BenchKey:
    """`BenchKey` of a simulated bench config: radios (kind, serial) in node order then the
    receiver, carrier (Hz) and sample rate (Hz) of the receiver radio config, the channel's
    impairment preset ("none" without one) and, with impairments, their seed (the simulated
    hardware)."""
    kinds = {n.radio.kind for n in bench.nodes} | {bench.receiver.primary_radio.kind}
    if kinds != {"sim"} or bench.channel is None:
        raise ConfigError(f"bench {bench.name!r}: --calibration on a multi-process bench needs a "
                          "simulated bench (all radios kind 'sim' and a channel section); radio "
                          f"kinds here: {sorted(kinds)}")
    rx = bench.receiver.primary_radio
    radios = tuple(("sim", f"sim-node-{i}") for i in range(len(bench.nodes))) + (("sim", "sim-rx"),)
    preset = bench.channel.impairments or "none"
    return BenchKey(bench.name, radios, float(rx.center_freq_hz), float(rx.sample_rate_hz),
                    preset=preset, seed=None if preset == "none" else bench.channel.seed)


@dataclass
class BenchCalibration:
    """A calibration checked against a bench: corrections {node id: NodeCorrection dict};
    record: what results.json keeps (path, sha256, created time, preset, staleness warning)."""

    corrections: dict[str, dict]
    record: dict


def load_bench_calibration(path: str | Path, bench, max_age_s: float | None = None,
                           strict: bool = False) -> BenchCalibration:
    """Load ``path`` and check it against ``bench`` (`bench_key`). Raises
    `calibration.persistence.CalibrationMismatchError` when it was made for another bench
    (name, radio serials, carrier, sample rate) and, with ``strict``, StaleCalibrationError when
    older than ``max_age_s`` seconds (else a warning, also recorded)."""
    key = bench_key(bench)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = load_calibration(path, key, max_age_s=max_age_s,
                               on_stale="error" if strict else "warn")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ids = [n.id for n in bench.nodes]
    if len(rec.corrections) != len(ids):
        raise ConfigError(f"calibration {path} has {len(rec.corrections)} corrections for "
                          f"{len(ids)} nodes; re-run `testbed calibrate`")
    record = {**calibration_reference(path), "created_unix_s": rec.created_unix_s,
              "created_utc": rec.to_dict()["created_utc"], "max_age_s": max_age_s,
              "strict": bool(strict), "preset": rec.extra.get("preset"),
              "warnings": [str(w.message) for w in caught]}
    return BenchCalibration({n: c.to_dict() for n, c in zip(ids, rec.corrections)}, record)
