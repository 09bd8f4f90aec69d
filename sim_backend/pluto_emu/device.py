"""One emulated PlutoSDR: the context, the AD9361 attributes, the AXI cores (registers, DDS,
DMA buffers) and its port on the real-time air. Protocol-free: `sim_backend.pluto_emu.iiod`
serves it on TCP.

Level plan (air units, `sim_backend.realtime_air`): a DAC word of full scale (int16 32767,
of which the AD9363's 12-bit DAC takes the 12 MSBs) leaves the antenna at amplitude
10^(tx_gain_dB / 20); the ADC maps the antenna amplitude 10^(-rx_gain_dB / 20) to its full
scale (2048 counts, 12 bits, clipped at -2048..2047). The slow/fast attack AGC sets the RX
gain per block towards ``AGC_TARGET_DBFS`` (whole dB, in range).
"""
from __future__ import annotations

import errno
import math
import threading

import numpy as np

from sim_backend.pluto_emu.ad9361 import AD9361State, IIOErrno
from sim_backend.pluto_emu.context import PHY, RX_CORE, TX_CORE, Channel, Device, PlutoContext
from sim_backend.pluto_emu.dma import TX_LATENCY_SAMPLES, RxDma, TxDma
from sim_backend.realtime_air import AirRadio, LOParams, RealtimeAir

XFLOW_REG = 0x80000088
TX_UNDERFLOW_BIT = 0x1
RX_OVERFLOW_BIT = 0x4
ADC_FULL_SCALE = 2048
AGC_TARGET_DBFS = -12.0
AGC_MAX_STEP_DB = {"slow_attack": 3, "hybrid": 3, "fast_attack": 30}


class Buffer:
    """An open buffer of one client: the enabled scan channels and its DMA."""

    def __init__(self, dev: Device, samples: int, channels: list[Channel], cyclic: bool,
                 dma: RxDma | TxDma) -> None:
        self.dev = dev
        self.samples = int(samples)
        self.channels = channels
        self.cyclic = cyclic
        self.dma = dma

    @property
    def sample_size(self) -> int:
        return 2 * len(self.channels)


