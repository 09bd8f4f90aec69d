"""A fake ``uhd`` module (``fake_uhd.usrp.MultiUSRP``, ``fake_uhd.types.*``) with the behaviours
of DESIGN.md section 5 for the USRP:

* device time advances with the samples the device streams (and `FakeDevice.advance`);
* a TX burst plays at its ``time_spec`` only if ``has_time_spec`` is set; without it the burst
  plays "now" (wherever the device time happens to be) — the driver must always set it;
* a burst whose time is already past when it reaches the device is dropped and reported as an
  async ``time_error``; ``FakeDevice.send_latency_s`` models the host-to-device delay;
* ``FakeDevice.underflow_next`` / ``overflow_next`` make the next burst / receive report an
  underflow (async message) / overflow (RX metadata), as a slow host would;
* a ``num_done`` RX command at a past time returns ``late``; no command returns ``timeout``;
* the LO phase is random after every tune (AD9361-based B2xx), seen in the loopback;
* ``set_time_next_pps`` latches at the next whole second, ``set_time_unknown_pps`` too;
* an external clock source without a reference cable reports ``ref_locked`` = False.
Received samples are the sum of the TX bursts (digital loopback, gain 1) times the tune phase.
"""
from __future__ import annotations

import math
import time
import types as _pytypes

import numpy as np

# UHD's value types as the emulated USRP's client module has them (same names and values)
from sim_backend.usrp_emu.uhd_api import (RXMetadata, RXMetadataErrorCode, StreamCMD,
                                          StreamMode, TimeSpec, TuneRequest,
                                          TXAsyncMetadata, TXMetadata, TXMetadataEventCode)


class SensorValue:
    def __init__(self, name, value: bool):
        self.name, self.value = name, value

    def to_bool(self) -> bool:
        return bool(self.value)


class StreamArgs:
    def __init__(self, cpu: str, otw: str):
        self.cpu_format, self.otw_format = cpu, otw
        self.channels = [0]
        self.args = ""


class FakeDevice:
    """The shared state behind the fake MultiUSRP (one per 'plugged-in' radio)."""

    def __init__(self, serial: str = "31F2A5B", n_channels: int = 2, seed: int = 0,
                 ref_present: bool = True, paced: bool = False):
        # paced: the device time follows the wall clock and a timed RX returns only once its
        # samples have been captured, as on hardware (for tests with roles in threads)
        self.paced = paced
        self._wall0 = time.monotonic()
        self.serial = serial
        self.n_channels = n_channels
        self.ref_present = ref_present
        self.rng = np.random.default_rng(seed)
        self.time_s = 12.345          # arbitrary power-on time, not PPS aligned
        self.send_latency_s = 0.0
        self.underflow_next = False
        self.overflow_next = False
        self.bursts: list[tuple[float, np.ndarray, bool]] = []   # (start s, data, timed)
        self.rate = 1e6
        self.phase = np.zeros(n_channels)
        self.clock_source = "internal"
        self.time_source = "internal"
        self.tunes = 0
        self.pending_pps: float | None = None

    @property
    def time_s(self) -> float:
        return self._time_s + (time.monotonic() - self._wall0 if self.paced else 0.0)

    @time_s.setter
    def time_s(self, value: float) -> None:
        self._time_s = value - (time.monotonic() - self._wall0 if self.paced else 0.0)

    def advance(self, seconds: float) -> None:
        if self.paced:
            time.sleep(max(seconds, 0.0))
            seconds = 0.0
        t_new = self.time_s + seconds
        if self.pending_pps is not None and math.floor(t_new) > math.floor(self.time_s):
            # time latched at the first PPS edge after the request
            edge = math.floor(self.time_s) + 1
            t_new = self.pending_pps + (t_new - edge)
            self.pending_pps = None
        self.time_s = t_new

    def air(self, t0: float, n: int, n_rx: int) -> np.ndarray:
        out = np.zeros((n_rx, n), dtype=np.complex64)
        k0 = int(round(t0 * self.rate))
        for start, data, _ in self.bursts:
            b0 = int(round(start * self.rate))
            lo, hi = max(b0, k0), min(b0 + data.shape[1], k0 + n)
            if lo < hi:
                m = min(n_rx, data.shape[0])
                out[:m, lo - k0:hi - k0] += data[:m, lo - b0:hi - b0]
        return out * np.exp(1j * self.phase[:n_rx, None]).astype(np.complex64)


