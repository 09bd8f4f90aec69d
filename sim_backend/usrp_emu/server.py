"""Serves one `EmulatedUsrp` on TCP (frames of `sim_backend.usrp_emu.protocol`).

Each connection is one client object: the `MultiUSRP` (control: ``hello`` and ``call`` of a
method), a TX streamer (``tx_open``, ``tx_send``, ``tx_async``) or an RX streamer
(``rx_open``, ``rx_cmd``, ``rx_recv``); one thread per connection, one request at a time.
Replies carry the request's ``id``; a refused request replies ``error`` and ``type`` (the
Python exception UHD raises). Faults (`sim_backend.emu_faults.Faults`): a stall holds every
reply (the radio keeps running: bursts arrive late, RX overflows), an unplug drops every
connection and refuses new ones, a cap limits the sample data rate (counted as sc16 on the
wire, 4 bytes per complex sample).
"""
from __future__ import annotations

import logging
import socket
import threading
import time

import numpy as np

from sim_backend.emu_faults import RadioServer, Unplugged
from sim_backend.usrp_emu.device import EmulatedUsrp, RxStream, TxStream, UsrpError
from sim_backend.usrp_emu.protocol import FrameReader, ProtocolError, encode

log = logging.getLogger(__name__)


def _ts(t: float) -> list:
    full = int(np.floor(t))
    return [full, t - full]


def _secs(ts) -> float:
    return float(ts[0]) + float(ts[1])


def _control(dev: EmulatedUsrp, method: str, args: list, cancel: threading.Event):
    """One MultiUSRP method on the device -> a JSON-able result."""
    ch = (lambda i: dev.check_channel(args[i]) if len(args) > i else 0)
    if method == "set_clock_source":
        return dev.set_clock_source(args[0])
    if method == "set_time_source":
        return dev.set_time_source(args[0])
    if method == "get_clock_source":
        return dev.clock_source
    if method == "get_time_source":
        return dev.time_source
    if method == "set_master_clock_rate":
        return dev.set_master_clock_rate(float(args[0]))
    if method == "get_master_clock_rate":
        return dev.mcr or dev.fs
    if method == "get_time_now":
        return _ts(dev.time_now())
    if method == "get_time_last_pps":
        return _ts(dev.time_last_pps())
    if method == "set_time_now":
        return dev.set_time_now(_secs(args[0]))
    if method == "set_time_next_pps":
        return dev.set_time_next_pps(_secs(args[0]))
    if method == "set_time_unknown_pps":
        return dev.set_time_unknown_pps(_secs(args[0]), cancel)
    if method in ("set_tx_rate", "set_rx_rate"):
        ch(1)
        return dev.set_rate(float(args[0]))
    if method in ("get_tx_rate", "get_rx_rate"):
        ch(0)
        return dev.fs
    if method == "set_tx_freq":
        ch(1)
        return dev.tune_tx(float(args[0]))
    if method == "set_rx_freq":
        ch(1)
        return dev.tune_rx(float(args[0]))
    if method == "get_tx_freq":
        return dev.tx_freq
    if method == "get_rx_freq":
        return dev.rx_freq
    if method == "set_tx_gain":
        return dev.set_tx_gain(float(args[0]), ch(1))
    if method == "set_rx_gain":
        return dev.set_rx_gain(float(args[0]), ch(1))
    if method == "get_tx_gain":
        return dev.tx_gain[ch(0)]
    if method == "get_rx_gain":
        return dev.rx_gain[ch(0)]
    if method in ("set_rx_agc", "set_tx_bandwidth", "set_rx_bandwidth"):
        ch(1)
        return None
    if method in ("set_tx_antenna", "set_rx_antenna"):
        side = method[4:6]
        if args[0] not in ("TX/RX", "RX2", "RX1", "CAL"):
            raise UsrpError(f"invalid antenna {args[0]!r}", "LookupError")
        dev.antennas[side][ch(1)] = args[0]
        return None
    if method == "get_mboard_sensor_names":
        return ["ref_locked", "temp"]
    if method == "get_mboard_sensor":
        if args[0] == "ref_locked":
            return ["Ref", "true" if dev.ref_locked() else "false", "", "BOOLEAN"]
        if args[0] == "temp":
            return ["temp", "45.0", "C", "REALNUM"]
        raise UsrpError(f"no mboard sensor {args[0]!r}", "KeyError")
    if method == "get_usrp_rx_info":
        return {"mboard_id": dev.mboard_id, "mboard_name": dev.name,
                "mboard_serial": dev.serial, "rx_id": "emulated", "rx_subdev_name": "RX",
                "rx_subdev_spec": "A:0", "rx_serial": dev.serial,
                "rx_antenna": dev.antennas["rx"][ch(0)],
                "emulated_time_scale": f"{dev.air.time_scale:g}"}
    if method == "get_num_mboards":
        return 1
    if method in ("get_tx_num_channels", "get_rx_num_channels"):
        return dev.n
    raise UsrpError(f"method {method!r} is not emulated", "NotImplementedError")


