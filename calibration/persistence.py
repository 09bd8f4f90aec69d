"""Calibration files: JSON with the bench, radios, carrier/rate, timestamp, corrections, residuals.

A run that uses a calibration records which file it used (`calibration_reference`: path and
SHA-256 of the file's bytes). `load_calibration` checks the whole file where it enters
(`CalibrationFileError` naming the file, the key and the fix): every field of its type, every
number finite, radios/corrections/residuals consistent. It refuses a file that does not match
the bench (`CalibrationMismatchError`: name, radios, carrier, rate, and on a simulated bench the
impairment preset and seed) and warns about (or refuses, ``on_stale="error"``) one older than
``max_age_s`` -- by default the validity the file itself states (``extra.valid_for_s``).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calibration.corrections import NodeCorrection
from testbed.errors import ConfigError
from testbed.radio.base import Radio

FORMAT_VERSION = 1


class CalibrationMismatchError(ConfigError):
    """The calibration file was made for another bench (name, radios, carrier, sample rate, or
    impairment preset / seed of a simulated bench)."""


class CalibrationFileError(ConfigError):
    """The calibration file is unreadable or malformed (a key missing, of the wrong type, or
    not a finite number)."""


class StaleCalibrationError(ConfigError):
    """The calibration file is older than the allowed age."""


class StaleCalibrationWarning(UserWarning):
    """The calibration file is older than the allowed age (and on_stale="warn")."""


@dataclass(frozen=True)
class BenchKey:
    """What a calibration must match: bench name, radios [(kind, serial)] in node order then the
    receiver, carrier (Hz) and sample rate (Hz); on a simulated bench also the impairment
    ``preset`` ("none" for an ideal one) and its ``seed`` (the simulated hardware). A wanted
    key with ``preset``/``seed`` None does not check them (hardware benches); with ``radios``
    None it does not check the radios (a bench of role processes: they are known only once the
    roles registered, `testbed.net.roles.bench_calibration.BenchCalibration.check_registered`)."""

    bench: str
    radios: tuple[tuple[str, str], ...] | None
    carrier_hz: float
    sample_rate_hz: float
    preset: str | None = None
    seed: int | None = None

    @classmethod
    def from_radios(cls, bench: str, tx_radios: Sequence[Radio], rx_radio: Radio,
                    preset: str | None = None, seed: int | None = None) -> "BenchKey":
        """Key of a live bench from `Radio.identity()` and the receiver's settings."""
        ids = [r.identity() for r in [*tx_radios, rx_radio]]
        s = rx_radio.settings
        return cls(bench, tuple((i.kind, i.serial) for i in ids), float(s.center_freq_hz),
                   float(s.sample_rate_hz), preset, seed)


@dataclass
class CalibrationRecord:
    """Contents of a calibration file. created_unix_s: time.time() at the end of calibration;
    duration_s: time the procedure took; corrections: one per node; residual: errors after
    correction {timing_samples, cfo_hz, phase_deg, gain_db: [per node]}; before: raw offsets
    {timing_samples, cfo_hz, phase_deg, gain_db}; extra: free-form (preset, seed, validity).
    The key's ``preset``/``seed`` and ``extra["preset"]``/``extra["seed"]`` are one fact: a
    value given on one side fills the other."""

    key: BenchKey
    created_unix_s: float
    duration_s: float
    corrections: list[NodeCorrection]
    residual: dict
    before: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from dataclasses import replace
        for name in ("preset", "seed"):
            if getattr(self.key, name) is None and self.extra.get(name) is not None:
                self.key = replace(self.key, **{name: self.extra[name]})
            elif getattr(self.key, name) is not None:
                self.extra = {**self.extra, name: getattr(self.key, name)}

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
    def from_dict(cls, d: Any, source: str = "calibration file") -> "CalibrationRecord":
        """Inverse of `to_dict`, checking everything: raises `CalibrationFileError` naming
        ``source``, the key at fault and the fix (missing key, wrong type, non-finite number,
        corrections/radios/residuals of inconsistent lengths, unknown format version)."""
        fix = "re-run `testbed calibrate --bench <bench>` to write a new file"
        if not isinstance(d, dict):
            raise CalibrationFileError(f"{source}: the top level must be a JSON object, got "
                                       f"{type(d).__name__}; {fix}")
        if d.get("format_version") != FORMAT_VERSION:
            raise CalibrationFileError(f"{source}: format_version {d.get('format_version')!r} "
                                       f"is not {FORMAT_VERSION}; {fix}")
        try:
            f = _CalibrationFile.model_validate(d)
        except ValidationError as exc:
            e = exc.errors()[0]
            where = _path(e["loc"])
            got = "" if e["type"] == "missing" else f" (got {str(e.get('input'))[:60]!r})"
            raise CalibrationFileError(f"{source}: key {where}: {e['msg']}{got}; fix that "
                                       f"value or {fix}") from None
        bad = _nonfinite(d.get("extra", {}), ("extra",))
        if bad:
            raise CalibrationFileError(f"{source}: key {bad} is not a finite number; {fix}")
        n = len(f.corrections)
        if len(f.radios) != n + 1:
            raise CalibrationFileError(f"{source}: {len(f.radios)} radios for {n} corrections "
                                       f"(need one radio per node plus the receiver); {fix}")
        for part, table in (("residual", f.residual), ("before", f.before)):
            for k, v in table.items():
                if len(v) != n:
                    raise CalibrationFileError(f"{source}: key {part}.{k} has {len(v)} values "
                                               f"for {n} nodes; {fix}")
        key = BenchKey(f.bench, tuple((r.kind, r.serial) for r in f.radios), f.carrier_hz,
                       f.sample_rate_hz, f.extra.preset, f.extra.seed)
        return cls(key, f.created_unix_s, f.duration_s,
                   [NodeCorrection(**c.model_dump()) for c in f.corrections],
                   dict(d["residual"]), dict(d.get("before", {})), dict(d.get("extra", {})))


Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
NonNeg = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Text = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Radio(_Strict):
    kind: Text
    serial: Annotated[str, Field(max_length=256)]


