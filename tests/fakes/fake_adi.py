"""Fakes of pyadi-iio's ``adi.Pluto`` (1R1T) and ``adi.ad9361`` (rev C 2R2T) that reproduce the
hardware behaviours of DESIGN.md section 5, so the driver can be tested without a radio:

* ``tx()`` casts I and Q with ``astype(int16)`` like pyadi-iio (values outside int16 wrap);
  the DAC keeps the 12 MSBs; a digital loopback feeds them to the ADC (code = int16 >> 4).
* TX buffer length is fixed by the first push; another length raises (pyadi's message).
* ``tx_cyclic_buffer`` cannot change, and a cyclic buffer cannot be pushed again, until
  ``tx_destroy_buffer()``.
* ``rx_hardwaregain_chanN`` is silently ignored unless ``gain_control_mode_chanN == 'manual'``
  (pyadi-iio's setter checks the mode and does nothing otherwise).
* After any configuration change the next ``kernel_buffers`` RX buffers are stale: they hold a
  marker (`STALE_CODE` DC) captured before the change, not the new stream.
* One ``sample_rate`` for RX and TX; the kernel rejects rates/LOs/gains out of range (OSError).
* Air time: the ADC captures continuously; reading late overflows (oldest data dropped, bit 2
  of register 0x80000088 on the RX core), a DAC running dry underflows (bit 0 on the TX core)
  and the TX stream slips. ``stall(n)`` models the host pausing for n samples.
"""
from __future__ import annotations

import errno
import time

import numpy as np

STALE_CODE = 1111          # DC level (both I and Q) of stale RX buffers
XFLOW_REG = 0x80000088


class FakeChannel:
    def __init__(self, cid: str, output: bool):
        self.id = cid
        self.output = output
        self.enabled = False


class FakeIIODevice:
    """The parts of ``iio.Device`` the driver touches: channels, status register, buffers."""

    def __init__(self, name: str, channel_ids: list[str], output: bool):
        self.name = name
        self._channels = [FakeChannel(c, output) for c in channel_ids]
        self.status = 0
        self.kernel_buffers = 4
        self.reg_access = True

    @property
    def channels(self):
        return list(self._channels)

    def find_channel(self, cid: str, output: bool = False):
        for ch in self._channels:
            if ch.id == cid:
                return ch
        return None

    def reg_read(self, reg: int) -> int:
        if not self.reg_access:
            raise OSError(errno.ENOSYS, "Function not implemented")
        return self.status if reg == XFLOW_REG else 0

    def reg_write(self, reg: int, value: int) -> None:
        if not self.reg_access:
            raise OSError(errno.ENOSYS, "Function not implemented")
        if reg == XFLOW_REG:
            self.status &= ~int(value)      # write-1-to-clear

    def set_kernel_buffers_count(self, count: int) -> None:
        self.kernel_buffers = int(count)


class FakeContext:
    def __init__(self, attrs: dict):
        self.attrs = dict(attrs)


