"""The UHD Python API (``uhd.usrp``, ``uhd.types``) over TCP to an emulated USRP.

`testbed.radio.usrp.import_uhd` returns this module in place of ``uhd`` when the device
arguments say ``type=emulated`` (``type=emulated,addr=127.0.0.1:30451``), so `UsrpRadio` makes
exactly the calls it makes on a real device. Names, enum values and behaviour follow UHD 4.x:
``TimeSpec`` (full + fractional seconds), ``TXMetadata`` / ``RXMetadata`` /
``TXAsyncMetadata``, ``StreamCMD`` / ``StreamMode``, ``MultiUSRP`` (no device at the address:
``RuntimeError`` "No devices found"), ``TXStreamer.send`` (returns 0 on timeout),
``RXStreamer.recv`` (``error_code`` timeout / late / overflow), ``recv_async_msg``. Timeouts
are wall seconds, as in UHD; a device that does not answer a control request within
``CONTROL_TIMEOUT_S`` (times its time scale) or drops the connection raises ``RuntimeError``
naming it.
"""
from __future__ import annotations

import enum
import itertools
import math
import socket
import threading
import time
import types as _pytypes

import numpy as np

from sim_backend.usrp_emu.protocol import FrameReader, encode

CONTROL_TIMEOUT_S = 2.0
#: wall seconds a streamer waits for the device's reply beyond the call's own timeout
REPLY_MARGIN_S = 1.0
#: packets (of get_max_num_samps samples) per TX frame
SEND_CHUNK_PACKETS = 4


