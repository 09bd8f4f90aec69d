"""The simulated channel as a process: a `SimAir` served to remote radios over ZMQ.

`ChannelBroker` owns one `SimAir` (built from a bench's ``channel`` section by `air_from_bench`)
and answers `sim_backend.remote_radio.RemoteSimRadio` requests on a ROUTER socket, in the
shape of srsRAN's ZMQ virtual radio: time is the air's lock-step sample count, nothing runs on
its own. Transmitters schedule bursts (``transmit``) and then declare "I am done transmitting
up to sample t" (``tx_until``); a receive window ``[t0, t0 + n)`` is answered only once every
transmitter of the air has declared ``tx_until >= t0 + n`` (or after ``window_timeout_s``, with
an error naming the transmitters that stayed silent), so no window is cut before all bursts
arrived. Calls reach the air in the same order as in-process, so the same seed gives the same
samples as the in-process `SimAir`.

Impairments: the bench's ``channel.impairments`` preset (``uncalibrated-pluto`` or
``usrp-shared-ref``, drawn from ``channel.seed`` exactly as ``testbed calibrate`` does, see
`bench_impairments`) puts the TX hooks on the transmitters and the RX hook on the receiver.
A radio's ``tune`` (sent by `RemoteSimRadio.configure` when its carrier changes) calls the
hook's ``on_tune`` (new random LO phase) with a generator of its own, spawned from the air's
seed per radio, so the start order of the node processes does not change the run.

Clocks (as `sim_backend.sim_radio`): ``transmit``'s ``at`` is on the node's own clock (the hook
maps it onto the air grid) and is late when before that node's clock (`node_now`); ``now``
with a ``node`` returns that node's clock, without one the air clock; ``receive`` and
``tx_until`` are on the air clock. `new_realization` / `true_channels` return the earliest
sample that is not past on any clock (max of the air clock and every node clock), so that
``now + lead`` is a valid start for every radio.

Radio wire protocol (one request, one reply; DEALER -> ROUTER): frames ``[header, payload?]``,
header JSON ``{"op", "seq", ...}``; payload raw little-endian complex64 ``(rows, cols)`` as in
the header's ``shape``. Ops: ``hello(node)``, ``transmit(node, at, shape)+payload``,
``tx_until(node, until)``, ``receive(n, at)`` (reply carries the window), ``now(node?)``,
``tune(node?, receiver)``, ``info``.
Replies: ``{"ok": true, "seq", ...}`` or ``{"ok": false, "seq", "error", "kind"}`` with kind
"stream" (late / timeout) or "config" (bad request).

Hostile input: every request is checked by `sim_backend.broker_protocol.parse_request` before
anything touches the air (strict JSON, types, ranges, payload size); a refused one is logged,
counted in ``stats.refused`` and answered with an error. A transmitter index (and the receiver)
belongs to the connection whose ``hello`` claimed it first: ``transmit``/``tx_until``/``tune``
for that index (``receive``/receiver ``tune``) from any other connection are refused, so a
stranger cannot declare ``tx_until`` for a node or eat its windows. With CURVE (``security=``,
`testbed.net.transport.CurveServerSecurity` of the bench's keys) only bench keys connect, and a
key may only claim the role it was issued for (``roles``: node ids in index order and the
receiver id; the key's role id is the connection's ZAP User-Id); a restarted role with its key
takes its radio back. On a plain broker a radio stays with the first connection until the broker
restarts.

The broker's control-plane side (role ``channel``: new fading block, true channels for
perfect CSI) is `testbed.net.roles.channel.ChannelAgent`.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from sim_backend.air import SimAir
from sim_backend.broker_protocol import (MAX_WINDOW_SAMPLES, RADIO_OPS, BadRequest, RadioRequest,
                                         parse_request)
from sim_backend.channel import ChannelModel, fixed_bench_channels, noise_var_from_snr_db
from sim_backend.impairment_presets import PRESET_NAMES, BenchImpairments, preset_by_name
from sim_backend.sim_radio import node_now
from testbed.errors import ConfigError
from testbed.phy.budget import DEFAULT_BUDGET
from testbed.zmq_util import frame_property

log = logging.getLogger(__name__)

#: most receive windows waiting at once (the receiver asks one at a time)
MAX_PENDING = 64
#: most requests handled before waiting windows are looked at again (ZMQ queues every
#: connection fairly, so a flooding stranger delays the radios' requests by one share only)
MAX_BATCH = 256
#: largest frame the broker accepts: the biggest burst payload (complex64), bytes
MAX_FRAME_BYTES = 8 * MAX_WINDOW_SAMPLES

#: ``channel.impairments`` values the broker builds (``none`` or no value: no impairments).
IMPAIRMENT_PRESETS = PRESET_NAMES


def bench_impairments(bench) -> BenchImpairments | None:
    """The `BenchImpairments` of ``bench``'s ``channel.impairments`` preset, or None.

    Drawn from ``np.random.default_rng(channel.seed)`` for the bench's nodes (in bench order)
    at the receiver radio's ``center_freq_hz`` (Hz): the same parameters ``testbed calibrate
    --bench`` builds for that seed and preset.
    Raises ConfigError for an unknown preset name, listing the valid ones."""
    ch = bench.channel
    name = None if ch is None else ch.impairments
    if name in (None, "", "none"):
        return None
    if name not in PRESET_NAMES:
        raise ConfigError(f"bench {bench.name!r}: unknown channel.impairments {name!r}; use one "
                          f"of {list(PRESET_NAMES)} or 'none'")
    return preset_by_name(name, len(bench.nodes), float(bench.receiver.primary_radio.center_freq_hz),
                          ch.seed)


def air_from_bench(bench, n_tx: int = 1) -> SimAir:
    """A `SimAir` for ``bench`` (a `BenchConfig` with a ``channel`` section): transmitters
    0..N-1 in bench node order with ``n_tx`` antennas, the receiver's ``n_antennas``, noise
    variance from ``channel.snr_db`` at `LinkBudget.ref_power` (see `sim_backend.channel`), the
    channel seed, the receiver radio's sample rate (Hz), the impairment preset's hooks
    (`bench_impairments`), and one realization drawn -- as
    `sim_backend.sim_allreduce.build_sim_bench`."""
    ch = bench.channel
    if ch is None:
        raise ConfigError(f"bench {bench.name!r} has no 'channel' section; only simulated "
                          "benches have a channel broker")
    imp = bench_impairments(bench)
    ids = [n.id for n in bench.nodes]
    model = ChannelModel(len(ids), bench.receiver.n_antennas, n_tx, fading=ch.fading,
                         k_factor_db=ch.k_factor_db,
                         path_loss_db=np.array([ch.path_loss_db.get(i, 0.0) for i in ids]))
    air = SimAir(bench.receiver.n_antennas, noise_var_from_snr_db(ch.snr_db, DEFAULT_BUDGET.ref_power),
                 channel_model=model, seed=ch.seed,
                 sample_rate_hz=float(bench.receiver.primary_radio.sample_rate_hz),
                 rx_impairment=None if imp is None else imp.build_rx())
    hooks = [None] * len(ids) if imp is None else imp.build_tx()
    for n in range(len(ids)):
        air.register_tx(n, n_tx, hooks[n])
    if ch.realization == "fixed":     # the emulated air's one block (a static bench)
        air.set_channels(fixed_bench_channels(bench, bench.receiver.n_antennas, n_tx))
    else:
        air.new_realization()
    return air


@dataclass
class _PendingReceive:
    identity: bytes
    seq: int
    n: int
    at: int
    deadline: float


@dataclass
class BrokerStats:
    """Counts: requests per op, windows served, windows that had to wait for tx_until,
    requests refused (malformed, or for a role held by another connection)."""

    requests: dict = field(default_factory=dict)
    windows: int = 0
    waited_windows: int = 0
    refused: int = 0


@dataclass(frozen=True)
class BrokerRoles:
    """Who may claim what on a CURVE broker: ``node_ids[i]`` is the key name (role id) of
    transmitter ``i``, ``receiver_id`` the receiver's."""

    node_ids: tuple[str, ...]
    receiver_id: str


