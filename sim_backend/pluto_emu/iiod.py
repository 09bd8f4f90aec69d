"""An iiod (libiio 0.24/0.25 network protocol) server for one emulated PlutoSDR.

The protocol as iiod's ``parser.y`` / ``ops.c`` speak it (map: ``shared/IIOD_PROTOCOL.md``):
ASCII request lines, integer replies (``-errno`` on error), ``READ`` / ``WRITE`` of device,
channel, debug and buffer attributes, ``OPEN`` / ``READBUF`` / ``WRITEBUF`` / ``CLOSE`` of
buffers (each buffer on its own connection), ``SET .. BUFFERS_COUNT``, ``GETTRIG``,
``TIMEOUT``, ``PRINT``, ``VERSION``, ``EXIT``. One thread per connection.

Fault injection (`Faults`, per radio, also from the command line): ``unplug`` drops every
connection and refuses new ones until ``replug``; ``stall(T)`` stops answering for T wall
seconds (the DMA keeps running: RX overflows, TX underflows, as when a USB host stalls);
``cap(MB/s)`` limits the buffer data rate like a slow USB link.
"""
from __future__ import annotations

import errno
import logging
import socket
import threading

from sim_backend.emu_faults import Faults, RadioServer, Unplugged
from sim_backend.pluto_emu.ad9361 import IIOErrno
from sim_backend.pluto_emu.device import Buffer, EmulatedPluto

log = logging.getLogger(__name__)
VERSION_LINE = "0.24.v0.24  \n"           # "%u.%u.%-7.7s\n" of libiio v0.24
KEYWORDS_INOUT = {"input": False, "output": True}


