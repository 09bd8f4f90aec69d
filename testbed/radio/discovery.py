"""Find attached radios: PlutoSDRs through libiio's context scan, USRPs through ``uhd.find``.

Each scan reports what it found *and* why it may have found nothing (library missing, scan
backend failing, or simply no device), so ``testbed devices`` can say it plainly.
"""
from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.radio.system_libs import SystemLibraryMissing, import_system_module

PLUTO_DEVICES = ("ad9361-phy", "cf-ad9361-lpc")


@dataclass
class FoundRadio:
    """One attached radio: kind ("pluto"/"usrp"), address to put in a config (URI / args),
    serial, firmware, model, and anything else the scan told us."""

    kind: str
    address: str
    serial: str = "unknown"
    firmware: str = "unknown"
    model: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class ScanResult:
    """What one library's scan found; ``status`` is "ok", "library-missing" or "error"."""

    library: str
    status: str
    radios: list[FoundRadio] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _scan_backend(iio: Any, backend: str | None) -> dict[str, str]:
    """libiio scan restricted to one backend ("usb", "ip", ...); pylibiio 0.25 only exposes
    the all-backends scan, whose failure (no avahi daemon) would also hide USB devices."""
    ptr = ctypes.POINTER(iio._ContextInfoPtr)()
    ctx = iio._create_scan_context(backend.encode() if backend else None, 0)
    try:
        n = iio._get_context_info_list(ctx, ctypes.byref(ptr))
        out = {iio._context_info_get_uri(ptr[i]).decode(): iio._context_info_get_description(
            ptr[i]).decode() for i in range(n)}
        iio._context_info_list_free(ptr)
        return out
    finally:
        iio._destroy_scan_context(ctx)


def _pluto_details(iio: Any, uri: str) -> FoundRadio:
    found = FoundRadio(kind="pluto", address=uri)
    try:
        ctx = iio.Context(uri)
        attrs = dict(ctx.attrs)
        names = [d.name for d in ctx.devices]
        found.serial = attrs.get("hw_serial", "unknown")
        found.firmware = attrs.get("fw_version", "unknown")
        found.model = attrs.get("hw_model", "")
        rx = ctx.find_device("cf-ad9361-lpc")
        n_ch = sum(1 for c in rx.channels if c.scan_element) // 2 if rx is not None else 0
        found.extra = {"mode": "2r2t" if n_ch >= 2 else "1r1t", "iio_devices": names}
    except (OSError, AttributeError) as exc:
        found.extra = {"error": f"context did not open: {exc}"}
    return found


def scan_plutos(iio_module: Any = None) -> ScanResult:
    """Scan libiio contexts (USB, then all backends) for devices with an AD9361-family PHY."""
    try:
        iio = iio_module or import_system_module("iio")
    except SystemLibraryMissing as exc:
        return ScanResult("libiio", "library-missing", message=str(exc))
    contexts: dict[str, str] = {}
    notes = []
    for backend in ("usb", None):
        try:
            contexts.update(_scan_backend(iio, backend) if hasattr(iio, "_create_scan_context")
                            else iio.scan_contexts())
        except (OSError, AttributeError) as exc:
            notes.append(f"{backend or 'all-backends'} scan failed: {exc}"
                         + (" (network discovery needs the avahi daemon; give ip: URIs "
                            "explicitly)" if backend is None else ""))
    radios = [_pluto_details(iio, uri) for uri, desc in sorted(contexts.items())
              if "PlutoSDR" in desc or "ad9361" in desc.lower() or "ad936" in desc.lower()
              or "pluto" in uri]
    if not radios:
        msg = "no PlutoSDR found by the libiio scan"
        if contexts:
            msg += f" (other IIO contexts: {sorted(contexts)})"
        notes.insert(0, msg + "; check the USB cable / `iio_info -s`, or try "
                     "`iio_info -u ip:192.168.2.1`")
    return ScanResult("libiio", "ok" if radios or not notes[1:] else "error", radios,
                      "; ".join(notes))


def scan_usrps(uhd_module: Any = None) -> ScanResult:
    """``uhd.find("")``: every USRP UHD can see on USB and the local networks."""
    try:
        uhd = uhd_module or import_system_module("uhd")
    except SystemLibraryMissing as exc:
        return ScanResult("uhd", "library-missing", message=str(exc))
    try:
        addrs = list(uhd.find(""))
    except RuntimeError as exc:
        return ScanResult("uhd", "error", message=f"uhd.find failed: {exc}")
    radios = []
    for addr in addrs:
        d = addr.to_dict() if hasattr(addr, "to_dict") else dict(addr)
        args = ",".join(f"{k}={d[k]}" for k in ("type", "serial", "addr") if k in d)
        radios.append(FoundRadio(kind="usrp", address=args, serial=d.get("serial", "unknown"),
                                 model=d.get("product", d.get("type", "")),
                                 extra={k: v for k, v in d.items()
                                        if k not in ("serial", "product")}))
    msg = "" if radios else ("no USRP found by uhd.find; check power, USB 3 / Ethernet link and "
                             "`uhd_find_devices`")
    return ScanResult("uhd", "ok", radios, msg)


def discover(iio_module: Any = None, uhd_module: Any = None) -> list[ScanResult]:
    """Both scans, Pluto first."""
    return [scan_plutos(iio_module), scan_usrps(uhd_module)]
