"""PlutoSDR driver on pyadi-iio: a continuous TX/RX stream whose sample count is the clock.

The Pluto has no hardware timestamps, so this driver keeps both DMA streams running and counts
samples (see `docs/sync.md`):

* TX: after configuration every TX buffer has the same length (`PlutoConfig.tx_buffer_size`;
  pyadi-iio fixes the length at the first push and refuses another). Each pushed buffer covers
  the sample positions ``[tx_pos, tx_pos + L)``; it is zeros except where a scheduled burst
  falls, so a burst for ``at_sample`` leaves the DAC exactly at that count. The TX stream runs
  ``kernel_buffers - 1`` buffers ahead of RX, which is the margin against host jitter.
* RX: buffers are read one after another into a history ring; ``receive(n, at)`` cuts the
  window out of it. After any configuration change the first ``kernel_buffers`` RX buffers
  hold samples from before the change and are discarded (flush).
* Both streams start together, so TX count and RX count share one clock up to a fixed
  TX->RX latency that calibration measures (loopback or beacon), and stay locked while no
  underflow/overflow happens.
* Underflow/overflow: detected from the AXI-AD9361 status register 0x80000088 (bit 0 DAC
  underflow on the TX core, bit 2 ADC overflow on the RX core; the register libiio's
  ``iio_adi_xflow_check`` polls) where the context allows register access, and from wall-clock
  gaps between RX refills longer than the kernel can buffer. An xml: context or an old
  firmware without register access leaves only the timing check; a TX underflow shorter than
  the TX lead cannot be seen by timing alone. Each event is counted in `StreamCounters`, and
  a receive window spanning an overflow raises `StreamError` (the sample clock slipped there).

Run with ``background=True`` (the default for hardware, via `open_radio`) to keep the streams
going from a thread; with ``background=False`` the stream advances only inside `transmit`,
`receive` and `run_until` (deterministic, used with the fakes in tests).
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from pydantic import ValidationError

from testbed.config.radio import PlutoConfig
from testbed.errors import ConfigError, RadioError, RadioNotFoundError, StreamError
from testbed.radio.base import (Radio, RadioIdentity, RadioSettings, StreamCounters,
                                as_channel_matrix)
from testbed.radio.scaling import INT16_MAX, adc_clipped, from_adc_counts, to_dac_counts
from testbed.radio.system_libs import SystemLibraryMissing, import_system_module

log = logging.getLogger(__name__)

XFLOW_STATUS_REG = 0x80000088
XFLOW_TX_UNDERFLOW = 0x1
XFLOW_RX_OVERFLOW = 0x4
RX_GAIN_TOLERANCE_DB = 1.0       # AD9361 manual RX gain steps are 1 dB
TX_GAIN_TOLERANCE_DB = 0.25      # TX attenuation steps are 0.25 dB

#: pyadi-iio names this driver relies on (checked against the real classes in the tests).
PYADI_ATTRIBUTES = (
    "sample_rate", "rx_lo", "tx_lo", "rx_rf_bandwidth", "tx_rf_bandwidth",
    "gain_control_mode_chan0", "rx_hardwaregain_chan0", "tx_hardwaregain_chan0",
    "rx_enabled_channels", "tx_enabled_channels", "rx_buffer_size", "tx_cyclic_buffer",
    "rx", "tx", "rx_destroy_buffer", "tx_destroy_buffer", "ctx", "_rxadc", "_txdac")
PYADI_ATTRIBUTES_2R2T = ("gain_control_mode_chan1", "rx_hardwaregain_chan1",
                         "tx_hardwaregain_chan1")


def open_pluto_device(uri: str, mode: str = "1r1t", node_id: str = "") -> Any:
    """Connect to a Pluto with pyadi-iio: ``adi.Pluto`` for 1R1T, ``adi.ad9361`` for 2R2T.
    Raises `RadioNotFoundError` naming the node, the URI and the checks to run."""
    who = f"node {node_id!r}: " if node_id else ""
    try:
        adi = import_system_module("adi")
    except SystemLibraryMissing as exc:
        raise RadioNotFoundError(f"{who}cannot open the PlutoSDR at {uri!r}: {exc} (see "
                                 "docs/bench.md)") from exc
    cls = adi.ad9361 if mode == "2r2t" else adi.Pluto
    try:
        return cls(uri=uri)
    except Exception as exc:  # pyadi-iio raises bare Exception("No device found")
        raise RadioNotFoundError(
            f"{who}no PlutoSDR answered at {uri!r} ({exc}). Check it is powered and reachable: "
            f"run `testbed devices`, `iio_info -s` (scan) or `iio_info -u {uri}`") from exc


@dataclass
class _Burst:
    start: int
    counts: np.ndarray   # (n_tx, K) complex, DAC counts

    @property
    def end(self) -> int:
        return self.start + self.counts.shape[1]


class PlutoRadio(Radio):
    """A PlutoSDR behind the `Radio` interface (see the module docstring).

    config: validated `PlutoConfig` (URI, firmware mode, buffers, initial settings).
    node_id: who this radio belongs to, for error messages.
    device: an already constructed ``adi.Pluto``/``adi.ad9361`` (or a fake); if None,
        `open()` connects with ``device_factory(uri, mode, node_id)``.
    background: keep the streams running from a thread (needed on hardware).
    timing_checks: count RX refill gaps longer than the kernel buffers as overflows.
    clock: monotonic seconds, injectable for tests.
    """

    has_hardware_timestamps = False
    realtime = True

    def __init__(self, config: PlutoConfig, *, node_id: str = "", device: Any = None,
                 device_factory: Callable[[str, str, str], Any] = open_pluto_device,
                 background: bool = False, timing_checks: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = config
        self._node_id = node_id
        self._dev = device
        self._factory = device_factory
        self._background = background
        self._timing_checks = timing_checks
        self._clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._counters = StreamCounters()
        self._settings: RadioSettings | None = None
        self._tx_lo_offset = 0.0
        self._tx_pos = 0
        self._rx_pos = 0
        self._bursts: list[_Burst] = []
        self._hist: deque[tuple[int, np.ndarray]] = deque()
        self._hist_len = 0
        self._gaps: list[int] = []          # RX sample positions where samples were dropped
        self._streaming = False
        self._xflow_ok = True
        self._last_refill: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None
        self.adc_clipped_samples = 0
        self.tx_clipped_samples = 0
        self.time_scale = 1.0       # wall seconds per radio second (emulated radios: k)
        self._starts = 0            # stream starts (configure() restarts the streams)
        self._ctrl_calls: deque = deque()   # device calls the streaming thread makes for others

    # ---------------------------------------------------------------- life cycle
    def open(self) -> "PlutoRadio":
        """Connect (if no device was given), check the firmware mode, apply the config's
        settings and start streaming. Returns self."""
        if self._dev is None:
            self._dev = self._factory(self._cfg.uri, self._cfg.mode, self._node_id)
        self.time_scale = self._context_time_scale()
        self._check_firmware_mode()
        self.configure(self._cfg.to_settings())
        return self

    def _context_time_scale(self) -> float:
        # an emulated Pluto (`testbed emulate`) runs k times slower than the wall clock and
        # says so in its context; the wall-clock checks below must stretch by k
        try:
            return float(dict(self._dev.ctx.attrs).get("emulated,time_scale", 1.0))
        except Exception:  # a fake or xml context without attrs: real time
            return 1.0

    def close(self) -> None:
        """Stop the streams and release the IIO buffers and context. Idempotent."""
        self._stop_streams()
        dev, self._dev = self._dev, None
        if dev is not None and hasattr(dev, "close"):
            try:
                dev.close()
            except Exception as exc:  # closing a dead context must not mask the real error
                log.warning("closing Pluto %s: %s", self._cfg.uri, exc)

    def _check_firmware_mode(self) -> None:
        if self._cfg.mode != "2r2t":
            return
        rxadc = getattr(self._dev, "_rxadc", None)
        if rxadc is not None and rxadc.find_channel("voltage2") is None:
            raise ConfigError(
                f"node {self._node_id!r}: Pluto at {self._cfg.uri} is not in 2R2T mode (no "
                "voltage2 on cf-ad9361-lpc). Over ssh (root/analog) run: "
                + "; ".join(self._cfg.required_firmware_env()) + "; reboot")

    # ---------------------------------------------------------------- configuration
    def _validated(self, settings: RadioSettings) -> PlutoConfig:
        fields = dataclasses.asdict(settings)  # RadioSettings' fields are config keys
        try:
            return PlutoConfig.model_validate({**self._cfg.model_dump(), **fields})
        except ValidationError as exc:
            from testbed.config.loader import format_validation_error
            raise ConfigError(format_validation_error(
                exc, f"node {self._node_id!r} Pluto {self._cfg.uri} configure()")) from None

    def configure(self, settings: RadioSettings) -> None:
        """Apply rate, LO, bandwidth, gains and channels; restart the streams (TX buffer
        length fixed again, stale RX buffers flushed). The sample clock keeps counting up;
        the LO phase is new, so re-calibrate phase after a re-tune."""
        if self._dev is None:
            raise RadioError(f"node {self._node_id!r}: Pluto {self._cfg.uri} is not open; "
                             "call open() first")
        cfg = self._validated(settings)
        self._stop_streams()
        try:
            self._apply(cfg)
        except OSError as exc:   # kernel EINVAL, or a context without attribute I/O (xml:)
            raise RadioError(f"node {self._node_id!r}: Pluto {self._cfg.uri} rejected the "
                             f"settings ({exc}); check `iio_attr -u {self._cfg.uri} -c "
                             "ad9361-phy` and the config ranges") from exc
        self._start_streams()

    def _apply(self, cfg: PlutoConfig) -> None:
        dev = self._dev
        with self._cond:
            rate = int(round(cfg.sample_rate_hz))
            dev.sample_rate = rate
            bw = int(round(cfg.rf_bandwidth_hz or cfg.sample_rate_hz))
            dev.rx_rf_bandwidth = bw
            dev.tx_rf_bandwidth = bw
            dev.rx_lo = int(round(cfg.center_freq_hz))
            dev.tx_lo = int(round(cfg.center_freq_hz))
            n_rx_hw = 2 if cfg.mode == "2r2t" else 1
            for ch in range(n_rx_hw):
                self._set_rx_gain(dev, ch, cfg.rx_gain_mode, cfg.rx_gain_db)
            for ch in range(cfg.n_tx_channels):
                setattr(dev, f"tx_hardwaregain_chan{ch}", float(cfg.tx_gain_db))
                got = float(getattr(dev, f"tx_hardwaregain_chan{ch}"))
                if abs(got - cfg.tx_gain_db) > TX_GAIN_TOLERANCE_DB:
                    raise RadioError(f"node {self._node_id!r}: TX gain chan{ch} reads "
                                     f"{got} dB after setting {cfg.tx_gain_db} dB")
            dev.rx_enabled_channels = list(range(max(cfg.n_rx_channels, 1)))
            dev.tx_enabled_channels = list(range(cfg.n_tx_channels))
            dev.rx_buffer_size = cfg.rx_buffer_size
            dev.tx_cyclic_buffer = False
            got_rate = float(dev.sample_rate)
            self._cfg = cfg
            self._tx_lo_offset = 0.0
            self._settings = RadioSettings(
                sample_rate_hz=got_rate, center_freq_hz=float(dev.rx_lo),
                tx_gain_db=cfg.tx_gain_db, rx_gain_db=cfg.rx_gain_db,
                rx_gain_mode=cfg.rx_gain_mode, n_tx_channels=cfg.n_tx_channels,
                n_rx_channels=cfg.n_rx_channels, rf_bandwidth_hz=float(bw))

    def _set_rx_gain(self, dev: Any, ch: int, mode: str, gain_db: float) -> None:
        # pyadi-iio silently ignores rx_hardwaregain_chanN unless the AGC of that channel is
        # in manual mode, so the mode goes first and the gain is read back.
        setattr(dev, f"gain_control_mode_chan{ch}", mode)
        if mode != "manual":
            return
        setattr(dev, f"rx_hardwaregain_chan{ch}", float(gain_db))
        got = float(getattr(dev, f"rx_hardwaregain_chan{ch}"))
        if abs(got - gain_db) > RX_GAIN_TOLERANCE_DB:
            raise RadioError(f"node {self._node_id!r}: RX gain chan{ch} reads {got} dB after "
                             f"setting {gain_db} dB in manual mode; the allowed range shrinks "
                             "above 4 GHz (max 62 dB)")

    @property
    def settings(self) -> RadioSettings:
        if self._settings is None:
            raise RadioError("Pluto not configured yet; call open()")
        return self._settings

    # ---------------------------------------------------------------- streaming engine
    @property
    def _n_tx(self) -> int:
        return self._cfg.n_tx_channels

    @property
    def _n_rx(self) -> int:
        return self._cfg.n_rx_channels

    def _set_kernel_buffers(self) -> None:
        for name in ("_rxadc", "_txdac"):
            iio_dev = getattr(self._dev, name, None)
            if iio_dev is not None and hasattr(iio_dev, "set_kernel_buffers_count"):
                try:
                    iio_dev.set_kernel_buffers_count(self._cfg.kernel_buffers)
                except OSError as exc:
                    log.info("kernel buffer count not settable on %s: %s", name, exc)

    def _start_streams(self) -> None:
        with self._cond:
            self._set_kernel_buffers()
            self._clear_xflow()
            if self._n_rx:
                # The first kernel_buffers RX buffers were filled before/while the settings
                # changed: read and drop them, they are not on the new clock.
                for _ in range(self._cfg.kernel_buffers):
                    self._dev.rx()
            start = max(self._tx_pos, self._rx_pos)
            self._tx_pos = self._rx_pos = start
            self._hist.clear()
            self._hist_len = 0
            self._bursts = [b for b in self._bursts if b.end > start]
            self._last_refill = None
            self._streaming = True
            self._thread_error = None
            self._starts += 1
        if self._background:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"pluto-{self._node_id}",
                                            daemon=True)
            self._thread.start()

    def _stop_streams(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5.0)
        with self._cond:
            self._streaming = False
            if self._dev is not None:
                self._dev.tx_destroy_buffer()
                self._dev.rx_destroy_buffer()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
        except BaseException as exc:  # surfaced to the next transmit/receive call
            with self._cond:
                self._thread_error = exc
                self._streaming = False
                self._cond.notify_all()

    def _tx_lead(self) -> int:
        return (self._cfg.kernel_buffers - 1) * self._cfg.tx_buffer_size

    def schedule_latency_samples(self) -> int:
        """The TX queue ahead of RX (kernel_buffers - 1 TX buffers), one TX buffer being built
        and one RX buffer being filled: what the stream can run past `now` before a burst
        handed in now is placed (samples)."""
        return self._tx_lead() + self._cfg.tx_buffer_size + self._cfg.rx_buffer_size

    def _tick(self) -> None:
        """Push TX buffers until TX leads RX by the margin, then read one RX buffer.
        Device I/O (which blocks on hardware) happens outside the lock, so `transmit` and
        `receive` callers are never starved by the streaming thread."""
        while self._ctrl_calls:          # other threads' device calls, made from this one
            fn, done, box = self._ctrl_calls.popleft()
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            done.set()
        with self._cond:
            if not self._streaming:
                raise StreamError(f"node {self._node_id!r}: Pluto stream is stopped")
            bufs = []
            if self._n_tx:
                target = self._rx_pos + self._tx_lead() + (
                    self._cfg.rx_buffer_size if self._n_rx else 1)
                while self._tx_pos < target:
                    bufs.append(self._build_tx())
        for buf in bufs:
            self._dev.tx(buf[0] if self._n_tx == 1 else [buf[i] for i in range(self._n_tx)])
        data = self._dev.rx() if self._n_rx else None
        now = self._clock()
        rx_status = self._read_xflow(getattr(self._dev, "_rxadc", None)) if self._n_rx else 0
        tx_status = self._read_xflow(getattr(self._dev, "_txdac", None)) if self._n_tx else 0
        with self._cond:
            if data is not None:
                self._store_rx(data, now)
            if rx_status & XFLOW_RX_OVERFLOW:
                self._record_overflow("ADC overflow bit in status register")
            if tx_status & XFLOW_TX_UNDERFLOW:
                self._counters.underflows += 1
                log.warning("node %r Pluto %s: TX underflow near sample %d", self._node_id,
                            self._cfg.uri, self._tx_pos)
            self._cond.notify_all()

    def _build_tx(self) -> np.ndarray:
        """The next TX buffer (n_tx, L) in DAC counts; advances the TX position."""
        length = self._cfg.tx_buffer_size
        start = self._tx_pos
        buf = np.zeros((self._n_tx, length), dtype=np.complex128)
        for burst in self._bursts:
            lo, hi = max(burst.start, start), min(burst.end, start + length)
            if lo < hi:
                buf[:, lo - start:hi - start] += burst.counts[:, lo - burst.start:hi - burst.start]
        over = (np.abs(buf.real) > INT16_MAX) | (np.abs(buf.imag) > INT16_MAX)
        if over.any():   # overlapping bursts summed past the int16 container
            self.tx_clipped_samples += int(over.sum())
            buf = np.clip(buf.real, -INT16_MAX, INT16_MAX) + 1j * np.clip(buf.imag, -INT16_MAX,
                                                                          INT16_MAX)
        self._tx_pos += length
        self._bursts = [b for b in self._bursts if b.end > self._tx_pos]
        return buf

    def _store_rx(self, data: Any, now: float) -> None:
        arr = np.atleast_2d(np.asarray(data if self._n_rx > 1 or not isinstance(data, list)
                                       else data[0]))
        arr = arr[: self._n_rx]
        if self._timing_checks and self._last_refill is not None:
            can_buffer_s = (self._cfg.kernel_buffers * self._cfg.rx_buffer_size
                            / self.settings.sample_rate_hz * self.time_scale)
            if now - self._last_refill > can_buffer_s:
                self._record_overflow("RX refill gap %.3f s > %.3f s of kernel buffering"
                                      % (now - self._last_refill, can_buffer_s))
        self._last_refill = now
        self.adc_clipped_samples += adc_clipped(arr)
        self._hist.append((self._rx_pos, from_adc_counts(arr)))
        self._hist_len += arr.shape[1]
        self._rx_pos += arr.shape[1]
        while self._hist and self._hist_len - self._hist[0][1].shape[1] >= \
                self._cfg.rx_history_samples:
            _, old = self._hist.popleft()
            self._hist_len -= old.shape[1]

    def _record_overflow(self, why: str) -> None:
        self._counters.overflows += 1
        self._gaps.append(self._rx_pos)
        log.warning("node %r Pluto %s: RX overflow at sample %d (%s)", self._node_id,
                    self._cfg.uri, self._rx_pos, why)

    def _read_xflow(self, iio_dev: Any) -> int:
        if not self._xflow_ok or iio_dev is None or not hasattr(iio_dev, "reg_read"):
            return 0
        try:
            val = int(iio_dev.reg_read(XFLOW_STATUS_REG))
            if val:
                iio_dev.reg_write(XFLOW_STATUS_REG, val)   # write-1-to-clear
            return val
        except OSError as exc:
            self._xflow_ok = False
            log.info("no register access on %s (%s): overflow detection by timing only",
                     self._cfg.uri, exc)
            return 0

    def _clear_xflow(self) -> None:
        for name in ("_rxadc", "_txdac"):      # reading clears whatever was latched before
            self._read_xflow(getattr(self._dev, name, None))

    def _raise_if_broken(self) -> None:
        if self._thread_error is not None:
            raise StreamError(f"node {self._node_id!r}: Pluto stream thread failed: "
                              f"{self._thread_error!r}") from self._thread_error
        if not self._streaming:
            raise StreamError(f"node {self._node_id!r}: Pluto stream not running "
                              "(open()/configure() first)")

    def _advance(self, until: Callable[[], bool], horizon_samples: int) -> None:
        if not self._background:
            while not until():
                self._tick()
            return
        timeout = (max(horizon_samples, 0) / self.settings.sample_rate_hz + 2.0) * self.time_scale
        deadline = self._clock() + timeout
        while not until():
            self._raise_if_broken()
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise StreamError(f"node {self._node_id!r}: Pluto stream did not advance "
                                  f"within {timeout:.1f} s")
            self._cond.wait(timeout=min(remaining, 0.5))

    # ---------------------------------------------------------------- Radio interface
    def now(self) -> int:
        """The earliest sample a burst can still be scheduled at (= the next TX sample not yet
        handed to the kernel). Received data always ends at or before it."""
        with self._cond:
            return max(self._tx_pos, self._rx_pos)

    def run_until(self, sample: int) -> None:
        """Advance both streams until the TX stream has passed ``sample`` (sync mode), or wait
        for the background thread to get there."""
        with self._cond:
            self._raise_if_broken()
            self._advance(lambda: self._tx_pos >= sample, sample - self._tx_pos)

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        if self._n_tx == 0:
            raise RadioError(f"node {self._node_id!r}: no TX channel configured "
                             "(n_tx_channels = 0)")
        counts, saturated = to_dac_counts(as_channel_matrix(samples, self._n_tx))
        if saturated:
            self.tx_clipped_samples += saturated
            log.debug("node %r: %d I/Q components beyond full scale saturated", self._node_id,
                      saturated)
        at_sample = int(at_sample)
        with self._cond:
            self._raise_if_broken()
            if at_sample < self._tx_pos:
                self._counters.late += 1
                raise StreamError(
                    f"node {self._node_id!r}: burst for sample {at_sample} is late, the TX "
                    f"stream already reached {self._tx_pos}; schedule at now() or later "
                    f"(now() = {self.now()})")
            burst = _Burst(at_sample, counts)
            self._counters.samples_sent += counts.shape[1]
            bisect.insort(self._bursts, burst, key=lambda b: b.start)
            if not self._background:
                self._advance(lambda: self._tx_pos >= burst.end, 0)

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        if self._n_rx == 0:
            raise RadioError(f"node {self._node_id!r}: no RX channel configured")
        n, at = int(n_samples), int(at_sample)
        if n > self._cfg.rx_history_samples:
            raise ConfigError(f"receive window of {n} samples exceeds rx_history_samples="
                              f"{self._cfg.rx_history_samples}; raise it in the radio config")
        with self._cond:
            self._raise_if_broken()
            oldest = self._hist[0][0] if self._hist else self._rx_pos
            if at < oldest:
                self._counters.late += 1
                raise StreamError(f"node {self._node_id!r}: window at sample {at} is gone; "
                                  f"the oldest kept sample is {oldest}")
            self._advance(lambda: self._rx_pos >= at + n, at + n - self._rx_pos)
            gaps = [g for g in self._gaps if at < g < at + n]
            if gaps:
                raise StreamError(f"node {self._node_id!r}: RX overflow inside window "
                                  f"[{at}, {at + n}) at sample(s) {gaps}: samples were "
                                  "dropped, timing is off; re-calibrate")
            out = np.zeros((self._n_rx, n), dtype=np.complex64)
            for start, block in self._hist:
                lo, hi = max(start, at), min(start + block.shape[1], at + n)
                if lo < hi:
                    out[:, lo - at:hi - at] = block[:, lo - start:hi - start]
            self._counters.samples_received += n
            return out

    @property
    def discontinuities(self) -> list[int]:
        """RX sample positions where samples were dropped (overflow); the TX->RX offset
        measured before such a position no longer holds after it."""
        with self._cond:
            return list(self._gaps)

    def stream_breaks(self) -> int:
        """Underflows + overflows + stream restarts (every `configure` after the first): each
        moves the TX and RX counts against the other radios' clocks."""
        with self._cond:
            c = self._counters
            return c.underflows + c.overflows + max(self._starts - 1, 0)

    def _device_call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (a device attribute access) on the streaming thread when there is one:
        libiio's network context is not safe to use from two threads at once (the
        interleaved requests break the connection)."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return fn()
        done, box = threading.Event(), {}
        self._ctrl_calls.append((fn, done, box))
        timeout = (self._cfg.rx_buffer_size / self.settings.sample_rate_hz + 5.0) * self.time_scale
        if not done.wait(timeout):
            self._raise_if_broken()
            raise StreamError(f"node {self._node_id!r}: Pluto stream thread did not run a "
                              f"device call within {timeout:.1f} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def set_loopback(self, mode: int) -> None:
        """AD9361 BIST loopback (the ``loopback`` debug attribute of ad9361-phy): 0 off,
        1 digital TX->RX (the RX words are the DAC's, sample for sample), 2 RF. The streams keep
        running; the RX samples read while it is 1 are the transmitted ones."""
        if mode not in (0, 1, 2):
            raise ValueError(f"loopback mode must be 0, 1 or 2, got {mode}")
        if self._dev is None:
            raise RadioError(f"node {self._node_id!r}: Pluto {self._cfg.uri} is not open")
        try:
            self._device_call(lambda: setattr(self._dev, "loopback", str(mode)))
        except OSError as exc:
            raise RadioError(f"node {self._node_id!r}: Pluto {self._cfg.uri} refused loopback "
                             f"{mode} ({exc}); its firmware needs debugfs access") from exc

    @property
    def tx_lo_offset_hz(self) -> float:
        return self._tx_lo_offset

    def set_tx_lo_offset(self, offset_hz: float) -> float:
        """TX LO (``altvoltage1``) at the centre frequency + ``offset_hz`` (Hz), the RX LO
        unchanged; returns the offset the RF PLL gives (read back: its fractional-N steps are a
        few Hz). The streams keep running; the TX LO phase is new."""
        if self._dev is None:
            raise RadioError(f"node {self._node_id!r}: Pluto {self._cfg.uri} is not open")
        centre = self.settings.center_freq_hz
        want = int(round(centre + float(offset_hz)))

        def tune():
            self._dev.tx_lo = want
            return float(self._dev.tx_lo)
        try:
            got = self._device_call(tune)
        except OSError as exc:
            raise RadioError(f"node {self._node_id!r}: Pluto {self._cfg.uri} refused TX LO "
                             f"{want} Hz ({exc})") from exc
        self._tx_lo_offset = got - centre
        return self._tx_lo_offset

    def counters(self) -> StreamCounters:
        with self._cond:
            return StreamCounters(**self._counters.as_dict())

    def identity(self) -> RadioIdentity:
        attrs: dict = {}
        ctx = getattr(self._dev, "ctx", None)
        if ctx is not None:
            try:
                attrs = dict(ctx.attrs)
            except Exception:  # xml/network contexts differ; identity must not fail
                attrs = {}
        return RadioIdentity(kind="pluto", serial=attrs.get("hw_serial", "unknown"),
                             firmware=attrs.get("fw_version", "unknown"), address=self._cfg.uri,
                             extra={"model": attrs.get("hw_model", ""), "mode": self._cfg.mode,
                                    "node_id": self._node_id})
