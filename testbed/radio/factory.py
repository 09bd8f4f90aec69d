"""Open a radio from its config: ``open_radio(config, role=..., node_id=...) -> Radio``.

Dispatches on ``config.kind``. ``pluto`` and ``usrp`` are built in; the simulated backend
registers ``sim`` itself with `register_radio_kind` (so this module never imports sim_backend).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from testbed.errors import ConfigError
from testbed.radio.base import Radio

ROLES = ("node", "receiver", "any")

#: kind -> constructor(config, role=..., node_id=..., **options) returning an OPEN radio.
_CONSTRUCTORS: dict[str, Callable[..., Radio]] = {}

#: kinds that register themselves when their module is imported (lazy, keeps layering).
_SELF_REGISTERING = {"sim": "sim_backend.remote_radio"}


def register_radio_kind(kind: str, constructor: Callable[..., Radio], *,
                        replace: bool = False) -> None:
    """Make ``open_radio`` build ``kind`` with ``constructor(config, role=, node_id=, **opts)``.
    Registering a kind twice raises ValueError unless ``replace=True``."""
    if not kind or not kind.isidentifier():
        raise ValueError(f"radio kind must be an identifier, got {kind!r}")
    if kind in _CONSTRUCTORS and not replace and _CONSTRUCTORS[kind] is not constructor:
        raise ValueError(f"radio kind {kind!r} is already registered; pass replace=True")
    _CONSTRUCTORS[kind] = constructor


def registered_kinds() -> list[str]:
    """Radio kinds `open_radio` can build right now (plus lazily registered ones)."""
    return sorted(set(_CONSTRUCTORS) | set(_SELF_REGISTERING))


def _open_pluto(config: Any, *, role: str = "any", node_id: str = "", **options: Any) -> Radio:
    from testbed.radio.pluto import PlutoRadio
    options.setdefault("background", True)
    return PlutoRadio(config, node_id=node_id, **options).open()


def _open_usrp(config: Any, *, role: str = "any", node_id: str = "", **options: Any) -> Radio:
    from testbed.radio.usrp import UsrpRadio
    return UsrpRadio(config, node_id=node_id, **options).open()


register_radio_kind("pluto", _open_pluto)
register_radio_kind("usrp", _open_usrp)


def open_radio(config: Any, role: str = "any", node_id: str = "", **options: Any) -> Radio:
    """Open the radio ``config`` describes (a `RadioConfig` or a mapping with ``kind``).

    role: "node" (transmitter), "receiver" or "any"; passed on to the constructor.
    node_id: the bench node that owns the radio, used in error messages.
    options: driver options (e.g. ``background=False`` for the Pluto, ``uhd_module=``).
    Raises ConfigError for an unknown kind or role, RadioNotFoundError if no device answers.
    """
    if isinstance(config, dict):
        from testbed.config.loader import parse_radio_config
        config = parse_radio_config(config, f"radio of node {node_id!r}")
    if role not in ROLES:
        raise ConfigError(f"role must be one of {ROLES}, got {role!r}")
    kind = getattr(config, "kind", None)
    if kind not in _CONSTRUCTORS and kind in _SELF_REGISTERING:
        try:
            importlib.import_module(_SELF_REGISTERING[kind])
        except ImportError as exc:
            raise ConfigError(f"radio kind {kind!r} needs {_SELF_REGISTERING[kind]} "
                              f"({exc})") from exc
    if kind not in _CONSTRUCTORS:
        raise ConfigError(f"unknown radio kind {kind!r} for node {node_id!r}; known kinds: "
                          f"{', '.join(registered_kinds())}")
    return _CONSTRUCTORS[kind](config, role=role, node_id=node_id, **options)
