"""A run's calibration: corrected radios, their validity on the receiver clock, expiry policy.

A `CalibrationSession` sits between the raw node `Radio`s and whatever runs on top (an
all-reduce): it owns one `CorrectedRadio` per node (made from a fresh `calibrate` run or from a
loaded `CalibrationRecord`), a `CalibrationGuard` on the receiver's sample clock
(seconds = ``rx.now() / fs``) and a policy for when the calibration expires or a radio re-tunes
(`CorrectedRadio.needs_recalibration`):

* ``"recalibrate"``: run the procedure again on the raw radios and replace the corrections of the
  same `CorrectedRadio` objects in place (whatever holds them keeps working), new guard;
* ``"warn"``: a `CalibrationExpiredWarning`, once per expiry (cause), then carry on;
* ``"error"``: raise `CalibrationExpiredError`.

Call `check()` before every round (cheap while the calibration is good). Every (re)calibration,
load and expiry is recorded as a `CalibrationEvent` (`events`, `to_dict()` for results.json).

Validity: a record's ``extra["valid_for_s"]`` (written by `testbed calibrate`), else the explicit
``valid_for_s`` argument, else `per_frame_validity_s` of the residual CFO (runs re-estimate the
channel from per-frame pilots, so only the residual sample-clock offset makes the MSE grow; the
clock offset of a radio with one oscillator is CFO / carrier).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from calibration.corrections import CorrectedRadio, NodeCorrection
from calibration.drift import CalibrationGuard, doubling_time_s
from calibration.persistence import BenchKey, CalibrationRecord
from calibration.procedures import CalibrationRun, calibrate
from testbed.errors import ConfigError, TestbedError
from testbed.radio.base import Radio

EXPIRY_POLICIES = ("recalibrate", "warn", "error")
#: Validity = this fraction of the per-frame-pilot MSE-doubling time (as `testbed calibrate`).
VALIDITY_FACTOR = 0.5
#: Longest validity computed from residuals (s): a residual CFO of 0 would give infinity.
MAX_VALIDITY_S = 1e7


class CalibrationExpiredError(TestbedError):
    """The calibration expired (or a radio re-tuned) and the policy is "error"."""


class CalibrationExpiredWarning(UserWarning):
    """The calibration expired (or a radio re-tuned) and the policy is "warn"."""


def per_frame_validity_s(residual_cfo_hz: Sequence[float], carrier_hz: float,
                         sample_rate_hz: float, mse0: float = 0.01,
                         factor: float = VALIDITY_FACTOR) -> float:
    """Validity (s) of a calibration for runs with per-frame pilots: ``factor`` x the time at
    which the residual sample-clock offsets (ppm = residual CFO (Hz) / carrier (Hz) x 1e6, one
    oscillator per radio) double an AirComp MSE of ``mse0`` (per channel use, linear);
    `calibration.drift.doubling_time_s` with ``csi="per_round"``. Capped at MAX_VALIDITY_S."""
    cfo = np.abs(np.asarray(residual_cfo_hz, float))
    sro_ppm = cfo / float(carrier_hz) * 1e6
    t = doubling_time_s(mse0, cfo, sro_ppm, sample_rate_hz, csi="per_round",
                        t_max_s=MAX_VALIDITY_S / factor)
    return float(min(factor * t, MAX_VALIDITY_S))


@dataclass
class CalibrationEvent:
    """One thing that happened to a run's calibration.

    kind: "calibrated" (fresh), "loaded" (from a file), "recalibrated" or "expired" (policy
    "warn"); receiver_time_s: receiver clock (s) when it happened; unix_s: wall clock (s);
    reason: why (e.g. the age vs the validity); residual: {timing_samples, cfo_hz, phase_deg,
    gain_db: per node} after a (re)calibration or the record's; reference: {path, sha256} of a
    file; valid_for_s: validity from then on (s); duration_s: wall time of the procedure (s).
    """

    kind: str
    receiver_time_s: float
    unix_s: float
    reason: str = ""
    residual: dict | None = None
    reference: dict | None = None
    valid_for_s: float | None = None
    duration_s: float | None = None

    def to_dict(self) -> dict:
        """Plain-JSON dict (None fields dropped)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class _Validity:
    seconds: float
    source: str                                   # "record", "argument" or "residual"