class ChannelBroker:
    """Serves ``air`` on a ZMQ ROUTER at ``endpoint`` from a background thread.

    window_timeout_s: how long a receive window may wait for missing ``tx_until`` markers, s.
    security: a callable ``security(ctx, [socket]) -> handle`` making the socket a CURVE server
    before it binds (`testbed.net.transport.CurveServerSecurity`), ``handle.stop()`` at close;
    with ``roles`` saying which key may claim which radio. None: plain TCP.
    Use `start()` / `close()` (or as a context manager); `address` is the bound endpoint.
    The air is shared with the control-plane side under `lock`."""

    def __init__(self, air: SimAir, endpoint: str = "tcp://127.0.0.1:*",
                 window_timeout_s: float = 10.0, security=None,
                 roles: BrokerRoles | None = None):
        if security is not None and roles is None:
            raise ConfigError("a CURVE channel broker needs roles= (which key claims which "
                              "radio)")
        self.air = air
        self.lock = threading.RLock()
        self.window_timeout_s = float(window_timeout_s)
        self.tx_until = {n: 0 for n in air.node_ids}
        self.roles = roles
        self._owners: dict = {}  # transmitter index or "rx" -> ZMQ identity that claimed it
        self._tune_rngs = _tune_generators(air)
        self.stats = BrokerStats()
        self._ctx = zmq.Context()
        self._security = None
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # a frame larger than the biggest burst is never buffered: its sender is disconnected
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        try:
            if security is not None:
                self._security = security(self._ctx, [self._sock])
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._teardown()
            raise ConfigError(f"channel broker cannot bind {endpoint}: {exc}; give another "
                              "address with --broker tcp://HOST:PORT (default: the bench's "
                              "controller pub_port + 1) or stop the process holding it") from None
        except BaseException:
            self._teardown()
            raise
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._pending: list[_PendingReceive] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ChannelBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "ChannelBroker":
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(target=self._serve, name="channel-broker", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._teardown()

    def _teardown(self) -> None:
        if self._security is not None:
            self._security.stop()
            self._security = None
        self._sock.close()
        self._ctx.term()

    # ------------------------------------------------------------------ control-plane side
    def new_realization(self) -> tuple[np.ndarray, int]:
        """Draw a new fading block; returns (H ``(N, N_r, N_t)`` complex128, `common_now`)."""
        with self.lock:
            return self.air.new_realization(), self.common_now()

    def true_channels(self) -> tuple[np.ndarray, int]:
        """Current channels ``(N, N_r, N_t)`` and `common_now` (samples)."""
        with self.lock:
            return self.air.true_channels(), self.common_now()

    def common_now(self) -> int:
        """Earliest sample not yet past on any radio's clock: max of the air clock and every
        transmitter's node clock (samples; equal to the air clock without clock impairments)."""
        with self.lock:
            return max([self.air.now] + [node_now(self.air, n) for n in self.air.node_ids])

    # ------------------------------------------------------------------ radio side
    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(20):
                for _ in range(MAX_BATCH):  # bounded: waiting windows are served in between
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._on_request(frames)
                    except Exception:  # one request must never stop the serving thread
                        self.stats.refused += 1
                        log.exception("broker: failed on a request from %r; ignored it",
                                      frames[0].bytes[:64])
            self._serve_pending()

    def _reply(self, identity: bytes, header: dict, payload: bytes | None = None) -> None:
        frames = [identity, json.dumps(header).encode()]
        if payload is not None:
            frames.append(payload)
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or its queue full: nothing to do
            log.warning("broker: reply to %r dropped: %s", identity[:64], exc)

    def _error(self, identity: bytes, seq, kind: str, text: str) -> None:
        self._reply(identity, {"ok": False, "seq": seq, "kind": kind, "error": text})

    def _on_request(self, raw: list) -> None:
        identity = raw[0].bytes
        user_id = frame_property(raw[-1], "User-Id")
        try:
            req = parse_request([f.bytes for f in raw[1:]])
            self._check_owner(identity, user_id, req)
        except BadRequest as exc:
            self.stats.refused += 1
            log.warning("broker: refused request from %r at %s%s: %s", identity[:64],
                        frame_property(raw[-1], "Peer-Address") or "unknown address",
                        f" (CURVE key of {user_id!r})" if user_id else "", exc)
            self._error(identity, exc.seq, "config", f"refused request: {exc}")
            return
        op, seq = req.op, req.seq
        self.stats.requests[op] = self.stats.requests.get(op, 0) + 1
        try:
            if op == "receive":
                self._pending.append(_PendingReceive(identity, seq, req.n, req.at,
                                                     time.monotonic() + self.window_timeout_s))
                self._serve_pending()
                self.stats.waited_windows += bool(self._pending and self._pending[-1].seq == seq)
                return
            self._reply(identity, {"ok": True, "seq": seq, **self._handle(identity, req)})
        except _Late as exc:
            self._error(identity, seq, "stream", str(exc))
        except (ConfigError, ValueError, KeyError, TypeError) as exc:
            self._error(identity, seq, "config", f"{type(exc).__name__}: {exc}")
        self._serve_pending()

    def _check_owner(self, identity: bytes, user_id: str | None, req: RadioRequest) -> None:
        """Refuse (BadRequest) a request for a radio another connection claimed, a claim by the
        wrong CURVE key, and receive windows beyond `MAX_PENDING`."""
        claims = []
        if req.node is not None and req.op in ("hello", "transmit", "tx_until", "tune"):
            if req.node not in self.tx_until:
                raise BadRequest(f"transmitter {req.node} is not on this air (ids "
                                 f"{list(self.tx_until)}); check --id", req.seq)
            claims.append(req.node)
        if req.op == "receive" or (req.receiver and req.op in ("hello", "tune")):
            claims.append("rx")
        for who in claims:
            name = f"transmitter {who}" if who != "rx" else "the receiver"
            if user_id is not None and self.roles is not None:
                want = self.roles.receiver_id if who == "rx" else self.roles.node_ids[who]
                if user_id != want:
                    raise BadRequest(f"the CURVE key of {user_id!r} cannot act as {name} "
                                     f"({want!r}); use that role's own key", req.seq)
            owner = self._owners.get(who)
            if owner is None and req.op == "hello":
                continue
            if req.op == "hello" and user_id is not None and self.roles is not None:
                log.info("broker: %s claimed again by a new connection with its own CURVE key "
                         "(a restarted role)", name)
                continue  # the key was checked above: a restarted role takes its radio back
            if owner != identity:
                raise BadRequest(f"{name} is held by another connection" if owner else
                                 f"say hello as {name} first", req.seq)
        if req.op == "hello":
            for who in claims:
                self._owners[who] = identity
        if req.op == "receive" and len(self._pending) >= MAX_PENDING:
            raise BadRequest(f"{MAX_PENDING} receive windows already wait; ask one at a time",
                             req.seq)

    def _handle(self, identity: bytes, req: RadioRequest) -> dict:
        op = req.op
        with self.lock:
            if op == "hello":
                return {"n_rx": self.air.n_rx, "sample_rate_hz": self.air.sample_rate_hz,
                        "now": self.air.now, "node_ids": list(self.tx_until)}
            if op == "now":
                if req.node is None:
                    return {"now": self.air.now}
                return {"now": node_now(self.air, self._tx_node(req.node))}
            if op == "tune":
                if req.node is not None:
                    node = self._tx_node(req.node)
                    self.air.tx_impairment(node).on_tune(self._tune_rngs[node])
                if req.receiver:
                    self.air.rx_impairment.on_tune(self._tune_rngs["rx"])
                return {}
            if op == "info":
                return {"now": self.air.now, "tx_until": {str(k): v for k, v in
                                                          self.tx_until.items()},
                        "pending_bursts": self.air.pending_bursts(),
                        "requests": dict(self.stats.requests), "windows": self.stats.windows,
                        "refused": self.stats.refused,
                        "claimed": sorted(str(k) for k in self._owners)}
            node = self._tx_node(req.node)
            if op == "transmit":
                earliest = node_now(self.air, node)
                if req.at < earliest:
                    raise _Late(f"burst of node {node} at node sample {req.at} is late (node "
                                f"clock now={earliest}, air clock {self.air.now}); schedule "
                                "further ahead")
                x = np.frombuffer(req.payload, dtype="<c8").reshape(req.shape)
                self.air.schedule(node, x, req.at)
                return {}
            # tx_until: never goes backwards
            self.tx_until[node] = max(self.tx_until[node], req.until)
            return {}

    def _tx_node(self, node) -> int:
        node = int(node)
        if node not in self.tx_until:
            raise ConfigError(f"transmitter {node} is not on this air")
        return node

    def _serve_pending(self) -> None:
        if not self._pending:
            return
        now = time.monotonic()
        keep = []
        for p in self._pending:
            end = p.at + p.n
            with self.lock:
                missing = [n for n, t in self.tx_until.items() if t < end]
                if not missing:
                    if p.at < self.air.now:
                        self._error(p.identity, p.seq, "stream",
                                    f"receive window at sample {p.at} is already past (now="
                                    f"{self.air.now}); ask for a later window")
                        continue
                    y = self.air.receive(p.n, p.at, np.complex64).astype("<c8", copy=False)
                    self.stats.windows += 1
                    self._reply(p.identity, {"ok": True, "seq": p.seq, "shape": list(y.shape),
                                             "now": self.air.now}, y.tobytes())
                    continue
            if now > p.deadline:
                self._error(p.identity, p.seq, "stream",
                            f"receive window [{p.at}, {end}) timed out after "
                            f"{self.window_timeout_s:g} s: transmitters {missing} never declared "
                            "tx_until past its end (are their node processes running?)")
                continue
            keep.append(p)
        self._pending = keep


def _tune_generators(air: SimAir) -> dict:
    """One generator per transmitter (key: node id) and for the receiver (key "rx"), spawned
    from the entropy of the air's seed without drawing from the air's own generator."""
    entropy = air.rng.bit_generator.seed_seq.entropy
    gens: dict = {n: np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(1, i)))
                  for i, n in enumerate(air.node_ids)}
    gens["rx"] = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(2,)))
    return gens


class _Late(Exception):
    """A burst scheduled before the air clock."""
