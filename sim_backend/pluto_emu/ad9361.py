"""The AD9361 driver's attributes as the Linux driver (``drivers/iio/adc/ad9361.c``) shows
them: ranges, rounding, errno on a bad value. Pure state, no I/O.

* LOs (``altvoltage0`` RX_LO / ``altvoltage1`` TX_LO ``frequency``, Hz): the fractional-N RF
  PLL. The VCO runs at f 2^(d+1) in 6..12 GHz; its integer/fraction words against the
  reference (modulus 8388593) are rounded and the read back frequency is what they give, so a
  written value comes back within ~1 Hz. Range by firmware: AD9363 (factory Pluto) 325 MHz to
  3.8 GHz, AD9361/AD9364 (``compatible``) 70 MHz to 6 GHz; outside: EINVAL.
* Sample rate (``voltage0`` ``sampling_frequency``, RX and TX share it): 2083333..61440000 S/s,
  down to 520833 S/s only with the decimate-by-4 FIR enabled (``voltage_filter_fir_en`` of
  channel ``out``, after a ``filter_fir_config`` with ``DEC 4``), which is what pyadi-iio's
  setter does; the baseband PLL (modulus 2088960) rounds it.
* RF bandwidth: RX 200 kHz..56 MHz, TX 200 kHz..40 MHz.
* Gain control ``manual fast_attack slow_attack hybrid``; RX ``hardwaregain`` in whole dB,
  -3..71 dB (62 dB above 4 GHz), written values only take effect in manual mode (otherwise the
  AGC's gain reads back); TX ``hardwaregain`` -89.75..0 dB in 0.25 dB steps.
* ``loopback`` debug attribute: 0 off, 1 digital TX->RX (FPGA), 2 RF RX->TX.
"""
from __future__ import annotations

import errno
import math
import re

RFPLL_MODULUS = 8388593
BBPLL_MODULUS = 2088960
MIN_VCO_HZ = 6_000_000_000
LO_RANGE_HZ = {"ad9363": (325_000_000, 3_800_000_000), "ad9364": (70_000_000, 6_000_000_000),
               "ad9361": (70_000_000, 6_000_000_000)}
RATE_RANGE = (2_083_333, 61_440_000)
RATE_MIN_FIR = {4: 520_833, 2: 1_041_666, 1: 2_083_333}
RX_BW_RANGE = (200_000, 56_000_000)
TX_BW_RANGE = (200_000, 40_000_000)
GAIN_MODES = ("manual", "fast_attack", "slow_attack", "hybrid")
XO_HZ = 40_000_042            # this Pluto's xo_correction (context attribute)


class IIOErrno(Exception):
    """An attribute access the kernel refuses: carries the errno iiod sends back (negated)."""

    def __init__(self, err: int, why: str = ""):
        super().__init__(f"{errno.errorcode.get(err, err)}: {why}")
        self.errno = err


def _int(value: str) -> int:
    try:
        return int(float(value.strip().split()[0]))
    except (ValueError, IndexError):
        raise IIOErrno(errno.EINVAL, f"not a number: {value!r}") from None


def _float(value: str) -> float:
    try:
        return float(value.strip().split()[0])
    except (ValueError, IndexError):
        raise IIOErrno(errno.EINVAL, f"not a number: {value!r}") from None


