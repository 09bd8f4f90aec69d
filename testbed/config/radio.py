"""Radio configuration schemas (pydantic v2), one per radio kind: ``pluto``, ``usrp``, ``sim``.

Every frequency is in Hz, every rate in samples/s, every gain in dB. A config describes what
to open and how to set it up; `to_settings()` gives the `RadioSettings` the drivers apply.
Limits below are the hardware's, so a typo in a YAML file fails at load time with the allowed
range in the message rather than at the radio.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from testbed.radio.base import RadioSettings

# ---- PlutoSDR (AD9363; AD9361/AD9364 behaviour selected by the u-boot "compatible" setting) ----
PLUTO_MIN_SAMPLE_RATE_HZ = 521e3      # pyadi-iio refuses lower rates (FIR/decimation limit)
PLUTO_MAX_SAMPLE_RATE_HZ = 61.44e6
PLUTO_LO_RANGE_HZ = {                 # by firmware "compatible" string
    "ad9363": (325e6, 3.8e9),         # factory firmware
    "ad9364": (70e6, 6.0e9),          # fw_setenv attr_val ad9364 (1R1T, extended range)
    "ad9361": (70e6, 6.0e9),          # fw_setenv attr_val ad9361 (needed for 2R2T on rev C)
}
PLUTO_RF_BW_RANGE_HZ = (200e3, 56e6)
PLUTO_TX_GAIN_RANGE_DB = (-89.75, 0.0)
PLUTO_RX_GAIN_RANGE_DB = (-3.0, 71.0)  # manual gain; upper end is 62 dB above 4 GHz
PLUTO_URI_RE = re.compile(
    r"^(ip:(?P<host>[A-Za-z0-9.\-:\[\]]+)"     # ip:192.168.2.1, ip:pluto.local
    r"|usb:(?P<usb>\d+\.\d+\.\d+)"             # usb:1.2.5
    r"|usb:"                                   # first USB device
    r"|local:"                                 # running on the Pluto itself
    r"|xml:(?P<xml>.+))$")                     # libiio XML context (tests)
EXT_REF_FREQS_HZ = (40e6,)            # what the rev C clock input is known to work with

# ---- USRP ----
USRP_CLOCK_SOURCES = ("internal", "external", "gpsdo", "mimo")
USRP_PPS_ALIGN = ("next_pps", "unknown_pps", "none")


def validate_pluto_uri(uri: str) -> str:
    """Return ``uri`` if it is a libiio URI a Pluto can be reached at (``ip:HOST``,
    ``usb:``/``usb:B.D.I``, ``local:``, ``xml:PATH``); raise ValueError naming the forms."""
    if not isinstance(uri, str) or not PLUTO_URI_RE.match(uri):
        raise ValueError(
            f"invalid PlutoSDR URI {uri!r}: use 'ip:192.168.2.1' (or 'ip:pluto.local'), "
            "'usb:' / 'usb:BUS.DEV.INTF' (see `iio_info -s`), 'local:' on the device, "
            "or 'xml:/path/context.xml'")
    return uri


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RadioBase(_Strict):
    """Fields every radio kind shares (Hz, samples/s, dB)."""

    sample_rate_hz: float = Field(1.0e6, gt=0, description="baseband rate, samples/s")
    center_freq_hz: float = Field(915e6, gt=0, description="carrier (LO) in Hz, RX = TX")
    rf_bandwidth_hz: float | None = Field(None, gt=0, description="analog filter bandwidth, Hz")
    tx_gain_db: float = -10.0
    rx_gain_db: float = 30.0
    rx_gain_mode: Literal["manual", "slow_attack", "fast_attack", "hybrid"] = "manual"
    n_tx_channels: int = Field(1, ge=0, le=4)
    n_rx_channels: int = Field(1, ge=0, le=4)
    description: str = ""

    def to_settings(self) -> RadioSettings:
        """The `RadioSettings` this config asks for."""
        return RadioSettings(
            sample_rate_hz=self.sample_rate_hz, center_freq_hz=self.center_freq_hz,
            tx_gain_db=self.tx_gain_db, rx_gain_db=self.rx_gain_db,
            rx_gain_mode=self.rx_gain_mode, n_tx_channels=self.n_tx_channels,
            n_rx_channels=self.n_rx_channels, rf_bandwidth_hz=self.rf_bandwidth_hz)


class ExternalReference(_Strict):
    """A shared reference clock fed into the Pluto rev C CLK IN (u.FL) connector."""

    freq_hz: float = 40e6

    @field_validator("freq_hz")
    @classmethod
    def _known_freq(cls, v: float) -> float:
        if v not in EXT_REF_FREQS_HZ:
            raise ValueError(f"external reference must be one of {EXT_REF_FREQS_HZ} Hz "
                             f"(the AD9363 is set up for a 40 MHz XO), got {v}")
        return v


def pluto_firmware_env(compatible: str, mode: str, external_reference: ExternalReference | None
                       ) -> list[str]:
    """The u-boot environment commands (run over ``ssh root@pluto``, then ``reboot``) that a
    Pluto needs for this firmware mode. Order matters only for readability."""
    cmds: list[str] = []
    if compatible != "ad9363" or mode == "2r2t":
        cmds += ["fw_setenv attr_name compatible", f"fw_setenv attr_val {compatible}"]
    if mode == "2r2t":
        cmds += ["fw_setenv compatible ad9361", "fw_setenv mode 2r2t"]
    if external_reference is not None:
        cmds += ["fw_setenv refclk_source external",
                 f'fw_setenv ad936x_ext_refclk_override "<{int(external_reference.freq_hz)}>"']
    return cmds


class PlutoConfig(_RadioBase):
    """An ADALM-Pluto (rev C for 2R2T and external reference) driven through pyadi-iio."""

    kind: Literal["pluto"] = "pluto"
    uri: str = "ip:192.168.2.1"
    revision: Literal["b", "c", "d"] = "c"
    mode: Literal["1r1t", "2r2t"] = "1r1t"
    compatible: Literal["ad9363", "ad9364", "ad9361"] = Field(
        "ad9363", description="u-boot 'attr_val' firmware setting; sets the LO range")
    external_reference: ExternalReference | None = None
    rx_buffer_size: int = Field(16384, ge=64, le=1 << 22, description="samples per RX buffer")
    tx_buffer_size: int = Field(16384, ge=64, le=1 << 22,
                                description="samples per TX buffer; fixed after first push")
    kernel_buffers: int = Field(4, ge=1, le=64,
                                description="IIO kernel buffers; also how many stale RX "
                                            "buffers are flushed after a change")
    rx_history_samples: int = Field(1 << 20, ge=1024,
                                    description="received samples kept for receive() windows")
    firmware_env: list[str] = Field(default_factory=list,
                                    description="u-boot env commands this mode needs (data)")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return validate_pluto_uri(v)

    @model_validator(mode="after")
    def _limits(self) -> "PlutoConfig":
        lo, hi = PLUTO_MIN_SAMPLE_RATE_HZ, PLUTO_MAX_SAMPLE_RATE_HZ
        if not lo <= self.sample_rate_hz <= hi:
            raise ValueError(f"sample_rate_hz={self.sample_rate_hz:g} outside the Pluto's "
                             f"{lo:g}..{hi:g} S/s (one rate shared by RX and TX)")
        flo, fhi = PLUTO_LO_RANGE_HZ[self.compatible]
        if not flo <= self.center_freq_hz <= fhi:
            raise ValueError(
                f"center_freq_hz={self.center_freq_hz:g} outside {flo:g}..{fhi:g} Hz for "
                f"compatible={self.compatible!r}; use compatible 'ad9364' (1R1T) or 'ad9361' "
                "(2R2T) firmware for 70 MHz..6 GHz")
        if self.rf_bandwidth_hz is not None and not (
                PLUTO_RF_BW_RANGE_HZ[0] <= self.rf_bandwidth_hz <= PLUTO_RF_BW_RANGE_HZ[1]):
            raise ValueError(f"rf_bandwidth_hz must be in {PLUTO_RF_BW_RANGE_HZ} Hz")
        if not PLUTO_TX_GAIN_RANGE_DB[0] <= self.tx_gain_db <= PLUTO_TX_GAIN_RANGE_DB[1]:
            raise ValueError(f"tx_gain_db={self.tx_gain_db} outside "
                             f"{PLUTO_TX_GAIN_RANGE_DB} dB (0 = full power, negative = attenuation)")
        if not PLUTO_RX_GAIN_RANGE_DB[0] <= self.rx_gain_db <= PLUTO_RX_GAIN_RANGE_DB[1]:
            raise ValueError(f"rx_gain_db={self.rx_gain_db} outside {PLUTO_RX_GAIN_RANGE_DB} dB")
        if self.rx_gain_mode == "hybrid":
            raise ValueError("rx_gain_mode 'hybrid' is not offered by the Pluto; use "
                             "'manual', 'slow_attack' or 'fast_attack'")
        max_ch = 2 if self.mode == "2r2t" else 1
        if self.n_tx_channels > max_ch or self.n_rx_channels > max_ch:
            raise ValueError(f"mode {self.mode!r} has at most {max_ch} RX/TX channel(s); set "
                             "mode: 2r2t (rev C) for two")
        if self.mode == "2r2t" and (self.revision != "c" and self.revision != "d"):
            raise ValueError("2R2T needs a rev C/D Pluto (second RX/TX on u.FL connectors)")
        if self.mode == "2r2t" and self.compatible != "ad9361":
            raise ValueError("2R2T needs compatible: ad9361 (fw_setenv attr_val ad9361)")
        if self.external_reference is not None and self.revision == "b":
            raise ValueError("rev B has no external clock input; external_reference needs rev C/D")
        needed = pluto_firmware_env(self.compatible, self.mode, self.external_reference)
        missing = [c for c in needed if c not in self.firmware_env]
        if self.firmware_env and missing:
            raise ValueError(f"firmware_env lacks {missing} needed for mode={self.mode}, "
                             f"compatible={self.compatible}, external_reference="
                             f"{self.external_reference is not None}")
        return self

    def required_firmware_env(self) -> list[str]:
        """The u-boot env commands this config needs (see `pluto_firmware_env`)."""
        return pluto_firmware_env(self.compatible, self.mode, self.external_reference)


class UsrpConfig(_RadioBase):
    """An Ettus USRP driven through UHD's Python API (`uhd.usrp.MultiUSRP`)."""

    kind: Literal["usrp"] = "usrp"
    tx_gain_db: float = 20.0
    args: str = Field("", description="UHD device args, e.g. 'type=b200,serial=3...'")
    model: Literal["b200", "b210", "x300", "x310", "n210", "n310", "n320", "e310", "x410",
                   "other"] = "b210"
    clock_source: Literal["internal", "external", "gpsdo", "mimo"] = "internal"
    time_source: Literal["internal", "external", "gpsdo", "mimo"] = "internal"
    pps_align: Literal["next_pps", "unknown_pps", "agreed", "none"] = Field(
        "none", description="how the device time is zeroed on PPS: next_pps/unknown_pps at "
        "open() in this process alone; agreed: on the PPS edge the bench's controller hands "
        "out to every process (`UsrpRadio.latch_time_at_pps_after`); none: in software")
    master_clock_rate_hz: float | None = Field(None, gt=0)
    tx_antenna: str = "TX/RX"
    rx_antenna: str = "RX2"
    cpu_format: Literal["fc32"] = "fc32"
    otw_format: Literal["sc16", "sc12", "sc8"] = "sc16"
    start_delay_s: float = Field(0.1, gt=0, description="lead time of a burst scheduled 'now'")
    rx_timeout_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _limits(self) -> "UsrpConfig":
        if self.pps_align != "none" and self.time_source == "internal":
            raise ValueError(f"pps_align={self.pps_align!r} needs a PPS input: set time_source: "
                             "external (or gpsdo), or pps_align: none for a standalone radio")
        if self.model in ("b200", "b210"):
            if not 70e6 <= self.center_freq_hz <= 6e9:
                raise ValueError("B2xx tunes 70 MHz..6 GHz")
            if not 0 <= self.tx_gain_db <= 89.75 or not 0 <= self.rx_gain_db <= 76:
                raise ValueError("B2xx gains: tx_gain_db 0..89.75 dB, rx_gain_db 0..76 dB")
            if self.sample_rate_hz > 61.44e6:
                raise ValueError("B2xx sample rate at most 61.44e6 S/s")
            max_ch = 2 if self.model == "b210" else 1
            if self.n_tx_channels > max_ch or self.n_rx_channels > max_ch:
                raise ValueError(f"{self.model} has {max_ch} RX/TX channel(s)")
        if self.model in ("x300", "x310"):
            if not 0 <= self.tx_gain_db <= 31.5 or not 0 <= self.rx_gain_db <= 31.5:
                raise ValueError("X3xx with UBX: tx_gain_db and rx_gain_db are 0..31.5 dB")
        return self


class SimRadioConfig(_RadioBase):
    """A simulated radio (built by `sim_backend`). ``params`` passes backend-specific settings
    (impairment preset, broker address, ...) through unvalidated; the sim backend checks them."""

    kind: Literal["sim"] = "sim"
    params: dict[str, Any] = Field(default_factory=dict)


RadioConfig = Annotated[Union[PlutoConfig, UsrpConfig, SimRadioConfig],
                        Field(discriminator="kind")]
RADIO_KINDS = ("pluto", "usrp", "sim")