# ---------------------------------------------------------------------- types
class TimeSpec:
    """Device time: whole seconds + fractional seconds (UHD ``time_spec_t``)."""

    def __init__(self, *args) -> None:
        if len(args) == 1:
            secs = float(args[0])
            self._full = int(math.floor(secs))
            self._frac = secs - self._full
        elif len(args) == 2:
            self._full = int(args[0])
            self._frac = float(args[1])
            carry = math.floor(self._frac)
            self._full += int(carry)
            self._frac -= carry
        else:
            raise TypeError("TimeSpec(secs) or TimeSpec(full_secs, frac_secs)")

    @staticmethod
    def from_ticks(ticks: int, rate: float) -> "TimeSpec":
        ticks = int(ticks)
        full = int(ticks // rate)
        return TimeSpec(full, (ticks - full * rate) / rate)

    def get_full_secs(self) -> int:
        return self._full

    def get_frac_secs(self) -> float:
        return self._frac

    def get_real_secs(self) -> float:
        return self._full + self._frac

    def get_tick_count(self, rate: float) -> int:
        return int(round(self._frac * rate))

    def to_ticks(self, rate: float) -> int:
        return int(round(self._full * rate)) + int(round(self._frac * rate))

    def _pair(self) -> list:
        return [self._full, self._frac]

    def __add__(self, other: "TimeSpec") -> "TimeSpec":
        return TimeSpec(self._full + other._full, self._frac + other._frac)

    def __sub__(self, other: "TimeSpec") -> "TimeSpec":
        return TimeSpec(self._full - other._full, self._frac - other._frac)

    def __eq__(self, other) -> bool:
        return isinstance(other, TimeSpec) and self._pair() == other._pair()

    def __hash__(self) -> int:
        return hash((self._full, self._frac))

    def __repr__(self) -> str:
        return f"TimeSpec({self.get_real_secs()!r})"


class TXMetadataEventCode(enum.Enum):
    burst_ack = 1
    underflow = 2
    seq_error = 4
    time_error = 8
    underflow_in_packet = 16
    seq_error_in_packet = 32
    user_payload = 64


class RXMetadataErrorCode(enum.Enum):
    none = 0
    timeout = 1
    late = 2
    broken_chain = 4
    overflow = 8
    alignment = 12
    bad_packet = 15


class StreamMode(enum.Enum):
    start_cont = 97
    stop_cont = 111
    num_done = 100
    num_more = 109


class TXMetadata:
    def __init__(self) -> None:
        self.start_of_burst = False
        self.end_of_burst = False
        self.has_time_spec = False
        self.time_spec = TimeSpec(0.0)


class RXMetadata:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.error_code = RXMetadataErrorCode.none
        self.has_time_spec = False
        self.time_spec = TimeSpec(0.0)
        self.start_of_burst = False
        self.end_of_burst = False
        self.more_fragments = False
        self.out_of_sequence = False

    def strerror(self) -> str:
        return f"ERROR_CODE_{self.error_code.name.upper()}"

    def to_pp_string(self, compact: bool = True) -> str:
        return (f"Has timespec: {'Yes' if self.has_time_spec else 'No'}\tTime of first "
                f"sample: {self.time_spec.get_real_secs()}\tError Code: {self.strerror()}")


class TXAsyncMetadata:
    def __init__(self) -> None:
        self.event_code = None
        self.channel = 0
        self.has_time_spec = False
        self.time_spec = TimeSpec(0.0)


class StreamCMD:
    def __init__(self, mode: StreamMode) -> None:
        self.stream_mode = mode
        self.num_samps = 0
        self.stream_now = True
        self.time_spec = TimeSpec(0.0)


class TuneRequest:
    def __init__(self, target_freq: float = 0.0, lo_off: float = 0.0) -> None:
        self.target_freq = float(target_freq)
        self.lo_off = float(lo_off)


class TuneResult:
    def __init__(self, freq: float) -> None:
        self.target_rf_freq = self.actual_rf_freq = self.clipped_rf_freq = freq
        self.target_dsp_freq = self.actual_dsp_freq = 0.0


class SensorValue:
    def __init__(self, name: str, value: str, unit: str = "", type_: str = "STRING") -> None:
        self.name, self.value, self.unit, self.type = name, value, unit, type_

    def to_bool(self) -> bool:
        return self.value == "true"

    def to_int(self) -> int:
        return int(float(self.value))

    def to_real(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return f"{self.name}: {self.value}{' ' + self.unit if self.unit else ''}"


# ---------------------------------------------------------------------- connection
def _parse_args(args: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in
            (p.split("=", 1) for p in str(args).split(",") if "=" in p)}


def _raise(head: dict) -> None:
    kind = {"ValueError": ValueError, "KeyError": KeyError, "LookupError": LookupError,
            "IndexError": IndexError, "NotImplementedError": NotImplementedError}.get(
        head.get("type"), RuntimeError)
    raise kind(head["error"])


class _Conn:
    """One TCP connection to the emulated device: request -> reply by id."""

    _ids = itertools.count(1)

    def __init__(self, host: str, port: int, what: str) -> None:
        self.what = what
        self.sock = socket.create_connection((host, port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(self.sock)
        self.lock = threading.Lock()

    def request(self, head: dict, payload: bytes = b"", wait_s: float = CONTROL_TIMEOUT_S
                ) -> tuple[dict, bytes] | None:
        """Send a request, wait ``wait_s`` wall seconds for its reply (None: no reply)."""
        rid = next(self._ids)
        deadline = time.monotonic() + wait_s
        with self.lock:
            try:
                self.sock.sendall(encode({**head, "id": rid}, payload))
                while True:
                    got = self.reader.read(deadline)
                    if got is None:
                        return None
                    if got[0].get("id") == rid:
                        break
            except OSError as exc:
                raise RuntimeError(f"EnvironmentError: IOError: {self.what}: connection "
                                   f"lost ({exc})") from None
        if "error" in got[0]:
            _raise(got[0])
        return got

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------- usrp
class StreamArgs:
    def __init__(self, cpu: str = "fc32", otw: str = "sc16") -> None:
        self.cpu_format, self.otw_format = cpu, otw
        self.channels = [0]
        self.args = ""


class _Streamer:
    def __init__(self, usrp: "MultiUSRP", args: StreamArgs, kind: str) -> None:
        if args.cpu_format != "fc32":
            raise ValueError(f"emulated USRP streams fc32 only, got {args.cpu_format!r}")
        self._usrp = usrp
        self._nch = len(args.channels)
        self._conn = _Conn(usrp._host, usrp._port, f"{usrp._what} {kind} streamer")
        self._control(f"{kind}_open", channels=list(args.channels))

    def _control(self, op: str, payload: bytes = b"", **fields) -> dict:
        got = self._conn.request({"op": op, **fields}, payload, self._usrp._control_wait())
        if got is None:
            raise RuntimeError(f"EnvironmentError: IOError: {self._usrp._what}: no response "
                               "to a stream request (device stalled?)")
        return got[0]

    def get_max_num_samps(self) -> int:
        return self._usrp._info["max_samps"]

    def get_num_channels(self) -> int:
        return self._nch

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()


class TXStreamer(_Streamer):
    def __init__(self, usrp: "MultiUSRP", args: StreamArgs) -> None:
        super().__init__(usrp, args, "tx")

    def send(self, data, md: TXMetadata, timeout: float = 0.1) -> int:
        """Send samples ``(n_ch, K)`` (or ``(K,)``, one channel); the samples consumed, 0 if
        the device did not take them within ``timeout`` wall seconds."""
        x = np.asarray(data, np.complex64)
        if x.ndim == 1:
            x = x[None, :]
        total = x.shape[1]
        step = SEND_CHUNK_PACKETS * self.get_max_num_samps()
        sent = 0
        while True:     # packets of a burst cross the link one after another
            part = x[:, sent:sent + step]
            last = sent + part.shape[1] >= total
            head = {"op": "tx_send", "shape": list(part.shape),
                    "sob": bool(md.start_of_burst) and sent == 0,
                    "eob": bool(md.end_of_burst) and last,
                    "has_time_spec": bool(md.has_time_spec) and sent == 0,
                    "time_spec": md.time_spec._pair()}
            got = self._conn.request(head, np.ascontiguousarray(part).tobytes(),
                                     float(timeout) + REPLY_MARGIN_S)
            if got is None:
                return sent
            sent += int(got[0]["sent"])
            if last:
                return sent

    def recv_async_msg(self, md: TXAsyncMetadata, timeout: float = 0.1) -> bool:
        """The next async message into ``md``; False if none within ``timeout`` s."""
        got = self._conn.request({"op": "tx_async", "timeout": float(timeout)}, b"",
                                 float(timeout) + REPLY_MARGIN_S)
        if got is None or got[0].get("event") is None:
            return False
        head = got[0]
        md.event_code = TXMetadataEventCode[head["event"]]
        md.channel = int(head.get("channel", 0))
        md.has_time_spec = "time_spec" in head
        md.time_spec = TimeSpec(*head["time_spec"]) if md.has_time_spec else TimeSpec(0.0)
        return True


class RXStreamer(_Streamer):
    def __init__(self, usrp: "MultiUSRP", args: StreamArgs) -> None:
        super().__init__(usrp, args, "rx")

    def issue_stream_cmd(self, cmd: StreamCMD) -> None:
        self._control("rx_cmd", mode=cmd.stream_mode.name, num_samps=int(cmd.num_samps),
                      stream_now=bool(cmd.stream_now), time_spec=cmd.time_spec._pair())

    def recv(self, buf: np.ndarray, md: RXMetadata, timeout: float = 0.1) -> int:
        """Fill ``buf`` (``(n_ch, N)`` or ``(N,)``) with up to N samples; the count, with
        ``md`` set (error_code timeout / late / overflow and 0 samples on an error)."""
        md.reset()
        n_max = buf.shape[-1]
        got = self._conn.request({"op": "rx_recv", "max": int(n_max), "timeout": float(timeout)},
                                 b"", float(timeout) + REPLY_MARGIN_S)
        if got is None:
            md.error_code = RXMetadataErrorCode.timeout
            return 0
        head, payload = got
        md.error_code = RXMetadataErrorCode[head["code"]]
        if "time_spec" in head:
            md.has_time_spec = True
            md.time_spec = TimeSpec(*head["time_spec"])
        if md.error_code is not RXMetadataErrorCode.none:
            return 0
        md.start_of_burst = bool(head.get("sob"))
        md.end_of_burst = bool(head.get("eob"))
        data = np.frombuffer(payload, np.complex64).reshape(head["shape"])
        n = data.shape[1]
        if buf.ndim == 1:
            buf[:n] = data[0]
        else:
            buf[:, :n] = data
        return n


class MultiUSRP:
    """``uhd.usrp.MultiUSRP`` of an emulated device at ``addr=HOST:PORT`` in ``args``."""

    def __init__(self, args: str = "") -> None:
        kv = _parse_args(args)
        addr = kv.get("addr", "")
        host, _, port = addr.rpartition(":")
        if kv.get("type") != "emulated" or not host or not port.isdigit():
            raise RuntimeError(f"LookupError: KeyError: No devices found for ----->\n"
                               f"Device Address:\n    {args}\n(an emulated USRP needs "
                               "type=emulated,addr=HOST:PORT)")
        self._host, self._port = host, int(port)
        self._what = f"emulated USRP at {host}:{port}"
        try:
            self._conn = _Conn(host, self._port, self._what)
            got = self._conn.request({"op": "hello"}, wait_s=5.0)
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"LookupError: KeyError: No devices found for ----->\n"
                               f"Device Address:\n    {args}\n({exc})") from None
        if got is None:
            raise RuntimeError(f"LookupError: KeyError: No devices found for ----->\n"
                               f"Device Address:\n    {args}\n(no answer)")
        self._info = got[0]
        if kv.get("serial") not in (None, self._info["serial"]):
            raise RuntimeError(f"LookupError: KeyError: No devices found for ----->\n"
                               f"Device Address:\n    {args}\n(serial is "
                               f"{self._info['serial']})")
        self._what = f"emulated USRP {self._info['name']} at {host}:{port}"

    def _control_wait(self, emulated_s: float = 0.0) -> float:
        return CONTROL_TIMEOUT_S + emulated_s * float(self._info["time_scale"])

    def _call(self, method: str, *args, emulated_s: float = 0.0):
        got = self._conn.request({"op": "call", "method": method, "args": list(args)},
                                 wait_s=self._control_wait(emulated_s))
        if got is None:
            raise RuntimeError(f"EnvironmentError: IOError: {self._what}: no response to "
                               f"{method} within {self._control_wait(emulated_s):g} s")
        return got[0].get("result")

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    # sources and time
    def set_clock_source(self, src: str, mboard: int = 0) -> None:
        self._call("set_clock_source", src)

    def set_time_source(self, src: str, mboard: int = 0) -> None:
        self._call("set_time_source", src)

    def get_clock_source(self, mboard: int = 0) -> str:
        return self._call("get_clock_source")

    def get_time_source(self, mboard: int = 0) -> str:
        return self._call("get_time_source")

    def set_master_clock_rate(self, rate: float, mboard: int = 0) -> None:
        self._call("set_master_clock_rate", float(rate))

    def get_master_clock_rate(self, mboard: int = 0) -> float:
        return float(self._call("get_master_clock_rate"))

    def get_time_now(self, mboard: int = 0) -> TimeSpec:
        return TimeSpec(*self._call("get_time_now"))

    def get_time_last_pps(self, mboard: int = 0) -> TimeSpec:
        return TimeSpec(*self._call("get_time_last_pps"))

    def set_time_now(self, ts: TimeSpec, mboard: int = 0) -> None:
        self._call("set_time_now", ts._pair())

    def set_time_next_pps(self, ts: TimeSpec, mboard: int = 0) -> None:
        self._call("set_time_next_pps", ts._pair())

    def set_time_unknown_pps(self, ts: TimeSpec) -> None:
        self._call("set_time_unknown_pps", ts._pair(), emulated_s=2.5)

    def get_num_mboards(self) -> int:
        return 1

    def get_mboard_sensor_names(self, mboard: int = 0) -> list[str]:
        return list(self._call("get_mboard_sensor_names"))

    def get_mboard_sensor(self, name: str, mboard: int = 0) -> SensorValue:
        return SensorValue(*self._call("get_mboard_sensor", name))

    def get_usrp_rx_info(self, chan: int = 0) -> dict:
        return dict(self._call("get_usrp_rx_info", chan))

    # rates, RF
    def set_tx_rate(self, rate: float, chan: int = 0) -> None:
        self._call("set_tx_rate", float(rate), chan)

    def set_rx_rate(self, rate: float, chan: int = 0) -> None:
        self._call("set_rx_rate", float(rate), chan)

    def get_tx_rate(self, chan: int = 0) -> float:
        return float(self._call("get_tx_rate", chan))

    def get_rx_rate(self, chan: int = 0) -> float:
        return float(self._call("get_rx_rate", chan))

    def set_tx_freq(self, req: TuneRequest, chan: int = 0) -> TuneResult:
        return TuneResult(float(self._call("set_tx_freq", req.target_freq, chan)))

    def set_rx_freq(self, req: TuneRequest, chan: int = 0) -> TuneResult:
        return TuneResult(float(self._call("set_rx_freq", req.target_freq, chan)))

    def get_tx_freq(self, chan: int = 0) -> float:
        return float(self._call("get_tx_freq", chan))

    def get_rx_freq(self, chan: int = 0) -> float:
        return float(self._call("get_rx_freq", chan))

    def set_tx_gain(self, gain: float, chan: int = 0) -> None:
        self._call("set_tx_gain", float(gain), chan)

    def set_rx_gain(self, gain: float, chan: int = 0) -> None:
        self._call("set_rx_gain", float(gain), chan)

    def get_tx_gain(self, chan: int = 0) -> float:
        return float(self._call("get_tx_gain", chan))

    def get_rx_gain(self, chan: int = 0) -> float:
        return float(self._call("get_rx_gain", chan))

    def set_rx_agc(self, enable: bool, chan: int = 0) -> None:
        self._call("set_rx_agc", bool(enable), chan)

    def set_tx_bandwidth(self, bw: float, chan: int = 0) -> None:
        self._call("set_tx_bandwidth", float(bw), chan)

    def set_rx_bandwidth(self, bw: float, chan: int = 0) -> None:
        self._call("set_rx_bandwidth", float(bw), chan)

    def set_tx_antenna(self, ant: str, chan: int = 0) -> None:
        self._call("set_tx_antenna", ant, chan)

    def set_rx_antenna(self, ant: str, chan: int = 0) -> None:
        self._call("set_rx_antenna", ant, chan)

    def get_tx_num_channels(self) -> int:
        return int(self._call("get_tx_num_channels"))

    def get_rx_num_channels(self) -> int:
        return int(self._call("get_rx_num_channels"))

    # streams
    def get_tx_stream(self, args: StreamArgs) -> TXStreamer:
        return TXStreamer(self, args)

    def get_rx_stream(self, args: StreamArgs) -> RXStreamer:
        return RXStreamer(self, args)


def find(hint: str = "") -> list[dict]:
    """The emulated device at ``addr`` in ``hint`` if it answers (no broadcast discovery)."""
    try:
        u = MultiUSRP(hint)
    except RuntimeError:
        return []
    return [{"type": "emulated", "addr": f"{u._host}:{u._port}", "serial": u._info["serial"],
             "name": u._info["name"], "product": u._info["mboard_id"]}]


usrp = _pytypes.SimpleNamespace(MultiUSRP=MultiUSRP, StreamArgs=StreamArgs,
                                TXStreamer=TXStreamer, RXStreamer=RXStreamer)
types = _pytypes.SimpleNamespace(
    TimeSpec=TimeSpec, TXMetadata=TXMetadata, RXMetadata=RXMetadata,
    TXAsyncMetadata=TXAsyncMetadata, StreamCMD=StreamCMD, StreamMode=StreamMode,
    TuneRequest=TuneRequest, TuneResult=TuneResult, SensorValue=SensorValue,
    TXMetadataEventCode=TXMetadataEventCode, RXMetadataErrorCode=RXMetadataErrorCode)