class _TxStreamer:
    def __init__(self, dev: FakeDevice, nch: int):
        self.dev, self.nch = dev, nch
        self.async_msgs: list[TXMetadataEventCode] = []

    def get_max_num_samps(self) -> int:
        return 2000

    def get_num_channels(self) -> int:
        return self.nch

    def send(self, data, md, timeout=0.1) -> int:
        data = np.atleast_2d(np.asarray(data))
        dev = self.dev
        dev.advance(dev.send_latency_s)
        start = md.time_spec.get_real_secs() if md.has_time_spec else dev.time_s
        if md.has_time_spec and start < dev.time_s:
            self.async_msgs.append(TXMetadataEventCode.time_error)
            return data.shape[1]
        if dev.underflow_next:
            dev.underflow_next = False
            self.async_msgs.append(TXMetadataEventCode.underflow)
        dev.bursts.append((start, data.copy(), bool(md.has_time_spec)))
        if md.end_of_burst:
            self.async_msgs.append(TXMetadataEventCode.burst_ack)
        return data.shape[1]

    def recv_async_msg(self, md, timeout=0.1) -> bool:
        if not self.async_msgs:
            return False
        md.event_code = self.async_msgs.pop(0)
        return True


class _RxStreamer:
    def __init__(self, dev: FakeDevice, nch: int):
        self.dev, self.nch = dev, nch
        self.cmd: StreamCMD | None = None
        self.left = 0
        self.next_t = 0.0

    def get_max_num_samps(self) -> int:
        return 1000

    def get_num_channels(self) -> int:
        return self.nch

    def issue_stream_cmd(self, cmd: StreamCMD) -> None:
        self.cmd = cmd
        self.left = cmd.num_samps
        self.next_t = self.dev.time_s if cmd.stream_now else cmd.time_spec.get_real_secs()
        self.first = True

    def recv(self, buf, md, timeout=0.1) -> int:
        dev = self.dev
        if self.cmd is None or self.left <= 0:
            md.error_code = RXMetadataErrorCode.timeout
            return 0
        if self.first and not self.cmd.stream_now and self.next_t < dev.time_s:
            md.error_code = RXMetadataErrorCode.late
            self.cmd = None
            return 0
        if dev.overflow_next:
            dev.overflow_next = False
            md.error_code = RXMetadataErrorCode.overflow
            return 0
        n = min(buf.shape[-1], self.left)
        if dev.paced:                 # the samples exist only once the ADC has captured them
            time.sleep(max(self.next_t + n / dev.rate - dev.time_s, 0.0))
        block = dev.air(self.next_t, n, self.nch)
        if buf.ndim == 1:
            buf[:n] = block[0]
        else:
            buf[:, :n] = block
        md.error_code = RXMetadataErrorCode.none
        md.has_time_spec = True
        md.time_spec = TimeSpec(self.next_t)
        self.first = False
        self.next_t += n / dev.rate
        self.left -= n
        if not dev.paced:
            dev.advance(max(self.next_t - dev.time_s, 0.0))
        return n


