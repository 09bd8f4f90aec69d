"""The agent base class: registers with the controller, heartbeats, serves its requests.

Subclass `Agent` and override ``handle(message) -> reply | None`` (requests sent to this agent)
and, if needed, ``on_broadcast(message)`` (RESULT and other broadcasts) and
``on_registered(ack)``. ``run()`` returns a short exit reason when the controller says
SHUTDOWN, when ``stop()`` is called, or when the parent process is gone; it raises
`RegistrationError` if refused / unanswered and `ControllerLostError` if the controller falls
silent for ``controller_timeout_s``.

Heartbeats come from their own thread, so they do not stop while a handler waits on its radio,
the channel broker or a long computation; each carries what the agent is waiting on and for how
long (`testbed.activity`), so the controller can tell a dead or frozen role (heartbeats stop)
from a live one stuck on its radio or the broker. The socket is shared under a lock.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from testbed.activity import describe, waiting_on
from testbed.net.codec import DEFAULT_CODEC, Codec
from testbed.net.errors import ControllerLostError, MessageError, RegistrationError
from testbed.net.schema import (PROTOCOL_VERSION, Capabilities, Error, Heartbeat, Message,
                                Register, RegisterAck, RegisterReject, Shutdown, reply)
from testbed.net.transport import AgentTransport, CurveClientKeys, Incoming

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """What an agent needs.

    node_id / role: its bench identity ("node" | "receiver" | "channel").
    router_address / pub_address: the controller's bound addresses.
    model_fingerprint: hash of the model it loaded (must equal the controller's).
    heartbeat_interval_s: heartbeat period until the controller's ack overrides it, seconds.
    controller_timeout_s: controller silence after which the agent gives up, seconds.
    register_timeout_s / register_retry_s: overall registration wait and resend period, s.
    watch_parent: exit when the parent process disappears (``os.getppid()`` changes).
    protocol_version: what REGISTER claims (only tests change it).
    """

    node_id: str
    router_address: str
    pub_address: str
    role: str = "node"
    model_fingerprint: str = ""
    capabilities: Capabilities = field(default_factory=Capabilities)
    heartbeat_interval_s: float = 0.5
    controller_timeout_s: float = 3.0
    register_timeout_s: float = 10.0
    register_retry_s: float = 1.0
    watch_parent: bool = True
    curve: CurveClientKeys | None = None
    codec: Codec = DEFAULT_CODEC
    protocol_version: int = PROTOCOL_VERSION


class Agent:
    """Base agent. Thread use: run() in one thread; stop() may be called from any other."""

    def __init__(self, config: AgentConfig):
        self.config = config
        self.transport: AgentTransport | None = None
        self.status = "ok"
        self.heartbeat_interval_s = config.heartbeat_interval_s
        self.n_handled = 0
        self._stop = threading.Event()
        self._ppid = os.getppid()
        self._hb_seq = 0
        self._last_controller = 0.0
        self._backlog: collections.deque[Incoming] = collections.deque()  # read, not served
        self._io = threading.Lock()            # the transport's sockets, shared with heartbeats
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._last_hb = float("-inf")          # monotonic time of the last heartbeat sent
        self._run_thread = threading.get_ident()

    # ------------------------------------------------------------- to override
    def handle(self, message: Message) -> Message | None:
        """Answer a request sent to this agent; return the reply (``reply_to`` is filled in
        automatically) or None. The default refuses every request with an ERROR."""
        return Error(code="unsupported", node_id=self.config.node_id,
                     message=f"{type(self).__name__} does not handle {message.type}")

    def on_broadcast(self, message: Message) -> None:
        """Called for each broadcast other than HEARTBEAT / SHUTDOWN. Default: ignore."""

    def on_registered(self, ack: RegisterAck) -> None:
        """Called once registration is acknowledged. Default: nothing."""

    # ------------------------------------------------------------- lifecycle
    @property
    def rejections(self):
        """Rejected incoming messages per `MessageError` kind (empty before run())."""
        return self.transport.rejections if self.transport else {}

    def stop(self) -> None:
        """Ask ``run()`` to return at its next poll (within ~0.1 s)."""
        self._stop.set()

    def run(self) -> str:
        """Connect, register, then serve until shutdown; return the exit reason."""
        cfg = self.config
        self._run_thread = threading.get_ident()
        self.transport = AgentTransport(cfg.node_id, cfg.router_address, cfg.pub_address,
                                        curve=cfg.curve, codec=cfg.codec)
        try:
            ack = self._register()
            self.heartbeat_interval_s = ack.heartbeat_interval_s
            self._start_heartbeats()
            self.on_registered(ack)
            return self._serve()
        finally:
            self._hb_stop.set()
            if self._hb_thread is not None:
                self._hb_thread.join(timeout=2.0)
            with self._io:
                self.transport.close()

    # ------------------------------------------------------------- heartbeats
    def heartbeat_status(self) -> str:
        """What the heartbeat says: ``status`` if a subclass set one other than "ok", else what
        the serving thread waits on (`testbed.activity.describe`), cut to the schema's limit."""
        text = self.status if self.status != "ok" else describe(self._run_thread)
        return text[:256]

    def _start_heartbeats(self) -> None:
        self._hb_stop.clear()
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                           name=f"heartbeat-{self.config.node_id}")
        self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        """Send a heartbeat whenever the serving thread has not sent one for an interval (it
        sends them itself while it polls; this thread covers the time it spends in a handler,
        waiting on its radio or the broker). Waiting for the socket lock is bounded, so a
        busy serving loop cannot starve the heartbeats: it is sending them."""
        while not self._hb_stop.wait(self.heartbeat_interval_s / 4):
            if time.monotonic() - self._last_hb < self.heartbeat_interval_s:
                continue
            if not self._io.acquire(timeout=self.heartbeat_interval_s):
                continue
            try:
                if (not self._hb_stop.is_set()
                        and time.monotonic() - self._last_hb >= self.heartbeat_interval_s):
                    self._send_heartbeat_locked()
            finally:
                self._io.release()

    def _send_heartbeat_locked(self) -> None:
        """Send the next heartbeat (the caller holds the socket lock)."""
        hb = Heartbeat(seq=self._hb_seq, timestamp=time.time(), status=self.heartbeat_status())
        self._hb_seq += 1
        self._last_hb = time.monotonic()
        self.transport.send(hb)

    def _register(self) -> RegisterAck:
        cfg = self.config
        deadline = time.monotonic() + cfg.register_timeout_s
        sent: set[int] = set()
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise RegistrationError(
                    f"{cfg.node_id}: no answer from the controller at {cfg.router_address} "
                    f"within {cfg.register_timeout_s:g} s; check the address, that the "
                    "controller runs, and CURVE keys (a client whose public key is not in the "
                    "controller's allowed directory is silently ignored)")
            if self._stop.is_set() or self._parent_gone():
                raise RegistrationError(f"{cfg.node_id}: stopped before registering")
            if now >= next_send:
                msg = Register(node_id=cfg.node_id, role=cfg.role,
                               protocol_version=cfg.protocol_version,
                               model_fingerprint=cfg.model_fingerprint,
                               capabilities=cfg.capabilities)
                sent.add(msg.msg_id)
                self.transport.send(msg)
                next_send = now + cfg.register_retry_s
            batch = self.transport.poll(min(0.1, max(0.0, deadline - now)))
            for k, item in enumerate(batch):
                m = item.message
                if item.channel != "direct" or m is None:
                    continue
                if isinstance(m, RegisterAck) and m.reply_to in sent:
                    self._last_controller = time.monotonic()
                    log.info("%s registered with %s", cfg.node_id, cfg.router_address)
                    self._backlog.extend(batch[k + 1:])  # right behind the ack
                    return m
                if isinstance(m, RegisterReject) and (m.reply_to in sent or m.reply_to is None):
                    raise RegistrationError(f"{cfg.node_id}: controller refused registration: "
                                            f"{m.reason}")

    def _parent_gone(self) -> bool:
        return self.config.watch_parent and os.getppid() != self._ppid

    def _serve(self) -> str:
        try:
            while True:
                item = self._receive(0.05)
                if item is not None:
                    reason = self._dispatch(item)
                    if reason is not None:
                        return reason
        except _EndServing as end:
            if end.error is not None:
                raise end.error from None
            return end.reason

    def _receive(self, timeout_s: float) -> Incoming | None:
        """The next message: one already read, else what arrives within ``timeout_s`` seconds
        (None if nothing). Sends a due heartbeat; raises `_EndServing` when stopped or the
        parent is gone, `ControllerLostError` when the controller fell silent."""
        if self._backlog:
            return self._backlog.popleft()
        cfg = self.config
        if self._stop.is_set():
            raise _EndServing("stopped")
        if self._parent_gone():
            log.warning("%s: parent process %d is gone; exiting", cfg.node_id, self._ppid)
            raise _EndServing("parent exited")
        with self._io:
            if time.monotonic() - self._last_hb >= self.heartbeat_interval_s:
                self._send_heartbeat_locked()
            batch = self.transport.poll(timeout_s)
        if batch:
            self._backlog.extend(batch)
            return self._backlog.popleft()
        # judged only when nothing arrived: a handler that blocked longer than the limit
        # (radio, broker) must not make the controller look lost while its heartbeats wait
        # in the socket
        silent = time.monotonic() - self._last_controller
        if silent > cfg.controller_timeout_s:
            raise ControllerLostError(
                f"{cfg.node_id}: no heartbeat from the controller for {silent:.1f} s "
                f"(limit {cfg.controller_timeout_s:g} s); it stopped or the network "
                "dropped -- restart the controller, then this agent")
        return None

    def serve_until(self, wanted: Callable[[Message], bool]) -> Incoming:
        """Serve from inside a handler (a forward pass waiting on its all-reduce) until a
        direct message for which ``wanted(message)`` is true arrives, and return it
        undispatched (`put_back` returns it to the queue). Everything else is dispatched as by
        `run`. Shutdown, `stop`, a lost parent or controller end `run` from here (the handler
        is unwound with a BaseException it must not catch)."""
        while True:
            try:
                item = self._receive(0.05)
                if item is None:
                    continue
                msg = item.message
                if msg is not None and item.channel == "direct" and wanted(msg):
                    self._last_controller = time.monotonic()
                    return item
                reason = self._dispatch(item)
            except Exception as exc:  # lost controller, refused registration: end run()
                raise _EndServing(error=exc) from exc
            if reason is not None:
                raise _EndServing(reason)

    def put_back(self, item: Incoming) -> None:
        """Make ``item`` the next message served (after `serve_until` returned it)."""
        self._backlog.appendleft(item)

    def error_reply(self, exc: BaseException) -> Error:
        """The ERROR a failed handler answers with (an exception may name its own code, e.g.
        "timebase_lost": the controller re-syncs)."""
        return Error(code=str(getattr(exc, "error_code", "handler_failed"))[:64],
                     node_id=self.config.node_id, message=f"{type(exc).__name__}: {exc}"[:8000])

    def send_reply(self, request: Message, answer: Message) -> None:
        """Send ``answer`` as the reply to ``request``; an answer failing its own validation
        is replaced by an ERROR saying so."""
        with self._io:
            try:
                self.transport.send(reply(request, answer))
            except MessageError as exc:
                log.error("%s: reply to %s cannot be sent: %s", self.config.node_id,
                          request.type, exc)
                self.transport.send(reply(request, Error(
                    code="reply_invalid", node_id=self.config.node_id,
                    message=f"{type(answer).__name__} reply failed validation: {exc}"[:8000])))

    def _dispatch(self, item: Incoming) -> str | None:
        msg = item.message
        if msg is None:  # malformed: already logged and counted by the transport
            return None
        self._last_controller = time.monotonic()
        if isinstance(msg, Shutdown):
            log.info("%s: shutdown requested: %s", self.config.node_id, msg.reason)
            return f"shutdown: {msg.reason}"
        if isinstance(msg, Heartbeat):
            return None
        if item.channel == "broadcast":
            try:
                self.on_broadcast(msg)
            except Exception:  # a broadcast must never stop the agent
                log.exception("%s: failed handling broadcast %s; ignored it",
                              self.config.node_id, msg.type)
            return None
        if isinstance(msg, RegisterAck):
            # a Register resent while the controller was not up yet, answered late
            log.debug("%s: duplicate register_ack ignored", self.config.node_id)
            return None
        if isinstance(msg, RegisterReject):
            raise RegistrationError(f"{self.config.node_id}: controller no longer accepts this "
                                    f"agent: {msg.reason}")
        if isinstance(msg, Error):
            log.warning("%s: controller reported %s: %s", self.config.node_id, msg.code,
                        msg.message)
            return None
        label = msg.info.get("op") if isinstance(getattr(msg, "info", None), dict) else None
        try:
            with waiting_on(f"handling {label or msg.type}"):
                answer = self.handle(msg)
        except Exception as exc:  # keep serving; the controller gets the reason
            log.exception("%s: handler failed on %s", self.config.node_id, msg.type)
            answer = self.error_reply(exc)
        self.n_handled += 1
        if answer is not None:
            self.send_reply(msg, answer)
        return None


class _EndServing(BaseException):
    """Ends `Agent.run` from wherever serving is (also from `Agent.serve_until` inside a
    handler): with an exit ``reason``, or re-raising ``error``. A BaseException, so that
    handlers' ``except Exception`` let it through."""

    def __init__(self, reason: str = "", error: BaseException | None = None):
        super().__init__(reason or repr(error))
        self.reason = reason
        self.error = error
