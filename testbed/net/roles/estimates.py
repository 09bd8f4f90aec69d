"""The receiver's broadcast of each over-the-air round's estimate to the nodes, and the
optional measurement tap.

* `EstimatePublisher` (receiver): a PUB socket of its own; one `Estimate` per payload round.
* `EstimateListener` (node): SUB to it; ``wait(round_id)`` returns that round's estimate.
* `TapSender` (node, ``--measure-error`` only): PUSHes a copy of each partial it sent over the
  air to the `MeasurementSink` (controller process), which also listens to the estimates and
  computes the all-reduce error per round. Nothing in the computation reads the tap.

Messages are typed (`testbed.net.schema`) and go through the codec; every socket counts its
traffic (`testbed.net.traffic`). On a CURVE bench (``keys``: the role's
`testbed.net.roles.common.RoleKeys`) the estimates PUB is a CURVE server with the receiver's key
and the tap PULL one with the bench's server key; both admit bench keys only.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import zmq

from testbed.net.codec import DEFAULT_CODEC
from testbed.net.errors import MessageError
from testbed.net.schema import Estimate, TapPartial
from testbed.net.traffic import Traffic, frames_bytes

log = logging.getLogger(__name__)


class _Socket:
    """A ZMQ socket with its own context, codec and traffic counters."""

    def __init__(self, kind: int, address: str, bind: bool, name: str, secure=None) -> None:
        self.name = name
        self.traffic = Traffic()
        self._ctx = zmq.Context()
        self._security = None
        self.sock = self._ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 1000)
        if kind == zmq.SUB:
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            if secure is not None:  # CURVE: secure(ctx, sock) -> handle with stop(), or None
                self._security = secure(self._ctx, self.sock)
            (self.sock.bind if bind else self.sock.connect)(address)
        except zmq.ZMQError as exc:
            self.close()
            from testbed.errors import ConfigError
            raise ConfigError(f"cannot {'bind' if bind else 'connect'} the {name} socket at "
                              f"{address}: {exc}") from exc
        self.address = self.sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else address

    def send(self, msg) -> None:
        frames = DEFAULT_CODEC.encode(msg)
        self.traffic.add(self.name, "out", msg.type, frames_bytes(frames))
        self.sock.send_multipart(frames)

    def recv(self, timeout_s: float):
        """The next decoded message, or None after ``timeout_s`` seconds (malformed: skipped)."""
        if not self.sock.poll(max(0, int(timeout_s * 1000))):
            return None
        frames = self.sock.recv_multipart()
        try:
            msg = DEFAULT_CODEC.decode(frames)
        except MessageError as err:
            self.traffic.add(self.name, "in", "rejected", frames_bytes(frames))
            log.warning("%s: rejected a message: %s", self.name, err)
            return None
        self.traffic.add(self.name, "in", msg.type, frames_bytes(frames))
        return msg

    def close(self) -> None:
        if self._security is not None:
            self._security.stop_monitor()
        if not self.sock.closed:
            self.sock.close(linger=0)
        if self._security is not None:
            self._security.stop()
            self._security = None
        if not self._ctx.closed:
            self._ctx.term()


class EstimatePublisher(_Socket):
    """The receiver's PUB socket for estimates, bound at ``address`` (``tcp://host:port``)."""

    def __init__(self, address: str, keys=None) -> None:
        super().__init__(zmq.PUB, address, bind=True, name="estimates",
                         secure=None if keys is None else keys.estimates_server)

    def publish(self, round_id: int, layer: int, site: str, z_hat: np.ndarray) -> None:
        """Broadcast the estimate of round ``round_id`` (float32 on the wire)."""
        self.send(Estimate(round_id=round_id, layer=layer, site=site,
                           tensor=np.ascontiguousarray(z_hat, dtype=np.float32)))