class MultiUSRP:
    """Fake ``uhd.usrp.MultiUSRP``: opens the registered `FakeDevice` whose serial matches
    ``serial=`` in the args (or the first one); none registered -> RuntimeError like UHD."""

    registry: list[FakeDevice] = []

    def __init__(self, args: str = ""):
        kv = dict(p.split("=", 1) for p in args.split(",") if "=" in p)
        found = [d for d in self.registry if kv.get("serial") in (None, d.serial)]
        if not found:
            raise RuntimeError(f"LookupError: KeyError: No devices found for ----->\n"
                               f"Device Address:\n    {args}")
        self.dev = found[0]

    def get_num_mboards(self):
        return 1

    def set_clock_source(self, src, mboard=0):
        if src not in ("internal", "external", "gpsdo", "mimo"):
            raise RuntimeError(f"ValueError: invalid clock source {src}")
        self.dev.clock_source = src

    def set_time_source(self, src, mboard=0):
        if src not in ("internal", "external", "gpsdo", "mimo"):
            raise RuntimeError(f"ValueError: invalid time source {src}")
        self.dev.time_source = src

    def set_master_clock_rate(self, rate, mboard=0):
        self.mcr = rate

    def get_mboard_sensor_names(self, mboard=0):
        return ["ref_locked", "temp"]

    def get_mboard_sensor(self, name, mboard=0):
        if name == "ref_locked":
            ok = self.dev.clock_source == "internal" or self.dev.ref_present
            return SensorValue(name, ok)
        raise RuntimeError(f"no sensor {name}")

    def get_time_now(self, mboard=0):
        return TimeSpec(self.dev.time_s)

    def get_time_last_pps(self, mboard=0):
        return TimeSpec(float(math.floor(self.dev.time_s)))

    def set_time_now(self, ts, mboard=0):
        self.dev.time_s = ts.get_real_secs()

    def set_time_next_pps(self, ts, mboard=0):
        self.dev.pending_pps = ts.get_real_secs()

    def set_time_unknown_pps(self, ts):
        # waits for one edge, then latches at the following one
        d = self.dev
        d.time_s = float(math.floor(d.time_s) + 1)
        d.pending_pps = ts.get_real_secs()
        d.advance(1.0)

    def set_tx_rate(self, rate, chan=0):
        self.dev.rate = float(rate)

    set_rx_rate = set_tx_rate

    def get_tx_rate(self, chan=0):
        return self.dev.rate

    get_rx_rate = get_tx_rate

    def _tune(self, req, chan):
        self.dev.freq = req.target_freq
        self.dev.phase[chan] = self.dev.rng.uniform(-np.pi, np.pi)
        self.dev.tunes += 1

    def set_tx_freq(self, req, chan=0):
        self._tune(req, chan)

    def set_rx_freq(self, req, chan=0):
        self._tune(req, chan)

    def get_rx_freq(self, chan=0):
        return self.dev.freq

    def set_tx_gain(self, g, chan=0):
        self.tx_gain = g

    def set_rx_gain(self, g, chan=0):
        self.rx_gain = g

    def set_rx_agc(self, enable, chan=0):
        self.agc = enable

    def set_tx_bandwidth(self, bw, chan=0):
        self.tx_bw = bw

    def set_rx_bandwidth(self, bw, chan=0):
        self.rx_bw = bw

    def set_tx_antenna(self, a, chan=0):
        self.tx_ant = a

    def set_rx_antenna(self, a, chan=0):
        self.rx_ant = a

    def get_tx_stream(self, args):
        self.tx_streamer = _TxStreamer(self.dev, len(args.channels))
        return self.tx_streamer

    def get_rx_stream(self, args):
        self.rx_streamer = _RxStreamer(self.dev, len(args.channels))
        return self.rx_streamer

    def get_usrp_rx_info(self, chan=0):
        return {"mboard_id": "B210", "mboard_serial": self.dev.serial,
                "rx_subdev_name": "FE-RX2"}


def make_fake_uhd(*devices: FakeDevice):
    """A module-like namespace with the names the driver uses; ``devices`` are 'plugged in'."""
    usrp_cls = type("MultiUSRP", (MultiUSRP,), {"registry": list(devices)})
    types_ns = _pytypes.SimpleNamespace(
        TimeSpec=TimeSpec, TXMetadata=TXMetadata, RXMetadata=RXMetadata,
        TXAsyncMetadata=TXAsyncMetadata, StreamCMD=StreamCMD, StreamMode=StreamMode,
        TuneRequest=TuneRequest, TXMetadataEventCode=TXMetadataEventCode,
        RXMetadataErrorCode=RXMetadataErrorCode)
    usrp_ns = _pytypes.SimpleNamespace(MultiUSRP=usrp_cls, StreamArgs=StreamArgs)
    return _pytypes.SimpleNamespace(
        usrp=usrp_ns, types=types_ns,
        find=lambda hint="": [{"type": "b200", "serial": d.serial, "product": "B210"}
                              for d in devices])
