"""Calibration files: JSON with the bench, radios, carrier/rate, timestamp, corrections, residuals.

A run that uses a calibration records which file it used (`calibration_reference`: path and
SHA-256 of the file's bytes). `load_calibration` refuses a file that does not match the bench
(`CalibrationMismatchError`, a `ConfigError`) and warns about (or refuses, ``on_stale="error"``)
one older than ``max_age_s``.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from calibration.corrections import NodeCorrection
from testbed.errors import ConfigError
from testbed.radio.base import Radio

FORMAT_VERSION = 1


class CalibrationMismatchError(ConfigError):
    """The calibration file was made for another bench (name, radios, carrier or sample rate)."""


class StaleCalibrationError(ConfigError):
    """The calibration file is older than the allowed age."""


class StaleCalibrationWarning(UserWarning):
    """The calibration file is older than the allowed age (and on_stale="warn")."""


@dataclass(frozen=True)
class BenchKey:
    """What a calibration must match: bench name, radios [(kind, serial)] in node order then the
    receiver, carrier (Hz) and sample rate (Hz)."""

    bench: str
    radios: tuple[tuple[str, str], ...]
    carrier_hz: float
    sample_rate_hz: float

    @classmethod
    def from_radios(cls, bench: str, tx_radios: Sequence[Radio], rx_radio: Radio) -> "BenchKey":
        """Key of a live bench from `Radio.identity()` and the receiver's settings."""
        ids = [r.identity() for r in [*tx_radios, rx_radio]]
        s = rx_radio.settings
        return cls(bench, tuple((i.kind, i.serial) for i in ids), float(s.center_freq_hz),
                   float(s.sample_rate_hz))


@dataclass
class CalibrationRecord:
    """Contents of a calibration file. created_unix_s: time.time() at the end of calibration;
    duration_s: time the procedure took; corrections: one per node; residual: errors after
    correction {timing_samples, cfo_hz, phase_deg, gain_db: [per node]}; before: raw offsets
    {timing_samples, cfo_hz, phase_deg, gain_db}; extra: free-form (preset, seed, validity)."""

    key: BenchKey
    created_unix_s: float
    duration_s: float
    corrections: list[NodeCorrection]
    residual: dict
    before: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-JSON dict (format version included)."""
        return {"format_version": FORMAT_VERSION, "bench": self.key.bench,
                "radios": [{"kind": k, "serial": s} for k, s in self.key.radios],
                "carrier_hz": self.key.carrier_hz, "sample_rate_hz": self.key.sample_rate_hz,
                "created_unix_s": self.created_unix_s,
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_unix_s)),
                "duration_s": self.duration_s,
                "corrections": [c.to_dict() for c in self.corrections],
                "residual": self.residual, "before": self.before, "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "CalibrationRecord":
        """Inverse of `to_dict`; ConfigError naming the missing key or wrong version."""
        if d.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"calibration format_version {d.get('format_version')!r} is not "
                              f"{FORMAT_VERSION}; re-run `testbed calibrate`")
        try:
            key = BenchKey(d["bench"], tuple((r["kind"], r["serial"]) for r in d["radios"]),
                           float(d["carrier_hz"]), float(d["sample_rate_hz"]))
            return cls(key, float(d["created_unix_s"]), float(d["duration_s"]),
                       [NodeCorrection.from_dict(c) for c in d["corrections"]], d["residual"],
                       d.get("before", {}), d.get("extra", {}))
        except KeyError as e:
            raise ConfigError(f"calibration file lacks key {e}; re-run `testbed calibrate`") from None


def save_calibration(record: CalibrationRecord, path: str | Path) -> Path:
    """Write the record as JSON (atomically: temp file then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2))
    tmp.replace(path)
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def calibration_reference(path: str | Path) -> dict:
    """What a run records about the calibration it used: {"path", "sha256"}."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def _mismatches(have: BenchKey, want: BenchKey, rel_tol: float = 1e-9) -> list[str]:
    out = []
    if have.bench != want.bench:
        out.append(f"bench {have.bench!r} != {want.bench!r}")
    if have.radios != want.radios:
        out.append(f"radios {list(have.radios)} != {list(want.radios)}")
    if abs(have.carrier_hz - want.carrier_hz) > rel_tol * want.carrier_hz:
        out.append(f"carrier {have.carrier_hz} Hz != {want.carrier_hz} Hz")
    if abs(have.sample_rate_hz - want.sample_rate_hz) > rel_tol * want.sample_rate_hz:
        out.append(f"sample rate {have.sample_rate_hz} Hz != {want.sample_rate_hz} Hz")
    return out


def load_calibration(path: str | Path, bench: BenchKey, max_age_s: float | None = None,
                     on_stale: str = "warn", now_unix_s: float | None = None) -> CalibrationRecord:
    """Read a calibration file and check it against ``bench``.

    Raises CalibrationMismatchError (naming every difference) when bench name, radio kinds and
    serials, carrier or sample rate differ. When older than ``max_age_s`` seconds: warns
    (StaleCalibrationWarning, ``on_stale="warn"``) or raises StaleCalibrationError
    (``on_stale="error"``).
    """
    if on_stale not in ("warn", "error"):
        raise ValueError(f"on_stale must be 'warn' or 'error', got {on_stale!r}")
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"calibration file {path} does not exist; run `testbed calibrate`") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"calibration file {path} is not valid JSON ({e})") from None
    rec = CalibrationRecord.from_dict(data)
    bad = _mismatches(rec.key, bench)
    if bad:
        raise CalibrationMismatchError(f"calibration {path} does not match this bench: "
                                       + "; ".join(bad) + ". Re-run `testbed calibrate`.")
    if max_age_s is not None:
        age = (time.time() if now_unix_s is None else now_unix_s) - rec.created_unix_s
        if age > max_age_s:
            msg = (f"calibration {path} is {age:.0f} s old, more than max_age_s={max_age_s:g}; "
                   "re-run `testbed calibrate`")
            if on_stale == "error":
                raise StaleCalibrationError(msg)
            warnings.warn(msg, StaleCalibrationWarning, stacklevel=2)
    return rec
