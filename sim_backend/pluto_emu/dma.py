"""The Pluto's RX and TX DMA over the real-time air: kernel blocks, overflow and underflow.

Positions are sample indices on the radio's own clock (`sim_backend.realtime_air.AirRadio`).

RX (`RxDma`): the ADC stream starts when the buffer is created. It fills the kernel's blocks
one after another (``n_blocks`` of ``block`` samples); `refill` gives the oldest filled block
back to the DMA and hands out the next one (waiting for it to fill when none is ready). The
block the client holds is not available to the DMA. When every block is full the samples that
arrive are dropped, whole stretches at a time, and the ADC core's overflow bit is set: the next
block starts where the DMA got a free block again (the sample count jumps).

TX (`TxDma`): the DAC stream starts at the first push, ``latency`` samples after it. Blocks
play back to back; `push` waits while all kernel blocks are queued (so a client is paced at the
DAC's rate). If the queue runs dry the DAC sends zeros and the DDS core's underflow bit is set;
the next block starts ``latency`` after its push: the TX clock has slipped. A cyclic buffer is
one block repeated until the buffer is destroyed; pushing it again is EBUSY.
"""
from __future__ import annotations

import errno
import threading
from collections import deque

import numpy as np

from sim_backend.pluto_emu.ad9361 import IIOErrno
from sim_backend.realtime_air import AirRadio

#: Samples between a TX push and the DAC sending it (DMA and FIFO latency).
TX_LATENCY_SAMPLES = 256


class RxDma:
    """RX DMA of one buffer (see the module docstring). ``on_overflow()`` is called when
    samples are dropped."""

    def __init__(self, radio: AirRadio, block: int, n_blocks: int, on_overflow) -> None:
        self.radio = radio
        self.block = int(block)
        self.n_blocks = max(int(n_blocks), 1)
        self._on_overflow = on_overflow
        self._lock = threading.Lock()
        self.next_start = radio.now()
        self._free = self.n_blocks
        self._filled: deque[int] = deque()
        self._held = False
        self.dropped_samples = 0
        self.overflows = 0

    def _advance(self, now: int) -> None:
        while self._free > 0 and self.next_start + self.block <= now:
            self._filled.append(self.next_start)
            self.next_start += self.block
            self._free -= 1

    def poll(self) -> None:
        """Bring the DMA up to now; flags an overflow if it is starving for blocks."""
        with self._lock:
            self._starve_check(self.radio.now())

    def _starve_check(self, now: int) -> None:
        self._advance(now)
        if self._free == 0 and self.next_start < now:
            self.dropped_samples += now - self.next_start
            self.overflows += 1
            self.next_start = now
            self._on_overflow()

    def refill(self, cancel: threading.Event | None = None) -> int | None:
        """Give back the held block, take the next filled one: its first sample index.
        Waits while none is filled; None if ``cancel`` got set while waiting."""
        with self._lock:
            self._starve_check(self.radio.now())
            if self._held:
                self._free += 1
                self._held = False
        while True:
            with self._lock:
                self._advance(self.radio.now())
                if self._filled:
                    self._held = True
                    return self._filled.popleft()
                due = self.next_start + self.block
            if not self.radio.wait_until(due, cancel):
                return None


class TxDma:
    """TX DMA of one buffer (see the module docstring). ``on_underflow()`` is called when
    the DAC ran dry."""

    def __init__(self, radio: AirRadio, block: int, n_blocks: int, cyclic: bool,
                 on_underflow, latency: int = TX_LATENCY_SAMPLES) -> None:
        self.radio = radio
        self.block = int(block)
        self.n_blocks = max(int(n_blocks), 1)
        self.cyclic = cyclic
        self.latency = int(latency)
        self._on_underflow = on_underflow
        self._lock = threading.Lock()
        self._queued: deque[tuple[int, int]] = deque()
        self.last_end: int | None = None
        self.first_start: int | None = None
        self._dry_flagged = False
        self.underflows = 0
        self.closed = False

    def poll(self) -> None:
        """Flags an underflow if the DAC is running dry now."""
        with self._lock:
            self._dry_check(self.radio.now())

    def _dry_check(self, now: int) -> None:
        if self.cyclic or self.last_end is None or self._dry_flagged:
            return
        if self.last_end <= now:
            self._dry_flagged = True
            self.underflows += 1
            self._on_underflow()

    def push(self, samples: np.ndarray, cancel: threading.Event | None = None) -> int | None:
        """Queue ``samples`` (n_tx, K) (DAC full scale 1.0): the index of their first sample on
        the radio's clock, or None if ``cancel`` got set while waiting for a free block."""
        with self._lock:
            if self.cyclic and self.last_end is not None:
                raise IIOErrno(errno.EBUSY, "cyclic buffer already pushed")
        while True:
            with self._lock:
                now = self.radio.now()
                while self._queued and self._queued[0][1] <= now:
                    self._queued.popleft()
                if len(self._queued) < self.n_blocks:
                    break
                due = self._queued[0][1]
            if not self.radio.wait_until(due, cancel):
                return None
        with self._lock:
            self._dry_check(now)
            if self.last_end is None or self.last_end <= now:
                start = now + self.latency
            else:
                start = self.last_end
            if self.first_start is None:
                self.first_start = start
            if self.cyclic:
                self.radio.tx_repeat(samples, start)
                self.last_end = start + samples.shape[1]
            else:
                self.radio.tx_push(samples, start)
                self.last_end = start + samples.shape[1]
                self._queued.append((start, self.last_end))
            self._dry_flagged = False
            return start

    def close(self) -> None:
        """Buffer destroyed: the DMA stops, queued blocks never leave."""
        with self._lock:
            self.closed = True
            if self.last_end is not None:
                self.radio.tx_cut(self.radio.now())