class _Session:
    """One client connection."""

    def __init__(self, server: "UsrpServer", sock: socket.socket) -> None:
        self.server = server
        self.dev = server.device
        self.sock = sock
        self.reader = FrameReader(sock)
        self.cancel = threading.Event()
        self.tx: TxStream | None = None
        self.rx: RxStream | None = None

    def run(self) -> None:
        faults = self.server.faults
        try:
            while True:
                head, payload = self.reader.read()
                faults.gate()
                if payload:
                    faults.throttle(len(payload) // 2)   # complex64 here, sc16 on the wire
                reply, data = self.handle(head, payload)
                faults.gate()
                if data is not None:
                    faults.throttle(len(data) // 2)
                self.sock.sendall(encode({"id": head.get("id"), **reply}, data or b""))
        except (Unplugged, ConnectionError, ProtocolError, OSError):
            pass
        finally:
            self.cancel.set()
            try:
                self.sock.close()
            except OSError:
                pass

    def handle(self, head: dict, payload: bytes) -> tuple[dict, bytes | None]:
        op = head.get("op")
        try:
            fn = getattr(self, f"op_{op}", None)
            if fn is None:
                raise UsrpError(f"unknown request {op!r}")
            return fn(head, payload)
        except UsrpError as exc:
            return {"error": str(exc), "type": exc.kind}, None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return {"error": f"bad {op} request: {exc!r}", "type": "ValueError"}, None

    def op_hello(self, head, payload):
        d = self.dev
        return {"name": d.name, "serial": d.serial, "model": d.model,
                "mboard_id": d.mboard_id, "n_channels": d.n, "max_samps": d.max_samps,
                "time_scale": d.air.time_scale}, None

    def op_call(self, head, payload):
        return {"result": _control(self.dev, head["method"], head.get("args", []),
                                   self.cancel)}, None

    def _deadline(self, head) -> float:
        return time.monotonic() + max(0.0, float(head.get("timeout", 0.1)))

    def op_tx_open(self, head, payload):
        self.tx = TxStream(self.dev, head["channels"])
        return {}, None

    def op_tx_send(self, head, payload):
        if self.tx is None:
            raise UsrpError("no TX stream on this connection")
        shape = head["shape"]
        data = np.frombuffer(payload, np.complex64).reshape(shape)
        if shape[0] != len(self.tx.channels):
            raise UsrpError(f"send: {shape[0]} channel buffers for a {len(self.tx.channels)}"
                            "-channel streamer", "ValueError")
        t = _secs(head["time_spec"]) if head.get("has_time_spec") else None
        n = self.tx.send(data, bool(head.get("sob")), bool(head.get("eob")), t)
        return {"sent": n}, None

    def op_tx_async(self, head, payload):
        if self.tx is None:
            raise UsrpError("no TX stream on this connection")
        ev = self.tx.next_event(self._deadline(head), self.cancel)
        if ev is None:
            return {"event": None}, None
        return {"event": ev.code, "channel": ev.channel,
                "time_spec": _ts(ev.tick / self.dev.fs)}, None

    def op_rx_open(self, head, payload):
        self.rx = RxStream(self.dev, head["channels"])
        return {}, None

    def op_rx_cmd(self, head, payload):
        if self.rx is None:
            raise UsrpError("no RX stream on this connection")
        self.rx.issue(head["mode"], int(head.get("num_samps", 0)),
                      bool(head.get("stream_now", True)), _secs(head.get("time_spec", [0, 0])))
        return {}, None

    def op_rx_recv(self, head, payload):
        if self.rx is None:
            raise UsrpError("no RX stream on this connection")
        md, data = self.rx.recv(int(head["max"]), self._deadline(head), self.cancel)
        if "tick" in md:
            md["time_spec"] = _ts(md.pop("tick") / self.dev.fs)
        if data is None:
            return md, None
        md["shape"] = list(data.shape)
        return md, np.ascontiguousarray(data).tobytes()


class UsrpServer(RadioServer):
    """Serves ``device`` (an `EmulatedUsrp`) on ``host:port`` (0: a free port, see `port`)
    until `close`. ``faults`` injects unplug/stall/throughput cap."""

    session_class = _Session
    thread_name = "usrp"

    @property
    def args(self) -> str:
        """The UHD device arguments that reach this radio."""
        return f"type=emulated,addr={self.host}:{self.port}"

    uri = args
