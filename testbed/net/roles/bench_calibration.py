"""The controller's side of a calibrated multi-process bench run: build the `BenchKey` of a
bench, load and check a calibration file against it, and hand out each node's
`NodeCorrection` (as a dict for the node's ASSIGNMENT) plus what the run records.

Simulated benches: their radios' identities follow from the config
(`sim_backend.remote_radio.RemoteSimRadio.identity`: ``sim-node-<index>`` and ``sim-rx``), so
the whole key is checked before any process starts. Benches of radios (hardware, emulated):
name, carrier and sample rate are checked at once, the radios' kinds and serials once the
roles registered (`BenchCalibration.check_registered`: each role reports its radio's).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from calibration.persistence import (BenchKey, CalibrationMismatchError, calibration_reference,
                                     load_calibration)
from testbed.errors import ConfigError


def bench_key(bench) -> BenchKey:
    """`BenchKey` of a bench config: carrier (Hz) and sample rate (Hz) of the receiver radio
    config; on a simulated bench (all radios kind "sim" and a channel section) also the radios
    (kind, serial) in node order then the receiver, the channel's impairment preset ("none"
    without one) and, with impairments, their seed (the simulated hardware); on a bench of
    radios the radios are None (`registered_radios` once the roles registered)."""
    kinds = {n.radio.kind for n in bench.nodes} | {bench.receiver.primary_radio.kind}
    rx = bench.receiver.primary_radio
    if "sim" in kinds and kinds != {"sim"}:
        raise ConfigError(f"bench {bench.name!r} mixes simulated and real radios "
                          f"({sorted(kinds)}); a calibration is for one kind of bench")
    if kinds != {"sim"}:
        return BenchKey(bench.name, None, float(rx.center_freq_hz), float(rx.sample_rate_hz))
    if bench.channel is None:
        raise ConfigError(f"bench {bench.name!r}: a simulated bench needs a channel section "
                          "for --calibration")
    radios = tuple(("sim", f"sim-node-{i}") for i in range(len(bench.nodes))) + (("sim", "sim-rx"),)
    preset = bench.channel.impairments or "none"
    return BenchKey(bench.name, radios, float(rx.center_freq_hz), float(rx.sample_rate_hz),
                    preset=preset, seed=None if preset == "none" else bench.channel.seed)


def registered_radios(ctl, bench) -> tuple[tuple[str, str], ...]:
    """The (kind, serial) each role of ``bench`` registered with (`Capabilities`), in node
    order then the receiver: the radios of a bench of role processes."""
    ids = [*(n.id for n in bench.nodes), bench.receiver.id]
    caps = [ctl.peers[i].capabilities for i in ids]
    return tuple((c.radio_kind, c.radio_serial) for c in caps)


@dataclass
class BenchCalibration:
    """A calibration checked against a bench: corrections {node id: NodeCorrection dict};
    record: what results.json keeps (path, sha256, created time, preset, staleness warning);
    radios: the (kind, serial) pairs the file was made with, node order then the receiver."""

    corrections: dict[str, dict]
    record: dict
    radios: tuple[tuple[str, str], ...] = ()

    def check_registered(self, ctl, bench) -> None:
        """Refuse the file (`CalibrationMismatchError`) when the registered roles' radios
        (`registered_radios`) are not the ones it was made with, naming each role whose radio
        differs."""
        have = registered_radios(ctl, bench)
        if have == tuple(self.radios):
            return
        ids = [*(n.id for n in bench.nodes), bench.receiver.id]
        diffs = [f"{i}: file {f[0]} {f[1]!r}, registered {h[0]} {h[1]!r}"
                 for i, f, h in zip(ids, self.radios, have) if tuple(f) != tuple(h)]
        if len(self.radios) != len(have):
            diffs.append(f"{len(self.radios)} radios in the file, {len(have)} roles")
        raise CalibrationMismatchError(
            f"calibration {self.record.get('path')} was made with other radios ("
            + "; ".join(diffs) + f"). Re-run `testbed calibrate --bench {bench.name}` with "
            "these radios.")


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
    return BenchCalibration({n: c.to_dict() for n, c in zip(ids, rec.corrections)}, record,
                            rec.key.radios)