class EstimateListener(_Socket):
    """A node's SUB socket to the receiver's estimates."""

    def __init__(self, address: str, keys=None) -> None:
        super().__init__(zmq.SUB, address, bind=False, name="estimates",
                         secure=None if keys is None else keys.estimates_client)

    def wait(self, round_id: int, timeout_s: float) -> np.ndarray:
        """The estimate of round ``round_id`` (older rounds' estimates are skipped); raises
        TimeoutError naming the receiver when none arrives within ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no estimate of round {round_id} from the receiver at "
                                   f"{self.address} within {timeout_s:g} s; is the receiver "
                                   "running and its --estimates address right?")
            msg = self.recv(left)
            if isinstance(msg, Estimate) and msg.round_id == round_id:
                return np.asarray(msg.tensor)


class TapSender(_Socket):
    """A node's PUSH socket to the measurement sink."""

    def __init__(self, address: str, keys=None) -> None:
        super().__init__(zmq.PUSH, address, bind=False, name="tap",
                         secure=None if keys is None else keys.tap_client)
        self.sock.setsockopt(zmq.SNDHWM, 10000)

    def copy(self, round_id: int, layer: int, site: str, node: int, partial: np.ndarray) -> None:
        """Copy one partial (float32) to the sink."""
        self.send(TapPartial(round_id=round_id, layer=layer, site=site, node=node,
                                tensor=np.ascontiguousarray(partial, dtype=np.float32)))


#: rounds the measurement sink keeps waiting for their missing copies / estimate
MAX_OPEN_ROUNDS = 256


class MeasurementSink:
    """The measurement tap's sink: PULL (bound) for the nodes' `TapPartial` copies, SUB to the
    receiver's estimates; for every round with all ``n_nodes`` partials and the estimate it
    records the mean squared error per real value. Runs in its own thread; the computation
    never reads it. ``address``: where to bind the PULL socket (port may be ``*``)."""

    def __init__(self, address: str, estimates_address: str, n_nodes: int, keys=None) -> None:
        self.pull = _Socket(zmq.PULL, address, bind=True, name="tap",
                            secure=None if keys is None else keys.tap_server)
        self.sub = _Socket(zmq.SUB, estimates_address, bind=False, name="estimates",
                           secure=None if keys is None else keys.estimates_client)
        self.address = self.pull.address
        self.n_nodes = n_nodes
        self.records: list[dict] = []
        self._partials: dict[int, dict[int, np.ndarray]] = {}
        self._estimates: dict[int, tuple[int, str, np.ndarray]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="measurement-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pull.sock, zmq.POLLIN)
        poller.register(self.sub.sock, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(100))
            try:
                if self.pull.sock in ready:
                    m = self.pull.recv(0)
                    if isinstance(m, TapPartial) and 0 <= m.node < self.n_nodes:
                        self._partials.setdefault(m.round_id, {})[m.node] = np.asarray(m.tensor)
                        self._match(m.round_id)
                if self.sub.sock in ready:
                    m = self.sub.recv(0)
                    if isinstance(m, Estimate):
                        self._estimates[m.round_id] = (m.layer, m.site, np.asarray(m.tensor))
                        self._match(m.round_id)
                for table in (self._partials, self._estimates):  # bounded whatever arrives
                    while len(table) > MAX_OPEN_ROUNDS:
                        table.pop(min(table))
            except ValueError as exc:  # e.g. copies of mismatching shapes: skip that round
                log.warning("measurement sink: %s; round skipped", exc)

    def _match(self, round_id: int) -> None:
        parts = self._partials.get(round_id, {})
        if len(parts) < self.n_nodes or round_id not in self._estimates:
            return
        layer, site, z_hat = self._estimates.pop(round_id)
        del self._partials[round_id]
        exact = np.sum([parts[n].astype(np.float64) for n in sorted(parts)], axis=0)
        with self._lock:
            self.records.append({"round_id": round_id, "layer": layer, "site": site,
                                 "mse_tensor": float(np.mean((z_hat.astype(np.float64) - exact) ** 2)),
                                 "signal_power": float(np.mean(exact ** 2))})

    def summary(self, settle_s: float = 1.0) -> dict:
        """What results.json records of the tap (waits up to ``settle_s`` for late copies)."""
        deadline = time.monotonic() + settle_s
        while (self._partials or self._estimates) and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            recs = list(self.records)
        out = {"source": "measurement tap: copies of the nodes' partials, never read by the "
                         "computation (--measure-error)",
               "rounds_measured": len(recs),
               "rounds_incomplete": len(self._partials) + len(self._estimates)}
        if recs:
            out["mse_tensor_mean"] = float(np.mean([r["mse_tensor"] for r in recs]))
            out["per_round_mse_tensor"] = [r["mse_tensor"] for r in recs]
        out["traffic"] = {"tap": self.pull.traffic.table(), "estimates": self.sub.traffic.table()}
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.pull.close()
        self.sub.close()
