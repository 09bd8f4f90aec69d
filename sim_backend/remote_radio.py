"""`RemoteSimRadio`: the `Radio` interface on a `sim_backend.broker.ChannelBroker` in another
process (ZMQ DEALER, one request at a time, see the broker's wire protocol).

A transmitter (``node_index`` given) sends bursts with `transmit` and must then call
`done_until(sample)` ("nothing more from me before ``sample``") so that the receiver's windows
up to that sample can be served; the receiver (``receiver=True``) gets windows with `receive`,
which blocks in the broker until every transmitter declared it is done up to the window end.
``now()`` is a round trip to the broker and follows `sim_backend.sim_radio`: a transmit-only
radio reports its node clock (the node's own sample count under the air's clock-map
impairments), the receiver (and a radio that does both) the air's lock-step clock. Burst
times are on the radio's own clock; ``done_until`` and receive windows are on the air clock.
`configure` to a new carrier sends ``tune`` (the broker calls the impairment hooks' on_tune:
a new random LO phase, as after a real AD9361 tune).

This module also registers the ``sim`` radio kind with `testbed.radio.factory`:
``open_radio(sim_config, role=..., air=SimAir)`` gives an in-process `SimRadio`,
``open_radio(sim_config, role=..., broker="tcp://...", node_index=i)`` (or
``params: {broker: ...}`` in the radio config) a `RemoteSimRadio`.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import zmq

from testbed.activity import waiting_on
from testbed.errors import ConfigError, RadioNotFoundError, StreamError
from testbed.radio import factory
from testbed.radio.base import Radio, RadioIdentity, RadioSettings, StreamCounters, as_channel_matrix


class RemoteSimRadio(Radio):
    """A radio on a remote simulated air. ``timeout_s`` bounds every broker round trip (s);
    a receive may legitimately wait for slow transmitters up to the broker's window timeout.
    ``secure``: a callable making the DEALER socket a CURVE client before it connects (e.g.
    ``lambda sock: testbed.net.transport.curve_client(sock, keys)``), for a CURVE broker.
    The ``hello`` claims transmitter ``node_index`` (and the receiver) for this connection."""

    has_hardware_timestamps = True

    def __init__(self, broker_address: str, node_index: int | None = None, *,
                 n_tx: int = 1, receiver: bool = False, timeout_s: float = 15.0,
                 secure=None) -> None:
        if node_index is None and not receiver:
            raise ConfigError("a RemoteSimRadio needs a node_index (transmitter) and/or "
                              "receiver=True")
        self.address = broker_address
        self.node_index = node_index
        self.is_receiver = bool(receiver)
        self.timeout_s = float(timeout_s)
        self._seq = itertools.count()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if secure is not None:
            secure(self._sock)
        self._sock.connect(broker_address)
        self._counters = StreamCounters()
        self._tuned_freq: float | None = None
        self._closed = False
        self.clipped_samples = 0
        try:
            hello = self._call({"op": "hello", "node": node_index, "receiver": self.is_receiver},
                               timeout_s=min(timeout_s, 10))
        except StreamError as exc:
            self.close()
            raise RadioNotFoundError(f"no channel broker answers at {broker_address}: {exc}; "
                                     "start it with `testbed channel --bench ...`") from None
        except BaseException:  # refused (e.g. the radio is held by another connection)
            self.close()
            raise
        self.n_rx = int(hello["n_rx"])
        self._settings = RadioSettings(n_tx_channels=n_tx if node_index is not None else 0,
                                       n_rx_channels=self.n_rx if receiver else 0,
                                       sample_rate_hz=float(hello["sample_rate_hz"]))

    # ---------------------------------------------------------------- wire
    def _call(self, header: dict, payload: bytes | None = None,
              timeout_s: float | None = None) -> tuple[dict, list[bytes]]:
        if self._closed:
            raise StreamError("this RemoteSimRadio was closed; create a new one")
        with waiting_on(f"waiting on the channel broker {self.address} ({header['op']})"):
            return self._call_waiting(header, payload, timeout_s)

    def _call_waiting(self, header: dict, payload: bytes | None,
                      timeout_s: float | None) -> tuple[dict, list[bytes]]:
        seq = next(self._seq)
        frames = [json.dumps({**header, "seq": seq}).encode()]
        if payload is not None:
            frames.append(payload)
        self._sock.send_multipart(frames)
        limit = self.timeout_s if timeout_s is None else timeout_s
        while True:
            if not self._sock.poll(int(limit * 1000)):
                raise StreamError(f"channel broker at {self.address} did not answer "
                                  f"{header['op']} within {limit:g} s")
            got = self._sock.recv_multipart()
            h = json.loads(got[0])
            if h.get("seq") != seq:  # a stale reply to an earlier, timed-out request
                continue
            if not h.get("ok"):
                if h.get("kind") == "stream":
                    raise StreamError(f"channel broker: {h.get('error')}")
                raise ConfigError(f"channel broker: {h.get('error')}")
            return (h, got[1:]) if payload is None and header["op"] == "receive" else h

    # ---------------------------------------------------------------- Radio interface
    def configure(self, settings: RadioSettings) -> None:
        """Check channel counts and sample rate against the air; on the first configure and
        whenever the carrier changes, ask the broker to ``tune`` this radio (its impairment
        hooks' on_tune: new random LO phase on AD9361-like radios)."""
        if self.node_index is not None and settings.n_tx_channels != self._settings.n_tx_channels:
            raise ConfigError(f"node {self.node_index} has {self._settings.n_tx_channels} TX "
                              f"antennas; settings ask for {settings.n_tx_channels}")
        if self.is_receiver and settings.n_rx_channels != self.n_rx:
            raise ConfigError(f"the air has {self.n_rx} receive antennas; settings ask for "
                              f"{settings.n_rx_channels}")
        if settings.sample_rate_hz != self._settings.sample_rate_hz:
            raise ConfigError(f"sample_rate_hz must equal the air's "
                              f"{self._settings.sample_rate_hz} Hz, got {settings.sample_rate_hz}")
        if self._tuned_freq != settings.center_freq_hz:
            self._call({"op": "tune", "node": self.node_index, "receiver": self.is_receiver})
            self._tuned_freq = settings.center_freq_hz
        self._settings = settings

    @property
    def settings(self) -> RadioSettings:
        return self._settings

    def now(self) -> int:
        """This radio's sample clock (samples): the node clock for a transmit-only radio, the
        air clock for the receiver (and a radio that also receives)."""
        node = self.node_index if not self.is_receiver else None
        return int(self._call({"op": "now", "node": node})["now"])

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Schedule a burst ``(n_tx, K)`` (full scale 1.0) at node sample ``at_sample`` (this
        node's clock; equal to the air clock without clock impairments)."""
        if self.node_index is None:
            raise ConfigError("this RemoteSimRadio is receive-only; give it a node_index")
        x = np.ascontiguousarray(as_channel_matrix(samples, self._settings.n_tx_channels),
                                 dtype="<c8")
        try:
            self._call({"op": "transmit", "node": self.node_index, "at": int(at_sample),
                        "shape": list(x.shape)}, x.tobytes())
        except StreamError as exc:
            if "late" in str(exc):
                self._counters.late += 1
            raise
        self.clipped_samples += int(np.count_nonzero(np.abs(x.real) > 1.0)
                                    + np.count_nonzero(np.abs(x.imag) > 1.0))
        self._counters.samples_sent += x.shape[1]

    def done_until(self, sample: int) -> None:
        """Declare that this transmitter sends nothing more before air sample ``sample`` (the
        receiver's clock): the broker releases receive windows up to it."""
        if self.node_index is None:
            raise ConfigError("done_until is for transmitters")
        self._call({"op": "tx_until", "node": self.node_index, "until": int(sample)})

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Window ``[at_sample, at_sample + n_samples)`` as complex64 ``(N_r, n_samples)``;
        waits (in the broker) until every transmitter is done up to the window end."""
        if not self.is_receiver:
            raise ConfigError("this RemoteSimRadio is transmit-only; create it with receiver=True")
        try:
            h, payload = self._call({"op": "receive", "n": int(n_samples), "at": int(at_sample)})
        except StreamError as exc:
            if "past" in str(exc):
                self._counters.late += 1
            raise
        rows, cols = h["shape"]
        self._counters.samples_received += int(cols)
        return np.frombuffer(payload[0], dtype="<c8").reshape(rows, cols).astype(np.complex64)

    def counters(self) -> StreamCounters:
        return StreamCounters(**self._counters.as_dict())

    def identity(self) -> RadioIdentity:
        serial = f"sim-node-{self.node_index}" if self.node_index is not None else "sim-rx"
        return RadioIdentity(kind="sim", serial=serial, firmware="sim_backend.broker",
                             address=self.address,
                             extra={"receiver": self.is_receiver, "node_index": self.node_index})

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()
            self._ctx.term()


def open_sim_radio(config, *, role: str = "any", node_id: str = "", air=None, broker=None,
                   node_index: int | None = None, **options) -> Radio:
    """`testbed.radio.factory` constructor of the ``sim`` kind (see module docstring).

    role "node" needs ``node_index`` (the node's position in the bench); "receiver" receives.
    ``air``: an in-process `SimAir`; else ``broker`` (or ``config.params['broker']``), the
    broker's address. The radio is configured from ``config.to_settings()``."""
    receiver = role == "receiver"
    if role == "node" and node_index is None:
        raise ConfigError(f"sim radio of {node_id!r}: role 'node' needs node_index=")
    tx_index = node_index if role in ("node", "any") else None
    n_tx = int(getattr(config, "n_tx_channels", 1) or 1)
    settings = config.to_settings()
    if air is not None:
        from sim_backend.sim_radio import SimRadio
        radio: Radio = SimRadio(air, tx_index, n_tx=n_tx, receiver=receiver)
    else:
        address = broker or getattr(config, "params", {}).get("broker")
        if not address:
            raise ConfigError(f"sim radio of {node_id!r}: give air= (in-process) or the channel "
                              "broker address (broker= or params: {broker: tcp://host:port})")
        radio = RemoteSimRadio(address, tx_index, n_tx=n_tx, receiver=receiver, **options)
    if receiver:
        settings = RadioSettings(**{**settings.__dict__, "n_tx_channels": 0})
    else:
        settings = RadioSettings(**{**settings.__dict__, "n_rx_channels": 0})
    radio.configure(settings)
    return radio


factory.register_radio_kind("sim", open_sim_radio, replace=True)
