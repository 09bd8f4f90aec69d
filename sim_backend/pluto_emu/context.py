"""The IIO context an emulated PlutoSDR rev C presents: devices, channels, attributes.

Built from the context XML of a real Pluto rev C (firmware v0.38, 1R1T:
``data/pluto_revc_context.xml``); the 2R2T variant adds what the AD9361 firmware mode adds
(second RX/TX on ``ad9361-phy``, ``voltage2/3`` on the ADC and DAC cores, the second TX's DDS
tones). Each radio gets its own serial. Attribute *values* are not in the XML (the client
reads them with READ), only names.

Channel order is libiio's (``context.c: reorder_channels``): scan elements sorted by index
first, the other channels after them in XML order. Buffer masks number channels in this order.
"""
from __future__ import annotations

import copy
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).with_name("data") / "pluto_revc_context.xml"
PHY, RX_CORE, TX_CORE = "ad9361-phy", "cf-ad9361-lpc", "cf-ad9361-dds-core-lpc"
MODES = ("1r1t", "2r2t")


@dataclass
class Channel:
    """One IIO channel: id, output or input, scan index/format for buffer channels."""

    id: str
    output: bool
    name: str | None = None
    index: int = -1
    fmt: str | None = None
    attrs: list[str] = field(default_factory=list)

    @property
    def is_scan(self) -> bool:
        return self.index >= 0


@dataclass
class Device:
    """One IIO device with its channels (libiio order) and attribute names."""

    id: str
    name: str
    channels: list[Channel]
    attrs: list[str]
    debug_attrs: list[str]
    buffer_attrs: list[str]

    def find_channel(self, cid: str, output: bool) -> Channel | None:
        for ch in self.channels:
            if ch.id == cid and ch.output == output:
                return ch
        for ch in self.channels:        # libiio also matches the channel's name
            if ch.name == cid and ch.output == output:
                return ch
        return None

    @property
    def scan_channels(self) -> list[Channel]:
        return [c for c in self.channels if c.is_scan]

    @property
    def mask_words(self) -> int:
        return (len(self.channels) + 31) // 32


def radio_serial(name: str) -> str:
    """A Pluto-like serial (34 hex digits, the rev C's ``104473`` prefix) unique per name."""
    return "104473" + hashlib.sha256(name.encode()).hexdigest()[:28]


def _reorder(channels: list[Channel]) -> list[Channel]:
    scan = sorted((c for c in channels if c.is_scan), key=lambda c: c.index)
    return scan + [c for c in channels if not c.is_scan]


def _parse_channel(el: ET.Element) -> Channel:
    se = el.find("scan-element")
    return Channel(id=el.get("id"), output=el.get("type") == "output", name=el.get("name"),
                   index=int(se.get("index")) if se is not None else -1,
                   fmt=se.get("format") if se is not None else None,
                   attrs=[a.get("name") for a in el.findall("attribute")])


def _add_2r2t(root: ET.Element) -> None:
    """Turn the 1R1T context into the 2R2T one (ad9361 firmware, mode 2r2t)."""
    for dev in root.findall("device"):
        name = dev.get("name")
        if name == PHY:
            for ch in list(dev.findall("channel")):
                if ch.get("id") == "voltage0":
                    twin = copy.deepcopy(ch)
                    twin.set("id", "voltage1")
                    for a in twin.findall("attribute"):
                        fn = a.get("filename")
                        if fn:
                            a.set("filename", fn.replace("voltage0", "voltage1"))
                    dev.append(twin)
        elif name in (RX_CORE, TX_CORE):
            chans = dev.findall("channel")
            v1 = next(c for c in chans if c.get("id") == "voltage1")
            for idx in (2, 3):
                twin = copy.deepcopy(v1)
                twin.set("id", f"voltage{idx}")
                twin.find("scan-element").set("index", str(idx))
                dev.append(twin)
            if name == TX_CORE:
                for k, label in enumerate(("TX2_I_F1", "TX2_I_F2", "TX2_Q_F1", "TX2_Q_F2")):
                    src = next(c for c in chans if c.get("id") == f"altvoltage{k}")
                    twin = copy.deepcopy(src)
                    twin.set("id", f"altvoltage{k + 4}")
                    twin.set("name", label)
                    dev.append(twin)


class PlutoContext:
    """The context of one emulated Pluto: the XML to PRINT and the parsed devices.

    mode: "1r1t" (AD9363 factory firmware) or "2r2t" (compatible ad9361, rev C).
    name: radio name (sets the serial). extra_attrs: more context attributes (key -> value),
    e.g. the emulation's time scale.
    """

    def __init__(self, mode: str = "1r1t", name: str = "pluto", host: str = "127.0.0.1",
                 extra_attrs: dict[str, str] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        text = TEMPLATE.read_text()
        header, _, body = text.partition("<context ")
        root = ET.fromstring("<context " + body)
        if mode == "2r2t":
            _add_2r2t(root)
        self.serial = radio_serial(name)
        attrs = {"hw_serial": self.serial, "uri": f"ip:{host}", "ip,ip-addr": host}
        if mode == "2r2t":
            attrs["ad9361-phy,model"] = "ad9361"
        attrs.update(extra_attrs or {})
        present = {a.get("name"): a for a in root.findall("context-attribute")}
        for key, value in attrs.items():
            if key in present:
                present[key].set("value", str(value))
            else:
                el = ET.Element("context-attribute", {"name": key, "value": str(value)})
                root.insert(len(present), el)
                present[key] = el
        self.attrs = {a.get("name"): a.get("value") for a in root.findall("context-attribute")}
        self.mode = mode
        self.devices: list[Device] = []
        for d in root.findall("device"):
            self.devices.append(Device(
                id=d.get("id"), name=d.get("name"),
                channels=_reorder([_parse_channel(c) for c in d.findall("channel")]),
                attrs=[a.get("name") for a in d.findall("attribute")],
                debug_attrs=[a.get("name") for a in d.findall("debug-attribute")],
                buffer_attrs=[a.get("name") for a in d.findall("buffer-attribute")]))
        self.xml = header + ET.tostring(root, encoding="unicode")

    def find_device(self, word: str) -> Device | None:
        """The device whose id, label or name is ``word`` (as iiod's lexer looks it up)."""
        for d in self.devices:
            if word in (d.id, d.name):
                return d
        return None

    def device(self, name: str) -> Device:
        dev = self.find_device(name)
        assert dev is not None, name
        return dev