class _Correction(_Strict):
    tau_samples: Finite = 0.0
    sro_ppm: Finite = 0.0
    cfo_hz: Finite = 0.0
    phase_rad: Finite = 0.0
    gain_db: Finite = 0.0


class _Extra(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    preset: Text | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    valid_for_s: Positive | None = None
    node_ids: list[Text] | None = None


class _CalibrationFile(_Strict):
    format_version: Literal[1]
    bench: Text
    radios: Annotated[list[_Radio], Field(min_length=2)]
    carrier_hz: Positive
    sample_rate_hz: Positive
    created_unix_s: Finite
    created_utc: str | None = None
    duration_s: NonNeg
    corrections: Annotated[list[_Correction], Field(min_length=1)]
    residual: dict[str, list[Finite]]
    before: dict[str, list[Finite]] = {}
    extra: _Extra = _Extra()


def _path(loc: Sequence) -> str:
    """'corrections[1].cfo_hz' from a pydantic error location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return repr(out or "<top level>")


def _nonfinite(obj: Any, path: tuple) -> str | None:
    """Path of the first NaN/inf float inside ``obj`` (dicts and lists), or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return _path(path)
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        found = _nonfinite(v, (*path, k))
        if found:
            return found
    return None


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
    if want.radios is not None and have.radios != want.radios:
        out.append(f"radios {list(have.radios)} != {list(want.radios)}")
    if abs(have.carrier_hz - want.carrier_hz) > rel_tol * want.carrier_hz:
        out.append(f"carrier {have.carrier_hz} Hz != {want.carrier_hz} Hz")
    if abs(have.sample_rate_hz - want.sample_rate_hz) > rel_tol * want.sample_rate_hz:
        out.append(f"sample rate {have.sample_rate_hz} Hz != {want.sample_rate_hz} Hz")
    if want.preset is not None and have.preset != want.preset:
        out.append(f"impairment preset {have.preset!r} != this bench's {want.preset!r} (the file "
                   "was made for other simulated hardware)")
    if want.seed is not None and have.seed != want.seed:
        out.append(f"impairment seed {have.seed!r} != this bench's {want.seed!r}")
    return out


def load_calibration(path: str | Path, bench: BenchKey, max_age_s: float | None = None,
                     on_stale: str = "warn", now_unix_s: float | None = None) -> CalibrationRecord:
    """Read a calibration file, check all of it (`CalibrationRecord.from_dict`) and check it
    against ``bench``.

    Raises CalibrationFileError (missing, not JSON, a bad key), CalibrationMismatchError
    (naming every difference: bench name, radio kinds and serials, carrier, sample rate,
    impairment preset and seed). When older than ``max_age_s`` seconds -- by default the
    file's own ``extra.valid_for_s`` -- warns (StaleCalibrationWarning, ``on_stale="warn"``) or
    raises StaleCalibrationError (``on_stale="error"``, e.g. ``--strict-calibration``).
    """
    if on_stale not in ("warn", "error"):
        raise ValueError(f"on_stale must be 'warn' or 'error', got {on_stale!r}")
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CalibrationFileError(f"calibration file {path} does not exist; run `testbed "
                                   "calibrate --bench <bench>` or fix the path") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationFileError(f"calibration file {path} is not valid JSON ({e}); re-run "
                                   "`testbed calibrate --bench <bench>`") from None
    rec = CalibrationRecord.from_dict(data, source=f"calibration file {path}")
    bad = _mismatches(rec.key, bench)
    if bad:
        raise CalibrationMismatchError(f"calibration {path} does not match this bench: "
                                       + "; ".join(bad) + f". Re-run `testbed calibrate --bench "
                                       f"{bench.bench}` on this bench.")
    limit, what = max_age_s, "max_age_s"
    if limit is None and rec.extra.get("valid_for_s") is not None:
        limit, what = float(rec.extra["valid_for_s"]), "its validity valid_for_s"
    if limit is not None:
        age = (time.time() if now_unix_s is None else now_unix_s) - rec.created_unix_s
        if age > limit:
            msg = (f"calibration {path} is {age:.0f} s old, more than {what}={limit:g}; "
                   f"re-run `testbed calibrate --bench {bench.bench}`")
            if on_stale == "error":
                raise StaleCalibrationError(msg)
            warnings.warn(msg, StaleCalibrationWarning, stacklevel=2)
    return rec
