"""The one registry of all-reduce methods: a name maps to what it does everywhere
(`testbed demo`, `testbed run`, the bench, the experiments).

A method is (transport, transceiver design, scale policy, quantization bits):

* ``exact``: the plain fp32 sum (a perfect digital network; the reference).
* ``digital``: the paper's digital baseline, b-bit uniform quantization of every partial,
  then the exact sum of the dequantized values (OFDMA uplink; its airtime is modelled by
  `testbed.optim.latency`). In-process: `testbed.phy.allreduce_digital`; on a bench: a gloo
  all-reduce of the dequantized values (the same numbers), with the modelled airtime reported
  beside the measured wall time.
* ``fdma``: uncoded analog FDMA (each node alone in its own slot, single-node ZF per node).
* ``aircomp-<design>``: over-the-air computation with that transceiver design
  (`testbed.optim.transceiver.METHODS`).

Analog methods run the round of `testbed.phy.round` with the "calibrated" scale policy
(statistics pass at set-up, no per-round exchange). Spellings users may have in scripts or
bench files (``zf-sdr``, ``zf_sdr``, ``analog_fdma``) are accepted with a deprecation warning
by `get_method`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

TRANSPORTS = ("exact", "quantized", "aircomp", "fdma")


@dataclass(frozen=True)
class Method:
    """What an all-reduce method name means.

    name: the one spelling (``aircomp-zf-sdr``). transport: one of TRANSPORTS. design: the
    AirComp transceiver design (`design_transceiver` method) or None. scale_policy: for analog
    transports. bits: quantization bits per value (digital) or None. design_options: passed to
    the design. summary: one line for help texts and tables.
    """

    name: str
    transport: str
    summary: str
    design: str | None = None
    scale_policy: str | None = None
    bits: int | None = None
    design_options: dict = field(default_factory=dict)

    @property
    def analog(self) -> bool:
        """True for methods that send the partials over the air (AirComp, FDMA)."""
        return self.transport in ("aircomp", "fdma")


_METHODS = (
    Method("exact", "exact", "exact fp32 sum (reference)"),
    Method("digital", "quantized", "8-bit quantized digital all-reduce (OFDMA)", bits=8),
    Method("fdma", "fdma", "uncoded analog FDMA, single-node ZF per node",
           scale_policy="calibrated"),
    Method("aircomp-zf-sdr", "aircomp", "AirComp, the paper's ZF + SDR transceiver",
           design="zf-sdr", scale_policy="calibrated"),
    Method("aircomp-mmse", "aircomp", "AirComp, MMSE transceiver (beyond the paper)",
           design="mmse", scale_policy="calibrated",
           design_options={"init": "channel-inversion"}),
)

#: name -> Method, in the order tables list them
METHODS: dict[str, Method] = {m.name: m for m in _METHODS}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
ANALOG_METHODS: tuple[str, ...] = tuple(m.name for m in _METHODS if m.analog)

#: older spellings -> the one name
ALIASES = {"zf-sdr": "aircomp-zf-sdr", "zf_sdr": "aircomp-zf-sdr", "mmse": "aircomp-mmse",
           "aircomp_zf_sdr": "aircomp-zf-sdr", "aircomp_mmse": "aircomp-mmse",
           "analog_fdma": "fdma", "analog-fdma": "fdma"}


class UnknownMethodError(ValueError):
    """A method name that is neither a registered name nor a known alias."""


def canonical_name(name: str) -> str:
    """The registered spelling of ``name`` (aliases warn once with the new spelling)."""
    if name in METHODS:
        return name
    if name in ALIASES:
        new = ALIASES[name]
        warnings.warn(f"method name {name!r} is deprecated; use {new!r}", DeprecationWarning,
                      stacklevel=3)
        return new
    raise UnknownMethodError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")


def get_method(name: str) -> Method:
    """The `Method` called ``name`` (or a deprecated alias of it)."""
    return METHODS[canonical_name(name)]
