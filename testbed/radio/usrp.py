"""USRP driver on UHD's Python API: timed bursts on the device time base.

* Clock and time sources (``internal``/``external``/``gpsdo``) come from `UsrpConfig`. With a
  shared 10 MHz + PPS (OctoClock, GPSDO) the device time is zeroed on a PPS edge
  (``set_time_unknown_pps`` waits for an edge and sets the time at the one after it;
  ``set_time_next_pps`` sets it at the next edge, so the driver waits a second), which puts
  every USRP on one time base. ``pps_align: none`` zeroes the time in software (one radio).
* Sample clock: sample ``k`` is device time ``k / sample_rate_hz`` seconds. `transmit` sends
  one burst with ``start_of_burst``/``end_of_burst`` and ``time_spec`` = that time; `receive`
  issues a ``num_done`` stream command at the window's time and reads exactly ``n`` samples.
* Errors: asynchronous TX messages (``recv_async_msg``) are drained after every burst:
  underflow / seq_error count as underflows, time_error as late. RX metadata overflow, late
  command and timeout are counted and raised as `StreamError` (the window is incomplete).
* The LO phase is random after every tune on AD9361-based B2xx: re-train phase after
  `configure`.
* A device that stops answering or drops the link (UHD raises ``RuntimeError`` from a stream
  or control call) is a `StreamError` naming the node and the device args.
* Emulated USRPs (``type=emulated`` in the args, `sim_backend.usrp_emu`) run the same calls;
  their ``get_usrp_rx_info`` says ``emulated_time_scale`` k (device time k times slower than
  the wall clock), by which the driver stretches its wall-clock waits and timeouts.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import numpy as np
from pydantic import ValidationError

from testbed.config.radio import UsrpConfig
from testbed.errors import ConfigError, RadioError, RadioNotFoundError, StreamError
from testbed.radio.base import (Radio, RadioIdentity, RadioSettings, StreamCounters,
                                as_channel_matrix)
from testbed.radio.system_libs import SystemLibraryMissing, import_system_module

log = logging.getLogger(__name__)

#: UHD Python names this driver relies on (checked against the real module in the tests).
UHD_NAMES = (
    "usrp.MultiUSRP", "usrp.StreamArgs", "types.TXMetadata", "types.RXMetadata",
    "types.TXAsyncMetadata", "types.StreamCMD", "types.StreamMode", "types.TimeSpec",
    "types.TuneRequest", "types.TXMetadataEventCode", "types.RXMetadataErrorCode")
MULTI_USRP_METHODS = (
    "set_clock_source", "set_time_source", "set_master_clock_rate", "set_time_next_pps",
    "set_time_unknown_pps", "set_time_now", "get_time_now", "get_time_last_pps",
    "set_tx_rate", "set_rx_rate", "get_tx_rate", "get_rx_rate", "set_tx_freq", "set_rx_freq",
    "get_rx_freq", "set_tx_gain", "set_rx_gain", "set_rx_agc", "set_tx_bandwidth",
    "set_rx_bandwidth", "set_tx_antenna", "set_rx_antenna", "get_tx_stream", "get_rx_stream",
    "get_mboard_sensor", "get_mboard_sensor_names", "get_usrp_rx_info", "get_num_mboards")
ASYNC_POLL_S = 0.05


def is_emulated(args: str) -> bool:
    """True if UHD device args select an emulated USRP (``type=emulated``)."""
    return any(p.replace(" ", "") == "type=emulated" for p in str(args).split(","))


def import_uhd(args: str = "") -> Any:
    """UHD's Python module, or for ``type=emulated`` device args the emulated USRP's module
    with the same names (`sim_backend.usrp_emu.uhd_api`); `RadioNotFoundError` saying how to
    get UHD when it is missing."""
    if is_emulated(args):
        import importlib
        return importlib.import_module("sim_backend.usrp_emu.uhd_api")
    try:
        return import_system_module("uhd")
    except SystemLibraryMissing as exc:
        raise RadioNotFoundError(f"{exc}; UHD's module needs numpy < 2") from exc


class UsrpRadio(Radio):
    """A USRP behind the `Radio` interface (see the module docstring).

    config: validated `UsrpConfig`.
    node_id: who this radio belongs to, for messages.
    uhd_module: the ``uhd`` package (or a fake with the same names); imported if None.
    sleep: injectable ``time.sleep`` (PPS waits).
    """

    has_hardware_timestamps = True
    realtime = True

    def schedule_latency_samples(self) -> int:
        """Host-to-device latency budget for timed commands: ``rx_timeout_s``-independent
        10 ms of samples (a USB 3 / 10 GbE round trip is well under that)."""
        return int(0.01 * (self._settings.sample_rate_hz if self._settings else 1e6))

    def __init__(self, config: UsrpConfig, *, node_id: str = "", uhd_module: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._cfg = config
        self._node_id = node_id
        self._uhd = uhd_module
        self._sleep = sleep
        self._usrp: Any = None
        self._tx_stream: Any = None
        self._rx_stream: Any = None
        self._settings: RadioSettings | None = None
        self._counters = StreamCounters()
        self.time_scale = 1.0       # wall seconds per device second (emulated USRP: k)

    # ---------------------------------------------------------------- life cycle
    def open(self) -> "UsrpRadio":
        """Find and open the device, set clock/time sources, apply settings, align time on
        PPS and create the streamers. Returns self."""
        uhd = self._uhd = self._uhd or import_uhd(self._cfg.args)
        try:
            self._usrp = uhd.usrp.MultiUSRP(self._cfg.args)
        except RuntimeError as exc:   # UHD: "LookupError: KeyError: No devices found ..."
            raise RadioNotFoundError(
                f"node {self._node_id!r}: no USRP found for args {self._cfg.args!r} ({exc}). "
                "Check power/USB 3/Ethernet and run `testbed devices` or `uhd_find_devices`"
            ) from exc
        u = self._usrp
        self.time_scale = self._device_time_scale()
        if self._cfg.master_clock_rate_hz:
            u.set_master_clock_rate(self._cfg.master_clock_rate_hz)
        u.set_clock_source(self._cfg.clock_source)
        u.set_time_source(self._cfg.time_source)
        self._check_ref_locked()
        self.configure(self._cfg.to_settings())
        self.align_time()
        return self

    def _device_time_scale(self) -> float:
        try:
            info = dict(self._usrp.get_usrp_rx_info(0))
        except RuntimeError:
            return 1.0
        return float(info.get("emulated_time_scale", 1.0))

    def _lost(self, what: str, exc: Exception) -> StreamError:
        return StreamError(f"node {self._node_id!r}: USRP {self._cfg.args!r} stopped "
                           f"answering during {what} ({exc}); check its power and link "
                           "(Ethernet/USB), then restart the node")

    def close(self) -> None:
        """Drop the streamers and the device handle. Idempotent."""
        self._tx_stream = self._rx_stream = None
        self._usrp = None

    def _check_ref_locked(self) -> None:
        if self._cfg.clock_source == "internal":
            return
        names = list(self._usrp.get_mboard_sensor_names(0))
        if "ref_locked" in names and not self._usrp.get_mboard_sensor("ref_locked", 0).to_bool():
            raise RadioError(
                f"node {self._node_id!r}: USRP {self._cfg.args!r} is not locked to the "
                f"{self._cfg.clock_source} 10 MHz reference; check the REF IN cable and the "
                "OctoClock/GPSDO (sensor ref_locked = false)")

    def align_time(self) -> None:
        """Zero the device time (sample 0) per ``pps_align``: on the next PPS edge, on an
        unknown PPS edge, or immediately in software; ``agreed`` leaves it to the bench's
        controller (`latch_time_at_pps_after`)."""
        ts = self._uhd.types.TimeSpec(0.0)
        mode = self._cfg.pps_align
        if mode == "agreed":
            return
        if mode == "unknown_pps":
            self._usrp.set_time_unknown_pps(ts)
        elif mode == "next_pps":
            last = self._usrp.get_time_last_pps().get_real_secs()
            self._usrp.set_time_next_pps(ts)
            self._sleep(1.1 * self.time_scale)   # the time is latched on the next edge
            if self._usrp.get_time_last_pps().get_real_secs() == last:
                raise RadioError(f"node {self._node_id!r}: no PPS edge seen within 1.1 s on "
                                 f"time_source={self._cfg.time_source}; check the PPS cable")
        else:
            self._usrp.set_time_now(ts)

    @property
    def pps_period_s(self) -> float:
        """Wall seconds between PPS edges (1 s; k s on an emulated USRP at time scale k)."""
        return 1.0 * self.time_scale

    def observe_pps_edge(self, poll_s: float = 0.002) -> float:
        """Host wall-clock time (``time.time()``, s) of the next PPS edge this device sees:
        ``get_time_last_pps`` is polled until it changes (or the device time steps back: a
        latch) and the edge is put halfway between the two polls around the change (error:
        half a poll interval plus one request). `RadioError` after 1.5 PPS periods without
        an edge."""
        def read() -> tuple[float, float]:
            try:
                return (self._usrp.get_time_last_pps().get_real_secs(),
                        self._usrp.get_time_now().get_real_secs())
            except RuntimeError as exc:
                raise self._lost("get_time_last_pps", exc) from exc
        last, now_dev = read()
        before = time.time()
        deadline = before + 1.5 * self.pps_period_s
        while True:
            self._sleep(poll_s)
            pps, dev = read()
            after = time.time()
            if pps != last or dev < now_dev:
                return 0.5 * (before + after)
            if after > deadline:
                raise RadioError(f"node {self._node_id!r}: no PPS edge seen within "
                                 f"{1.5 * self.pps_period_s:g} s on time_source="
                                 f"{self._cfg.time_source}; check the PPS cable")
            before, now_dev = after, dev

    def latch_time_at_pps_after(self, host_time_s: float) -> float:
        """Zero the device time (sample 0) at the first PPS edge after host wall time
        ``host_time_s``, the time the bench's controller hands every process
        (`calibration.timebase.pps_latch_time`: halfway between two edges), so that all of
        them latch the same edge. Returns the host time of the edge latched; `RadioError`
        when the call comes too late or the latched edge is not the first after
        ``host_time_s`` (this host's clock is off by about half a PPS period or more)."""
        late = time.time() - host_time_s
        if late > 0:
            raise RadioError(f"node {self._node_id!r}: the agreed PPS latch time passed {late:.3f}"
                             " s before this radio got to it; check this host's clock (NTP) "
                             "and the control network, then sync again")
        self._sleep(-late)
        try:
            self._usrp.set_time_next_pps(self._uhd.types.TimeSpec(0.0))
        except RuntimeError as exc:
            raise self._lost("set_time_next_pps", exc) from exc
        edge = self.observe_pps_edge()
        if not 0.0 < edge - host_time_s < self.pps_period_s:
            raise RadioError(f"node {self._node_id!r}: latched the PPS edge at host time "
                             f"{edge:.3f} s, not the first after the agreed {host_time_s:.3f} s; "
                             "check this host's clock (NTP) and the PPS cable")
        return edge

    # ---------------------------------------------------------------- configuration
    def configure(self, settings: RadioSettings) -> None:
        """Apply rates, tune (new random LO phase), gains, bandwidth, antennas; (re)create
        the streamers for the channel counts."""
        if self._usrp is None:
            raise RadioError(f"node {self._node_id!r}: USRP not open; call open() first")
        fields = dataclasses.asdict(settings)  # RadioSettings' fields are config keys
        try:
            cfg = UsrpConfig.model_validate({**self._cfg.model_dump(), **fields})
        except ValidationError as exc:
            from testbed.config.loader import format_validation_error
            raise ConfigError(format_validation_error(
                exc, f"node {self._node_id!r} USRP {self._cfg.args!r} configure()")) from None
        u, types = self._usrp, self._uhd.types
        for ch in range(cfg.n_tx_channels):
            u.set_tx_rate(cfg.sample_rate_hz, ch)
            u.set_tx_freq(types.TuneRequest(cfg.center_freq_hz), ch)
            u.set_tx_gain(cfg.tx_gain_db, ch)
            u.set_tx_antenna(cfg.tx_antenna, ch)
            if cfg.rf_bandwidth_hz:
                u.set_tx_bandwidth(cfg.rf_bandwidth_hz, ch)
        for ch in range(cfg.n_rx_channels):
            u.set_rx_rate(cfg.sample_rate_hz, ch)
            u.set_rx_freq(types.TuneRequest(cfg.center_freq_hz), ch)
            u.set_rx_agc(cfg.rx_gain_mode != "manual", ch)
            if cfg.rx_gain_mode == "manual":
                u.set_rx_gain(cfg.rx_gain_db, ch)
            u.set_rx_antenna(cfg.rx_antenna, ch)
            if cfg.rf_bandwidth_hz:
                u.set_rx_bandwidth(cfg.rf_bandwidth_hz, ch)
        rate = float(u.get_rx_rate(0) if cfg.n_rx_channels else u.get_tx_rate(0))
        if abs(rate - cfg.sample_rate_hz) > 1e-6 * cfg.sample_rate_hz:
            raise ConfigError(f"node {self._node_id!r}: USRP gives {rate} S/s for "
                              f"{cfg.sample_rate_hz} S/s; choose a rate that divides the "
                              "master clock rate evenly")
        self._tx_stream = self._rx_stream = None
        if cfg.n_tx_channels:
            args = self._uhd.usrp.StreamArgs(cfg.cpu_format, cfg.otw_format)
            args.channels = list(range(cfg.n_tx_channels))
            self._tx_stream = u.get_tx_stream(args)
        if cfg.n_rx_channels:
            args = self._uhd.usrp.StreamArgs(cfg.cpu_format, cfg.otw_format)
            args.channels = list(range(cfg.n_rx_channels))
            self._rx_stream = u.get_rx_stream(args)
        self._cfg = cfg
        self._settings = RadioSettings(
            sample_rate_hz=rate, center_freq_hz=cfg.center_freq_hz, tx_gain_db=cfg.tx_gain_db,
            rx_gain_db=cfg.rx_gain_db, rx_gain_mode=cfg.rx_gain_mode,
            n_tx_channels=cfg.n_tx_channels, n_rx_channels=cfg.n_rx_channels,
            rf_bandwidth_hz=cfg.rf_bandwidth_hz)

    @property
    def settings(self) -> RadioSettings:
        if self._settings is None:
            raise RadioError("USRP not configured yet; call open()")
        return self._settings

    # ---------------------------------------------------------------- time
    def _rate(self) -> float:
        return self.settings.sample_rate_hz

    def sample_to_time_spec(self, sample: int) -> Any:
        """UHD ``TimeSpec`` of sample ``sample`` (exact: built from ticks at the sample rate)."""
        return self._uhd.types.TimeSpec.from_ticks(int(sample), self._rate())

    def time_spec_to_sample(self, ts: Any) -> int:
        """Sample index of a UHD ``TimeSpec`` (rounded to the nearest sample)."""
        return int(ts.to_ticks(self._rate()))

    def now(self) -> int:
        """Device time in samples (device time 0 = sample 0)."""
        try:
            return self.time_spec_to_sample(self._usrp.get_time_now(0))
        except RuntimeError as exc:
            raise self._lost("get_time_now", exc) from exc

    # ---------------------------------------------------------------- streaming
    def _drain_async(self, timeout_s: float, at_sample: int | None = None) -> list[str]:
        """Read the TX async messages (waiting ``timeout_s`` device seconds for the first);
        count them; their descriptions (``at_sample``: the burst's start, for how late)."""
        codes = self._uhd.types.TXMetadataEventCode
        events: list[str] = []
        md = self._uhd.types.TXAsyncMetadata()
        wait = timeout_s * self.time_scale
        while self._recv_async(md, wait):
            wait = 0.0
            code = md.event_code
            if code in (codes.underflow, codes.underflow_in_packet):
                self._counters.underflows += 1
                events.append("underflow")
            elif code in (codes.seq_error, codes.seq_error_in_packet):
                self._counters.underflows += 1
                events.append("sequence error (packets lost on the link)")
            elif code == codes.time_error:
                self._counters.late += 1
                late = ""
                if at_sample is not None and md.has_time_spec:
                    late = (f" by {self.time_spec_to_sample(md.time_spec) - at_sample} "
                            "samples")
                events.append(f"late{late} (time_spec already past when the burst arrived)")
            elif code == codes.burst_ack:
                events.append("ack")
                break
        return events

    def _recv_async(self, md: Any, wait_s: float) -> bool:
        try:
            return bool(self._tx_stream.recv_async_msg(md, wait_s))
        except RuntimeError as exc:
            raise self._lost("recv_async_msg", exc) from exc

    def _send(self, data: np.ndarray, md: Any, timeout: float) -> int:
        try:
            return int(self._tx_stream.send(data, md, timeout))
        except RuntimeError as exc:
            raise self._lost("TX send", exc) from exc

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        if self._tx_stream is None:
            raise RadioError(f"node {self._node_id!r}: no TX channel configured")
        data = np.ascontiguousarray(as_channel_matrix(samples, self._cfg.n_tx_channels))
        at_sample = int(at_sample)
        now = self.now()
        if at_sample < now:
            self._counters.late += 1
            raise StreamError(f"node {self._node_id!r}: burst for sample {at_sample} is late "
                              f"(device time is sample {now}); schedule later")
        types = self._uhd.types
        md = types.TXMetadata()
        md.start_of_burst = True
        md.end_of_burst = True
        md.has_time_spec = True
        md.time_spec = self.sample_to_time_spec(at_sample)
        total = data.shape[1]
        timeout = ((at_sample - now) / self._rate() + self._cfg.rx_timeout_s) * self.time_scale
        sent = self._send(data, md, timeout)
        while sent < total:     # continuation packets: same burst, no new time_spec
            md = types.TXMetadata()
            md.has_time_spec = False
            md.end_of_burst = True
            n = self._send(np.ascontiguousarray(data[:, sent:]), md, timeout)
            if n == 0:
                raise StreamError(f"node {self._node_id!r}: TX send timed out after {sent} of "
                                  f"{total} samples")
            sent += n
        self._counters.samples_sent += total
        bad = [e for e in self._drain_async(ASYNC_POLL_S, at_sample) if e != "ack"]
        if bad:
            raise StreamError(f"node {self._node_id!r}: burst at sample {at_sample}: "
                              + ", ".join(bad))

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        if self._rx_stream is None:
            raise RadioError(f"node {self._node_id!r}: no RX channel configured")
        n, at = int(n_samples), int(at_sample)
        types = self._uhd.types
        now = self.now()
        if at < now:
            self._counters.late += 1
            raise StreamError(f"node {self._node_id!r}: receive window at sample {at} is "
                              f"already past (device time is sample {now})")
        cmd = types.StreamCMD(types.StreamMode.num_done)
        cmd.num_samps = n
        cmd.stream_now = False
        cmd.time_spec = self.sample_to_time_spec(at)
        try:
            self._rx_stream.issue_stream_cmd(cmd)
        except RuntimeError as exc:
            raise self._lost("issue_stream_cmd", exc) from exc
        out = np.zeros((self._cfg.n_rx_channels, n), dtype=np.complex64)
        chunk = max(int(self._rx_stream.get_max_num_samps()), 1)
        tmp = np.zeros((self._cfg.n_rx_channels, chunk), dtype=np.complex64)
        errs = types.RXMetadataErrorCode
        got = 0
        timeout = ((at - now) / self._rate() + self._cfg.rx_timeout_s) * self.time_scale
        while got < n:
            md = types.RXMetadata()
            try:
                k = int(self._rx_stream.recv(tmp, md, timeout))
            except RuntimeError as exc:
                raise self._lost("RX recv", exc) from exc
            timeout = self._cfg.rx_timeout_s * self.time_scale
            code = md.error_code
            if code == errs.overflow:
                self._counters.overflows += 1
                raise StreamError(f"node {self._node_id!r}: RX overflow after {got} of {n} "
                                  "samples (host too slow: lower the rate or use a faster "
                                  "link)")
            if code == errs.late:
                self._counters.late += 1
                raise StreamError(f"node {self._node_id!r}: RX command for sample {at} "
                                  "arrived late at the device; schedule further ahead")
            if code == errs.timeout:
                raise StreamError(f"node {self._node_id!r}: RX timed out after {got} of {n} "
                                  f"samples: USRP {self._cfg.args!r} sent nothing for "
                                  f"{timeout:g} s (device stalled or link down?)")
            if code != errs.none:
                raise RadioError(f"node {self._node_id!r}: RX metadata error {code}")
            if got == 0 and md.has_time_spec:
                first = self.time_spec_to_sample(md.time_spec)
                if first != at:
                    raise StreamError(f"node {self._node_id!r}: RX started at sample {first}, "
                                      f"asked for {at}")
            k = min(k, n - got)
            out[:, got:got + k] = tmp[:, :k]
            got += k
        self._counters.samples_received += n
        return out

    def counters(self) -> StreamCounters:
        if self._tx_stream is not None:
            self._drain_async(0.0)
        return StreamCounters(**self._counters.as_dict())

    def identity(self) -> RadioIdentity:
        info: dict = {}
        if self._usrp is not None:
            try:
                info = dict(self._usrp.get_usrp_rx_info(0))
            except RuntimeError:
                info = {}
        return RadioIdentity(kind="usrp", serial=info.get("mboard_serial", "unknown"),
                             firmware=info.get("mboard_id", "unknown"), address=self._cfg.args,
                             extra={"node_id": self._node_id, "clock_source":
                                    self._cfg.clock_source, "time_source": self._cfg.time_source})
