"""An emulated USRP on the real-time air (`sim_backend.realtime_air`) behind the UHD Python
API: `EmulatedUsrp` (the device: time, PPS, timed TX/RX), `UsrpServer` (TCP), `uhd_api` (the
module `UsrpRadio` imports in place of ``uhd`` for ``type=emulated`` device args; it needs only
numpy, so a radio client does not load the air), `PpsSource` (a shared PPS). See
docs/emulated_radios.md."""
import importlib

__all__ = ["EmulatedUsrp", "PpsSource", "UsrpServer"]
_WHERE = {"EmulatedUsrp": "device", "PpsSource": "device", "UsrpServer": "server"}


def __getattr__(name):       # lazy: importing uhd_api must not import the air
    if name in _WHERE:
        return getattr(importlib.import_module(f"sim_backend.usrp_emu.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'sim_backend.usrp_emu' has no attribute {name!r}")
