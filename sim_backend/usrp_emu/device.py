"""One emulated USRP motherboard on the real-time air: device time, PPS, timed TX/RX streams.

Protocol-free (`sim_backend.usrp_emu.server` serves it on TCP). Times are device seconds;
``tick`` means a device sample index at the current sample rate ``fs`` (device time
``tick / fs``).

* **Clock**: the radio's own TCXO (its `LOParams.ppm`) with ``clock_source`` internal, or the
  shared 10 MHz (ppm 0: every locked USRP on one air runs at the same rate, no CFO between
  them) with external/gpsdo when a reference is cabled (``ref_present``); ``ref_locked``
  says which. Sample rates are the master clock rate over an integer (X3xx: 200 MHz).
* **Device time**: arbitrary at power-on (each device its own). `set_time_now` sets it at
  once; `set_time_next_pps` at the next PPS edge; `set_time_unknown_pps` waits for an edge and
  latches at the one after it (as UHD does). The PPS of time_source external/gpsdo is the
  air's shared `PpsSource` (every emulated USRP of the air sees the same edges, an
  OctoClock); internal is the device's own free-running PPS (its own phase and TCXO). A
  latch puts a sample exactly on the edge: devices latched on one edge share their sample
  grid.
* **TX** (`TxStream`): a burst starts at its ``time_spec`` (or ``TX_LATENCY_TICKS`` after it
  arrives without one); continuation packets follow back to back. A burst whose time has
  passed when it arrives is dropped whole and reported as ``time_error`` (its time_spec is the
  device time of arrival: how late it was). Data that arrives after the burst's end passed,
  or a burst left open without ``end_of_burst``, underflows (``underflow``, the rest plays
  late). ``burst_ack`` comes when an ended burst has played.
* **RX** (`RxStream`): stream commands (num_done, num_more, start_cont, stop_cont) at a device
  time or now; a command whose time has passed when it arrives reports ``late``; samples the
  host has not read ``rx_buffer_ticks`` after they were taken overflow (``overflow``; a
  finite command ends, a continuous stream resumes at the current time).
* **Levels** (air units, `sim_backend.realtime_air`): a full-scale sample (|I|, |Q| <= 1) at
  the maximum TX gain leaves at amplitude 1.0 (TX gain g dB: 10^((g - g_max) / 20)); RX gain g
  dB maps the antenna amplitude 10^(-g / 20) to full scale 1.0 (14-bit ADC, clipped).
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass

import numpy as np

from sim_backend.realtime_air import AirRadio, LOParams, RealtimeAir

#: Ticks between a TX packet's arrival and the DAC (FIFO), and for an RX "now" command.
TX_LATENCY_TICKS = 64
RX_CMD_LATENCY_TICKS = 64
ADC_LEVELS = 1 << 13
SOURCES = ("internal", "external", "gpsdo", "mimo")

#: model -> (master clock rate Hz or None: any rate, TX gain max dB, RX gain max dB,
#: frequency range Hz, max packet samples, mboard id)
MODELS = {
    "x310": (200e6, 31.5, 31.5, (10e6, 6e9), 1996, "X310"),
    "x300": (200e6, 31.5, 31.5, (10e6, 6e9), 1996, "X300"),
    "b210": (None, 89.75, 76.0, (70e6, 6e9), 2040, "B210"),
    "b200": (None, 89.75, 76.0, (70e6, 6e9), 2040, "B200"),
}


class UsrpError(Exception):
    """A request the device refuses; ``kind`` is the Python exception UHD raises for it."""

    def __init__(self, message: str, kind: str = "RuntimeError") -> None:
        super().__init__(message)
        self.kind = kind


class PpsSource:
    """PPS edges on the air at emulated times ``offset_s + m * period_s`` (m integer)."""

    def __init__(self, offset_s: float = 0.0, period_s: float = 1.0) -> None:
        self.offset_s = float(offset_s)
        self.period_s = float(period_s)

    def last_edge(self, tau: float) -> float:
        """The latest edge at or before emulated time ``tau`` (s)."""
        return self.offset_s + math.floor((tau - self.offset_s) / self.period_s) * self.period_s

    def next_edge(self, tau: float) -> float:
        """The first edge strictly after ``tau`` (s)."""
        return self.last_edge(tau) + self.period_s


@dataclass
class AsyncEvent:
    """A TX async message: its code name, due tick, the tick in its time_spec, channel."""

    due: int
    code: str
    tick: int
    channel: int = 0


class EmulatedUsrp:
    """A USRP on ``air`` (module docstring). name: radio name (air port, serial seed).
    n_channels: RX and TX channels. model: a key of `MODELS`. lo: its TCXO and LO phase
    behaviour. pps: the air's shared PPS (external/gpsdo time source). ref_present: 10 MHz and
    PPS cabled. rx_buffer_ticks: samples the device + host buffers hold before overflow."""

    def __init__(self, air: RealtimeAir, name: str = "usrp", *, n_channels: int = 1,
                 model: str = "x310", lo: LOParams | None = None, pps: PpsSource | None = None,
                 ref_present: bool = True, rx_buffer_ticks: int = 1 << 20) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown emulated USRP model {model!r}; known: {sorted(MODELS)}")
        self.air = air
        self.name = name
        self.n = int(n_channels)
        self.model = model
        (self.mcr, self.tx_gain_max, self.rx_gain_max, self.freq_range, self.max_samps,
         self.mboard_id) = MODELS[model]
        self.lo = lo or LOParams()
        self.port: AirRadio = air.attach_radio(name, self.n, self.n, self.lo)
        self.pps = pps or PpsSource()
        self.ref_present = ref_present
        self.rx_buffer_ticks = int(rx_buffer_ticks)
        h = zlib.crc32(name.encode())
        self.serial = f"{0x30000000 + h % 0x0FFFFFFF:X}"
        rng = np.random.default_rng([air.seed, h])
        self._own_pps = PpsSource(float(rng.uniform(0, 1)), 1.0 / (1 + self.lo.ppm * 1e-6))
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.clock_source = self.time_source = "internal"
        self.fs = float(self.port.sample_rate_hz)
        self.tx_freq = self.rx_freq = 0.0
        self.tx_gain = [0.0] * self.n
        self.rx_gain = [0.0] * self.n
        self.antennas = {"tx": ["TX/RX"] * self.n, "rx": ["RX2"] * self.n}
        self._k_off = 0
        self._pending: tuple[float, float] | None = None
        self._anchor(air.now_s(), float(rng.uniform(10.0, 1000.0)))   # power-on time
        for ch in range(self.n):
            self.set_tx_gain(0.0, ch)

    # ------------------------------------------------------------------ device time
    def _anchor(self, tau: float, t_dev: float, ppm: float | None = None) -> None:
        """Device time ``t_dev`` (s) at emulated time ``tau``: a sample sits exactly there."""
        self.port.restart_clock(tau, ppm)
        self._k_off = int(round(t_dev * self.fs))

    def sync(self) -> None:
        """Apply a PPS latch whose edge has passed."""
        with self.lock:
            if self._pending is not None and self.air.now_s() >= self._pending[0]:
                edge, t = self._pending
                self._pending = None
                self._anchor(edge, t)
                self.cond.notify_all()

    def tick_now(self) -> int:
        """The device sample index now."""
        self.sync()
        return self.port.now() + self._k_off

    def time_at(self, tau: float) -> float:
        """Device time (s) at emulated time ``tau``."""
        return (self._k_off + (tau - self.port.epoch_s) * self.port.clock_hz) / self.fs

    def tau_of_tick(self, tick: float) -> float:
        """Emulated time (s) of device sample ``tick``."""
        return self.port.time_of(tick - self._k_off)

    def time_now(self) -> float:
        """Device time now, s."""
        self.sync()
        return self.time_at(self.air.now_s())

    def _pps_source(self) -> PpsSource | None:
        if self.time_source in ("external", "gpsdo", "mimo"):
            return self.pps if self.ref_present else None
        return self._own_pps

    def time_last_pps(self) -> float:
        """Device time (s) at the last PPS edge (0.0 while no PPS arrives)."""
        self.sync()
        src = self._pps_source()
        if src is None:
            return 0.0
        return self.time_at(src.last_edge(self.air.now_s()))

    def set_time_now(self, t: float) -> None:
        with self.lock:
            self.sync()
            self._pending = None
            self._anchor(self.air.now_s(), t)

    def set_time_next_pps(self, t: float) -> None:
        """Device time ``t`` (s) at the next PPS edge (never, while no PPS arrives)."""
        with self.lock:
            self.sync()
            src = self._pps_source()
            self._pending = (math.inf if src is None else src.next_edge(self.air.now_s()),
                             float(t))

    def set_time_unknown_pps(self, t: float, cancel: threading.Event | None = None) -> None:
        """UHD's procedure: wait for a PPS edge (1.1 s at most), latch ``t`` at the next one,
        return once it is latched."""
        src = self._pps_source()
        now = self.air.now_s()
        if src is None:
            self.air.sleep_until_s(now + 1.1, cancel)
            raise UsrpError("Board 0 may not be getting a PPS signal!\nNo PPS detected within "
                            "the time interval.\nSee the application notes for your device.")
        edge = src.next_edge(now)
        if not self.air.sleep_until_s(edge, cancel):
            raise UsrpError("cancelled")
        self.set_time_next_pps(t)
        if not self.air.sleep_until_s(self._pending[0], cancel):
            raise UsrpError("cancelled")
        self.sync()

    # ------------------------------------------------------------------ sources, rates, RF
    def _clock_ppm(self) -> float:
        locked = self.clock_source != "internal" and self.ref_present
        return 0.0 if locked else self.lo.ppm

    def set_clock_source(self, src: str) -> None:
        if src not in SOURCES:
            raise UsrpError(f"invalid clock source {src!r}; use one of {SOURCES}", "ValueError")
        with self.lock:
            t = self.time_now()
            self.clock_source = src
            self._anchor(self.air.now_s(), t, ppm=self._clock_ppm())

    def set_time_source(self, src: str) -> None:
        if src not in SOURCES:
            raise UsrpError(f"invalid time source {src!r}; use one of {SOURCES}", "ValueError")
        with self.lock:
            self.time_source = src

    def ref_locked(self) -> bool:
        """Sensor ref_locked: the internal reference always, external only when cabled."""
        return self.clock_source == "internal" or self.ref_present

    def set_master_clock_rate(self, rate: float) -> None:
        if self.mcr is not None and abs(rate - self.mcr) > 1.0:
            if self.model.startswith("x3") and abs(rate - 184.32e6) > 1.0:
                raise UsrpError(f"master clock rate {rate} not supported by {self.mboard_id} "
                                "(200e6 or 184.32e6)")
            self.mcr = float(rate)

    def coerce_rate(self, rate: float) -> float:
        """The rate the device gives for ``rate`` (Hz): MCR / integer decimation."""
        if rate <= 0:
            raise UsrpError(f"sample rate must be > 0, got {rate}", "ValueError")
        if self.mcr is None:
            return float(rate)
        return self.mcr / max(1, round(self.mcr / rate))

    def set_rate(self, rate: float) -> None:
        """RX and TX share one sample clock on the air; the device time runs on."""
        fs = self.coerce_rate(rate)
        with self.lock:
            if fs == self.fs:
                return
            t = self.time_now()
            self.port.set_sample_rate(fs)
            self.fs = fs
            self._anchor(self.air.now_s(), t)

    def _check_freq(self, f: float) -> float:
        lo, hi = self.freq_range
        return float(min(max(f, lo), hi))

    def tune_tx(self, f: float) -> float:
        with self.lock:
            self.tx_freq = self._check_freq(f)
            self.port.tune_tx(self.tx_freq)
            return self.tx_freq

    def tune_rx(self, f: float) -> float:
        with self.lock:
            self.rx_freq = self._check_freq(f)
            self.port.tune_rx(self.rx_freq)
            return self.rx_freq

    def set_tx_gain(self, g: float, ch: int) -> None:
        g = float(min(max(g, 0.0), self.tx_gain_max))
        self.tx_gain[ch] = g
        self.port.set_tx_gain_db(ch, g - self.tx_gain_max)

    def set_rx_gain(self, g: float, ch: int) -> None:
        self.rx_gain[ch] = float(min(max(g, 0.0), self.rx_gain_max))

    def check_channel(self, ch: int) -> int:
        if not 0 <= int(ch) < self.n:
            raise UsrpError(f"channel {ch} out of range (0..{self.n - 1})", "IndexError")
        return int(ch)

    # ------------------------------------------------------------------ waiting
    def wait_tick(self, tick: float, deadline: float | None,
                  cancel: threading.Event | None = None) -> bool:
        """Sleep until device sample ``tick`` has passed; False if the monotonic
        ``deadline`` (or ``cancel``) came first."""
        while True:
            self.sync()
            wall = (self.tau_of_tick(tick) - self.air.now_s()) * self.air.time_scale
            if wall <= 0:
                return True
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wall = min(wall, left)
            if cancel is not None and cancel.is_set():
                return False
            # short naps: a PPS latch may move the tick meanwhile
            (cancel.wait if cancel is not None else time.sleep)(min(wall, 0.05))


class TxStream:
    """A TX streamer on ``dev`` for ``channels`` (module docstring)."""

    def __init__(self, dev: EmulatedUsrp, channels: list[int]) -> None:
        self.dev = dev
        self.channels = [dev.check_channel(c) for c in channels]
        self.events: list[AsyncEvent] = []
        self._burst_end: int | None = None      # tick after the open burst's last sample
        self._dropped = False
        self._underflow_flagged = False
        self.lock = threading.Lock()

    def _event(self, due: int, code: str, tick: int) -> None:
        self.events.append(AsyncEvent(due, code, tick, self.channels[0]))

    def send(self, data: np.ndarray, sob: bool, eob: bool, t: float | None) -> int:
        """One packet (``(len(channels), K)``, full scale 1.0) with its metadata (``t``: the
        time_spec in device seconds, or None). Returns the samples consumed."""
        dev = self.dev
        k = int(data.shape[1])
        with self.lock, dev.lock:
            now = dev.tick_now()
            if sob or self._burst_end is None and not self._dropped:
                self._dropped = False
                self._underflow_flagged = False
                if t is not None:
                    start = int(round(t * dev.fs))
                    if start < now:        # late: the whole burst is dropped
                        self._event(now, "time_error", now)
                        self._dropped = not eob
                        self._burst_end = None
                        return k
                else:
                    start = now + TX_LATENCY_TICKS
            elif self._dropped:
                if eob:
                    self._dropped = False
                return k
            else:
                start = self._burst_end
                if start < now + TX_LATENCY_TICKS:    # the FIFO ran dry mid-burst
                    if not self._underflow_flagged:
                        self._event(now, "underflow_in_packet", now)
                    start = now + TX_LATENCY_TICKS
                self._underflow_flagged = False
            if k:
                x = np.zeros((dev.n, k), np.complex128)
                y = np.asarray(data, np.complex64)
                x[self.channels] = (np.clip(y.real, -1, 1) + 1j * np.clip(y.imag, -1, 1))
                dev.port.tx_push(x, start - dev._k_off)
            end = start + k
            if eob:
                self._event(end, "burst_ack", end)
                self._burst_end = None
            else:
                self._burst_end = end
            return k

    def next_event(self, deadline: float | None,
                   cancel: threading.Event | None = None) -> AsyncEvent | None:
        """The next due async message, waiting until the monotonic ``deadline``."""
        dev = self.dev
        while True:
            with self.lock:
                now = dev.tick_now()
                if (self._burst_end is not None and self._burst_end <= now
                        and not self._underflow_flagged):
                    self._underflow_flagged = True      # an open burst ran out of data
                    self._event(self._burst_end, "underflow", self._burst_end)
                due = min(self.events, key=lambda e: e.due, default=None)
                if due is not None and due.due <= now:
                    self.events.remove(due)
                    return due
                wake = due.due if due is not None else (
                    self._burst_end if self._burst_end is not None and
                    not self._underflow_flagged else None)
            if wake is None:
                if deadline is None or deadline <= time.monotonic():
                    return None
                (cancel.wait if cancel is not None else time.sleep)(
                    min(0.05, deadline - time.monotonic()))
                continue
            if not dev.wait_tick(wake, deadline, cancel):
                return None


@dataclass
class _Cmd:
    tick: int
    left: int | None            # None: continuous
    late: bool
    more: bool = False          # num_more: the next command continues the burst


class RxStream:
    """An RX streamer on ``dev`` for ``channels`` (module docstring)."""

    def __init__(self, dev: EmulatedUsrp, channels: list[int]) -> None:
        self.dev = dev
        self.channels = [dev.check_channel(c) for c in channels]
        self.cmds: deque[_Cmd] = deque()
        self.cur: _Cmd | None = None
        self.first = True
        self.lock = threading.Lock()
        self.overflows = 0

    def issue(self, mode: str, num: int, stream_now: bool, t: float) -> None:
        """A stream command arrives at the device."""
        dev = self.dev
        with self.lock:
            now = dev.tick_now()
            if mode == "stop_cont":
                self.cmds.clear()
                self.cur = None
                return
            tick = now + RX_CMD_LATENCY_TICKS if stream_now else int(round(t * dev.fs))
            left = None if mode == "start_cont" else int(num)
            self.cmds.append(_Cmd(tick, left, late=(not stream_now and tick < now),
                                  more=(mode == "num_more")))

    def recv(self, max_n: int, deadline: float | None, cancel: threading.Event | None = None
             ) -> tuple[dict, np.ndarray | None]:
        """Up to ``max_n`` samples of the running command: (metadata, ``(n_ch, n)`` complex64
        full scale 1.0). Metadata: code (none, timeout, late, overflow), tick, sob, eob."""
        dev = self.dev
        while True:
            with self.lock:
                if self.cur is None and self.cmds:
                    cmd = self.cmds.popleft()
                    if cmd.late:
                        return {"code": "late", "tick": dev.tick_now()}, None
                    self.cur = cmd
                    self.first = True
                cur = self.cur
            if cur is not None:
                break
            if deadline is None or time.monotonic() >= deadline:
                return {"code": "timeout"}, None
            (cancel.wait if cancel is not None else time.sleep)(
                min(0.02, max(0.0, deadline - time.monotonic())))
        n = int(max_n) if cur.left is None else min(int(max_n), cur.left)
        if not dev.wait_tick(cur.tick + n, deadline, cancel):
            return {"code": "timeout"}, None
        with self.lock, dev.lock:
            if self.cur is not cur:
                return {"code": "timeout"}, None
            now = dev.tick_now()
            if now - cur.tick > dev.rx_buffer_ticks:      # the host fell behind
                self.overflows += 1
                if cur.left is None:
                    cur.tick = now
                else:
                    self.cur = None
                return {"code": "overflow", "tick": now}, None
            y = dev.port.rx_pull(cur.tick - dev._k_off, n)[self.channels]
            g = 10.0 ** (np.asarray([dev.rx_gain[c] for c in self.channels]) / 20.0)[:, None]
            y = y * g
            out = (np.clip(np.round(y.real * ADC_LEVELS), -ADC_LEVELS, ADC_LEVELS - 1)
                   + 1j * np.clip(np.round(y.imag * ADC_LEVELS), -ADC_LEVELS, ADC_LEVELS - 1))
            out = (out / ADC_LEVELS).astype(np.complex64)
            md = {"code": "none", "tick": cur.tick, "sob": self.first, "eob": False}
            self.first = False
            cur.tick += n
            if cur.left is not None:
                cur.left -= n
                if cur.left <= 0:
                    md["eob"] = not cur.more
                    self.cur = None
            return md, out
