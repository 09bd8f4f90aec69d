"""Load radio configs and bench files from YAML.

Every failure becomes a `testbed.errors.ConfigError` whose message names the FILE, the KEY
path (``nodes[2].radio.sample_rate_hz``) and what is allowed, so that the fix is obvious.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from testbed.config.bench import BenchConfig
from testbed.config.radio import RADIO_KINDS, RadioConfig
from testbed.errors import ConfigError

_RADIO_ADAPTER = TypeAdapter(RadioConfig)

#: firmware_configs/ at the repository root (radios/ and benches/ below it).
FIRMWARE_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "firmware_configs"


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in RADIO_KINDS or str(part).startswith(
                ("function-", "union[", "tagged-union[", "str", "list[")):
            # pydantic puts the union member tag into loc; it is not a YAML key.
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """BaseModel classes inside an annotation (through Optional, list, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _model_at(root: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (for listing its allowed keys)."""
    current = [root] if root is not None else []
    for part in loc[:-1]:
        if isinstance(part, int) or not current:
            continue
        if part in RADIO_KINDS:
            current = [m for m in current if m.model_fields.get("kind") is not None
                       and m.model_fields["kind"].default == part] or current
            continue
        nxt: list[type[BaseModel]] = []
        for m in current:
            if part in m.model_fields:
                nxt += _models_in(m.model_fields[part].annotation)
        current = nxt or current
    return current[0] if len(current) == 1 else None


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None
                            ) -> str:
    """One readable message for a pydantic error: file, key path, problem, allowed values."""
    errors = exc.errors(include_url=False)
    # A `radio: RadioConfig | str` union reports "should be a valid string" next to the real
    # problem in the mapping; drop that noise when a sibling error explains more.
    keys = [_key_path(tuple(e.get("loc", ()))) for e in errors]
    kept = [(k, e) for k, e in zip(keys, errors)
            if not (e.get("type") == "string_type" and isinstance(e.get("input"), dict)
                    and sum(1 for k2 in keys if k2 == k or k2.startswith(k + ".")) > 1)]
    lines = [f"{source}: invalid configuration ({len(kept)} problem(s)):"]
    for key, err in kept:
        msg = err.get("msg", "").removeprefix("Value error, ")
        kind = err.get("type", "")
        got = err.get("input")
        if kind == "extra_forbidden":
            owner = _model_at(model, tuple(err.get("loc", ())))
            msg = "unknown key (typo?)"
            if owner is not None:
                msg += f"; allowed keys: {', '.join(owner.model_fields)}"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            msg = f"{msg}; set kind: one of {', '.join(RADIO_KINDS)}"
        elif kind == "missing":
            msg = "required key is missing"
        shown = "" if kind in ("missing", "extra_forbidden") or isinstance(got, dict) \
            else f" (got {got!r})"
        lines.append(f"  key '{key}': {msg}{shown}")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file into a mapping; ConfigError naming the file if it is missing,
    unreadable, not YAML, or not a mapping at the top level."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (configs live in {FIRMWARE_CONFIGS_DIR})") \
            from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got "
                          f"{type(data).__name__}")
    return data


def parse_radio_config(data: dict[str, Any], source: str = "<radio config>") -> RadioConfig:
    """Validate a mapping as a radio config (dispatching on ``kind``)."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError(f"{source}: key 'kind': required; one of {', '.join(RADIO_KINDS)}")
    try:
        return _RADIO_ADAPTER.validate_python(data)
    except ValidationError as exc:
        from testbed.config import radio as radio_mod
        model = {"pluto": radio_mod.PlutoConfig, "usrp": radio_mod.UsrpConfig,
                 "sim": radio_mod.SimRadioConfig}.get(data.get("kind"))
        raise ConfigError(format_validation_error(exc, source, model)) from None


def load_radio_config(path: str | Path) -> RadioConfig:
    """Load one radio YAML file (``kind: pluto|usrp|sim`` plus its settings)."""
    return parse_radio_config(read_yaml(path), str(path))


def _resolve_radio(ref: Any, base: Path, key: str, bench_path: Path) -> Any:
    if isinstance(ref, str):
        p = (base / ref) if not Path(ref).is_absolute() else Path(ref)
        if not p.exists():
            raise ConfigError(f"{bench_path}: key '{key}': radio file {ref!r} not found "
                              f"(looked at {p}); paths are relative to the bench file")
        return read_yaml(p) | {}
    return ref


def load_bench(path: str | Path) -> BenchConfig:
    """Load a bench YAML file; radio references (paths) are resolved relative to it and
    validated as part of the bench, so errors still name the bench key."""
    p = Path(path)
    data = read_yaml(p)
    base = p.resolve().parent
    nodes = data.get("nodes")
    if isinstance(nodes, list):
        for i, node in enumerate(nodes):
            if isinstance(node, dict) and "radio" in node:
                node["radio"] = _resolve_radio(node["radio"], base, f"nodes[{i}].radio", p)
    rx = data.get("receiver")
    if isinstance(rx, dict) and "radio" in rx:
        if isinstance(rx["radio"], list):
            rx["radio"] = [_resolve_radio(r, base, f"receiver.radio[{j}]", p)
                           for j, r in enumerate(rx["radio"])]
        else:
            rx["radio"] = _resolve_radio(rx["radio"], base, "receiver.radio", p)
    try:
        return BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(p), BenchConfig)) from None


def find_config(name: str, kind: str = "radios") -> Path:
    """Path of a shipped config by short name (``pluto_revc_1r1t`` -> firmware_configs/radios/
    pluto_revc_1r1t.yaml); a path that exists is returned unchanged."""
    cand = Path(name)
    if cand.exists():
        return cand
    p = FIRMWARE_CONFIGS_DIR / kind / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not p.exists():
        avail = sorted(x.stem for x in (FIRMWARE_CONFIGS_DIR / kind).glob("*.yaml"))
        raise ConfigError(f"no {kind[:-1]} config {name!r}; available: {avail}")
    return p