class _Session:
    """One client connection (the context's, or one buffer's)."""

    def __init__(self, server: "IIODServer", sock: socket.socket) -> None:
        self.server = server
        self.dev = server.device
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=1 << 16)
        self.buffers: dict[str, Buffer] = {}
        self.cancel = threading.Event()

    # ---------------------------------------------------------------- I/O
    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self, value: int) -> None:
        self.send(f"{value}\n")

    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise ConnectionError("client closed mid-transfer")
        return data

    # ---------------------------------------------------------------- loop
    def run(self) -> None:
        faults = self.server.faults
        try:
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    break
                faults.gate()
                words = line.decode(errors="replace").split()
                if not words:
                    continue
                if words[0].lower() in ("exit", "quit"):
                    break
                self.handle(words)
        except (Unplugged, ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.cancel.set()
        for buf in list(self.buffers.values()):
            self.dev.close_buffer(buf)
        self.buffers.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # ---------------------------------------------------------------- commands
    def handle(self, words: list[str]) -> None:
        cmd = words[0].lower()
        handler = {
            "print": self.cmd_print, "zprint": lambda w: self.reply(-errno.EINVAL),
            "version": lambda w: self.send(VERSION_LINE), "help": self.cmd_help,
            "timeout": lambda w: self.reply(0 if len(w) == 2 else -errno.EINVAL),
            "read": self.cmd_read, "write": self.cmd_write, "open": self.cmd_open,
            "close": self.cmd_close, "readbuf": self.cmd_readbuf, "writebuf": self.cmd_writebuf,
            "set": self.cmd_set, "gettrig": self.cmd_gettrig, "settrig": self.cmd_settrig,
        }.get(cmd)
        if handler is None:
            self.reply(-errno.EINVAL)
            return
        try:
            handler(words)
        except IIOErrno as exc:
            self.reply(-exc.errno)

    def _device(self, word: str):
        dev = self.dev.ctx.find_device(word)
        if dev is None:
            raise IIOErrno(errno.ENODEV, word)
        return dev

    def _address(self, words: list[str]):
        """words after the command -> (device, channel, kind, rest): READ/WRITE forms."""
        if len(words) < 2:
            raise IIOErrno(errno.EINVAL, "no device")
        dev = self._device(words[1])
        rest = words[2:]
        kind, chan = "dev", None
        if rest and rest[0].lower() == "debug":
            kind, rest = "debug", rest[1:]
        elif rest and rest[0].lower() == "buffer":
            kind, rest = "buffer", rest[1:]
        elif rest and rest[0].lower() in KEYWORDS_INOUT:
            if len(rest) < 2:
                raise IIOErrno(errno.EINVAL, "no channel")
            chan = dev.find_channel(rest[1], KEYWORDS_INOUT[rest[0].lower()])
            if chan is None:
                raise IIOErrno(errno.ENXIO, rest[1])
            kind, rest = "chan", rest[2:]
        return dev, chan, kind, rest

    def _check_attr(self, dev, chan, kind, attr: str) -> None:
        names = {"dev": dev.attrs, "debug": dev.debug_attrs, "buffer": dev.buffer_attrs,
                 "chan": chan.attrs if chan else []}[kind]
        if attr not in names:
            raise IIOErrno(errno.ENOENT, attr)

    def cmd_print(self, words) -> None:
        xml = self.dev.ctx.xml.encode()
        self.send(f"{len(xml)}\n".encode() + xml + b"\n")

    def cmd_help(self, words) -> None:
        self.send("Available commands: HELP EXIT PRINT VERSION TIMEOUT OPEN CLOSE READ WRITE "
                  "READBUF WRITEBUF GETTRIG SETTRIG SET\n")

    def cmd_read(self, words) -> None:
        dev, chan, kind, rest = self._address(words)
        if not rest:
            raise IIOErrno(errno.ENOSYS, "reading all attributes at once is not emulated")
        self._check_attr(dev, chan, kind, rest[0])
        value = self.dev.read_attr(dev, chan, rest[0], kind).encode() + b"\0"
        self.send(f"{len(value)}\n".encode() + value + b"\n")

    def cmd_write(self, words) -> None:
        dev, chan, kind, rest = self._address(words)
        if len(rest) != 2:
            raise IIOErrno(errno.EINVAL, "WRITE needs <attr> <bytes>")
        attr, nbytes = rest[0], int(rest[1])
        data = self.read_exact(nbytes)
        self._check_attr(dev, chan, kind, attr)
        self.dev.write_attr(dev, chan, attr, kind, data.decode(errors="replace"))
        self.reply(nbytes)

    def cmd_open(self, words) -> None:
        if len(words) not in (4, 5):
            raise IIOErrno(errno.EINVAL, "OPEN <dev> <samples> <mask> [CYCLIC]")
        dev = self._device(words[1])
        cyclic = len(words) == 5 and words[4].lower() == "cyclic"
        if dev.name in self.buffers:
            raise IIOErrno(errno.EBUSY, "already open on this connection")
        buf = self.dev.open_buffer(dev, int(words[2]), words[3], cyclic)
        self.buffers[dev.name] = buf
        self.reply(0)

    def cmd_close(self, words) -> None:
        dev = self._device(words[1])
        buf = self.buffers.pop(dev.name, None)
        if buf is None:
            raise IIOErrno(errno.ENXIO, "no buffer open")
        self.dev.close_buffer(buf)
        self.reply(0)

    def _buffer(self, words) -> Buffer:
        dev = self._device(words[1])
        buf = self.buffers.get(dev.name)
        if buf is None:
            raise IIOErrno(errno.EBADF, "no buffer open on this connection")
        return buf

    def cmd_readbuf(self, words) -> None:
        buf = self._buffer(words)
        want = int(words[2])
        block_bytes = buf.samples * buf.sample_size
        if want < buf.sample_size:
            self.reply(0)
            return
        mask = self._mask_hex(buf)
        first = True
        while want >= buf.sample_size:
            start = buf.dma.refill(self.cancel)
            if start is None:
                raise ConnectionError("session cancelled")
            data = self.dev.rx_block(buf, start)
            n = min(block_bytes, want - want % buf.sample_size)
            self.server.faults.throttle(n)
            head = f"{n}\n" + (mask if first else "")
            self.send(head.encode() + data[:n])
            first = False
            want -= n

    def _mask_hex(self, buf: Buffer) -> str:
        bits = 0
        for i, ch in enumerate(buf.dev.channels):
            if ch in buf.channels:
                bits |= 1 << i
        return f"{bits:0{buf.dev.mask_words * 8}x}\n"

    def cmd_writebuf(self, words) -> None:
        buf = self._buffer(words)
        nbytes = int(words[2])
        if nbytes < buf.sample_size:
            self.reply(0)
            return
        self.reply(0)
        data = self.read_exact(nbytes)
        self.server.faults.throttle(nbytes)
        block_bytes = buf.samples * buf.sample_size
        for off in range(0, nbytes, block_bytes):
            chunk = data[off:off + block_bytes]
            if len(chunk) < buf.sample_size:
                break
            samples = self.dev.tx_block(buf, chunk)
            if buf.dma.push(samples, self.cancel) is None:
                raise ConnectionError("session cancelled")
        self.reply(nbytes)

    def cmd_set(self, words) -> None:
        if len(words) != 4 or words[2].lower() != "buffers_count":
            raise IIOErrno(errno.EINVAL, "SET <dev> BUFFERS_COUNT <n>")
        dev = self._device(words[1])
        self.dev.set_kernel_buffers(dev, int(words[3]))
        self.reply(0)

    def cmd_gettrig(self, words) -> None:
        self._device(words[1])
        self.reply(-errno.ENOENT)          # no Pluto device has a trigger

    def cmd_settrig(self, words) -> None:
        self._device(words[1])
        self.reply(-errno.ENOENT)


class IIODServer(RadioServer):
    """Serves ``device`` (an `EmulatedPluto`) on ``host:port`` (port 0: pick a free one, see
    `port`) until `close`. ``faults`` injects unplug/stall/throughput cap."""

    session_class = _Session
    thread_name = "iiod"

    @property
    def uri(self) -> str:
        """The libiio URI of this radio (``ip:HOST:PORT``)."""
        return f"ip:{self.host}:{self.port}"
