"""An emulated PlutoSDR rev C on the libiio 0.24/0.25 network protocol (iiod), on the
real-time air (`sim_backend.realtime_air`): `EmulatedPluto` (the radio), `IIODServer` (the
protocol on TCP), `Faults` (unplug, stall, throughput cap). See docs/emulated_radios.md."""
from sim_backend.pluto_emu.device import EmulatedPluto
from sim_backend.pluto_emu.iiod import Faults, IIODServer

__all__ = ["EmulatedPluto", "IIODServer", "Faults"]