def rfpll_round(freq_hz: int, ref_hz: int = XO_HZ) -> int:
    """The LO frequency (Hz) the RF PLL gives for a request of ``freq_hz`` (Hz)."""
    vco, div = int(freq_hz), -1
    while vco <= MIN_VCO_HZ:
        vco <<= 1
        div += 1
    integer, rem = divmod(vco, ref_hz)
    fract = (rem * RFPLL_MODULUS + ref_hz // 2) // ref_hz
    rate = ref_hz * fract // RFPLL_MODULUS + ref_hz * integer
    return rate >> (div + 1)


def bbpll_round(rate: int, ref_hz: int = XO_HZ) -> tuple[int, int]:
    """(sample rate read back, BBPLL Hz) for a requested sample rate (S/s): the BBPLL runs at
    rate x 2^m in 715..1430 MHz, its fraction rounded to the modulus."""
    mult = 1
    while rate * mult < 715_000_000:
        mult <<= 1
    target = rate * mult
    integer, rem = divmod(target, ref_hz)
    fract = round(rem * BBPLL_MODULUS / ref_hz)
    bbpll = ref_hz * integer + ref_hz * fract / BBPLL_MODULUS
    return int(round(bbpll / mult)), int(round(bbpll))


class AD9361State:
    """Attribute state of ``ad9361-phy`` (see the module docstring).

    n_channels: 1 (1R1T) or 2 (2R2T). compatible: "ad9363" / "ad9364" / "ad9361".
    """

    def __init__(self, n_channels: int = 1, compatible: str = "ad9363",
                 initial_rate: int = 1_000_000) -> None:
        self.n = n_channels
        self.compatible = compatible
        self.lo_range = LO_RANGE_HZ[compatible]
        self.rx_lo = rfpll_round(2_400_000_000)
        self.tx_lo = rfpll_round(2_450_000_000)
        # boots at 1 MS/s with pyadi-iio's decimate-by-4 FIR (the firmware boots at 30.72
        # MS/s; 1 MS/s keeps a client that reads without configuring cheap to emulate)
        self.fir_dec = 4
        self.fir_config = "FIR Rx: 128,4 Tx: 128,4"
        self.fir_enabled = True
        self.sample_rate, self.bbpll = bbpll_round(initial_rate)
        self.rx_bw = 18_000_000
        self.tx_bw = 18_000_000
        self.gain_mode = ["slow_attack"] * n_channels
        self.rx_gain_db = [71] * n_channels          # the manual value
        self.agc_gain_db = [71] * n_channels         # what the AGC currently applies
        self.tx_atten_mdb = [10_000] * n_channels    # -10 dB
        self.loopback = 0
        self.other: dict[str, str] = {}
        self.listeners: list = []                    # callables(name) on a change

    # ------------------------------------------------------------------ derived values
    def rx_gain_range(self) -> tuple[int, int]:
        return (-10, 62) if self.rx_lo > 4_000_000_000 else (-3, 71)

    def effective_rx_gain_db(self, ch: int) -> float:
        """The gain (dB) the RX chain applies now: the manual value or the AGC's."""
        return self.rx_gain_db[ch] if self.gain_mode[ch] == "manual" else self.agc_gain_db[ch]

    def tx_gain_db(self, ch: int) -> float:
        return -self.tx_atten_mdb[ch] / 1000.0

    def rate_min(self) -> int:
        return RATE_MIN_FIR.get(self.fir_dec, RATE_RANGE[0]) if self.fir_enabled \
            else RATE_RANGE[0]

    def path_rates(self, tx: bool) -> str:
        r = self.sample_rate
        f = self.fir_dec if self.fir_enabled else 1
        if tx:
            return (f"BBPLL:{self.bbpll} DAC:{r * f * 8} T2:{r * f * 4} T1:{r * f * 2} "
                    f"TF:{r * f} TXSAMP:{r}")
        return (f"BBPLL:{self.bbpll} ADC:{r * f * 16} R2:{r * f * 4} R1:{r * f * 2} "
                f"RF:{r * f} RXSAMP:{r}")

    def _changed(self, what: str) -> None:
        for fn in self.listeners:
            fn(what)

    # ------------------------------------------------------------------ attribute I/O
    def read(self, chan: tuple[str, bool] | None, attr: str) -> str:
        """Value of a device attribute (chan None) or channel attribute (id, output)."""
        if chan is None:
            return self._read_dev(attr)
        cid, out = chan
        if cid in ("altvoltage0", "altvoltage1"):
            lo = self.rx_lo if cid == "altvoltage0" else self.tx_lo
            return {"frequency": str(lo),
                    "frequency_available": "[{} 1 {}]".format(*self.lo_range)}.get(attr, "0")
        if cid == "out" and attr == "voltage_filter_fir_en":
            return "1" if self.fir_enabled else "0"
        if cid in ("voltage0", "voltage1") and int(cid[-1]) < self.n:
            return self._read_path(int(cid[-1]), out, attr)
        if cid == "temp0":
            return "32500"
        return self.other.get(f"{cid}/{out}/{attr}", "0")

    def _read_path(self, ch: int, out: bool, attr: str) -> str:
        if attr == "sampling_frequency":
            return str(self.sample_rate)
        if attr == "sampling_frequency_available":
            return f"[{self.rate_min()} 1 {RATE_RANGE[1]}]"
        if attr == "rf_bandwidth":
            return str(self.tx_bw if out else self.rx_bw)
        if attr == "rf_bandwidth_available":
            return "[{} 1 {}]".format(*(TX_BW_RANGE if out else RX_BW_RANGE))
        if attr == "filter_fir_en":
            return "1" if self.fir_enabled else "0"
        if out:
            if attr == "hardwaregain":
                return f"{self.tx_gain_db(ch):.6f} dB"
            if attr == "hardwaregain_available":
                return "[0 250 89750]"
            if attr == "rf_port_select":
                return "A"
            if attr == "rf_port_select_available":
                return "A B"
            if attr == "rssi":
                return "0.00 dB"
        else:
            if attr == "hardwaregain":
                return f"{self.effective_rx_gain_db(ch):.6f} dB"
            if attr == "hardwaregain_available":
                return "[{} 1 {}]".format(*self.rx_gain_range())
            if attr == "gain_control_mode":
                return self.gain_mode[ch]
            if attr == "gain_control_mode_available":
                return " ".join(GAIN_MODES)
            if attr == "rf_port_select":
                return "A_BALANCED"
            if attr == "rf_port_select_available":
                return ("A_BALANCED B_BALANCED C_BALANCED A_N A_P B_N B_P C_N C_P "
                        "TX_MONITOR1 TX_MONITOR2 TX_MONITOR1_2")
            if attr == "rssi":
                return "100.25 dB"
            if attr.endswith("tracking_en"):
                return "1"
        return "0"

    def _read_dev(self, attr: str) -> str:
        fixed = {
            "rx_path_rates": self.path_rates(False), "tx_path_rates": self.path_rates(True),
            "filter_fir_config": self.fir_config, "xo_correction": str(XO_HZ),
            "xo_correction_available": "[39992000 1 40008000]",
            "ensm_mode": "fdd", "ensm_mode_available": "sleep wait alert fdd pinctrl "
                                                       "pinctrl_fdd_indep",
            "calib_mode": "auto", "calib_mode_available": "auto manual manual_tx_quad "
                                                          "tx_quad rf_dc_offs rssi_gain_step",
            "trx_rate_governor": "nominal", "trx_rate_governor_available": "nominal highest_osr",
            "dcxo_tune_coarse": "0", "dcxo_tune_fine": "0",
            "dcxo_tune_coarse_available": "[0 0 0]", "dcxo_tune_fine_available": "[0 0 0]",
            "rssi_gain_step_error": "lna_error: 0 0 0 0\nmixer_error: 0 0 0 0 0 0 0 0 0 0 0 0 "
                                    "0 0 0\ngain_step_calib_reg_val: 0 0 0 0 0",
            "gain_table_config": "<gaintable AD9361 type=FULL dest=3 start=0 end=1300000000>",
        }
        if attr == "multichip_sync":
            raise IIOErrno(errno.EACCES, "write-only attribute")
        return self.other.get(attr, fixed.get(attr, "0"))

    def write(self, chan: tuple[str, bool] | None, attr: str, value: str) -> None:
        """Set an attribute; `IIOErrno` (EINVAL) for a value the driver refuses."""
        if chan is None:
            return self._write_dev(attr, value)
        cid, out = chan
        if cid in ("altvoltage0", "altvoltage1") and attr == "frequency":
            f = _int(value)
            lo, hi = self.lo_range
            if not lo <= f <= hi:
                raise IIOErrno(errno.EINVAL, f"LO {f} Hz outside {lo}..{hi}")
            if cid == "altvoltage0":
                self.rx_lo = rfpll_round(f)
            else:
                self.tx_lo = rfpll_round(f)
            self._changed("rx_lo" if cid == "altvoltage0" else "tx_lo")
            return
        if cid == "out" and attr == "voltage_filter_fir_en":
            enable = _int(value) != 0
            if not enable and self.sample_rate < RATE_RANGE[0]:
                raise IIOErrno(errno.EINVAL, "rate below 2.08 MS/s needs the FIR")
            self.fir_enabled = enable
            return
        if cid in ("voltage0", "voltage1") and int(cid[-1]) < self.n:
            return self._write_path(int(cid[-1]), out, attr, value)
        self.other[f"{cid}/{out}/{attr}"] = value.strip()

    def _write_path(self, ch: int, out: bool, attr: str, value: str) -> None:
        if attr == "sampling_frequency":
            rate = _int(value)
            if not self.rate_min() <= rate <= RATE_RANGE[1]:
                raise IIOErrno(errno.EINVAL, f"rate {rate} outside {self.rate_min()}.."
                                             f"{RATE_RANGE[1]}")
            self.sample_rate, self.bbpll = bbpll_round(rate)
            self._changed("sample_rate")
        elif attr == "rf_bandwidth":
            bw = _int(value)
            lo, hi = TX_BW_RANGE if out else RX_BW_RANGE
            if not lo <= bw <= hi:
                raise IIOErrno(errno.EINVAL, f"bandwidth {bw} outside {lo}..{hi}")
            if out:
                self.tx_bw = bw
            else:
                self.rx_bw = bw
        elif attr == "hardwaregain" and out:
            mdb = -_float(value) * 1000.0
            if not 0 <= mdb <= 89_750:
                raise IIOErrno(errno.EINVAL, f"TX gain {value!r} outside -89.75..0 dB")
            self.tx_atten_mdb[ch] = int(round(mdb / 250.0)) * 250
            self._changed("tx_gain")
        elif attr == "hardwaregain":
            g = math.trunc(_float(value))
            lo, hi = self.rx_gain_range()
            if not lo <= g <= hi:
                raise IIOErrno(errno.EINVAL, f"RX gain {g} outside {lo}..{hi} dB")
            if self.gain_mode[ch] == "manual":
                self.rx_gain_db[ch] = g
        elif attr == "gain_control_mode":
            mode = value.strip()
            if mode not in GAIN_MODES:
                raise IIOErrno(errno.EINVAL, f"gain mode {mode!r} not in {GAIN_MODES}")
            if mode == "manual" and self.gain_mode[ch] != "manual":
                self.rx_gain_db[ch] = int(self.agc_gain_db[ch])   # the AGC's gain stays
            self.gain_mode[ch] = mode
        elif attr in ("filter_fir_en",):
            self.fir_enabled = _int(value) != 0
        else:
            self.other[f"voltage{ch}/{out}/{attr}"] = value.strip()

    def _write_dev(self, attr: str, value: str) -> None:
        if attr == "filter_fir_config":
            m = re.search(r"DEC\s+(\d+)", value)
            self.fir_dec = int(m.group(1)) if m else 1
            self.fir_config = value.strip("\0\n ")
            return
        if attr in ("rx_path_rates", "tx_path_rates") or attr.endswith("_available"):
            raise IIOErrno(errno.EACCES, f"{attr} is read-only")
        self.other[attr] = value.strip("\0\n ")

    def write_loopback(self, value: str) -> None:
        """The ``loopback`` debug attribute: 0, 1 (digital TX->RX) or 2 (RF RX->TX)."""
        v = _int(value)
        if v not in (0, 1, 2):
            raise IIOErrno(errno.EINVAL, f"loopback must be 0, 1 or 2, got {v}")
        self.loopback = v