class EmulatedPluto:
    """A Pluto rev C on the air ``air`` (see the module docstring).

    name: radio name (serial, air port). mode: "1r1t" or "2r2t". compatible: firmware LO
    range ("ad9363" factory, "ad9361" needed for 2r2t). lo: the radio's TCXO and LO phase
    behaviour. loopback_cable_db: a TX->RX cable of that gain (dB, negative = loss) per
    channel pair, or None.
    """

    def __init__(self, air: RealtimeAir, name: str = "pluto", *, mode: str = "1r1t",
                 compatible: str | None = None, lo: LOParams | None = None,
                 loopback_cable_db: float | None = None, host: str = "127.0.0.1") -> None:
        self.name = name
        self.mode = mode
        self.n = 2 if mode == "2r2t" else 1
        compatible = compatible or ("ad9361" if mode == "2r2t" else "ad9363")
        self.ctx = PlutoContext(mode, name, host, extra_attrs={
            "emulated,time_scale": f"{air.time_scale:g}", "emulated,radio": name})
        self.port: AirRadio = air.attach_radio(name, self.n, self.n, lo)
        self.phy = AD9361State(self.n, compatible)
        self.lock = threading.RLock()
        self.kernel_buffers = {RX_CORE: 4, TX_CORE: 4}
        self.regs = {RX_CORE: {XFLOW_REG: 0}, TX_CORE: {XFLOW_REG: 0}}
        self.reg_addr = {RX_CORE: 0, TX_CORE: 0}
        self.dds: dict[str, dict[str, str]] = {}
        self.buffers: dict[str, Buffer] = {}
        self.phy.listeners.append(self._on_phy_change)
        for what in ("sample_rate", "rx_lo", "tx_lo", "tx_gain"):
            self._on_phy_change(what)
        if loopback_cable_db is not None:
            for ch in range(self.n):
                air.connect(self.port, ch, self.port, ch, gain_db=loopback_cable_db)

    # ------------------------------------------------------------------ AD9361 -> air
    def _on_phy_change(self, what: str) -> None:
        p = self.phy
        if what == "sample_rate":
            self.port.set_sample_rate(p.sample_rate)
        elif what == "rx_lo":
            self.port.tune_rx(p.rx_lo)
        elif what == "tx_lo":
            self.port.tune_tx(p.tx_lo)
        elif what == "tx_gain":
            for ch in range(self.n):
                self.port.set_tx_gain_db(ch, p.tx_gain_db(ch))

    # ------------------------------------------------------------------ attributes
    def read_attr(self, dev: Device, chan: Channel | None, attr: str, kind: str) -> str:
        """Value of an attribute (kind "dev", "debug", "buffer", or a channel's)."""
        with self.lock:
            if kind == "debug":
                return self._read_debug(dev, attr)
            if kind == "buffer":
                return "0"
            key = None if chan is None else (chan.id, chan.output)
            if dev.name == PHY:
                return self.phy.read(key, attr)
            if dev.name in (RX_CORE, TX_CORE) and chan is not None:
                return self._read_core(dev, chan, attr)
            return {"raw": "2500", "scale": "0.500000", "offset": "-2219",
                    "input": "32500"}.get(attr, "0")

    def write_attr(self, dev: Device, chan: Channel | None, attr: str, kind: str,
                   value: str) -> None:
        """Set an attribute; `IIOErrno` when the driver refuses the value."""
        value = value.rstrip("\0")
        with self.lock:
            if kind == "debug":
                return self._write_debug(dev, attr, value)
            if kind == "buffer":
                raise IIOErrno(errno.EACCES, f"{attr} is read-only")
            key = None if chan is None else (chan.id, chan.output)
            if dev.name == PHY:
                return self.phy.write(key, attr, value)
            if dev.name == TX_CORE and chan is not None and chan.id.startswith("altvoltage"):
                self.dds.setdefault(chan.id, {})[attr] = value.strip()
                return self._update_dds()
            if dev.name in (RX_CORE, TX_CORE):
                return None
            raise IIOErrno(errno.EACCES, f"{dev.name} {attr} is read-only")

    def _read_core(self, dev: Device, chan: Channel, attr: str) -> str:
        rate = self.phy.sample_rate
        if attr == "sampling_frequency":
            return str(rate)
        if attr == "sampling_frequency_available":
            return f"{rate} {rate // 8}"
        if chan.id.startswith("altvoltage"):
            default = {"frequency": "9279985", "scale": "0.250000", "phase": "90000",
                       "raw": "0"}
            return self.dds.get(chan.id, {}).get(attr, default.get(attr, "0"))
        return {"calibscale": "1.000000", "calibphase": "0.000000", "calibbias": "0",
                "samples_pps": "0"}.get(attr, "0")

    def _read_debug(self, dev: Device, attr: str) -> str:
        if dev.name == PHY and attr == "loopback":
            return str(self.phy.loopback)
        if attr == "direct_reg_access" and dev.name in self.regs:
            addr = self.reg_addr[dev.name]
            return f"0x{self._reg(dev.name, addr):X}"
        if attr == "pseudorandom_err_check":
            return "CH0 : PN9 : Out of Sync : PN Error\nCH1 : PN9 : Out of Sync : PN Error"
        return "0"

    def _write_debug(self, dev: Device, attr: str, value: str) -> None:
        if dev.name == PHY and attr == "loopback":
            return self.phy.write_loopback(value)
        if attr == "direct_reg_access" and dev.name in self.regs:
            words = value.split()
            try:
                nums = [int(w, 0) for w in words]
            except ValueError:
                raise IIOErrno(errno.EINVAL, f"bad register access {value!r}") from None
            if not 1 <= len(nums) <= 2:
                raise IIOErrno(errno.EINVAL, f"bad register access {value!r}")
            self.reg_addr[dev.name] = nums[0]
            if len(nums) == 2:
                if nums[0] == XFLOW_REG:           # write 1 to clear
                    self._poll_dma(dev.name)
                    self.regs[dev.name][XFLOW_REG] &= ~nums[1]
                else:
                    self.regs[dev.name][nums[0]] = nums[1]
            return None
        return None

    def _reg(self, core: str, addr: int) -> int:
        if addr == XFLOW_REG:
            self._poll_dma(core)
        return self.regs[core].get(addr, 0)

    def _poll_dma(self, core: str) -> None:
        buf = self.buffers.get(core)
        if buf is not None:
            buf.dma.poll()

    def _set_bit(self, core: str, bit: int) -> None:
        with self.lock:
            self.regs[core][XFLOW_REG] |= bit

    # ------------------------------------------------------------------ DDS
    def _update_dds(self) -> None:
        if TX_CORE in self.buffers:
            return                       # the DMA drives the DAC
        start = self.port.now() + TX_LATENCY_SAMPLES
        self.port.tx_cut(start)
        tones = self.dds
        enabled = any(v.get("raw", "0") not in ("0", "") for v in tones.values())
        if not enabled:
            return
        fs = self.phy.sample_rate
        length = 1 << 16
        t = np.arange(length) / fs
        out = np.zeros((self.n, length), np.complex128)
        for k in range(4 * self.n):
            st = tones.get(f"altvoltage{k}", {})
            f = float(st.get("frequency", "9279985"))
            scale = float(st.get("scale", "0.25"))
            phase = float(st.get("phase", "90000")) / 1000.0
            if scale == 0:
                continue
            # block length with a whole number of cycles of this tone (no wrap glitch)
            f = round(f * length / fs) * fs / length
            wave = scale * np.cos(2 * np.pi * f * t + math.radians(phase))
            ant, comp = divmod(k, 4)
            out[ant] += wave if comp < 2 else 1j * wave
        self.port.tx_repeat(out, start)

    # ------------------------------------------------------------------ buffers
    def open_buffer(self, dev: Device, samples: int, mask: str, cyclic: bool) -> Buffer:
        """OPEN: create the buffer (RX DMA starts now); EBUSY if one is open."""
        if dev.name not in (RX_CORE, TX_CORE):
            raise IIOErrno(errno.ENODEV, f"{dev.name} is not buffer capable")
        if len(mask) != dev.mask_words * 8:
            raise IIOErrno(errno.EINVAL, f"mask {mask!r} needs {dev.mask_words * 8} hex digits")
        try:
            bits = int(mask, 16)
        except ValueError:
            raise IIOErrno(errno.EINVAL, f"mask {mask!r} is not hex") from None
        chans = [c for i, c in enumerate(dev.channels) if bits >> i & 1 and c.is_scan]
        if not chans or samples <= 0:
            raise IIOErrno(errno.EINVAL, "no channel enabled or no samples")
        with self.lock:
            if dev.name in self.buffers:
                raise IIOErrno(errno.EBUSY, f"{dev.name} already has an open buffer")
            nblk = self.kernel_buffers[dev.name]
            if dev.name == RX_CORE:
                dma = RxDma(self.port, samples, nblk,
                            lambda: self._set_bit(RX_CORE, RX_OVERFLOW_BIT))
            else:
                self.port.tx_cut(self.port.now())     # DMA takes the DAC from the DDS
                dma = TxDma(self.port, samples, nblk, cyclic,
                            lambda: self._set_bit(TX_CORE, TX_UNDERFLOW_BIT))
            buf = Buffer(dev, samples, chans, cyclic, dma)
            self.buffers[dev.name] = buf
            return buf

    def close_buffer(self, buf: Buffer) -> None:
        """CLOSE: the DMA stops (TX: queued blocks are dropped)."""
        with self.lock:
            if self.buffers.get(buf.dev.name) is buf:
                del self.buffers[buf.dev.name]
            if isinstance(buf.dma, TxDma):
                buf.dma.close()
                self._update_dds()

    def set_kernel_buffers(self, dev: Device, count: int) -> None:
        """SET BUFFERS_COUNT: EBUSY while a buffer is open."""
        if count < 1:
            raise IIOErrno(errno.EINVAL, "kernel buffer count must be >= 1")
        with self.lock:
            if dev.name in self.buffers:
                raise IIOErrno(errno.EBUSY, "buffer enabled")
            if dev.name in self.kernel_buffers:
                self.kernel_buffers[dev.name] = int(count)

    def rx_block(self, buf: Buffer, start: int) -> bytes:
        """The interleaved int16 words of the RX block starting at sample ``start``."""
        n = buf.samples
        if self.phy.loopback == 1:      # FPGA digital loopback: the DAC's 12-bit words
            y = self.port.tx_raw(start, n) * ADC_FULL_SCALE
            codes = np.floor(y.real) + 1j * np.floor(y.imag)
        else:
            y = self.port.rx_pull(start, n)
            codes = np.empty_like(y)
            for ch in range(self.n):
                g = 10.0 ** (self.phy.effective_rx_gain_db(ch) / 20.0) * ADC_FULL_SCALE
                codes[ch] = np.round(y[ch].real * g) + 1j * np.round(y[ch].imag * g)
                self._agc(ch, y[ch])
        return _interleave(codes, buf.channels, n, lo=-ADC_FULL_SCALE, hi=ADC_FULL_SCALE - 1)

    def _agc(self, ch: int, y: np.ndarray) -> None:
        mode = self.phy.gain_mode[ch]
        if mode == "manual":
            return
        g = self.phy.agc_gain_db[ch]
        p = float(np.mean(y.real ** 2 + y.imag ** 2)) * 10 ** (g / 10) * ADC_FULL_SCALE ** 2
        level = 10 * math.log10(max(p, 1e-12) / ADC_FULL_SCALE ** 2)
        step = max(-AGC_MAX_STEP_DB[mode], min(AGC_MAX_STEP_DB[mode], AGC_TARGET_DBFS - level))
        lo, hi = self.phy.rx_gain_range()
        self.phy.agc_gain_db[ch] = int(max(lo, min(hi, round(g + step))))

    def tx_block(self, buf: Buffer, data: bytes) -> np.ndarray:
        """The DAC samples (n, K) (full scale 1.0, the 12 MSBs of each int16 word) of a
        pushed block."""
        words = np.frombuffer(data, dtype="<i2")
        k = words.size // len(buf.channels)
        words = words[:k * len(buf.channels)].reshape(k, len(buf.channels))
        dac = (words.astype(np.int32) >> 4) / ADC_FULL_SCALE
        out = np.zeros((self.n, k), np.complex128)
        for j, ch in enumerate(buf.channels):
            ant, comp = divmod(ch.index, 2)
            if ant < self.n:
                out[ant] += dac[:, j] if comp == 0 else 1j * dac[:, j]
        return out


def _interleave(codes: np.ndarray, channels: list[Channel], n: int, lo: int, hi: int) -> bytes:
    """(n_ant, n) complex integer codes -> the buffer bytes of the enabled channels."""
    out = np.empty((n, len(channels)), dtype="<i2")
    for j, ch in enumerate(channels):
        ant, comp = divmod(ch.index, 2)
        part = codes[ant].real if comp == 0 else codes[ant].imag
        out[:, j] = np.clip(part, lo, hi)
    return out.tobytes()