class FakePluto:
    """Stand-in for ``adi.Pluto`` (AD9363, one RX and one TX)."""

    N_CHANNELS = 1
    LO_RANGE_HZ = (325e6, 3.8e9)

    def __init__(self, uri: str = "ip:192.168.2.1", *, loopback_delay: int = 0,
                 rx_channel_ids: list[str] | None = None, pace_s_per_sample: float = 0.0,
                 serial: str = "104473dc599300131200"
                 "2700d21a7fe7dc"):
        self.uri = uri
        n = self.N_CHANNELS
        ids = rx_channel_ids or [f"voltage{i}" for i in range(2 * n)]
        self._rxadc = FakeIIODevice("cf-ad9361-lpc", ids, False)
        self._txdac = FakeIIODevice("cf-ad9361-dds-core-lpc", ids, True)
        self.ctx = FakeContext({"hw_model": "Analog Devices PlutoSDR Rev.C (Z7010-AD9363A)",
                                "hw_serial": serial, "fw_version": "v0.38",
                                "ad9361-phy,model": "ad9361"})
        self.loopback_delay = int(loopback_delay)
        self.pace_s_per_sample = pace_s_per_sample   # >0: rx() blocks like a real ADC
        self.writes: list[tuple[str, object]] = []   # attribute write log, in order
        self._rate = 30_720_000
        self._lo = {"rx": 2_400_000_000, "tx": 2_450_000_000}
        self._bw = {"rx": 18_000_000, "tx": 18_000_000}
        self._gain_mode = ["slow_attack"] * n
        self._rx_gain = [71.0] * n
        self._tx_gain = [-10.0] * n
        self._rx_enabled = list(range(n))
        self._tx_enabled = list(range(n))
        self.rx_buffer_size = 1024
        self._cyclic = False
        self._txbuf = False
        self._rxbuf = False
        self._tx_len: int | None = None
        self.tx_push_count = 0
        self.tx_lengths: set[int] = set()
        # air-time model
        self._air = 0                 # ADC capture frontier, samples
        self._rx_read = 0             # next air sample rx() returns
        self._dac: list[tuple[int, np.ndarray]] = []
        self._dac_total = 0
        self._dac_anchor: int | None = None
        self._stale = 0

    # ---- configuration attributes (the kernel rejects out-of-range values with EINVAL)
    def _changed(self, name: str, value: object) -> None:
        self.writes.append((name, value))
        self._stale = self._rxadc.kernel_buffers

    @property
    def sample_rate(self):
        return self._rate

    @sample_rate.setter
    def sample_rate(self, rate):
        if rate < 521e3:
            raise ValueError("Error: Does not currently support sample rates below 521e3")
        if rate > 61.44e6:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._rate = int(rate)
        self._changed("sample_rate", rate)

    def _lo_set(self, which, value):
        if not isinstance(value, int):
            raise Exception("Value must be an int")
        if not self.LO_RANGE_HZ[0] <= value <= self.LO_RANGE_HZ[1]:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._lo[which] = value
        self._changed(f"{which}_lo", value)

    rx_lo = property(lambda s: s._lo["rx"], lambda s, v: s._lo_set("rx", v))
    tx_lo = property(lambda s: s._lo["tx"], lambda s, v: s._lo_set("tx", v))

    def _bw_set(self, which, value):
        if not isinstance(value, int):
            raise Exception("Value must be an int")
        self._bw[which] = value
        self._changed(f"{which}_rf_bandwidth", value)

    rx_rf_bandwidth = property(lambda s: s._bw["rx"], lambda s, v: s._bw_set("rx", v))
    tx_rf_bandwidth = property(lambda s: s._bw["tx"], lambda s, v: s._bw_set("tx", v))

    def _mode_get(self, ch):
        return self._gain_mode[ch]

    def _mode_set(self, ch, value):
        if value not in ("manual", "slow_attack", "fast_attack", "hybrid"):
            raise OSError(errno.EINVAL, "Invalid argument")
        self._gain_mode[ch] = value
        self._changed(f"gain_control_mode_chan{ch}", value)

    def _rxg_set(self, ch, value):
        if self._gain_mode[ch] != "manual":
            return                      # pyadi-iio: silently ignored outside manual mode
        if not isinstance(value, float):
            raise Exception("Value must be a float")
        if not -3.0 <= value <= 71.0:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._rx_gain[ch] = float(round(value))
        self._changed(f"rx_hardwaregain_chan{ch}", value)

    def _txg_set(self, ch, value):
        if not isinstance(value, float):
            raise Exception("Value must be a float")
        if not -89.75 <= value <= 0.0:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._tx_gain[ch] = round(value * 4) / 4
        self._changed(f"tx_hardwaregain_chan{ch}", value)

    gain_control_mode_chan0 = property(lambda s: s._mode_get(0), lambda s, v: s._mode_set(0, v))
    rx_hardwaregain_chan0 = property(lambda s: s._rx_gain[0], lambda s, v: s._rxg_set(0, v))
    tx_hardwaregain_chan0 = property(lambda s: s._tx_gain[0], lambda s, v: s._txg_set(0, v))

    @property
    def rx_enabled_channels(self):
        return self._rx_enabled

    @rx_enabled_channels.setter
    def rx_enabled_channels(self, value):
        if not value:
            raise Exception("rx_enabled_channels cannot be empty")
        if max(value) > self.N_CHANNELS - 1:
            raise Exception("RX mapping exceeds available channels")
        self._rx_enabled = list(value)

    @property
    def tx_enabled_channels(self):
        return self._tx_enabled

    @tx_enabled_channels.setter
    def tx_enabled_channels(self, value):
        if value and max(value) > self.N_CHANNELS - 1:
            raise Exception("TX mapping exceeds available channels")
        self._tx_enabled = list(value)

    @property
    def tx_cyclic_buffer(self):
        return self._cyclic

    @tx_cyclic_buffer.setter
    def tx_cyclic_buffer(self, value):
        if self._txbuf:
            raise Exception("TX buffer already created, buffer must be destroyed then "
                            "recreated to modify tx_cyclic_buffer")
        self._cyclic = bool(value)

    # ---- air-time model
    def _advance_air(self, to: int) -> None:
        if to <= self._air:
            return
        self._air = to
        if self._rxbuf:
            keep = self._rxadc.kernel_buffers * self.rx_buffer_size
            if self._air - self._rx_read > keep:     # nobody read in time: drop the oldest
                self._rx_read = self._air - keep
                self._rxadc.status |= 0x4

    def stall(self, n_samples: int) -> None:
        """The host stops reading/pushing for ``n_samples`` of air time."""
        self._advance_air(self._air + int(n_samples))

    def _dac_sample_block(self, t0: int, n: int) -> np.ndarray:
        """ADC codes of the digital loopback for air samples [t0, t0+n), per TX channel."""
        out = np.zeros((self.N_CHANNELS, n), dtype=np.complex128)
        if self._dac_anchor is None or not self._dac:
            return out
        j0 = t0 - self._dac_anchor - self.loopback_delay
        for start, block in self._dac:           # (DAC index of first sample, samples)
            lo, hi = max(j0, start), min(j0 + n, start + block.shape[1])
            if lo < hi:
                out[: block.shape[0], lo - j0:hi - j0] = block[:, lo - start:hi - start]
        # forget blocks that can no longer be played back
        self._dac = [(st, b) for st, b in self._dac if st + b.shape[1] > j0 - 1]
        codes = np.floor(out.real / 16) + 1j * np.floor(out.imag / 16)   # 12 MSBs of int16
        return np.clip(codes.real, -2048, 2047) + 1j * np.clip(codes.imag, -2048, 2047)

    # ---- buffers
    def rx(self):
        if not self._rxbuf:
            self._rxbuf = True
            self._rx_read = self._air
        n = self.rx_buffer_size
        nch = len(self._rx_enabled)
        if self._stale > 0:
            self._stale -= 1
            data = np.full((nch, n), STALE_CODE + 1j * STALE_CODE)
        else:
            if self.pace_s_per_sample:
                time.sleep(n * self.pace_s_per_sample)
            self._advance_air(self._rx_read + n)          # blocks until captured
            t0 = self._rx_read
            if self._txbuf and self._dac_anchor is not None:
                dac_end = self._dac_anchor + self._dac_total
                if dac_end < t0 + n:                       # DAC ran dry: underflow, slip
                    self._txdac.status |= 0x1
                    self._dac_anchor += t0 + n - dac_end
            data = self._dac_sample_block(t0, n)[self._rx_enabled]
            self._rx_read += n
        data = [d.astype(np.int16).astype(np.float64) for d in (data.real, data.imag)]
        cplx = data[0] + 1j * data[1]
        return cplx[0] if nch == 1 else [cplx[i] for i in range(nch)]

    def tx(self, data_np=None):
        if self._txbuf and self._cyclic:
            raise Exception("TX buffer has been submitted in cyclic mode. To push more data "
                            "the tx buffer must be destroyed first.")
        chans = [data_np] if len(self._tx_enabled) == 1 else list(data_np)
        if len(chans) != len(self._tx_enabled):
            raise Exception("Not enough data provided for channel mapping")
        block = np.stack([np.asarray(c).real.astype(np.int16).astype(np.float64)
                          + 1j * np.asarray(c).imag.astype(np.int16).astype(np.float64)
                          for c in chans])
        if not self._txbuf:
            self._txbuf = True
            self._tx_len = block.shape[1]
            self._dac, self._dac_total = [], 0
            self._dac_anchor = self._air
        if block.shape[1] != self._tx_len:
            raise Exception("Buffer length different than data length. Cannot change "
                            "buffer length on the fly")
        full = np.zeros((self.N_CHANNELS, block.shape[1]), dtype=np.complex128)
        full[self._tx_enabled] = block
        queued = self._dac_anchor + self._dac_total - self._air
        limit = self._txdac.kernel_buffers * self._tx_len
        if queued + block.shape[1] > limit:                # push blocks until a buffer drains
            self._advance_air(self._air + queued + block.shape[1] - limit)
        self._dac.append((self._dac_total, full))
        self._dac_total += block.shape[1]
        self.tx_lengths.add(block.shape[1])
        self.tx_push_count += 1

    def tx_destroy_buffer(self):
        self._txbuf = False
        self._tx_len = None
        self._dac_anchor = None

    def rx_destroy_buffer(self):
        self._rxbuf = False

    def close(self):
        self.ctx = None


class FakeAd9361(FakePluto):
    """Stand-in for ``adi.ad9361`` on a rev C Pluto in 2R2T mode (two RX, two TX).
    ``firmware_2r2t=False`` models a Pluto whose u-boot env was not changed: the DMA cores
    then expose only voltage0/voltage1."""

    N_CHANNELS = 2
    LO_RANGE_HZ = (70e6, 6.0e9)

    def __init__(self, uri: str = "ip:192.168.2.1", *, firmware_2r2t: bool = True, **kw):
        ids = None if firmware_2r2t else ["voltage0", "voltage1"]
        super().__init__(uri, rx_channel_ids=ids, **kw)

    gain_control_mode_chan1 = property(lambda s: s._mode_get(1), lambda s, v: s._mode_set(1, v))
    rx_hardwaregain_chan1 = property(lambda s: s._rx_gain[1], lambda s, v: s._rxg_set(1, v))
    tx_hardwaregain_chan1 = property(lambda s: s._tx_gain[1], lambda s, v: s._txg_set(1, v))