class CalibrationSession:
    """Corrected radios of a run, their validity and what happens when it runs out.

    Build with `fresh` (run the procedure now) or `from_record` (a loaded calibration). tx_radios:
    the raw node radios (node order); rx_radio: the receiver; on_expiry: one of EXPIRY_POLICIES;
    calibrate_options: keyword arguments of `calibration.procedures.calibrate` used for every
    (re)calibration (e.g. ``reference_channels``, ``cfg``); half_taps: corrections'
    interpolator length per side (samples).
    """

    def __init__(self, tx_radios: Sequence[Radio], rx_radio: Radio,
                 corrections: Sequence[NodeCorrection], *, validity: _Validity,
                 created_s: float, on_expiry: str = "recalibrate",
                 calibrate_options: dict | None = None, half_taps: int = 256) -> None:
        if on_expiry not in EXPIRY_POLICIES:
            raise ConfigError(f"on_expiry must be one of {', '.join(EXPIRY_POLICIES)}, "
                              f"got {on_expiry!r}")
        if len(corrections) != len(tx_radios):
            raise ConfigError(f"{len(corrections)} corrections for {len(tx_radios)} node radios; "
                              "the calibration was made for another number of nodes")
        if not validity.seconds > 0:
            raise ConfigError(f"calibration validity must be > 0 s, got {validity.seconds}")
        self.raw_radios = list(tx_radios)
        self.rx_radio = rx_radio
        self.radios = [CorrectedRadio(r, c, half_taps) for r, c in zip(tx_radios, corrections)]
        self.on_expiry = on_expiry
        self.calibrate_options = dict(calibrate_options or {})
        self.half_taps = int(half_taps)
        self._validity = validity
        self.guard = CalibrationGuard(float(created_s), validity.seconds)
        self.events: list[CalibrationEvent] = []
        self._warned: set[str] = set()
        self.last_run: CalibrationRun | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def fresh(cls, tx_radios: Sequence[Radio], rx_radio: Radio, *,
              valid_for_s: float | None = None, on_expiry: str = "recalibrate",
              half_taps: int = 256, **calibrate_options) -> "CalibrationSession":
        """Calibrate now (`calibration.procedures.calibrate` with ``calibrate_options``).
        Validity ``valid_for_s`` (s), or `per_frame_validity_s` of the measured residual CFO."""
        if on_expiry not in EXPIRY_POLICIES:       # fail before minutes of sounding
            raise ConfigError(f"on_expiry must be one of {', '.join(EXPIRY_POLICIES)}, "
                              f"got {on_expiry!r}")
        t_unix = time.time()
        run = calibrate(tx_radios, rx_radio, half_taps=half_taps, **calibrate_options)
        validity = (_Validity(float(valid_for_s), "argument") if valid_for_s is not None else
                    _Validity(_residual_validity(run.residual.cfo_hz, rx_radio), "residual"))
        fs = rx_radio.settings.sample_rate_hz
        s = cls(tx_radios, rx_radio, [r.correction for r in run.corrected], validity=validity,
                created_s=run.end_sample / fs, on_expiry=on_expiry,
                calibrate_options=calibrate_options, half_taps=half_taps)
        s.last_run = run
        s.events.append(CalibrationEvent("calibrated", run.end_sample / fs, t_unix,
                                         "fresh calibration at the start of the run",
                                         residual=run.residual.to_dict(),
                                         valid_for_s=validity.seconds,
                                         duration_s=run.elapsed_s))
        return s

    @classmethod
    def from_record(cls, tx_radios: Sequence[Radio], rx_radio: Radio,
                    record: CalibrationRecord, *, reference: dict | None = None,
                    valid_for_s: float | None = None, age_s: float | None = None,
                    on_expiry: str = "recalibrate", half_taps: int = 256,
                    **calibrate_options) -> "CalibrationSession":
        """Use a loaded calibration (check it with `calibration.persistence.load_calibration`
        first). reference: `calibration_reference(path)` of its file, recorded in the events.
        Validity: ``record.extra["valid_for_s"]`` if present, else ``valid_for_s`` (s), else
        `per_frame_validity_s` of the record's residual CFO. age_s: how old the calibration is
        now (s) on the receiver's clock; default the wall-clock age ``time.time() -
        record.created_unix_s`` (right on hardware, whose sample clock runs in real time; a
        simulated bench built after the file has a clock that starts at 0 and oscillators
        that do not drift in wall time, so pass 0 there)."""
        v = record.extra.get("valid_for_s")
        if v is not None:
            validity = _Validity(float(v), "record")
        elif valid_for_s is not None:
            validity = _Validity(float(valid_for_s), "argument")
        elif "cfo_hz" in record.residual:
            validity = _Validity(_residual_validity(record.residual["cfo_hz"], rx_radio), "residual")
        else:
            raise ConfigError("the calibration has no extra['valid_for_s'] and no residual CFO; "
                              "pass valid_for_s or re-run `testbed calibrate`")
        age = float(time.time() - record.created_unix_s if age_s is None else age_s)
        now = _now_s(rx_radio)
        s = cls(tx_radios, rx_radio, record.corrections, validity=validity, created_s=now - age,
                on_expiry=on_expiry, calibrate_options=calibrate_options, half_taps=half_taps)
        s.events.append(CalibrationEvent("loaded", now, time.time(),
                                         f"loaded, {age:.3g} s old", residual=record.residual,
                                         reference=reference, valid_for_s=validity.seconds))
        return s

    # ------------------------------------------------------------------ during the run
    @property
    def corrections(self) -> list[NodeCorrection]:
        """Current correction of every node."""
        return [r.correction for r in self.radios]

    @property
    def valid_for_s(self) -> float:
        """Current validity (s) and where it came from (`validity_source`)."""
        return self._validity.seconds

    @property
    def validity_source(self) -> str:
        """"record", "argument" or "residual"."""
        return self._validity.source

    def now_s(self) -> float:
        """Receiver clock (s): ``rx.now() / fs``."""
        return _now_s(self.rx_radio)

    def check(self) -> str:
        """Call before each round. "ok" while the calibration is valid and no radio re-tuned;
        otherwise applies the policy: "recalibrated", "expired" (after the warning, policy
        "warn") or raises `CalibrationExpiredError` (policy "error")."""
        now = self.now_s()
        retuned = [i for i, r in enumerate(self.radios) if r.needs_recalibration]
        if not retuned and self.guard.check(now) == "ok":
            return "ok"
        if retuned:
            cause = "retune"
            reason = (f"node radio(s) {retuned} re-tuned: their LO phase is new "
                      "(CorrectedRadio.needs_recalibration)")
        else:
            cause = "age"
            reason = (f"calibration is {self.guard.age(now):.4g} s old on the receiver clock, "
                      f"valid for {self.guard.valid_for_s:.4g} s")
        if self.on_expiry == "recalibrate":
            self.recalibrate(reason)
            return "recalibrated"
        if self.on_expiry == "error":
            raise CalibrationExpiredError(reason + "; recalibrate (`testbed calibrate`, or "
                                          "on_expiry='recalibrate')")
        if cause not in self._warned:
            self._warned.add(cause)
            self.events.append(CalibrationEvent("expired", now, time.time(), reason,
                                                valid_for_s=self.guard.valid_for_s))
            warnings.warn(reason + "; carrying on with the old corrections (on_expiry='warn')",
                          CalibrationExpiredWarning, stacklevel=2)
        return "expired"

    def recalibrate(self, reason: str = "requested") -> CalibrationRun:
        """Run the procedure again on the raw radios, replace every `CorrectedRadio`'s correction
        in place, clear the re-tune flags and start a new guard. Returns the run."""
        t_unix = time.time()
        run = calibrate(self.raw_radios, self.rx_radio, half_taps=self.half_taps,
                        **self.calibrate_options)
        for mine, new in zip(self.radios, run.corrected):
            mine.correction = new.correction
            mine.needs_recalibration = False
        if self._validity.source == "residual":
            self._validity = _Validity(_residual_validity(run.residual.cfo_hz, self.rx_radio),
                                       "residual")
        fs = self.rx_radio.settings.sample_rate_hz
        self.guard = CalibrationGuard(run.end_sample / fs, self._validity.seconds)
        self._warned.clear()
        self.last_run = run
        self.events.append(CalibrationEvent("recalibrated", run.end_sample / fs, t_unix, reason,
                                            residual=run.residual.to_dict(),
                                            valid_for_s=self._validity.seconds,
                                            duration_s=run.elapsed_s))
        return run

    # ------------------------------------------------------------------ records
    def to_record(self, bench: str, extra: dict | None = None) -> CalibrationRecord:
        """The current corrections as a `CalibrationRecord` for `save_calibration` (key from the
        live radios, residual of the last (re)calibration, validity in ``extra``)."""
        last = next((e for e in reversed(self.events) if e.residual is not None), None)
        return CalibrationRecord(BenchKey.from_radios(bench, self.raw_radios, self.rx_radio),
                                 time.time(), 0.0 if self.last_run is None else self.last_run.elapsed_s,
                                 self.corrections, {} if last is None else dict(last.residual),
                                 extra={"valid_for_s": self.valid_for_s, **(extra or {})})

    def to_dict(self) -> dict:
        """JSON-ready summary: policy, validity (s) and its source, current corrections, events."""
        return {"on_expiry": self.on_expiry, "valid_for_s": self.valid_for_s,
                "validity_source": self.validity_source,
                "corrections": [c.to_dict() for c in self.corrections],
                "events": [e.to_dict() for e in self.events],
                "recalibrations": sum(e.kind == "recalibrated" for e in self.events)}

    def round_hook(self, then: Callable[[], object] | None = None) -> Callable[[], None]:
        """A callable for an all-reduce's ``on_round``: `check()`, then ``then()`` if given."""
        def hook() -> None:
            self.check()
            if then is not None:
                then()
        return hook


def _now_s(rx_radio: Radio) -> float:
    return rx_radio.now() / rx_radio.settings.sample_rate_hz


def _residual_validity(residual_cfo_hz: Sequence[float], rx_radio: Radio) -> float:
    s = rx_radio.settings
    v = per_frame_validity_s(residual_cfo_hz, s.center_freq_hz, s.sample_rate_hz)
    return v if math.isfinite(v) else MAX_VALIDITY_S
